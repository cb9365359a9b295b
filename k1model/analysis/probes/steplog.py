"""Probes on a run's step log (steps.csv.gz): gradient-vs-LOO agreement, stability over time,
domain specialisation of the culprits. Conventions: `k1model.analysis.probes`."""
from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from k1model.analysis.stats import _mutual_info, nmi_permutation_test, spearman
from k1model.errors import DataError
from k1model.io import read_output_table, rerun_hint

def read_steps(path: Path) -> pd.DataFrame:
    """The per-step log; numeric agent columns as floats (NaN where empty), text columns as str."""
    if not path.is_file():
        raise DataError(f"{path} is missing: the run's step log is needed; rerun `k1 train` for this run")
    steps = read_output_table(path, rerun_hint(path.parent), keep_default_na=False,
                              dtype={"domain": str, "culprit": str, "path": str})
    for col in steps.columns:
        if col.startswith(("grad_", "score_", "loo_", "trust_")) or col in ("loss", "avg_trust"):
            steps[col] = pd.to_numeric(steps[col], errors="coerce")
    missing = [c for c in ("step", "domain", "culprit", "loo_computed", "scales") if c not in steps.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; it was not written by this version of `k1 train`")
    return steps

def _agent_matrix(steps: pd.DataFrame, prefix: str, names: Sequence[str]) -> np.ndarray:
    cols = [f"{prefix}{n}" for n in names]
    missing = [c for c in cols if c not in steps.columns]
    if missing:
        raise DataError(f"steps.csv.gz lacks column(s) {missing[:3]}{' ...' if len(missing) > 3 else ''}; "
                        "the run and the params disagree on the agents")
    return steps[cols].to_numpy(dtype=np.float64)

def grad_loo_agreement(steps: pd.DataFrame, names: Sequence[str]) -> dict[str, Any]:
    """Spearman ρ(g, −Δ) per logged LOO step (blame agreement), and ρ(g, |Δ|) (importance agreement)."""
    rows = steps[steps["loo_computed"].astype(int) == 1]
    grad, loo = _agent_matrix(rows, "grad_", names), _agent_matrix(rows, "loo_", names)
    blame = [spearman(g, -d) for g, d in zip(grad, loo)]
    importance = [spearman(g, np.abs(d)) for g, d in zip(grad, loo)]
    fin = [r for r in blame if math.isfinite(r)]
    return {
        "what": "Spearman rho between gradient score g_k and LOO blame -Delta_k across agents, per LOO step",
        "n_loo_steps": int(len(rows)), "n_defined": len(fin),
        "mean": float(np.mean(fin)) if fin else math.nan,
        "median": float(np.median(fin)) if fin else math.nan,
        "per_step": [{"step": int(s), "domain": d, "rho": r}
                     for s, d, r in zip(rows["step"], rows["domain"], blame)],
        "importance_mean": float(np.nanmean(importance)) if np.isfinite(importance).any() else math.nan,
        "importance_what": "Spearman rho between g_k and |Delta_k| "
                           "(does the gradient track how much an agent matters?)",
    }

def window_rank_correlation(scores: np.ndarray, windows: int = 10, window_steps: int | None = None,
                            phases: Sequence[Any] | None = None) -> dict[str, Any]:
    """Mean score per agent in consecutive windows of the log; Spearman ρ between consecutive windows."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if window_steps:
        bounds = list(range(0, n, window_steps)) + [n]
    else:
        bounds = [int(round(i * n / windows)) for i in range(windows + 1)]
    spans = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        # an agent absent from a whole window (a slot not yet grown, a pruned agent) has no mean there: NaN
        warnings.simplefilter("ignore", category=RuntimeWarning)
        means = [np.nanmean(np.where(np.isfinite(scores[a:b]), scores[a:b], np.nan), axis=0)
                 if np.isfinite(scores[a:b]).any() else np.full(scores.shape[1], np.nan) for a, b in spans]
    pairs = []
    for i in range(len(spans) - 1):
        rho = spearman(means[i], means[i + 1])
        crosses = None
        if phases is not None:
            crosses = bool(phases[spans[i][0]] != phases[spans[i + 1][1] - 1])
        pairs.append({"window": i, "steps": [spans[i][0], spans[i + 1][1]], "rho": rho, "crosses_phase": crosses})
    fin = [p["rho"] for p in pairs if math.isfinite(p["rho"])]
    within = [p["rho"] for p in pairs if math.isfinite(p["rho"]) and p["crosses_phase"] is False]
    return {"n_windows": len(spans), "window_bounds": [a for a, _ in spans] + ([spans[-1][1]] if spans else []),
            "mean": float(np.mean(fin)) if fin else math.nan, "pairs": pairs,
            "mean_within_phase": float(np.mean(within)) if within else math.nan,
            "window_means": [m.tolist() for m in means]}

def _top_selected(steps: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """flat_topk's stand-in culprit: the highest-scoring agent among those updated at the step."""
    scores = _agent_matrix(steps, "score_", names)
    out = []
    for row, raw in zip(scores, steps["scales"]):
        selected = [names.index(n) for n, s in json.loads(raw or "{}").items() if s > 0 and n in names]
        out.append(names[max(selected, key=lambda k: (row[k], -k))] if selected else "")
    return out

def specialisation(steps: pd.DataFrame, names: Sequence[str], selection: str, n_permutations: int,
                   seed: Any, leaves: Sequence[str] | None = None) -> dict[str, Any]:
    """Culprit × domain contingency, NMI and permutation p-values (see the module docstring).

    For path variants only steps whose path reached a leaf count when `leaves` is given (a path
    cut short by cooldown ends at an agent that was not chosen by attribution)."""
    if selection == "all":
        return {"defined": False, "reason": "dense updates every agent: there is no culprit", "nmi": math.nan,
                "p": math.nan}
    if selection == "topk":
        labels, rule = _top_selected(steps, names), "highest-scoring agent among the top-K updated (flat_topk)"
        candidates = list(names)
    else:
        labels = [str(c) for c in steps["culprit"]]
        rule = "logged culprit (last agent of the error path)" + (
            "; random by construction (control)" if selection == "random_path" else "")
        candidates = list(leaves) if leaves is not None else list(names)
        if leaves is not None:
            rule += "; steps whose path was cut short by cooldown (culprit not a leaf) left out"
    domains = [str(d) for d in steps["domain"]]
    keep = [i for i, c in enumerate(labels) if c in candidates]
    doms = list(dict.fromkeys(domains))
    table = np.zeros((len(candidates), len(doms)), dtype=np.int64)
    rows = np.array([candidates.index(labels[i]) for i in keep], dtype=np.int64)
    cols = np.array([doms.index(domains[i]) for i in keep], dtype=np.int64)
    np.add.at(table, (rows, cols), 1)
    used_domains = int((table.sum(0) > 0).sum())
    out: dict[str, Any] = {
        "defined": used_domains >= 2, "label_rule": rule, "steps_used": len(keep),
        "steps_left_out": len(labels) - len(keep),
        "left_out_culprits": dict(Counter(c for c in labels if c not in candidates).most_common()),
        "contingency": {"agents": candidates, "domains": doms, "counts": table.tolist()},
        "normalisation": "I(C;D) / ((H(C) + H(D)) / 2), natural log (arithmetic mean, as sklearn's default)",
        "nmi": math.nan, "p": math.nan,
    }
    if used_domains < 2:
        out["reason"] = ("only one training domain" if len(doms) < 2 else "culprits in fewer than two domains") + \
            ": specialisation is undefined"
        return out
    shuffle = nmi_permutation_test(rows, cols, n_permutations, [*seed, 0], null="shuffle")
    circular = nmi_permutation_test(rows, cols, n_permutations, [*seed, 1], null="circular")
    out.update(nmi=shuffle["nmi"], p=shuffle["p"], null_mean=shuffle["null_mean"], null_q95=shuffle["null_q95"],
               p_circular=circular["p"], null_mean_circular=circular["null_mean"], n_permutations=n_permutations,
               mutual_information_bits=float(_mutual_info(table) / math.log(2)))
    return out
