"""The plugin of experience replay (`k1model.strategies.replay`, which describes it and declares its settings,
variants and claims): a reservoir buffer and the batches that mix it in.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from k1model.train.plugins import Phase, Plugin


class Reservoir:
    """Vitter's algorithm R over windows (rows of a [capacity, width] int tensor)."""

    def __init__(self, capacity: int, width: int, seed: Any):
        self.windows = torch.zeros(capacity, width, dtype=torch.int16)
        self.seen = 0  # windows offered so far
        self.rng = np.random.default_rng(seed)

    @property
    def size(self) -> int:
        """Windows in the buffer."""
        return min(self.seen, self.windows.shape[0])

    def offer(self, windows: torch.Tensor) -> None:
        """Offer windows to the reservoir (Vitter's algorithm R, one after the other)."""
        capacity = self.windows.shape[0]
        windows = windows.to(self.windows.device)  # batches come from the CPU sampler: no copy
        for w in windows:
            if self.seen < capacity:
                self.windows[self.seen] = w
            else:
                j = int(self.rng.integers(0, self.seen + 1))
                if j < capacity:
                    self.windows[j] = w
            self.seen += 1

    def sample(self, k: int) -> torch.Tensor:
        """k distinct stored windows, uniformly."""
        idx = self.rng.choice(self.size, size=k, replace=False)
        return self.windows[torch.from_numpy(np.sort(idx))].long()

    def state_dict(self) -> dict[str, Any]:
        return {"windows": self.windows.clone(), "seen": self.seen, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.windows = state["windows"].clone()
        self.seen = int(state["seen"])
        self.rng.bit_generator.state = state["rng"]


class Replay(Plugin):
    """Replaces a share of every batch with windows from the run's reservoir, then offers the fresh ones to it."""

    def __init__(self) -> None:
        self.buffer: Reservoir | None = None
        self.replayed = 0  # windows replayed so far

    def batch(self, run, x: torch.Tensor, y: torch.Tensor, phase: Phase) -> tuple[torch.Tensor, torch.Tensor]:
        B, T = x.shape
        if self.buffer is None:
            self.buffer = Reservoir(run.method.replay_buffer, T + 1, [phase.seed, 0x52504C])
        k = int(round(run.method.replay_fraction * B))
        fresh = torch.cat([x, y[:, -1:]], dim=1)  # the windows: x plus the last target byte
        if 0 < k <= self.buffer.size:
            old = self.buffer.sample(k).to(x.device)
            self.buffer.offer(fresh[:B - k])
            self.replayed += k
            mixed = torch.cat([fresh[:B - k], old])
            return mixed[:, :-1].contiguous(), mixed[:, 1:].contiguous()
        self.buffer.offer(fresh)
        return x, y

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": None if self.buffer is None else self.buffer.state_dict(), "replayed": self.replayed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.replayed = int(state["replayed"])
        if state["buffer"] is not None:
            b = state["buffer"]
            self.buffer = Reservoir(b["windows"].shape[0], b["windows"].shape[1], 0)
            self.buffer.load_state_dict(b)
