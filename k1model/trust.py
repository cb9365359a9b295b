"""Trust: the cooldown that stops a just-fixed agent from being updated again right away.

Dynamics (DESIGN.md §2.3), applied once per step after the update:

    t_k <- min(1, t_k + trust_increase)   if agent k was updated this step (scale > 0)
    t_k <- t_k * trust_decay              for every agent, every step

An agent with t_k > trust_threshold is in cooldown (not eligible for updates). With
`enabled=False` (the no_trust and dense variants) trust is still tracked, so it can be
reported, but it never gates anything.
"""
from __future__ import annotations

import numpy as np


class Trust:
    def __init__(self, num_agents: int, threshold: float, increase: float, decay: float, enabled: bool = True):
        self.values = np.zeros(num_agents, dtype=np.float64)
        self.threshold = threshold
        self.increase = increase
        self.decay = decay
        self.enabled = enabled

    def eligible(self) -> np.ndarray:
        """Boolean mask of agents that may be updated this step."""
        if not self.enabled:
            return np.ones_like(self.values, dtype=bool)
        return self.values <= self.threshold

    def update(self, updated: np.ndarray) -> None:
        self.values = np.minimum(1.0, self.values + self.increase * updated.astype(np.float64)) * self.decay

    def state_dict(self) -> dict:
        return {"values": self.values.tolist()}

    def load_state_dict(self, state: dict) -> None:
        values = np.asarray(state["values"], dtype=np.float64)
        if values.shape != self.values.shape:
            raise ValueError(f"trust state has {values.size} agents, model has {self.values.size}")
        self.values = values
