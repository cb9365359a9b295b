"""Joint training on a mixture of all domains as a plugin: variant `joint`, the upper reference.

Not a sequence: every step trains on all domains at once, with the same steps, batch size and
dense updates as `dense`. Window b of step t comes from domain (t · batch_size + b) mod D (the
run's D domains in order), so every batch holds equal shares of every domain and every domain
gets the same number of windows overall; each domain's windows are drawn uniformly from its
training split by the plugin's own generator (seeded from the run's seed and the domain's index).
The protocol still evaluates at the phase boundaries, so `joint`'s R rows are taken at the same
step counts as the sequential runs'; its "forgetting" is then the change between those
checkpoints of a model that never stopped seeing every domain.

The whole strategy is this module: the plugin and (at the end) its registration.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from k1model.config.registry import Strategy, register_strategy
from k1model.method.variants import Variant
from k1model.train.plugins import Phase, Plugin


class Joint(Plugin):
    def __init__(self) -> None:
        self.rngs: list[np.random.Generator] | None = None
        self.batches = 0

    def batch(self, run, x: torch.Tensor, y: torch.Tensor, phase: Phase) -> tuple[torch.Tensor, torch.Tensor]:
        domains = list(phase.domain_tokens)
        if self.rngs is None:
            self.rngs = [np.random.default_rng([phase.seed, i, 0x4A4E54]) for i in range(len(domains))]
        B, T = x.shape
        which = (self.batches * B + np.arange(B)) % len(domains)
        offsets = np.arange(T + 1)
        rows = np.empty((B, T + 1), dtype=np.int64)
        for i, d in enumerate(domains):
            sel = np.flatnonzero(which == i)
            if sel.size:
                tokens = phase.domain_tokens[d]
                starts = self.rngs[i].integers(0, len(tokens) - T, size=sel.size)
                rows[sel] = tokens[starts[:, None] + offsets]
        self.batches += 1
        w = torch.from_numpy(rows).to(x.device)
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches,
                "rngs": None if self.rngs is None else [r.bit_generator.state for r in self.rngs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = int(state["batches"])
        if state["rngs"] is not None:
            self.rngs = []
            for s in state["rngs"]:
                g = np.random.default_rng()
                g.bit_generator.state = s
                self.rngs.append(g)


register_strategy(Strategy(
    name="joint",
    plugin=Joint,
    variants=(Variant("joint", "all", "gradient", False, ("joint",),
                      "upper reference: dense updates on a mixture of all domains (no sequence)"),),
    paper=("`joint` trains on an equal mixture of all domains in every batch (no sequence): the upper reference; its "
           "R rows are taken at the same step counts, so its 'forgetting' is not forgetting of a sequence"),
))
