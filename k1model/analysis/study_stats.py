"""Statistics of the study's other parts: the main comparison per domain order, the tuned
comparison, and the sensitivity sweep. The same estimators as the main comparison
(`summaries.statistics`); this module only decides what is compared with what."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from k1model.analysis.summaries import (HEADLINE_METRICS, by_variant, comparisons, completed_runs,
                                        nested_comparisons, sorted_tidy, statistics, validity_check)
from k1model.analysis.metric_info import KEY_METRICS
from k1model.analysis.runs import _read_json, load_runs, read_run_file, tidy_table
from k1model.analysis.settings import AnalysisSettings
from k1model.analysis.stats import _cell_rng, describe, holm
from k1model.analysis.validity import phase_table
from k1model.config import Params
from k1model.io import write_csv, write_text
from k1model.method.variants import VARIANTS
from k1model.analysis.tables import fmt_ci, fmt_p, latex_table, markdown_table

#: what the per-order and sweep tables show
ORDER_METRICS = ("final_avg_bpb", "forgetting", "bwt", "sparsity_param_fraction")
SWEEP_METRICS = ("final_avg_bpb", "forgetting", "bwt", "idle_step_fraction", "sparsity_param_fraction")
SWEEP_CLAIM_METRICS = ("forgetting", "final_avg_bpb")


def _write(tables: Path, name: str, csv: pd.DataFrame, show: pd.DataFrame, caption: str, notes: list[str]) -> list[Path]:
    write_csv(tables / f"{name}.csv", csv)
    write_text(tables / f"{name}.md", f"**{caption}**\n\n" + markdown_table(show, notes))
    write_text(tables / f"{name}.tex", latex_table(show, caption, f"tab:{name}", notes))
    return [tables / f"{name}.{ext}" for ext in ("csv", "md", "tex")]


def _cells(summary: pd.DataFrame, metrics: tuple[str, ...], index: dict[str, Any]) -> dict[str, str]:
    row = dict(index)
    for m in metrics:
        r = summary[summary.metric == m]
        row[m] = fmt_ci(r["mean"].iloc[0], r["ci_low"].iloc[0], r["ci_high"].iloc[0]) if len(r) else "n/a"
    return row


# --------------------------------------------------------------------------- domain orders
def order_statistics(tidy: pd.DataFrame, cfg: AnalysisSettings, tables: Path, phases: pd.DataFrame
                     ) -> tuple[dict, list[Path]]:
    """The main comparison within each domain order: does the order change a conclusion?"""
    doc: dict[str, Any] = {}
    rows = []
    for order, sub in tidy.groupby("order", sort=False):
        summary, comp, notes = statistics(sub, cfg)
        key = comp[comp.metric.isin(KEY_METRICS)]
        doc[order] = {**by_variant(summary, cfg.variants, KEY_METRICS), "comparisons": nested_comparisons(key),
                      "validity": validity_check(phases[phases.order == order], sub, cfg), "notes": notes}
        for v in cfg.variants:
            rows.append(_cells(summary[summary.variant == v], ORDER_METRICS, {"order": order, "variant": v}))
    show = pd.DataFrame(rows)
    conf = f"{cfg.confidence:.0%}"
    written = _write(tables, "orders", show, show, "Main comparison within each domain order",
                     [f"cells: mean [{conf} skewness-corrected t-interval] over the seeds of that order"])
    return doc, written


# --------------------------------------------------------------------------- tuned comparison
def tuned_statistics(params: Params, cfg: AnalysisSettings, results: str | Path, out: Path
                     ) -> tuple[dict, pd.DataFrame, list[Path]]:
    """Every variant at its tuned settings, on the evaluation seeds and orders."""
    from k1model.study.plan import part_runs

    records = load_runs(results, part_runs(params, "tuned"), attribution=False)
    failed, notes = completed_runs(records, cfg, "tuned")
    tidy = sorted_tidy(tidy_table(records), cfg.variants)
    variants = [v for v in cfg.variants if v in set(tidy.variant)]
    summary, comp, stat_notes = statistics(tidy, cfg)
    summary = summary[summary.variant.isin(variants)]
    comp = comp[comp.variant.isin(variants) & comp.reference.isin(variants)]
    choice_path = Path(results) / "tuning" / "chosen.json"
    choices = _read_json(choice_path) if choice_path.is_file() else {}
    doc: dict[str, Any] = {**by_variant(summary, variants), "comparisons": nested_comparisons(comp),
                           "validity": validity_check(phase_table(records), tidy, cfg),
                           "failed_runs": failed, "notes": notes + stat_notes,
                           "choices": {v: {"chosen": c["chosen"], "overrides": c["overrides"], "searched": c["searched"],
                                           "validation_mean": c["mean"]}
                                       for v, c in (choices.get("variants") or {}).items()},
                           "searched": choices.get("searched"), "metric": choices.get("metric")}
    rows = []
    for v in variants:
        row = _cells(summary[summary.variant == v], HEADLINE_METRICS + ("sparsity_param_fraction",), {"variant": v})
        row["chosen"] = (choices.get("variants") or {}).get(v, {}).get("chosen", "n/a")
        rows.append(row)
    show = pd.DataFrame(rows)
    conf = f"{cfg.confidence:.0%}"
    written = _write(out / "tables", "tuned", show, show, "Tuned comparison: every variant at its chosen settings",
                     [f"cells: mean [{conf} skewness-corrected t-interval] over the initialisations (evaluation "
                      "seeds x orders, or seeds when a seed's orders share its initialisation)",
                      f"chosen on {choices.get('metric', 'the validation metric')} with tuning seeds "
                      f"{choices.get('seeds')}; {choices.get('searched')} settings searched in all"] + notes)
    return doc, tidy, written


# --------------------------------------------------------------------------- sensitivity sweep
def sweep_statistics(params: Params, cfg: AnalysisSettings, results: str | Path, tables: Path
                     ) -> tuple[dict, pd.DataFrame, list[Path]]:
    """Per point x variant: the headline metrics with CIs over the sweep seeds; per point and sweep
    variant: the paired difference to `dense` at that point (when dense is swept), with the primary
    test's p, Holm-corrected over the variants at the point (as the main comparison) and, for each
    claim, over all points searched (the multiplicity of the search)."""
    from k1model.study.design import as_dict, sweep_points
    from k1model.study.plan import sweep_cells

    points = {p.name: p for p in sweep_points(params)}
    order = "-".join(params.sweep.order or params.orders[0])
    rows, failed = [], []
    for cell in sweep_cells(params):
        path = Path(results) / cell.path / "metrics.json"
        if not path.is_file():
            failed.append({"point": cell.point, "variant": cell.variant, "seed": cell.seed, "status": "missing"})
            continue
        m = read_run_file(path)  # a damaged file: an error naming it and how to rebuild it
        if m.get("status", "completed") != "completed":
            failed.append({"point": cell.point, "variant": cell.variant, "seed": cell.seed, "status": m.get("status")})
            continue
        for metric in SWEEP_METRICS:
            v = (m.get("scalars") or {}).get(metric)
            rows.append({"part": "sweep", "point": cell.point, "variant": cell.variant, "order": order,
                         "seed": cell.seed, "metric": metric, "value": math.nan if v is None else float(v)})
    tidy = pd.DataFrame(rows, columns=["part", "point", "variant", "order", "seed", "metric", "value"])
    variants = list(params.sweep.variants)
    # the references of the sweep are the swept baselines (variants that update every agent: dense, ewc,
    # replay, joint; dense first); every other swept variant is compared with each at every point
    baselines = [v for v in variants if VARIANTS[v].selector == "all"]
    references = sorted(baselines, key=lambda v: v != "dense") if len(variants) > len(baselines) else []
    cells: dict[str, dict] = {}
    claims: dict[str, dict] = {}
    for name, sub in tidy.groupby("point", sort=False):
        cells[name] = {}
        for v in variants:
            cells[name][v] = {}
            for metric in SWEEP_METRICS:
                x = sub[(sub.variant == v) & (sub.metric == metric)].value.to_numpy(float)
                cells[name][v][metric] = describe(x, _cell_rng(cfg.rng_seed, "sweep", name, v, metric),
                                                  cfg.bootstrap_resamples, cfg.confidence)
        claims[name] = {}
        for ref in references:
            comp, _ = comparisons(sub[sub.metric.isin(SWEEP_CLAIM_METRICS)], cfg, references=[ref], variants=variants)
            claims[name][ref] = {}
            for _, r in comp.iterrows():
                claims[name][ref].setdefault(r.variant, {})[r.metric] = {
                    "mean_diff": r.mean_diff, "diff_ci_low": r.diff_ci_low, "diff_ci_high": r.diff_ci_high,
                    "n_pairs": int(r.n_pairs), "p": r[f"{cfg.primary_test}_p"],
                    "p_holm_point": r[f"{cfg.primary_test}_p_holm"]}
    # the multiplicity of the search: per claim (variant vs reference on a metric), Holm over all points
    for ref in references:
        for v in variants:
            for metric in SWEEP_CLAIM_METRICS:
                names = [n for n in claims if v in claims[n][ref] and metric in claims[n][ref][v]]
                adj = holm([claims[n][ref][v][metric]["p"] if claims[n][ref][v][metric]["p"] is not None else np.nan
                            for n in names])
                for n, a in zip(names, adj):
                    c = claims[n][ref][v][metric]
                    c["p_holm_search"] = float(a) if np.isfinite(a) else None
                    c["holds"] = bool(np.isfinite(a) and a < cfg.alpha and c["mean_diff"] < 0)  # lower is better
    doc = {"design": params.sweep.design, "seeds": list(params.sweep.seeds), "order": order,
           "variants": variants, "references": references, "searched": len(points),
           "points": [{"name": p.name, "factor": p.factor, "overrides": as_dict(p.overrides)} for p in points.values()],
           "factors": {k: list(v) for k, v in params.sweep.factors.items()},
           "base": {k: getattr(params.method, k) for k in params.sweep.factors},
           "cells": cells, "claims": claims, "failed": failed,
           "claim_rule": f"variant - reference < 0 with the {cfg.primary_test} p, Holm-corrected over all "
                         f"{len(points)} points, below {cfg.alpha:g}"}
    show_rows = []
    for name in cells:
        for v in variants:
            row = {"point": name, "variant": v}
            for metric in ("final_avg_bpb", "forgetting", "idle_step_fraction"):
                st = cells[name][v][metric]
                row[metric] = fmt_ci(st["mean"], st["ci_low"], st["ci_high"])
            c = claims.get(name, {}).get("dense", {}).get(v, {}).get("forgetting")
            row["forgetting - dense"] = "" if c is None else fmt_ci(c["mean_diff"], c["diff_ci_low"], c["diff_ci_high"])
            row["p (Holm, search)"] = "" if c is None else fmt_p(c.get("p_holm_search"))
            show_rows.append(row)
    show = pd.DataFrame(show_rows)
    notes = [f"{len(points)} settings searched ({params.sweep.design}); seeds {list(params.sweep.seeds)}; "
             f"order {order}; cells: mean [{cfg.confidence:.0%} skewness-corrected t-interval]",
             "a point that cannot change a variant (it sets keys the variant does not read) shows that variant's "
             "base runs"]
    if failed:
        notes.append(f"{len(failed)} sweep runs failed or missing (excluded, listed in summary.json sweep.failed)")
    written = _write(tables, "sweep", show, show, "Sensitivity sweep around the profile's settings", notes)
    return doc, tidy, written
