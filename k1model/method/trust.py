"""Trust: the cooldown that stops a just-fixed agent from being updated again right away.

Dynamics (DESIGN.md §2.3), applied once per step after the update:

    t_k <- min(1, t_k + gain_k)     gain from the trust rule (below)
    t_k <- t_k * trust_decay        for every agent, every step

An agent with t_k > trust_threshold is in cooldown (not eligible for updates). Variants without
cooldown still track trust (it is reported) but it never gates anything.

Trust rules (`TRUST_RULES`, chosen by `method.trust_rule`): `per_update` (DESIGN.md §2.3) gains
`trust_increase` for every agent updated this step (scale > 0), whatever its scale;
`proportional` gains `trust_increase · scale_k`, so a 5% update earns 5% of the trust and the
parent and ancestors on a path (scales 0.15, 0.05) cool down far less than the culprit.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

#: rule(scales, increase) -> trust gained per agent this step
TrustRule = Callable[[np.ndarray, float], np.ndarray]


def per_update(scales: np.ndarray, increase: float) -> np.ndarray:
    """Trust gained per agent: `increase` for every agent updated, whatever its scale."""
    return increase * (np.asarray(scales) > 0).astype(np.float64)


def proportional(scales: np.ndarray, increase: float) -> np.ndarray:
    """Trust gained per agent: `increase` times its update's scale."""
    return increase * np.asarray(scales, dtype=np.float64)


TRUST_RULES: dict[str, TrustRule] = {"per_update": per_update, "proportional": proportional}
#: method keys a variant with the trust cooldown reads (a sweep over them cannot change other variants)
COOLDOWN_KEYS = ("trust_threshold", "trust_increase", "trust_decay", "trust_rule", "reset_moments_on_return")


def get_trust_rule(name: str) -> TrustRule:
    """The trust rule `name` (a ValueError naming the rules otherwise)."""
    try:
        return TRUST_RULES[name]
    except KeyError:
        raise ValueError(f"unknown trust rule {name!r}; registered: {', '.join(TRUST_RULES)}") from None


class Trust:
    """One run's trust per agent: the cooldown that keeps a just-fixed agent from being updated again."""
    def __init__(self, num_agents: int, threshold: float, increase: float, decay: float, enabled: bool = True,
                 rule: str = "per_update"):
        self.values = np.zeros(num_agents, dtype=np.float64)
        self.threshold = threshold
        self.increase = increase
        self.decay = decay
        self.enabled = enabled
        self.rule = get_trust_rule(rule)

    def eligible(self) -> np.ndarray:
        """Boolean mask of agents that may be updated this step."""
        if not self.enabled:
            return np.ones_like(self.values, dtype=bool)
        return self.values <= self.threshold

    def update(self, scales: np.ndarray) -> None:
        """After a step: gain trust by the rule for the agents updated, then decay every agent's."""
        self.values = np.minimum(1.0, self.values + self.rule(scales, self.increase)) * self.decay

    def state_dict(self) -> dict:
        return {"values": self.values.tolist()}

    def load_state_dict(self, state: dict) -> None:
        values = np.asarray(state["values"], dtype=np.float64)
        if values.shape != self.values.shape:
            raise ValueError(f"trust state has {values.size} agents, model has {self.values.size}")
        self.values = values
