"""Probes on a trained checkpoint: attribution of a batch, resampling stability of the culprit
path, and the cascading-randomisation sanity check. Conventions: `k1model.analysis.probes`."""
from __future__ import annotations

import copy
import math
from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from k1model.analysis.stats import entropy_bits, path_agreement, spearman
from k1model.method.attribution import GradScorer, loo_deltas
from k1model.method.scoring import hybrid_scores
from k1model.method.selection import drill_down
from k1model.model import AgentTree, Topology
from k1model.topology import compact

_SEED_TAGS = {"resample": 0x5253, "fault": 0x4641, "reinit": 0x5249, "perm": 0x5045}

def live_view(model: AgentTree) -> tuple[Topology, list[int]]:
    """The one-run model's live tree, renumbered over its active agents (`topology.compact`), and the
    model index of each: the probes see only agents that are there (slots, pruned agents are not)."""
    return compact(model.run_topology(0))


def batch_attribution(model: AgentTree, scorer: GradScorer, x: torch.Tensor, y: torch.Tensor,
                      with_loo: bool = True) -> dict[str, Any]:
    """Loss, gradient scores, LOO Δ and hybrid scores of one batch (eval mode), as host arrays over the
    live tree's agents (`live_view` order; every agent of a tree that never changed)."""
    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        _, loss = model(x, y)
        loss.backward()
    grad = scorer.scores()[0]  # a one-run model
    model.zero_grad(set_to_none=True)
    live = None if not model.has_slots else model.active_index(0)
    if live is not None:
        grad = grad[live]
    parts = [loss.detach().float().view(1), grad.float()]
    if with_loo:
        _, delta = loo_deltas(model, x, y)
        if live is not None:
            delta = delta[live]
        parts += [delta.float(), hybrid_scores(grad, delta).float()]
    host = torch.cat(parts).cpu().numpy().astype(np.float64)
    n = len(grad)
    out = {"loss": float(host[0]), "grad": host[1:1 + n]}
    if with_loo:
        out["loo"], out["hybrid"] = host[1 + n:1 + 2 * n], host[1 + 2 * n:1 + 3 * n]
    return out

def blame_vectors(att: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per method, higher = more blame: grad g, LOO −Δ, hybrid s."""
    return {"grad": att["grad"], "loo": -att["loo"], "hybrid": att["hybrid"]}

def _variant_scores(att: Mapping[str, Any], use_loo: bool) -> np.ndarray:
    return att["hybrid"] if use_loo else att["grad"]

def _all_eligible(topo: Topology) -> np.ndarray:
    return np.ones(len(topo), dtype=bool)

def resample_probe(model: AgentTree, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], use_loo: bool,
                   device: torch.device | str = "cpu") -> dict[str, Any]:
    """Drill-down path per batch (variant's scores, all eligible); pairwise path agreement, culprit entropy."""
    (topo, _), scorer = live_view(model), GradScorer(model)
    elig = _all_eligible(topo)
    rule = "hybrid" if use_loo else "grad"
    paths: dict[str, list[list[int]]] = {m: [] for m in (("grad", "hybrid") if use_loo else ("grad",))}
    for x, y in batches:
        att = batch_attribution(model, scorer, x.to(device), y.to(device), with_loo=use_loo)
        for m in paths:
            paths[m].append(drill_down(topo, att[m], elig))
    chosen = paths[rule]
    culprits = [topo.names[p[-1]] for p in chosen]
    counts = Counter(" > ".join(topo.names[k] for k in p) for p in chosen)
    n_leaves = len(topo.leaves)
    ent = entropy_bits(culprits)
    return {
        "scores": rule, "batches": len(chosen),
        "path_agreement": path_agreement(chosen),
        "modal_path_share": max(counts.values()) / len(chosen),
        "culprit_entropy_bits": ent,
        "culprit_entropy_normalised": ent / math.log2(n_leaves) if n_leaves > 1 else math.nan,
        "chance_path_agreement": 1.0 / n_leaves,
        "path_counts": dict(counts.most_common()),
        "culprit_counts": dict(Counter(culprits).most_common()),
        "path_agreement_grad": path_agreement(paths["grad"]),
        "path_agreement_hybrid": path_agreement(paths["hybrid"]) if "hybrid" in paths else math.nan,
    }

def _fresh_agents(model: AgentTree, seed: Sequence[int]) -> AgentTree:
    """A freshly initialised one-run tree (the model's own init) from a fixed seed."""
    fresh = AgentTree(model.cfg, seeds=[int(np.random.default_rng(list(seed)).integers(2**31 - 1))],
                      attention=model.attention)
    return fresh.to(next(model.parameters()).device)

def randomisation_probe(model: AgentTree, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], use_loo: bool,
                        seed: Sequence[int], device: torch.device | str = "cpu",
                        trained: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Cascading bottom-up re-initialisation; culprit/path/score change vs the trained model per stage."""
    topo, index = live_view(model)
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    if trained is None:
        scorer = GradScorer(model)
        trained = [batch_attribution(model, scorer, x, y, with_loo=use_loo) for x, y in batches]
    elig = _all_eligible(topo)
    base_scores = [_variant_scores(t, use_loo) for t in trained]
    base_paths = [drill_down(topo, s, elig) for s in base_scores]
    fresh = _fresh_agents(model, [*seed, _SEED_TAGS["reinit"]])
    work = copy.deepcopy(model)
    scorer = GradScorer(work)
    stages = []
    for cut in range(topo.depth - 1, -1, -1):
        for i, level in enumerate(topo.levels):
            if level >= cut:
                work.agents[index[i]].load_state_dict(fresh.agents[index[i]].state_dict())
        atts = [batch_attribution(work, scorer, x, y, with_loo=use_loo) for x, y in batches]
        scores = [_variant_scores(a, use_loo) for a in atts]
        paths = [drill_down(topo, s, elig) for s in scores]
        before = Counter(p[-1] for p in base_paths)
        after = Counter(p[-1] for p in paths)
        m = len(paths)
        rhos = [spearman(a, b) for a, b in zip(base_scores, scores)]
        fin = [r for r in rhos if math.isfinite(r)]
        stages.append({
            "levels_randomised": list(range(cut, topo.depth)),
            "agents_randomised": sum(lv >= cut for lv in topo.levels),
            "culprit_change": float(np.mean([p[-1] != q[-1] for p, q in zip(base_paths, paths)])),
            "path_change": float(np.mean([p != q for p, q in zip(base_paths, paths)])),
            "score_one_minus_rho": float(1.0 - np.mean(fin)) if fin else math.nan,
            "expected_change_if_independent": 1.0 - sum(before[c] * after[c] for c in before) / (m * m),
            "loss": float(np.mean([a["loss"] for a in atts])),
        })
    return {"scores": "hybrid" if use_loo else "grad", "batches": len(batches),
            "loss_trained": float(np.mean([t["loss"] for t in trained])), "stages": stages,
            "change_at_full_randomisation": stages[-1]["culprit_change"]}
