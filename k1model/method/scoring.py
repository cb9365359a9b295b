"""Scorers: the per-agent score that selection ranks (DESIGN.md §2.2).

* `gradient`: s_k = g_k, the L2 norm of agent k's parameter gradients.
* `hybrid`:   s_k = g_k · w_k with

      w_k = 1 + max(0, −Δ_k) / (mean_j |Δ_j| + ε)

  so a hurting agent (Δ_k < 0: removing it lowers the loss) is blamed more, in proportion to how
  much it hurts relative to the typical |Δ| (scale-free in Δ); helping agents keep w_k = 1. The
  latest LOO of each agent is used; before the first LOO, w_k = 1.

Scorers run on the device, before the step's single host sync, through the tensors' own methods: the
module imports no torch, so the run plan reads a variant's keys without it. The trainer takes every run's scores
from its variant's scorer (`Scorer.score(grad_scores, latest_loo)`; `latest_loo` is None for a scorer
that does not need LOO, and before the first LOO), over the run's live tree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

HYBRID_EPS = 1e-12


def hybrid_scores(grad_scores: torch.Tensor, loo: torch.Tensor | None) -> torch.Tensor:
    """s_k = g_k · (1 + relu(−Δ_k) / (mean|Δ| + ε)) over the last dim (agents; [agents] or
    [runs, agents]); g_k unchanged when no LOO is known yet."""
    if loo is None:
        return grad_scores
    loo = loo.to(grad_scores)
    weight = 1.0 + (-loo).relu() / (loo.abs().mean(-1, keepdim=True) + HYBRID_EPS)
    return grad_scores * weight


def gradient_scores(grad_scores: torch.Tensor, loo: torch.Tensor | None) -> torch.Tensor:
    """s_k = g_k: the gradient norms as they are."""
    return grad_scores


@dataclass(frozen=True)
class Scorer:
    """A registered scorer: its function, whether it needs LOO deltas, the method keys it reads."""
    name: str
    needs_loo: bool  # the trainer computes LOO every loo_interval steps for it
    score: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    keys: tuple[str, ...] = ()  # method keys it reads


SCORERS: dict[str, Scorer] = {
    "gradient": Scorer("gradient", False, gradient_scores),
    "hybrid": Scorer("hybrid", True, hybrid_scores, ("loo_interval",)),
}


def register_scorer(scorer: Scorer) -> Scorer:
    """Add a scorer (names are unique); the trainer calls its `score` for every variant that names it."""
    if scorer.name in SCORERS:
        raise ValueError(f"scorer {scorer.name!r} is already registered")
    SCORERS[scorer.name] = scorer
    return scorer


def get_scorer(name: str) -> Scorer:
    """The registered scorer `name` (a ValueError naming the registered ones otherwise)."""
    try:
        return SCORERS[name]
    except KeyError:
        raise ValueError(f"unknown scorer {name!r}; registered: {', '.join(SCORERS)}") from None
