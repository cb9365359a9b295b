"""Experience replay as a plugin: variants `replay` (dense updates) and `k1_replay` (K-1's selection).

A reservoir buffer (Vitter's algorithm R) holds up to `method.replay_buffer` training windows
(seq_len + 1 bytes each) out of every window the run has trained on so far: window number n
(0-based) enters an empty slot while the buffer is not full, else replaces slot j with
j ~ uniform{0..n} when j < capacity, so every window seen has the same chance to be in the buffer.

Each step, k = round(method.replay_fraction · batch_size) rows of the batch are replaced by k
distinct windows drawn uniformly from the buffer (the last k rows; the batch size stays the same,
so the comparison with `dense` is compute-matched). Replay starts once the buffer holds k windows.
Then the batch's fresh windows (the ones it actually trains on) are offered to the reservoir. So
the buffer only ever holds windows of steps already taken: replay never reads a domain before
its phase. The plugin samples with its own generator; the training data stream is untouched, and
with replay_fraction = 0 `replay` equals `dense` bit for bit. The buffer is the plugin's state,
saved in the run's checkpoint.

The whole strategy is this module: the plugin, and (at the end) its registration with its settings
and their check, its variants, its paper description and its claims.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from k1model.config.checks import Integer, Number, setting
from k1model.config.registry import Strategy, register_strategy
from k1model.errors import ConfigError
from k1model.method.variants import Variant
from k1model.train.plugins import Phase, Plugin


class Reservoir:
    """Vitter's algorithm R over windows (rows of a [capacity, width] int tensor)."""

    def __init__(self, capacity: int, width: int, seed: Any):
        self.windows = torch.zeros(capacity, width, dtype=torch.int16)
        self.seen = 0  # windows offered so far
        self.rng = np.random.default_rng(seed)

    @property
    def size(self) -> int:
        return min(self.seen, self.windows.shape[0])

    def offer(self, windows: torch.Tensor) -> None:
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


def check_buffer(params: Any) -> None:
    """The buffer holds at least one batch's replay share."""
    m, batch = params.method, params.train.batch_size
    share = round(m.replay_fraction * batch)
    if m.replay_buffer < share:
        raise ConfigError(f"method.replay_buffer={m.replay_buffer} is smaller than one batch's replay share "
                          f"(round(method.replay_fraction {m.replay_fraction} x train.batch_size "
                          f"{batch}) = {share} windows); raise method.replay_buffer")


register_strategy(Strategy(
    name="replay",
    plugin=Replay,
    settings={
        "replay_buffer": setting(1000, Integer(1), "reservoir capacity in training windows"),
        "replay_fraction": setting(0.5, Number(0.0, 1.0, open_high=True),
                                   "share of every batch drawn from the buffer (batch size unchanged; default: the "
                                   "pilot of params/pilot_baselines.yaml)"),
    },
    variants=(Variant("replay", "all", "gradient", False, ("replay",),
                      "dense updates + experience replay from a reservoir buffer (compute-matched batches)"),
              Variant("k1_replay", "drilldown", "hybrid", True, ("replay",), "k1_full's selection + the same replay")),
    checks=(check_buffer,),
    paper=("`replay` and `k1_replay` keep a reservoir buffer (Vitter's algorithm R) of up to {method.replay_buffer} "
           "training windows seen so far and replace a share of {method.replay_fraction:g} of every batch with "
           "buffered windows (the batch size is unchanged, so the comparison is compute-matched; a domain is never "
           "replayed before its phase)"),
    claims=({"name": "less_forgetting_than_replay", "metric": "forgetting", "variant": "k1_full",
             "reference": "replay", "statement": "K-1 forgets less than experience replay"},
            {"name": "replay_with_k1", "metric": "forgetting", "variant": "k1_replay", "reference": "replay",
             "statement": "K-1's selection on top of replay forgets less than replay alone"}),
))
