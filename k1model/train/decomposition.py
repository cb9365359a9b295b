"""Where forgetting lives: the shared weights or the agents (DESIGN.md §11).

Every variant trains the shared weights (embedding, positions, final norm, LM head) at full rate
on every step by default, while K-1 leaves its agents idle on most steps. So the forgetting of a
K-1 run may be carried by the shared weights alone. Two measurements per run say how much of it
each part carries:

- **drift**: per phase i, how far each part moved, ‖θ_end(i) − θ_end(i−1)‖ (θ_end(−1) = the
  initial weights), absolute and relative to ‖θ_end(i−1)‖;
- **swap test**: for every domain j but the last, the final model's test bpb on j with one part
  put back to its state at the end of phase j (where R[j, j] was measured):

      old_shared_j = bpb_j(final agents, shared weights of the end of phase j)
      old_agents_j = bpb_j(agents of the end of phase j, final shared weights)

  The forgetting the shared weights carry is R[T, j] − old_shared_j (what restoring them alone
  recovers), the agents' R[T, j] − old_agents_j. A part that did not change since phase j gets
  exactly 0: the swapped model is the final model, bit for bit. The two need not add up to
  R[T, j] − R[j, j] (the parts interact); both are reported beside it.

Only parameters are swapped; structural state (agent slots of `k1_grow`) stays final. Snapshots
are kept in the run's log (and so in its resume state) until the run finishes.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

from k1model.model import AgentTree

Snapshot = list[list[torch.Tensor]]  # [part 0 = shared, 1 + agent k] -> tensors (a run's `run_groups`)


def snapshot(model: AgentTree, r: int) -> Snapshot:
    """A copy of run r's weights by update unit (shared first, then every agent)."""
    return [[p.detach().clone() for p in group] for group in model.run_groups(r)]


def _norm(tensors: Sequence[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors)) if tensors else 0.0


def drift(before: Snapshot, after: Snapshot, phase: int, active: Sequence[bool] | None = None) -> dict[str, Any]:
    """How far the shared weights and the agents (those of the live tree, `active`) moved between two snapshots."""
    out: dict[str, Any] = {"phase": phase}
    keep = [k for k in range(len(before) - 1) if active is None or active[k]]
    parts = {"shared": (before[0], after[0]),
             "agents": ([t for k in keep for t in before[1 + k]], [t for k in keep for t in after[1 + k]])}
    for name, (b, a) in parts.items():
        moved = _norm([x - y for x, y in zip(a, b)])
        size = _norm(b)
        out[name] = moved
        out[f"{name}_relative"] = moved / size if size > 0 else math.nan
    return out


def record_phase_end(log: Any, model: AgentTree, r: int, phase: int, phases: int) -> None:
    """At the end of `phase`: the drift of each part since the previous phase end, and the snapshot the swap
    test will need (every phase but the last); snapshots no longer needed are dropped."""
    current = snapshot(model, r)
    previous = log.snapshots.pop("init") if phase == 0 else log.snapshots[str(phase - 1)]
    log.drift.append(drift(previous, current, phase, model.active_mask(r).tolist()))
    if phase < phases - 1:
        log.snapshots[str(phase)] = current


@torch.no_grad()
def _load(model: AgentTree, r: int, parts: Snapshot, which: range | list[int]) -> None:
    groups = model.run_groups(r)
    for i in which:
        for p, saved in zip(groups[i], parts[i]):
            p.copy_(saved)


def swap_test(model: AgentTree, runs: Sequence[int], snapshots: Sequence[dict[int, Snapshot]],
              phases: Sequence[Sequence[str]], evaluate: Callable[[list[str]], dict[str, np.ndarray]]
              ) -> dict[int, list[dict[str, Any]]]:
    """For each run r in `runs` (rows of `model`) and each phase j with a snapshot (`snapshots[r][j]`):
    the test bpb on the domain of phase j with the shared weights, then the agents, of the end of phase j
    in the final model. `evaluate(domains)` gives bpb per domain for every row. The final weights are
    restored exactly afterwards."""
    final = {r: snapshot(model, r) for r in runs}
    n_parts = len(model.run_groups(0))
    out: dict[int, list[dict[str, Any]]] = {r: [] for r in runs}
    js = sorted({j for r in runs for j in snapshots[r]})
    try:
        for j in js:
            members = [r for r in runs if j in snapshots[r]]
            domains = list(dict.fromkeys(phases[r][j] for r in members))
            results = {}
            for part, which in (("old_shared", [0]), ("old_agents", list(range(1, n_parts)))):
                for r in members:
                    _load(model, r, snapshots[r][j], which)
                bpb = evaluate(domains)
                results[part] = {r: float(bpb[phases[r][j]][r]) for r in members}
                for r in members:
                    _load(model, r, final[r], which)
            for r in members:
                out[r].append({"phase": j, "domain": phases[r][j], "old_shared": results["old_shared"][r],
                               "old_agents": results["old_agents"][r]})
    finally:
        for r in runs:
            _load(model, r, final[r], range(n_parts))
    return out


def decomposition(R: Sequence[Sequence[float]], drifts: Sequence[dict[str, Any]], swaps: Sequence[dict[str, Any]]
                  ) -> tuple[dict[str, Any], dict[str, float | None]]:
    """metrics.json's `decomposition` and its scalars: per domain j < T the bpb lost since its own phase
    (R[T, j] − R[j, j]) and what the shared weights and the agents each carry of it; drift per phase."""
    R = np.asarray(R, dtype=float)
    T = R.shape[0]
    rows = []
    for s in swaps:
        j = s["phase"]
        rows.append({**s, "own_phase": float(R[j, j]), "final": float(R[T - 1, j]),
                     "lost": float(R[T - 1, j] - R[j, j]),
                     "carried_by_shared": float(R[T - 1, j] - s["old_shared"]),
                     "carried_by_agents": float(R[T - 1, j] - s["old_agents"])})
    later = [d for d in drifts if d["phase"] >= 1]  # phases after the first: where earlier domains are forgotten
    scalars: dict[str, float | None] = {
        "forgetting_shared": float(np.mean([r["carried_by_shared"] for r in rows])) if rows else None,
        "forgetting_agents": float(np.mean([r["carried_by_agents"] for r in rows])) if rows else None,
        "drift_shared": float(np.mean([d["shared_relative"] for d in later])) if later else None,
        "drift_agents": float(np.mean([d["agents_relative"] for d in later])) if later else None,
    }
    doc = {"domains": rows, "drift": list(drifts),
           "rule": "carried_by_X = R[T, j] - bpb_j(final model with part X from the end of phase j); "
                   "drift = ||theta_end(i) - theta_end(i-1)||, relative to ||theta_end(i-1)||"}
    return doc, scalars
