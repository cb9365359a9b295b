"""Stability-plasticity frontiers and the claims made along them (DESIGN.md §12). Pure: no I/O.

Every method is run along its own knobs (frontier section of the params). A point of a method is one
setting: its runs give a mean plasticity x (mean R[j][j], bpb: lower = learned better) and a mean y
(forgetting, or final average bpb). A method's frontier is its Pareto set in (x, y), both lower-better:
the settings no other setting of the same method beats on both. Between two frontier points the
frontier is the straight line (no extrapolation beyond its ends).

The claim "at the method's plasticity, the reference forgets more": the gap d = y_ref(x_m) − y_m, where
y_ref(x) is the reference's frontier interpolated at the method's mean plasticity x_m. Its interval is a
delta-method t-interval: the variance of d from each point's sample covariance of (x, y) over its runs
(the two reference points that bracket x_m and the method's point), degrees of freedom by
Welch-Satterthwaite. It treats which reference points form the frontier as given (the Pareto set is read
off the means).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from k1model.analysis.intervals import t_interval

#: the per-run values a frontier point summarises
FRONTIER_METRICS = ("plasticity", "forgetting", "final_avg_bpb")


@dataclass(frozen=True)
class PointStats:
    """One setting of one method: its runs' mean (x, y) and the covariance of the means."""

    name: str
    n: int
    x: float
    y: float
    cov: np.ndarray  # 2 x 2 sample covariance of (x, y) over the runs, divided by n

    @classmethod
    def of(cls, name: str, xs: Sequence[float], ys: Sequence[float]) -> "PointStats":
        xy = np.column_stack([np.asarray(xs, float), np.asarray(ys, float)])
        xy = xy[np.isfinite(xy).all(axis=1)]
        n = len(xy)
        cov = np.cov(xy.T, ddof=1) / n if n >= 2 else np.full((2, 2), np.nan)
        mean = xy.mean(axis=0) if n else np.array([math.nan, math.nan])
        return cls(name, n, float(mean[0]), float(mean[1]), cov)


def pareto(points: Sequence[PointStats]) -> list[PointStats]:
    """The points no other point beats on both x and y (lower is better), sorted by x."""
    finite = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y)]
    keep = [p for p in finite if not any((q.x <= p.x and q.y <= p.y) and (q.x < p.x or q.y < p.y) for q in finite)]
    return sorted(keep, key=lambda p: (p.x, p.y))


def _segment(front: Sequence[PointStats], x: float) -> tuple[PointStats, PointStats, float] | None:
    """The two frontier points that bracket x and the weight of the upper one; None outside the frontier."""
    if len(front) < 2 or not front[0].x <= x <= front[-1].x:
        return None
    for a, b in zip(front, front[1:]):
        if a.x <= x <= b.x:
            lam = 0.0 if b.x == a.x else (x - a.x) / (b.x - a.x)
            return a, b, lam
    return None


def interpolate(front: Sequence[PointStats], x: float) -> float | None:
    """The frontier's y at x (linear between its points); None outside its x range."""
    seg = _segment(front, x)
    if seg is None:
        return None
    a, b, lam = seg
    return (1 - lam) * a.y + lam * b.y


def frontier_gap(reference: Sequence[PointStats], method: PointStats, confidence: float) -> dict[str, Any]:
    """d = reference frontier's y at the method's x minus the method's y (positive: the reference is worse
    there), with its delta-method t-interval and two-sided p-value. `status` "outside" when the method's
    plasticity lies beyond the reference frontier's range (nothing is extrapolated)."""
    front = pareto(reference)
    out: dict[str, Any] = {"method_x": method.x, "method_y": method.y, "method_n": method.n,
                           "frontier": [p.name for p in front],
                           "frontier_x_range": [front[0].x, front[-1].x] if front else None}
    seg = _segment(front, method.x)
    if seg is None:
        return {**out, "status": "outside", "gap": None, "ci_low": None, "ci_high": None, "p": None, "df": None}
    a, b, lam = seg
    slope = 0.0 if b.x == a.x else (b.y - a.y) / (b.x - a.x)
    y_ref = (1 - lam) * a.y + lam * b.y
    gap = y_ref - method.y
    parts = []  # (variance contribution, runs) per independent group
    for p, grad in ((a, np.array([-slope * (1 - lam), 1 - lam])), (b, np.array([-slope * lam, lam])),
                    (method, np.array([slope, -1.0]))):
        if p.n >= 2 and np.all(np.isfinite(p.cov)):
            parts.append((float(grad @ p.cov @ grad), p.n))
    var = sum(v for v, _ in parts)
    if len(parts) < 3 or var <= 0 or not math.isfinite(var):
        return {**out, "status": "no_interval", "gap": gap, "reference_y": y_ref, "ci_low": None, "ci_high": None,
                "p": None, "df": None, "between": [a.name, b.name]}
    df = var ** 2 / sum(v ** 2 / (n - 1) for v, n in parts if v > 0)
    se = math.sqrt(var)
    t = stats.t.ppf(0.5 + confidence / 2, df)
    p = float(2 * stats.t.sf(abs(gap) / se, df))
    return {**out, "status": "ok", "gap": gap, "reference_y": y_ref, "se": se, "df": df, "ci_low": gap - t * se,
            "ci_high": gap + t * se, "p": p, "between": [a.name, b.name]}


def point_stats(cells: pd.DataFrame, variant: str, y: str) -> list[PointStats]:
    """Every point of `variant` in `cells` (one row per run: variant, point, plasticity, <y>) as PointStats."""
    rows = cells[cells.variant == variant]
    return [PointStats.of(point, grp["plasticity"], grp[y]) for point, grp in rows.groupby("point", sort=False)]


def frontier_table(cells: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """One row per method x setting: knob, value, n and each frontier metric's mean and t-interval, and
    whether the setting is on the method's forgetting frontier."""
    rows = []
    for (variant, point), grp in cells.groupby(["variant", "point"], sort=False):
        row: dict[str, Any] = {"variant": variant, "point": point, "knob": grp["knob"].iloc[0],
                               "value": grp["value"].iloc[0], "n": int(len(grp))}
        for metric in FRONTIER_METRICS:
            vals = grp[metric].to_numpy(float)
            vals = vals[np.isfinite(vals)]
            lo, hi = t_interval(vals, confidence) if vals.size >= 2 else (math.nan, math.nan)
            row.update({f"{metric}_mean": float(vals.mean()) if vals.size else math.nan,
                        f"{metric}_ci_low": lo, f"{metric}_ci_high": hi})
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    on = set()
    for variant in table.variant.unique():
        on |= {(variant, p.name) for p in pareto(point_stats(cells, variant, "forgetting"))}
    table["on_forgetting_frontier"] = [(v, p) in on for v, p in zip(table.variant, table.point)]
    return table


def dominance(cells: pd.DataFrame, method: str, reference: str, y: str, confidence: float) -> dict[str, Any]:
    """Every setting of `method` against `reference`'s frontier: the gap at its plasticity (Holm over the
    settings inside the frontier's range). `verdict`: "dominates" when every comparable setting is
    significantly better (lower y), "dominated" when every one is significantly worse, "neither" otherwise,
    "untestable" when no setting lies inside the reference frontier's range."""
    ref = point_stats(cells, reference, y)
    gaps = {p.name: frontier_gap(ref, p, confidence) for p in point_stats(cells, method, y)}
    tested = {name: g for name, g in gaps.items() if g["status"] == "ok"}
    alpha = 1 - confidence
    if tested:
        names = list(tested)
        order = np.argsort([tested[n]["p"] for n in names])
        running, adjusted = 0.0, {}
        for rank, i in enumerate(order):  # Holm step-down, monotone
            running = max(running, min(1.0, (len(names) - rank) * tested[names[i]]["p"]))
            adjusted[names[i]] = running
        for name in names:
            tested[name]["p_holm"] = adjusted[name]
    better = [n for n, g in tested.items() if g["gap"] > 0 and g["p_holm"] < alpha]
    worse = [n for n, g in tested.items() if g["gap"] < 0 and g["p_holm"] < alpha]
    if not tested:
        verdict = "untestable"
    elif len(better) == len(tested):
        verdict = "dominates"
    elif len(worse) == len(tested):
        verdict = "dominated"
    else:
        verdict = "neither"
    return {"method": method, "reference": reference, "metric": y, "settings": gaps, "compared": len(tested),
            "better": better, "worse": worse, "verdict": verdict}
