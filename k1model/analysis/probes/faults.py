"""Planted faults: damage one known agent of a trained model, then ask gradient, LOO and hybrid
attribution which agent it was. Conventions and the exact definitions: `k1model.analysis.probes`."""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from k1model.analysis.probes.model_probes import (_SEED_TAGS, _all_eligible, batch_attribution, blame_vectors,
                                                  live_view)
from k1model.analysis.stats import blame_stats
from k1model.method.attribution import GradScorer
from k1model.method.selection import drill_down
from k1model.model import AgentTree, Topology

METHODS = ("grad", "loo", "hybrid")

def _fault_params(block: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [block.proj.weight, block.out.weight]

class _Fault:
    """Agent k's residual output projections W (attn.proj.weight, out.weight) set to
    W0 + a · RMS(W0) · ε with a fixed ε ~ N(0, 1) (numpy, seeded); `restore()` puts W0 back bit for bit."""

    def __init__(self, model: AgentTree, k: int, seed: Sequence[int]):
        rng = np.random.default_rng(list(seed))
        self.params = _fault_params(model.agents[k].copies[0])
        self.originals = [p.detach().clone() for p in self.params]
        self.directions = []
        for p in self.params:
            rms = float(p.detach().double().pow(2).mean().sqrt())
            if rms == 0.0:  # an all-zero projection: fall back to the init scale of the residual projections
                rms = 0.02 / math.sqrt(2 * model.cfg.depth)
            self.directions.append(torch.from_numpy(rng.standard_normal(tuple(p.shape))).to(p) * rms)

    @torch.no_grad()
    def set(self, amplitude: float) -> None:
        for p, w0, d in zip(self.params, self.originals, self.directions):
            p.copy_(w0).add_(d, alpha=amplitude)

    @torch.no_grad()
    def restore(self) -> None:
        for p, w0 in zip(self.params, self.originals):
            p.copy_(w0)

@torch.no_grad()
def _mean_loss(model: AgentTree, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    return float(torch.stack([model(x, y)[1] for x, y in batches]).mean())

def calibrate_fault(fault: _Fault, model: AgentTree, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                    clean_loss: float, target: float, rel_tol: float = 0.15, max_evals: int = 12) -> dict[str, float]:
    """Find the noise amplitude a whose loss increase on `batches` is `target` (within rel_tol).

    Small damage raises the loss about quadratically in a, so each step rescales a by
    sqrt(target / increase) (clipped to [1/16, 16]) inside the bracket found so far (geometric
    bisection when the step leaves it). Forward passes only. Returns the amplitude closest to the
    target (in log ratio) and its loss increase; the fault is left set to it."""
    a, lo, hi = 1.0, 0.0, math.inf
    best = (math.inf, 1.0, math.nan)
    for _ in range(max_evals):
        fault.set(a)
        inc = _mean_loss(model, batches) - clean_loss
        if inc > 0:
            err = abs(math.log(inc / target))
            if err < best[0]:
                best = (err, a, inc)
            if abs(inc - target) <= rel_tol * target:
                break
        if inc < target:
            lo = max(lo, a)
        else:
            hi = min(hi, a)
        new = a * min(16.0, max(1.0 / 16.0, math.sqrt(target / inc) if inc > 0 else 4.0))
        if lo > 0 and math.isfinite(hi) and not lo < new < hi:
            new = math.sqrt(lo * hi)
        a = new
    _, a, inc = best
    if not math.isfinite(inc):  # never raised the loss: keep the largest amplitude tried
        a = max(lo, a)
    fault.set(a)
    return {"amplitude": a, "calibration_increase": inc}

def walk_probability(topo: Topology, k: int) -> float:
    """Probability that a uniformly random root-to-leaf walk passes agent k."""
    p, node = 1.0, k
    while topo.parents[node] >= 0:
        p /= len(topo.children[topo.parents[node]])
        node = topo.parents[node]
    return p

def fault_agent_set(topo: Topology, cap: int | None) -> list[int]:
    """Every agent, or `cap` agents stratified by level: one per level first (the root included),
    the rest shared out in proportion to the level sizes (largest remainder), evenly spaced within
    each level. With fewer slots than levels, one agent from each of `cap` evenly spaced levels."""
    n = len(topo)
    if cap is None or cap >= n:
        return list(range(n))
    by_level = [[i for i in range(n) if topo.levels[i] == lv] for lv in range(topo.depth)]
    if cap < len(by_level):
        levels = sorted({int(round(v)) for v in np.linspace(0, len(by_level) - 1, cap)})
        return [by_level[lv][len(by_level[lv]) // 2] for lv in levels]
    spare = np.array([len(m) - 1 for m in by_level], dtype=np.float64)
    extra = cap - len(by_level)
    share = spare / spare.sum() * extra if spare.sum() else spare
    quota = np.floor(share).astype(int)
    for lv in np.argsort(-(share - quota), kind="stable")[: extra - int(quota.sum())]:
        quota[lv] += 1
    chosen = []
    for members, q in zip(by_level, quota + 1):
        chosen += [members[int(round(i))] for i in np.linspace(0, len(members) - 1, min(q, len(members)))]
    return sorted(set(chosen))

def _trial_stats(topo: Topology, k: int, att: Mapping[str, Any]) -> dict[str, Any]:
    blames = blame_vectors(att)
    siblings = topo.children[topo.parents[k]] if topo.parents[k] >= 0 else ()
    out: dict[str, Any] = {}
    for m, b in blames.items():
        s = blame_stats(b, k)
        out[f"top1_{m}"], out[f"auc_{m}"], out[f"rank_{m}"] = s["top1"], s["auc"], s["rank"]
        sib = blame_stats(b, k, siblings) if len(siblings) > 1 else None
        out[f"top1_sibling_{m}"] = None if sib is None else sib["top1"]
    elig = _all_eligible(topo)
    for m in ("hybrid", "grad"):
        path = drill_down(topo, att[m], elig)
        out[f"path_hit_{m}"] = None if k == 0 else float(k in path)
        out[f"culprit_{m}"] = topo.names[path[-1]]
    return out

def _mean_or_none(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None

def planted_faults(model: AgentTree, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], cfg: Mapping[str, Any],
                   seed: Sequence[int], device: torch.device | str = "cpu",
                   clean: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Damage each agent of the fault set in turn (restored afterwards); blame statistics per method."""
    (topo, index), scorer = live_view(model), GradScorer(model)
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    if clean is None:
        clean = [batch_attribution(model, scorer, x, y) for x, y in batches]
    stat_keys = [f"{s}_{m}" for s in ("top1", "auc", "rank", "top1_sibling") for m in METHODS]
    faults = []
    clean_loss = float(np.mean([c["loss"] for c in clean]))
    for k in fault_agent_set(topo, cfg["fault_agents"]):
        fault = _Fault(model, index[k], [*seed, _SEED_TAGS["fault"], k])
        try:
            if cfg["fault_noise"] is not None:
                fault.set(float(cfg["fault_noise"]))
                calib = {"amplitude": float(cfg["fault_noise"]), "calibration_increase": math.nan}
            else:
                calib = calibrate_fault(fault, model, batches, clean_loss, float(cfg["fault_loss_increase"]))
            trials = [batch_attribution(model, scorer, x, y) for x, y in batches]
        finally:
            fault.restore()
        stats = [_trial_stats(topo, k, t) for t in trials]
        base = [_trial_stats(topo, k, c) for c in clean]
        rec: dict[str, Any] = {
            "agent": topo.names[k], "index": k, "level": topo.levels[k],
            "siblings": len(topo.children[topo.parents[k]]) if k else 0,
            "noise_amplitude": calib["amplitude"], "calibration_increase": calib["calibration_increase"],
            "loss_clean": clean_loss,
            "loss_damaged": float(np.mean([t["loss"] for t in trials])),
            "loo_self": float(np.mean([t["loo"][k] for t in trials])),
            "loo_self_clean": float(np.mean([c["loo"][k] for c in clean])),
        }
        rec["loss_increase"] = rec["loss_damaged"] - rec["loss_clean"]
        for key in stat_keys + ["path_hit_hybrid", "path_hit_grad"]:
            rec[key] = _mean_or_none(s[key] for s in stats)
            rec[f"baseline_{key}"] = _mean_or_none(s[key] for s in base)
        rec["culprits_hybrid"] = dict(Counter(s["culprit_hybrid"] for s in stats))
        faults.append(rec)

    summary: dict[str, Any] = {}
    for key in stat_keys + ["path_hit_hybrid", "path_hit_grad"]:
        summary[key] = _mean_or_none(f[key] for f in faults)
        summary[f"baseline_{key}"] = _mean_or_none(f[f"baseline_{key}"] for f in faults)
    non_root = [f for f in faults if f["index"] != 0]
    n = len(topo)
    summary["chance"] = {
        "top1": 1.0 / n, "auc": 0.5, "rank": (n + 1) / 2,
        "top1_sibling": _mean_or_none(1.0 / f["siblings"] for f in non_root if f["siblings"] > 1),
        "path_hit": _mean_or_none(walk_probability(topo, f["index"]) for f in non_root),
    }
    summary["n_faults"] = len(faults)
    summary["n_batches"] = len(batches)
    summary["mean_loss_increase"] = float(np.mean([f["loss_increase"] for f in faults])) if faults else math.nan
    summary["faults_that_raise_loss"] = int(sum(f["loss_increase"] > 0 for f in faults))
    if cfg["fault_noise"] is None:  # calibrated: faults whose loss increase missed the target by > 30%
        target = float(cfg["fault_loss_increase"])
        summary["target_loss_increase"] = target
        summary["faults_off_target"] = [f["agent"] for f in faults
                                        if not abs(f["loss_increase"] - target) <= 0.3 * target]
    return {"faults": faults, "summary": summary}
