"""Batches from byte tokens: seeded training windows and fixed evaluation windows."""
from __future__ import annotations

import copy
import zlib
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from k1model.errors import DataError

if TYPE_CHECKING:
    import torch

def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

def _as_tokens(tokens: np.ndarray, window: int, what: str) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{what}: tokens must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
    if len(arr) < window:
        raise DataError(
            f"{what}: {len(arr)} tokens are fewer than one window of seq_len + 1 = {window}; "
            "raise data.max_bytes or lower model.max_seq_len and re-run `k1 prepare`"
        )
    return arr

def _check_positive(**values: Any) -> None:
    for name, value in values.items():
        if not (_is_int(value) and value > 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")

class BatchSampler:
    """Random training windows: an endless iterator of ``(x, y)`` int64 tensors ``[batch, seq_len]``.

    Each batch takes ``batch_size`` windows of ``seq_len + 1`` consecutive tokens with start
    positions drawn uniformly (with replacement) from ``numpy.random.Generator(PCG64(seed))``;
    ``x`` is a window without its last token and ``y`` the same window shifted by one. The
    sampler owns its generator and has no variant argument, so every variant trained with the
    same seed sees the same batches in the same order. ``state_dict()`` /
    ``load_state_dict()`` save and restore the generator, so a resumed run continues the exact
    same stream.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int) -> None:
        _check_positive(seq_len=seq_len, batch_size=batch_size)
        if not (_is_int(seed) and seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.tokens = _as_tokens(tokens, self.seq_len + 1, "BatchSampler")
        self._n_starts = len(self.tokens) - self.seq_len  # starts 0 .. len - (seq_len + 1)
        self._offsets = np.arange(self.seq_len + 1, dtype=np.int64)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self._fingerprint = zlib.crc32(np.ascontiguousarray(self.tokens).tobytes())
        self.batches_drawn = 0

    def __iter__(self) -> "BatchSampler":
        return self

    def __next__(self) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        starts = self._rng.integers(0, self._n_starts, size=self.batch_size, dtype=np.int64)
        windows = self.tokens[starts[:, None] + self._offsets].astype(np.int64)
        self.batches_drawn += 1
        return (
            torch.from_numpy(np.ascontiguousarray(windows[:, :-1])),
            torch.from_numpy(np.ascontiguousarray(windows[:, 1:])),
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream (plain Python types: JSON/torch.save safe)."""
        return {
            "seed": self.seed,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "n_tokens": int(len(self.tokens)),
            "tokens_crc32": int(self._fingerprint),
            "batches_drawn": int(self.batches_drawn),
            "bit_generator": copy.deepcopy(self._rng.bit_generator.state),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved state; DataError if it belongs to other data or another shape."""
        for key, mine in (
            ("seq_len", self.seq_len),
            ("batch_size", self.batch_size),
            ("n_tokens", len(self.tokens)),
            ("tokens_crc32", self._fingerprint),
        ):
            if int(state[key]) != int(mine):
                raise DataError(
                    f"sampler state does not match this sampler ({key}: saved {state[key]}, now {mine}); "
                    "the data or the config changed since the checkpoint"
                )
        self.seed = int(state["seed"])
        self._rng.bit_generator.state = copy.deepcopy(dict(state["bit_generator"]))
        self.batches_drawn = int(state["batches_drawn"])

def eval_batches(
    tokens: np.ndarray, seq_len: int, batch_size: int, n_batches: int
) -> list[tuple["torch.Tensor", "torch.Tensor"]]:
    """Fixed evaluation windows: ``n_batches`` batches of ``(x, y)`` int64 tensors.

    The ``batch_size * n_batches`` window starts are evenly spaced from the first to the last
    possible start (integer arithmetic, no RNG), so every variant and seed is evaluated on
    identical data. Windows are dealt round-robin to the batches, so each batch (and any
    prefix of the list) is spread over the whole split.
    """
    import torch

    _check_positive(seq_len=seq_len, batch_size=batch_size, n_batches=n_batches)
    arr = _as_tokens(tokens, seq_len + 1, "eval_batches")
    n = batch_size * n_batches
    last = len(arr) - seq_len - 1
    starts = (np.arange(n, dtype=np.int64) * last) // max(n - 1, 1)
    offsets = np.arange(seq_len + 1, dtype=np.int64)
    grid = starts.reshape(batch_size, n_batches).T  # batch b gets windows b, b + n_batches, ...
    out = []
    for b in range(n_batches):
        w = arr[grid[b][:, None] + offsets].astype(np.int64)
        out.append((torch.from_numpy(np.ascontiguousarray(w[:, :-1])), torch.from_numpy(np.ascontiguousarray(w[:, 1:]))))
    return out


def full_split_batches(tokens: np.ndarray, seq_len: int, batch_size: int) -> list[tuple["torch.Tensor", "torch.Tensor"]]:
    """The whole split as evaluation batches: windows of seq_len + 1 bytes starting every seq_len bytes, so
    every byte after the first is predicted exactly once (with 0 to seq_len - 1 bytes of context); the
    last window is moved back to end at the split's end and scores only the bytes not scored yet (its
    other targets are set to -100, which cross-entropy ignores). No RNG: the same windows for everyone."""
    import torch

    _check_positive(seq_len=seq_len, batch_size=batch_size)
    arr = _as_tokens(tokens, seq_len + 1, "full_split_batches")
    starts = list(range(0, len(arr) - seq_len, seq_len))
    offsets = np.arange(seq_len + 1, dtype=np.int64)
    w = arr[np.asarray(starts)[:, None] + offsets].astype(np.int64)
    scored = starts[-1] + seq_len  # bytes 1..scored are targets so far
    if scored < len(arr) - 1:
        last = arr[len(arr) - seq_len - 1:].astype(np.int64)[None]
        tail = last.copy()
        tail[0, 1:1 + seq_len - (len(arr) - 1 - scored)] = -100  # already scored: ignored
        w = np.concatenate([w, last])
        y_last = tail[:, 1:]
    out = []
    x_all, y_all = w[:, :-1], w[:, 1:].copy()
    if scored < len(arr) - 1:
        y_all[-1] = y_last[0]
    for b in range(0, len(x_all), batch_size):
        out.append((torch.from_numpy(np.ascontiguousarray(x_all[b:b + batch_size])),
                    torch.from_numpy(np.ascontiguousarray(y_all[b:b + batch_size]))))
    return out
