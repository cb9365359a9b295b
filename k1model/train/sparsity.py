"""Measured sparsity: the share of each run's agent weights a step really changed (compared before and after
the step, not taken from the update scales), every `train.sparsity_interval` steps."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from k1model.model import AgentTree


class SparsityCheck:
    """The weights of every run's live agents before a step; `record` compares them after it (one host sync for
    every run and agent). Agents outside a run's live tree (inactive slots) are not counted."""

    def __init__(self, model: AgentTree, agent_counts: list[int]):
        R = model.runs
        self.has_slots = model.has_slots
        self.live = [model.active_mask(r) for r in range(R)]
        self.groups = [[g for g, a in zip(model.run_groups(r)[1:], self.live[r]) if a] for r in range(R)]
        self.live_params = [sum(c for c, a in zip(agent_counts, self.live[r]) if a) for r in range(R)]
        self.before = [[[p.detach().clone() for p in g] for g in run] for run in self.groups]
        self.changed: list[list[int]] = []

    def measure(self) -> None:
        """After the step: the weights changed per live agent of every run."""
        flat = torch.stack([sum((p.detach() != b).sum() for p, b in zip(g, bg))
                            for run, brun in zip(self.groups, self.before) for g, bg in zip(run, brun)]).tolist()
        ends = np.cumsum([len(run) for run in self.groups]).tolist()
        self.changed = [flat[e - len(run):e] for e, run in zip(ends, self.groups)]

    def row(self, r: int, step: int, record: Any) -> dict[str, Any]:
        """Run r's entry of the run's sparsity checks at this step."""
        changed = self.changed[r]
        return {"step": step, "param_fraction": sum(changed) / self.live_params[r],
                "agents_changed": sum(c > 0 for c in changed), "agents_scaled": record.updated,
                **({"agents_active": int(self.live[r].sum())} if self.has_slots else {})}
