"""Continual-learning and language-modelling metrics (pure numpy, no torch).

The forgetting metrics are computed from the evaluation matrix R, where R[i, j] is the
held-out bits per byte on domain j after training phase i (phases and domains in the same
order, so R is T × T). Lower bpb is better, so every metric here is written such that a
*positive* value means "worse" (forgetting, negative transfer) -- the opposite sign of the
accuracy-based definitions in the papers below.

References
----------
- D. Lopez-Paz and M. Ranzato, "Gradient Episodic Memory for Continual Learning",
  NeurIPS 2017 (backward / forward transfer).
- A. Chaudhry, P. K. Dokania, T. Ajanthan and P. H. S. Torr, "Riemannian Walk for
  Incremental Learning: Understanding Forgetting and Intransigence", ECCV 2018
  (forgetting measure: best earlier performance minus final performance).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "bits_per_byte",
    "final_average_bpb",
    "forgetting_per_domain",
    "forgetting",
    "backward_transfer_per_domain",
    "backward_transfer",
    "forward_transfer_per_domain",
    "forward_transfer",
    "forgetting_summary",
    "plasticity",
    "update_frequency",
    "sparsity_summary",
    "divergence",
]

LN2 = math.log(2.0)


def bits_per_byte(loss_nats: float | np.ndarray, bytes_per_token: float = 1.0) -> float | np.ndarray:
    """Convert a mean cross-entropy per token (nats) to bits per byte.

    bpb = loss / ln 2 / bytes_per_token. With the default byte tokenizer one token is one
    byte, so bpb is just the loss in bits; the argument keeps the metric tokenizer-independent
    for other tokenizers (pass total bytes / total tokens of the evaluated text).
    """
    if bytes_per_token <= 0:
        raise ValueError(f"bytes_per_token must be > 0, got {bytes_per_token}")
    if isinstance(loss_nats, np.ndarray):
        return loss_nats.astype(float) / LN2 / bytes_per_token
    return float(loss_nats) / LN2 / bytes_per_token


def _as_R(R: Sequence[Sequence[float]] | np.ndarray, min_phases: int = 1) -> np.ndarray:
    """R as a float T × T array; a clear ValueError otherwise."""
    arr = np.asarray(R, dtype=float)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(
            f"R must be a square phases × domains matrix (one phase per domain), got shape {arr.shape}"
        )
    if arr.shape[0] < min_phases:
        raise ValueError(f"R needs at least {min_phases} phases, got {arr.shape[0]}")
    return arr


def final_average_bpb(R: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Mean bpb over all domains after the last phase (the last row of R)."""
    return float(np.mean(_as_R(R)[-1]))


def forgetting_per_domain(R: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """F_j = R[T, j] − min_{i<T} R[i, j] for every domain j < T (Chaudhry et al. 2018).

    "Best earlier" is taken over all earlier phases i < T (as in Chaudhry et al.), which
    includes phases before domain j was trained; in practice the minimum is reached at or
    after phase j. Positive = the final model is worse than it once was (forgetting).
    Length T − 1 (the last domain cannot have been forgotten yet).
    """
    arr = _as_R(R, min_phases=2)
    return arr[-1, :-1] - arr[:-1, :-1].min(axis=0)


def forgetting(R: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Average forgetting over all but the last domain (bpb; positive = forgetting)."""
    return float(np.mean(forgetting_per_domain(R)))


def backward_transfer_per_domain(R: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """R[T, j] − R[j, j] for j < T: change on domain j since just after it was trained."""
    arr = _as_R(R, min_phases=2)
    T = arr.shape[0]
    return arr[-1, : T - 1] - np.diag(arr)[: T - 1]


def backward_transfer(R: Sequence[Sequence[float]] | np.ndarray) -> float:
    """BWT = mean_{j<T} (R[T, j] − R[j, j]) (Lopez-Paz & Ranzato 2017).

    Sign flipped w.r.t. the accuracy definition because lower bpb is better:
    positive BWT = later phases made earlier domains worse (forgetting);
    negative BWT = later training helped earlier domains.
    """
    return float(np.mean(backward_transfer_per_domain(R)))


def forward_transfer_per_domain(
    R: Sequence[Sequence[float]] | np.ndarray, R0: Sequence[float] | np.ndarray
) -> np.ndarray:
    """R[j−1, j] − b_j for j ≥ 1, with b_j = R0[j] the bpb of the untrained model on domain j."""
    arr = _as_R(R, min_phases=2)
    b = np.asarray(R0, dtype=float)
    if b.shape != (arr.shape[1],):
        raise ValueError(f"R0 must have one bpb per domain ({arr.shape[1]}), got shape {b.shape}")
    j = np.arange(1, arr.shape[0])
    return arr[j - 1, j] - b[j]


def forward_transfer(R: Sequence[Sequence[float]] | np.ndarray, R0: Sequence[float] | np.ndarray) -> float:
    """FWT = mean_{j≥1} (R[j−1, j] − b_j) (Lopez-Paz & Ranzato 2017, bpb sign).

    Measures how much training on the earlier domains changed bpb on a domain *before* it
    is trained on, relative to the untrained model. Negative = earlier phases helped
    (positive forward transfer in the paper's language); positive = they hurt.
    Only defined with the untrained model's row R0.
    """
    return float(np.mean(forward_transfer_per_domain(R, R0)))


def plasticity(R: Sequence[Sequence[float]] | np.ndarray) -> float:
    """Mean R[j, j]: how well each domain was learned, measured right after its own phase (lower = learned
    better). The x axis of a stability-plasticity frontier: a method that learns less can forget less for
    that reason alone (DESIGN.md §12)."""
    return float(np.mean(np.diag(_as_R(R))))


def forgetting_summary(
    R: Sequence[Sequence[float]] | np.ndarray, R0: Sequence[float] | np.ndarray | None = None
) -> dict[str, float | None]:
    """The flat scalars `k1 train` stores under `metrics.json["scalars"]`.

    Keys: final_avg_bpb, plasticity, forgetting, bwt, fwt (None without R0). With a single phase the
    transfer metrics are undefined and reported as None rather than 0.
    """
    arr = _as_R(R)
    out: dict[str, float | None] = {"final_avg_bpb": final_average_bpb(arr), "plasticity": plasticity(arr)}
    if arr.shape[0] < 2:
        out.update(forgetting=None, bwt=None, fwt=None)
        return out
    out["forgetting"] = forgetting(arr)
    out["bwt"] = backward_transfer(arr)
    out["fwt"] = forward_transfer(arr, R0) if R0 is not None else None
    return out


def update_frequency(update_counts: Mapping[str, int], steps: int) -> dict[str, float]:
    """Fraction of steps in which each agent was updated (scale > 0)."""
    if steps <= 0:
        raise ValueError(f"steps must be > 0, got {steps}")
    return {name: float(count) / steps for name, count in update_counts.items()}


def sparsity_summary(
    fraction_changed: Sequence[float], agents_changed: Sequence[float], n_agents: int | Sequence[int]
) -> dict[str, float]:
    """Mean measured sparsity over the sampled steps.

    `fraction_changed[t]` is the fraction of agent parameters whose value changed at sampled
    step t (measured by comparing weights), `agents_changed[t]` the number of agents with
    any changed parameter. Returns `sparsity_param_fraction` and `sparsity_agent_fraction`
    (both in [0, 1]; lower = sparser). `n_agents` is the number of agents, or per sampled step
    the number of agents of the live tree (a tree that grows or is pruned).
    """
    if np.any(np.asarray(n_agents) <= 0):
        raise ValueError(f"n_agents must be > 0, got {n_agents}")
    f = np.asarray(fraction_changed, dtype=float)
    a = np.asarray(agents_changed, dtype=float)
    if f.size == 0 or a.size == 0:
        raise ValueError("sparsity_summary needs at least one sampled step")
    n = np.asarray(n_agents, dtype=float)
    if n.ndim and (n == n[0]).all():  # a tree that never changed: the same arithmetic as a fixed count
        n = n[0]
    agent_fraction = a.mean() / n if n.ndim == 0 else (a / n).mean()
    return {
        "sparsity_param_fraction": float(f.mean()),
        "sparsity_agent_fraction": float(agent_fraction),
    }


DIVERGENCE_RULE = ("a run diverged when a loss is not finite, when a held-out bpb after a phase of training, on a "
                   "domain already trained on, exceeds that domain's bpb before any training (R[i][j] > R0[j], j <= i), "
                   "or when its training loss over the last 5 % of steps exceeds that over the first 5 %")


def divergence(R: Sequence[Sequence[float]], R0: Sequence[float], losses: Sequence[float],
               domains: Sequence[str]) -> dict[str, Any]:
    """Did the run diverge (`DIVERGENCE_RULE`)? {"diverged": bool, "reasons": [...], "rule": ...}: a run that
    did is kept in the analysis and flagged (metrics.json, the tidy table's `diverged`, the paper). `losses`:
    the training loss of every step (nats), in order."""
    reasons = []
    losses = np.asarray(losses, dtype=float)
    if not np.isfinite(losses).all() or not np.isfinite(np.asarray(R, dtype=float)).all():
        reasons.append("a loss is not finite")
    for i, row in enumerate(R):
        for j in range(min(i + 1, len(row))):
            if row[j] > R0[j]:
                reasons.append(f"after phase {i + 1}, {domains[j]} at {row[j]:.3f} bpb, above its untrained "
                               f"{R0[j]:.3f}")
    k = max(1, len(losses) // 20)
    first, last = float(losses[:k].mean()), float(losses[-k:].mean())
    if last > first:
        reasons.append(f"training loss at the end {last / LN2:.3f} bits/byte, above its start "
                       f"{first / LN2:.3f}")
    return {"diverged": bool(reasons), "reasons": reasons, "rule": DIVERGENCE_RULE}
