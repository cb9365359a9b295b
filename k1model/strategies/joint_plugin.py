"""The plugin of joint training (`k1model.strategies.joint`, which describes it and declares its variant):
every batch drawn from all of the run's domains.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from k1model.train.plugins import Phase, Plugin


class Joint(Plugin):
    """Every batch an equal mixture of the run's domains, drawn by the plugin's own generators."""

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
