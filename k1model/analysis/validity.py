"""Does the benchmark forget at all? The check every forgetting claim must pass first (DESIGN.md §11).

A method cannot forget less than a reference that does not forget. So before a claim like "K-1
forgets less than dense" is judged, the reference's own forgetting is tested: the benchmark
*forgets* when the reference's mean forgetting is at least the declared margin
(`analysis.forgetting_margin`) and its interval (`intervals.mean_interval`) lies above 0. Otherwise every forgetting claim
is "untestable on this benchmark", never "contradicted". The same check is reported per domain
and domain order, which says which domain is forgotten, and after which phase.

Inputs are the R matrices of the runs (R[i, j] = test bpb on the domain trained in phase j after
phase i; rows and columns in the run's phase order). Pure: no I/O, no formatting.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from k1model.cl_metrics import forgetting_per_domain
from k1model.analysis.intervals import mean_interval
from k1model.errors import DataError

#: metrics whose claims need a benchmark that forgets
FORGETTING_METRICS = ("forgetting", "bwt")


def phase_table(records: Iterable[Any]) -> pd.DataFrame:
    """One row per completed run × domain j (not the last) × later phase i ≥ j: `increase` =
    R[i, j] − R[j, j] (bpb lost on domain j since just after its own phase) and, on the row of the
    last phase, `forgetting` = the Chaudhry forgetting of domain j (final − best earlier)."""
    rows = []
    for rec in records:
        if not rec.completed or not rec.metrics.get("R"):
            continue
        R = np.asarray(rec.metrics["R"], dtype=float)
        domains = list(rec.metrics.get("domains") or dict.fromkeys(rec.metrics.get("phases") or []))
        T = R.shape[0]
        if R.ndim != 2 or R.shape != (len(domains), len(domains)):
            raise DataError(f"{rec.path}/metrics.json: R has shape {R.shape} but the run has {len(domains)} domains "
                            f"{domains}; the file is damaged: rerun that run (delete its folder)")
        if T < 2:
            continue
        final = forgetting_per_domain(R)
        for j in range(T - 1):
            for i in range(j, T):
                rows.append({"variant": rec.variant, "order": rec.order, "seed": rec.seed, "domain": domains[j],
                             "position": j, "after_phase": i, "after_domain": domains[i],
                             "increase": float(R[i, j] - R[j, j]),
                             "forgetting": float(final[j]) if i == T - 1 else math.nan})
    cols = ["variant", "order", "seed", "domain", "position", "after_phase", "after_domain", "increase", "forgetting"]
    return pd.DataFrame(rows, columns=cols)


def _check(values: np.ndarray, margin: float, confidence: float) -> dict[str, Any]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    lo, hi = mean_interval(values, confidence)
    mean = float(values.mean()) if values.size else math.nan
    forgets = bool(values.size >= 2 and mean >= margin and lo > 0)
    return {"n": int(values.size), "mean": mean, "ci_low": lo, "ci_high": hi, "forgets": forgets}


def benchmark_forgets(phases: pd.DataFrame, average: Sequence[float], reference: str, margin: float,
                      confidence: float) -> dict[str, Any]:
    """The validity check: the reference's average forgetting over its units (`average`: one value per
    initialisation, the `forgetting` scalar), and its forgetting per domain order × domain."""
    doc: dict[str, Any] = {"reference": reference, "margin": float(margin), "confidence": float(confidence),
                           "rule": f"the benchmark forgets when {reference}'s mean forgetting is >= {margin:g} bpb "
                                   f"and its {confidence:.0%} interval lies above 0",
                           "average": _check(np.asarray(average, dtype=float), margin, confidence)}
    ref = phases[(phases.variant == reference) & phases.forgetting.notna()]
    doc["domains"] = {}  # order -> domain -> check, in phase order
    for (order, domain), grp in ref.groupby(["order", "domain"], sort=False):
        doc["domains"].setdefault(order, {})[domain] = {"position": int(grp.position.iloc[0]),
                                                        **_check(grp.forgetting.to_numpy(float), margin, confidence)}
    doc["forgets"] = doc["average"]["forgets"]
    doc["forgotten_domains"] = [f"{domain} ({order})" for order, by_domain in doc["domains"].items()
                                for domain, d in by_domain.items() if d["forgets"]]
    return doc


def domain_summary(phases: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Per variant × order × domain × later phase (the seeds of one order: independent runs): mean increase
    in bpb with its interval (`mean_interval`), and the final forgetting on the last phase's rows."""
    rows = []
    for keys, grp in phases.groupby(["variant", "order", "domain", "after_phase"], sort=False):
        lo, hi = mean_interval(grp.increase.to_numpy(float), confidence)
        f = grp.forgetting.dropna().to_numpy(float)
        flo, fhi = mean_interval(f, confidence) if f.size else (math.nan, math.nan)
        rows.append({"variant": keys[0], "order": keys[1], "domain": keys[2], "position": int(grp.position.iloc[0]),
                     "after_phase": int(keys[3]), "after_domain": grp.after_domain.iloc[0], "n": len(grp),
                     "increase": float(grp.increase.mean()), "increase_ci_low": lo, "increase_ci_high": hi,
                     "forgetting": float(f.mean()) if f.size else math.nan,
                     "forgetting_ci_low": flo, "forgetting_ci_high": fhi})
    cols = ["variant", "order", "domain", "position", "after_phase", "after_domain", "n", "increase",
            "increase_ci_low", "increase_ci_high", "forgetting", "forgetting_ci_low", "forgetting_ci_high"]
    return pd.DataFrame(rows, columns=cols)
