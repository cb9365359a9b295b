"""The frontier part of a study (DESIGN.md §12): its runs into points, the frontier table, the claims.

A method's base point is its main comparison (every evaluation seed × order); every other point is the
frontier's own runs at one knob value (`frontier.replicates` of the main comparison's initialisations). The claims are those of `frontier.method`
against `frontier.reference` (analysis/frontier.py has the definitions). Verdicts on top of these numbers
(competence, whether the benchmark forgets) are the claims layer's.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from k1model.cl_metrics import plasticity
from k1model.analysis.frontier import FRONTIER_METRICS, PointStats, dominance, frontier_gap, frontier_table, point_stats
from k1model.analysis.runs import read_run_file
from k1model.analysis.stats import holm
from k1model.config import Params
from k1model.io import write_csv, write_text

COLUMNS = ["variant", "point", "knob", "value", "seed", "order", *FRONTIER_METRICS]


def _values(metrics: dict[str, Any]) -> dict[str, float]:
    scalars = metrics.get("scalars") or {}
    out = {m: float(scalars[m]) if scalars.get(m) is not None else math.nan for m in FRONTIER_METRICS}
    if math.isnan(out["plasticity"]) and metrics.get("R"):  # runs from before `plasticity` was a scalar
        out["plasticity"] = plasticity(metrics["R"])
    return out


def frontier_runs(params: Params, results: str | Path) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """One row per completed run of every frontier point (base: the main comparison's runs of the method);
    and the runs that are missing or failed (listed, never dropped silently)."""
    from k1model.study.plan import main_run_path
    from k1model.study.frontier import frontier_cells

    rows, problems = [], []
    cells = [c for c in frontier_cells(params, main_run_path) if c.own_run]
    base = [(v, s, o) for v in params.frontier.knobs for o in params.orders for s in params.experiment.seeds]
    wanted = [(v, "base", None, None, s, o, main_run_path(v, s, o)) for v, s, o in base]
    wanted += [(c.variant, c.point, c.knob, c.value, c.seed, c.order, c.path) for c in cells]
    for variant, point, knob, value, seed, order, path in wanted:
        file = Path(results) / path / "metrics.json"
        if not file.is_file():
            problems.append({"variant": variant, "point": point, "seed": seed, "order": "-".join(order), "path": path,
                             "status": "missing"})
            continue
        metrics = read_run_file(file)
        if metrics.get("status", "completed") != "completed":
            problems.append({"variant": variant, "point": point, "seed": seed, "order": "-".join(order), "path": path,
                             "status": str(metrics.get("status"))})
            continue
        rows.append({"variant": variant, "point": point, "knob": knob, "value": value, "seed": seed,
                     "order": "-".join(order), **_values(metrics)})
    return pd.DataFrame(rows, columns=COLUMNS), problems


def _gap_doc(cells: pd.DataFrame, method: str, reference: str, y: str, confidence: float) -> dict[str, Any]:
    ref = point_stats(cells, reference, y)
    rows = cells[(cells.variant == method) & (cells.point == "base")]
    return frontier_gap(ref, PointStats.of("base", rows["plasticity"], rows[y]), confidence)


def gap_verdicts(claims: dict[str, Any], alpha: float, competence: dict[str, Any] | None = None) -> None:
    """A verdict on each gap claim ("at the method's plasticity the reference forgets more / ends worse"), as
    the declared claims have: Holm over the gap claims tested (their own family), supported when the reference
    is significantly worse there, contradicted when it is significantly better, inconclusive otherwise,
    untestable when the method's plasticity lies outside the reference's frontier. A profile that fails the
    competence check withholds the verdict (`verdict_if_competent`), not the test."""
    gaps = [claims[y]["gap"] for y in claims]
    tested = [g for g in gaps if g.get("status") == "ok" and g.get("p") is not None and math.isfinite(g["p"])]
    for g, p in zip(tested, holm([g["p"] for g in tested])):
        g["p_holm"], g["family_size"] = float(p), len(tested)
        g["verdict"] = ("inconclusive" if p >= alpha else "supported" if g["gap"] > 0 else "contradicted")
    withhold = bool(competence and competence.get("checked") and not competence.get("competent"))
    for g in gaps:
        g.setdefault("verdict", "untestable" if g.get("status") == "outside" else "inconclusive")
    for y in claims:
        for item in (claims[y]["gap"], claims[y]["dominance"]):
            if withhold:
                item["verdict_if_competent"], item["verdict"] = item["verdict"], "not competent"


def frontier_statistics(params: Params, confidence: float, results: str | Path, tables: Path, alpha: float = 0.05,
                        competence: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[Path]]:
    """summary.json's `frontier` (the table, the gap at the method's plasticity with its verdict, and dominance,
    for forgetting and for final average bpb) and tables/frontier.{csv,md,tex}."""
    from k1model.analysis.tables import fmt_ci, latex_table, markdown_table

    cells, problems = frontier_runs(params, results)
    table = frontier_table(cells, confidence)
    fr = params.frontier
    doc: dict[str, Any] = {"method": fr.method, "reference": fr.reference, "replicates": fr.replicates,
                           "knobs": {v: {k: list(vals) for k, vals in knobs.items()} for v, knobs in fr.knobs.items()},
                           "base_values": {v: {k: getattr(params.method, k) for k in knobs} for v, knobs in fr.knobs.items()},
                           "settings": int(len(table)), "problems": problems,
                           "table": table.replace({np.nan: None}).to_dict("records")}
    if fr.method and fr.reference:
        doc["claims"] = {y: {"gap": _gap_doc(cells, fr.method, fr.reference, y, confidence),
                             "dominance": dominance(cells, fr.method, fr.reference, y, confidence)}
                         for y in ("forgetting", "final_avg_bpb")}
        gap_verdicts(doc["claims"], alpha, competence)
    show = pd.DataFrame([{"method": r["variant"], "setting": r["point"], "n": r["n"],
                          "plasticity (mean R[j][j])": fmt_ci(r["plasticity_mean"], r["plasticity_ci_low"],
                                                              r["plasticity_ci_high"]),
                          "forgetting": fmt_ci(r["forgetting_mean"], r["forgetting_ci_low"], r["forgetting_ci_high"]),
                          "final avg bpb": fmt_ci(r["final_avg_bpb_mean"], r["final_avg_bpb_ci_low"],
                                                  r["final_avg_bpb_ci_high"]),
                          "on frontier": "yes" if r["on_forgetting_frontier"] else ""}
                         for r in doc["table"]])
    notes = [f"cells: mean [{confidence:.0%} t-interval] over the setting's runs; base = the main comparison "
             f"(every evaluation seed x order), other settings: the first {fr.replicates} of its initialisations",
             "on frontier: not beaten on both plasticity and forgetting by another setting of the same method"]
    notes += [f"{p['path']}: {p['status']}" for p in problems]
    tables.mkdir(parents=True, exist_ok=True)
    write_csv(tables / "frontier.csv", table)
    caption = "Stability-plasticity frontiers: every method along its knobs"
    write_text(tables / "frontier.md", f"**{caption}**\n\n" + markdown_table(show, notes))
    write_text(tables / "frontier.tex", latex_table(show, caption, "tab:frontier", notes))
    return doc, [tables / f"frontier.{ext}" for ext in ("csv", "md", "tex")]
