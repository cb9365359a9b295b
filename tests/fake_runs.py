"""Realistic fake run directories (the `k1 train` / `k1 attribute` contract) for analysis tests.

The numbers follow a planted story so tests can check directions: `dense` forgets most,
`random_path` less, `k1_full` least; sparse variants change ~1/3 of agent parameters per
step; `dense` has no LOO, so its LOO-based attribution scalars are null/NaN.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from k1model import cl_metrics as M

DOMAINS = ("prose", "code", "science")
ORDER = "-".join(DOMAINS)  # the runs' domain order (the params' only order)


def run_path(runs: str | Path, variant: str, seed: int, order: str = ORDER) -> Path:
    """Where `k1 train` (the plan) puts a run of the main comparison under RESULTS/runs."""
    return Path(runs) / order / variant / f"seed{seed}"
ROLE_NAMES = {1: ["language", "logic", "pattern", "context"], 2: ["basic", "advanced", "edge", "complex"]}

# variant → (forgetting per later phase in bpb, measured parameter fraction changed per step)
EFFECTS = {
    "k1_full": (0.05, 0.30),
    "flat_topk": (0.08, 0.30),
    "no_trust": (0.07, 0.30),
    "no_loo": (0.07, 0.30),
    "random_path": (0.10, 0.30),
    "dense": (0.18, 1.00),
}
#: variants whose fake runs grow and prune agents (the `plasticity` plugin)
GROWING = ("k1_grow",)


def agent_tree(branching: Sequence[int] = (2, 2)) -> list[dict[str, Any]]:
    """Agents in breadth-first order with names like root/language/basic."""
    agents = [{"name": "root", "level": 0, "parent": None, "params": 50_000}]
    frontier = ["root"]
    for level, b in enumerate(branching, start=1):
        nxt = []
        for parent in frontier:
            for k in range(b):
                roles = ROLE_NAMES.get(level, [])
                name = f"{parent}/{roles[k] if k < len(roles) else f'a{k}'}"
                agents.append({"name": name, "level": level, "parent": parent, "params": 50_000})
                nxt.append(name)
        frontier = nxt
    return agents


def _children(agents: list[dict[str, Any]]) -> dict[str, list[str]]:
    ch: dict[str, list[str]] = {a["name"]: [] for a in agents}
    for a in agents:
        if a["parent"] is not None:
            ch[a["parent"]].append(a["name"])
    return ch


def make_R(rng: np.random.Generator, variant: str, T: int) -> tuple[np.ndarray, np.ndarray]:
    """(R, R0): untrained ≈ 8 bpb; trained domain ≈ 2.6; later phases add forgetting."""
    rate = EFFECTS.get(variant, (0.1, 0.5))[0]
    R0 = 8.0 + rng.normal(0, 0.02, T)
    learned = 2.6 + rng.normal(0, 0.05, T)
    R = np.empty((T, T))
    for i in range(T):
        for j in range(T):
            if i >= j:
                R[i, j] = learned[j] + rate * (i - j) * (1 + rng.normal(0, 0.1))
            else:
                R[i, j] = 4.2 + 0.1 * (j - i) + rng.normal(0, 0.05)  # transfer from earlier domains
    return R, R0


def write_fake_run(
    run: str | Path,
    variant: str,
    seed: int,
    *,
    branching: Sequence[int] = (2, 2),
    domains: Sequence[str] = DOMAINS,
    steps_per_phase: int = 30,
    eval_interval: int = 10,
    attribution: bool = True,
    status: str = "completed",
    diverged: bool = False,
) -> Path:
    """Write metrics.json, evals.csv, steps.csv.gz (and attribution.json) for one run. `diverged`: the first
    domain ends its own phase at 12 bpb, above the untrained 8 (a loss spike the run recovers from, as the
    forgetting benchmark's random_path seed 1): flagged by the library's rule (`cl_metrics.divergence`)."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    # (the default domains keep the key of the single-order fakes; another order gets numbers of its own)
    rng = np.random.default_rng([seed, sum(map(ord, variant))] + ([] if tuple(domains) == DOMAINS else
                                                                   [sum(k * ord(c) for k, c in enumerate("-".join(domains)))]))
    agents = agent_tree(branching)
    names = [a["name"] for a in agents]
    children = _children(agents)
    T = len(domains)
    R, R0 = make_R(rng, variant, T)
    if diverged:
        R[0, 0] = 12.0
    frac = EFFECTS.get(variant, (0.1, 0.5))[1]

    # evals.csv: per phase, evals every eval_interval steps, bpb moving from the previous row to R[p]
    lines = ["step,phase_index,phase,domain,bpb,end_of_phase"]
    prev = R0.copy()
    for p in range(T):
        ev_steps = list(range(p * steps_per_phase + eval_interval, (p + 1) * steps_per_phase + 1, eval_interval))
        for k, step in enumerate(ev_steps):
            t = (k + 1) / len(ev_steps)
            for j, dom in enumerate(domains):
                bpb = prev[j] + (R[p, j] - prev[j]) * (1 - math.exp(-4 * t)) / (1 - math.exp(-4))
                lines.append(f"{step},{p},{domains[p]},{dom},{bpb:.6f},{int(k == len(ev_steps) - 1)}")
        prev = R[p].copy()
    (run / "evals.csv").write_text("\n".join(lines) + "\n")

    # steps.csv.gz: drill-down along the highest-gradient child (or everything for dense)
    update_counts = {n: 0 for n in names}
    rows = []
    trust = {n: 0.0 for n in names}
    loo_last = {n: float("nan") for n in names}
    total = T * steps_per_phase
    header = (["step", "phase", "domain", "loss", "culprit", "path", "scales", "updated", "skipped",
               "loo_computed", "avg_trust"] + [f"grad_{n}" for n in names] + [f"loo_{n}" for n in names]
              + [f"trust_{n}" for n in names])
    for step in range(1, total + 1):
        p = (step - 1) // steps_per_phase
        grads = {n: float(abs(rng.normal(1.0, 0.4))) for n in names}
        loo_now = variant != "dense" and step % 10 == 0
        if loo_now:
            loo_last = {n: float(rng.normal(0.02, 0.03)) for n in names}
        if variant == "dense":
            path, scales = [], {n: 1.0 for n in names}
        else:
            path = ["root"]
            while children[path[-1]]:
                kids = children[path[-1]]
                nxt = kids[int(rng.integers(len(kids)))] if variant == "random_path" else max(kids, key=grads.get)
                path.append(nxt)
            pscales = [1.0, 0.15, 0.05]
            scales = {n: 0.0 for n in names}
            for depth, n in enumerate(reversed(path)):
                scales[n] = pscales[min(depth, len(pscales) - 1)]
        for n, s in scales.items():
            if s > 0:
                update_counts[n] += 1
                trust[n] = min(1.0, trust[n] + 0.1)
            trust[n] *= 0.995
        loss = float(R[p, p] * math.log(2) + 2.0 * math.exp(-(step - p * steps_per_phase) / 10) + rng.normal(0, 0.02))
        rows.append([step, domains[p], domains[p], f"{loss:.6f}", path[-1] if path else "", " > ".join(path),
                     json.dumps(scales, sort_keys=False), sum(s > 0 for s in scales.values()), 0, int(loo_now),
                     f"{np.mean(list(trust.values())):.6f}"]
                    + [f"{grads[n]:.6f}" for n in names] + [f"{loo_last[n]:.6f}" for n in names]
                    + [f"{trust[n]:.6f}" for n in names])
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    with gzip.open(run / "steps.csv.gz", "wt", encoding="utf-8") as f:
        f.write(buf.getvalue())

    scalars = M.forgetting_summary(R, R0)
    losses = [float(r[3]) for r in rows]
    divergence = M.divergence(R.tolist(), R0.tolist(), losses, list(domains))
    scalars["diverged"] = float(divergence["diverged"])
    wall = float(20 + rng.normal(0, 1))
    scalars.update(
        sparsity_param_fraction=float(min(1.0, frac + rng.normal(0, 0.01))),
        sparsity_agent_fraction=float(min(1.0, (len(branching) + 1) / len(names) if variant != "dense" else 1.0)),
        wall_time_s=wall,
        steps_per_s=total / wall,
        # the swap test (train/decomposition.py): the shared weights carry most of what is lost
        forgetting_shared=float(0.7 * scalars["bwt"] + rng.normal(0, 0.01)),
        forgetting_agents=float(0.2 * scalars["bwt"] + rng.normal(0, 0.01)),
        drift_shared=float(0.05 + rng.normal(0, 0.002)), drift_agents=float(0.01 + rng.normal(0, 0.001)),
        loo_hurt_fraction=None if variant == "dense" else float(rng.uniform(0.0, 0.3)),
        loo_changed_fraction=None if variant == "dense" else 0.0,
    )
    metrics = {
        "status": status, "variant": variant, "seed": seed, "config_hash": "abc123",
        "agents": agents, "domains": list(domains), "R": R.tolist(), "R0": R0.tolist(),
        "final_bpb": dict(zip(domains, R[-1].tolist())), "update_counts": update_counts, "steps": total,
        "sparsity": {"measured_fraction_changed": scalars["sparsity_param_fraction"],
                     "agents_changed_per_step": scalars["sparsity_agent_fraction"] * len(names)},
        "scalars": scalars, "divergence": divergence, "versions": {"python": "3.11", "torch": "2.x"}, "device": "cpu",
        "wall_time_s": wall,
        "phases": list(domains), "validation": M.forgetting_summary(R * 1.01, R0),
    }
    if variant in GROWING:  # structural plasticity (strategies/plasticity.py): one grown, one pruned agent
        leaves = [a["name"] for a in agents if not children[a["name"]]]
        grown = {"name": f"{leaves[0]}/g1", "level": agents[-1]["level"] + 1, "parent": leaves[0],
                 "params": 50_000, "slot": True, "status": "active"}
        metrics["agents"] = [dict(a, slot=False, status="pruned" if a["name"] == leaves[-1] else "active")
                             for a in agents] + [grown]
        metrics["update_counts"][grown["name"]] = steps_per_phase // 2
        size = 50_000 * len(agents)
        metrics["structure_sizes"] = [{"step": 0, "active_agents": len(agents), "active_agent_params": size},
                                      {"step": steps_per_phase, "active_agents": len(agents) + 1,
                                       "active_agent_params": size + 50_000},
                                      {"step": 2 * steps_per_phase, "active_agents": len(agents),
                                       "active_agent_params": size}]
        metrics["structure_events"] = [{"step": steps_per_phase, "kind": "grow", "agents": [leaves[0]], "kept": True},
                                       {"step": 2 * steps_per_phase, "kind": "prune", "agents": [leaves[-1]],
                                        "kept": True},
                                       {"step": 2 * steps_per_phase + 1, "kind": "merge", "agents": leaves[:2],
                                        "kept": False}]
    if status != "completed":
        metrics["error"] = "non-finite loss nan at step 17"
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))

    if attribution:
        has_loo = variant != "dense"
        acc = {"k1_full": 0.8, "random_path": 0.3}.get(variant, 0.5)
        a = {
            "attr_grad_loo_spearman": float(rng.uniform(0.3, 0.6)) if has_loo else None,
            "attr_window_rank_corr": float(rng.uniform(0.5, 0.9)),
            "attr_resample_path_agreement": float(np.clip(acc + rng.normal(0, 0.05), 0, 1)),
            "attr_fault_top1_grad": float(np.clip(acc - 0.1 + rng.normal(0, 0.05), 0, 1)),
            "attr_fault_top1_loo": float(np.clip(acc + rng.normal(0, 0.05), 0, 1)) if has_loo else float("nan"),
            "attr_fault_top1_hybrid": float(np.clip(acc + 0.05 + rng.normal(0, 0.05), 0, 1)) if has_loo else None,
            "attr_fault_auc_grad": float(np.clip(acc + 0.1 + rng.normal(0, 0.03), 0, 1)),
            "attr_fault_path_hit": float(np.clip(acc + 0.1 + rng.normal(0, 0.05), 0, 1)),
            "attr_randomisation_change": float(rng.uniform(0.4, 0.8)),
            "attr_specialisation_nmi": float(rng.uniform(0.0, 0.2)),
            "attr_specialisation_p": float(rng.uniform(0.01, 0.5)),
        }
        (run / "attribution.json").write_text(json.dumps({"scalars": a, "details": {"faults": []}}, indent=2))
    return run


def write_fake_runs(
    root: str | Path,
    variants: Sequence[str] = ("k1_full", "dense", "random_path"),
    seeds: Sequence[int] = (0, 1, 2),
    **kw: Any,
) -> list[Path]:
    """One fake run per variant × seed under root/<order>/<variant>/seed<k>/ (root = RESULTS/runs)."""
    return [write_fake_run(run_path(root, v, s), v, s, **kw) for v in variants for s in seeds]


def write_params(
    path: str | Path,
    variants: Sequence[str] = ("k1_full", "dense", "random_path"),
    seeds: Sequence[int] = (0, 1, 2),
    experiment: dict[str, Any] | None = None,
    **analysis: Any,
) -> Path:
    """A complete params YAML (architecture.md layout); `analysis` overrides analysis keys, `experiment` adds
    experiment keys (orders, init_seed)."""
    params = {
        "data": {"source": "embedded", "domains": list(DOMAINS), "max_bytes": 600000,
                 "valid_fraction": 0.05, "test_fraction": 0.05},
        "model": {"branching": [2, 2], "embed_dim": 64, "num_heads": 4, "hidden_dim": 128,
                  "max_seq_len": 64, "dropout": 0.0},
        "method": {"learning_rate": 0.003, "weight_decay": 0.01, "trust_threshold": 0.7,
                   "trust_increase": 0.1, "trust_decay": 0.995, "loo_interval": 50,
                   "path_scales": [1.0, 0.15, 0.05], "top_k": None, "scale_mode": "fixed",
                   "reset_moments_on_return": False},
        "train": {"batch_size": 16, "steps_per_phase": 30, "eval_interval": 10, "eval_batches": 8,
                  "checkpoint_interval": 100, "sparsity_interval": 10, "device": "cpu"},
        "experiment": {"variants": list(variants), "seeds": list(seeds), **(experiment or {})},
        "analysis": {"rng_seed": 0, "bootstrap_resamples": 400, "confidence": 0.95, **analysis},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def write_manifest(data_dir: str | Path, domains: Sequence[str] = DOMAINS) -> Path:
    """A data manifest like `k1 prepare` writes (source, sizes, sha256 per split)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    doms = {}
    for d in domains:
        files = {}
        for split, n in (("train", 540000), ("valid", 30000), ("test", 30000)):
            files[split] = {"file": f"{d}/{split}.bin", "bytes": n, "tokens": n, "documents": n // 3000,
                            "sha256": hashlib.sha256(f"{d}/{split}".encode()).hexdigest()}
        doms[d] = {"origin": {"kind": "embedded", "description": f"embedded text for {d}"}, "splits": files}
    manifest = {"source": "embedded", "tokenizer": {"kind": "utf8-bytes", "vocab_size": 256},
                "split_rule": "contiguous 90/5/5",
                "versions": {"k1model": "0.1.0"}, "domains": doms}
    (data_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return data_dir / "manifest.json"


def write_fake_study(params: str | Path, results: str | Path, *, diverged: tuple[str, int] | None = None,
                     steps_per_phase: int = 10, eval_interval: int = 5) -> Path:
    """A fake run for every run a params file plans (main comparison in every domain order, sweep, tuning,
    tuned), attribution for the main runs, and the tuning choice (`k1 tune`): what `k1 aggregate` and
    `k1 figures` read after the pipeline's training stage. `diverged`: (variant, seed) of the main
    comparison, first order, whose loss blows up (see `write_fake_run`)."""
    from k1model.config import load_params
    from k1model.study.plan import plan_runs
    from k1model.study.tuning import tune

    results = Path(results)
    plan = plan_runs(load_params(params))
    first = plan[0].order
    for part in ("runs", "sweep", "tuning"):
        for r in (r for r in plan if r.part == part):
            write_fake_run(results / r.path, r.variant, r.seed, domains=r.order, steps_per_phase=steps_per_phase,
                           eval_interval=eval_interval, attribution=part == "runs",
                           diverged=part == "runs" and r.order == first and (r.variant, r.seed) == diverged)
    if any(r.part == "tuned" for r in plan):
        tune(params, results, results / "tuning" / "chosen.json")
        for r in (r for r in plan if r.part == "tuned"):
            write_fake_run(results / r.path, r.variant, r.seed, domains=r.order, steps_per_phase=steps_per_phase,
                           eval_interval=eval_interval, attribution=False)
    return results
