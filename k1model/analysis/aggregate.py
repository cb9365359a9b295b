"""`k1 aggregate`: runs -> tidy table -> summaries and paired comparisons -> summary.json, tables.

Per metric × variant: n, mean, std, median and interquartile mean (IQM, Agarwal et al.
2021, "Deep RL at the Edge of the Statistical Precipice"), each with a percentile
stratified-bootstrap CI (seeds resampled with replacement within each variant).

Paired comparisons of every variant against each reference variant (default `k1_full`
and `dense`), per metric, on the seeds both have: Wilcoxon signed-rank, paired t-test,
Welch's t-test (unpaired, all values), Hedges' g (unpaired and paired), and the
direction-aware probability of improvement. p-values are Holm-corrected within a
*family*; by default (`analysis.holm_family: reference_metric`) a family is the comparisons
of every variant against one reference on one metric, with one test: each claim ("variant X
differs from k1_full on forgetting") is protected against the multiplicity of variants. The
stricter `reference` (all variants × all metrics against one reference) controls the error
rate of everything said about a reference, but with m tests the smallest adjusted Wilcoxon p
is m · 2^(1−n) for n seeds, so it can never reach significance at realistic seed counts.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from k1model.analysis.metric_info import _metric_order, metric_info
from k1model.analysis.runs import RunRecord, _read_json, load_runs, tidy_table
from k1model.analysis.settings import AnalysisSettings, load_analysis_config
from k1model.analysis.stats import _cell_rng, compare, describe, holm
from k1model.config import HOLM_FAMILIES, TEST_NAMES
from k1model.errors import DataError, K1Error
from k1model.io import json_safe, write_csv, write_json
from k1model.report.tables import write_tables

log = logging.getLogger(__name__)

def summarise(tidy: pd.DataFrame, cfg: AnalysisSettings) -> pd.DataFrame:
    """One row per metric × variant (registry order, then variant order of the params)."""
    rows = []
    for metric in _metric_order(tidy["metric"].unique()):
        info, known = metric_info(metric)
        for variant in cfg.variants:
            x = tidy.loc[(tidy.metric == metric) & (tidy.variant == variant), "value"].to_numpy()
            d = describe(x, _cell_rng(cfg.rng_seed, "summary", metric, variant), cfg.bootstrap_resamples,
                         cfg.confidence)
            rows.append({"metric": metric, "variant": variant, "direction": info.direction,
                         "unit": info.unit, "group": info.group, "known": known, **d})
    cols = ["metric", "variant", "direction", "unit", "group", "known", "n", "mean", "std", "ci_low", "ci_high",
            "median", "median_ci_low", "median_ci_high", "iqm", "iqm_ci_low", "iqm_ci_high"]
    return pd.DataFrame(rows, columns=cols)

_COMPARISON_COLUMNS = [
    "reference", "variant", "metric", "direction", "n_pairs", "n_variant", "n_reference",
    "mean_variant", "mean_reference", "mean_diff", "diff_ci_low", "diff_ci_high",
    "wilcoxon_stat", "wilcoxon_p", "wilcoxon_p_holm", "wilcoxon_min_p", "wilcoxon_min_p_holm",
    "ttest_paired_stat", "ttest_paired_p", "ttest_paired_p_holm",
    "welch_stat", "welch_df", "welch_p", "welch_p_holm",
    "hedges_g", "hedges_g_paired", "poi", "poi_ci_low", "poi_ci_high",
    "holm_family_size", "significant", "better", "note",
]

def comparisons(tidy: pd.DataFrame, cfg: AnalysisSettings) -> tuple[pd.DataFrame, list[str]]:
    """Every variant against every reference, per metric, with Holm-adjusted p per family."""
    notes: list[str] = []
    wide = tidy.pivot_table(index=["variant", "seed"], columns="metric", values="value", dropna=False)
    rows = []
    refs = [r for r in cfg.references if r in cfg.variants]
    for r in cfg.references:
        if r not in cfg.variants:
            notes.append(f"reference variant {r!r} is not in experiment.variants: no comparisons against it")
    metrics = _metric_order(tidy["metric"].unique())
    for ref in refs:
        for variant in cfg.variants:
            if variant == ref:
                continue
            for metric in metrics:
                info, _ = metric_info(metric)
                col = wide[metric] if metric in wide else pd.Series(dtype=float)
                xs = col.xs(variant, level="variant") if variant in col.index.get_level_values(0) else pd.Series(dtype=float)
                ys = col.xs(ref, level="variant") if ref in col.index.get_level_values(0) else pd.Series(dtype=float)
                xs, ys = xs.dropna(), ys.dropna()
                common = sorted(set(xs.index) & set(ys.index))
                res = compare(
                    xs.to_numpy(float), ys.to_numpy(float), info.direction,
                    xs.loc[common].to_numpy(float), ys.loc[common].to_numpy(float),
                    _cell_rng(cfg.rng_seed, "compare", ref, variant, metric), cfg.bootstrap_resamples, cfg.confidence,
                )
                if xs.empty or ys.empty:
                    missing = variant if xs.empty else ref
                    res["note"] = (res["note"] + "; " if res["note"] else "") + f"{metric} undefined (null) for {missing}"
                rows.append({"reference": ref, "variant": variant, "metric": metric, "direction": info.direction, **res})
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=_COMPARISON_COLUMNS), notes
    keys = ["reference"] if cfg.holm_family == "reference" else ["reference", "metric"]
    for test in TEST_NAMES:
        df[f"{test}_p_holm"] = df.groupby(keys, sort=False)[f"{test}_p"].transform(lambda p: holm(p.to_numpy(float)))
    # size of each row's family for the primary test (the smallest adjusted p is ≥ size × smallest raw p)
    df["holm_family_size"] = df.groupby(keys, sort=False)[f"{cfg.primary_test}_p"].transform("count").astype(int)
    df["wilcoxon_min_p_holm"] = np.minimum(1.0, df.wilcoxon_min_p * df.groupby(keys, sort=False)["wilcoxon_p"]
                                           .transform("count"))
    p = df[f"{cfg.primary_test}_p_holm"]
    sig = p < cfg.alpha
    better_lower = df.mean_diff < 0
    variant_better = np.where(df.direction == "lower", better_lower, df.mean_diff > 0)
    df["significant"] = sig.fillna(False).astype(bool)
    df["better"] = np.where(p.isna(), "n/a", np.where(~df["significant"], "none",
                                                      np.where(variant_better, "variant", "reference")))
    return df[_COMPARISON_COLUMNS], notes

def _provenance(records: Sequence[RunRecord]) -> dict[str, Any]:
    def unique(key: str) -> list[Any]:
        return sorted({json.dumps(r.metrics.get(key), sort_keys=True) for r in records if key in r.metrics})

    versions: dict[str, list[str]] = {}
    for r in records:
        for k, v in (r.metrics.get("versions") or {}).items():
            versions.setdefault(str(k), [])
            if str(v) not in versions[str(k)]:
                versions[str(k)].append(str(v))
    return {
        "config_hashes": [json.loads(s) for s in unique("config_hash")],
        "devices": [json.loads(s) for s in unique("device")],
        "versions": {k: v[0] if len(v) == 1 else sorted(v) for k, v in sorted(versions.items())},
        "total_wall_time_s": float(sum(float(r.metrics.get("wall_time_s") or 0.0) for r in records)),
    }

def aggregate(params: str | Path | Mapping[str, Any], runs: str | Path, out: str | Path) -> dict[str, Any]:
    """Read the runs, compute every statistic, write tidy.csv, tables/ and summary.json.

    Returns the summary.json content, plus the key `written` (paths of every file written),
    which is not stored in the file.
    """
    cfg = load_analysis_config(params)
    out = Path(out)
    records = load_runs(runs, cfg.variants, cfg.seeds)
    failed = [{"variant": r.variant, "seed": r.seed, "status": r.status, "path": str(r.path),
               "error": r.metrics.get("error", r.metrics.get("message"))} for r in records if not r.completed]
    notes: list[str] = []
    if failed and not cfg.allow_failed:
        listing = "\n  ".join(f"{f['path']} (status {f['status']}{': ' + str(f['error']) if f['error'] else ''})"
                              for f in failed)
        raise K1Error(
            f"{len(failed)} run(s) did not complete:\n  {listing}\nre-run them, or set analysis.allow_failed: true "
            "to aggregate without them (they are then listed in summary.json `failed_runs` and in the table notes)"
        )
    if failed:
        notes.append("failed runs excluded from the statistics: "
                     + ", ".join(f"{f['variant']}/seed{f['seed']} ({f['status']})" for f in failed))
    completed_per_variant = {v: sum(r.completed for r in records if r.variant == v) for v in cfg.variants}
    few = {v: n for v, n in completed_per_variant.items() if n < 2}
    if few:
        raise K1Error(
            "fewer than 2 completed seeds for " + ", ".join(f"{v} ({n})" for v, n in few.items())
            + "; statistics across seeds need at least 2"
        )
    missing_attr = [f"{r.variant}/seed{r.seed}" for r in records if r.completed and r.attribution is None]
    if missing_attr:
        notes.append("no attribution.json (attribution metrics missing) for: " + ", ".join(missing_attr))

    tidy = tidy_table(records)
    if tidy.empty:
        raise DataError(f"no scalars found in any run under {runs}")
    written: list[Path] = []
    rank = {v: i for i, v in enumerate(cfg.variants)}
    tidy = (tidy.assign(_rank=tidy.variant.map(rank)).sort_values(["_rank", "seed", "metric"], kind="stable")
            .drop(columns="_rank").reset_index(drop=True))
    write_csv(out / "tidy.csv", tidy)
    written.append(out / "tidy.csv")

    summary = summarise(tidy, cfg)
    unknown = sorted(summary.loc[~summary.known, "metric"].unique())
    if unknown:
        msg = "direction unknown (not in METRIC_INFO), lower-is-better assumed for: " + ", ".join(unknown)
        log.warning(msg)
        notes.append(msg)
    undefined = summary[summary.n == 0]
    for metric, grp in undefined.groupby("metric", sort=False):
        notes.append(f"{metric} undefined (null in every run) for: " + ", ".join(grp.variant))
    comp, comp_notes = comparisons(tidy, cfg)
    notes += comp_notes

    written += write_tables(out / "tables", summary, comp, cfg, notes)

    doc: dict[str, Any] = {"n_seeds": len(cfg.seeds), "config": cfg.as_dict()}
    doc["metrics"] = {m: {**metric_info(m)[0]._asdict(), "known": metric_info(m)[1]}
                      for m in dict.fromkeys(summary.metric)}
    stat_keys = ["mean", "std", "ci_low", "ci_high", "median", "median_ci_low", "median_ci_high",
                 "iqm", "iqm_ci_low", "iqm_ci_high", "n"]
    for variant in cfg.variants:
        sub = summary[summary.variant == variant]
        doc[variant] = {r["metric"]: {k: r[k] for k in stat_keys} for _, r in sub.iterrows()}
    nested: dict[str, dict[str, dict[str, Any]]] = {}
    for _, r in comp.iterrows():
        entry = r.drop(["reference", "variant", "metric"]).to_dict()
        nested.setdefault(r["reference"], {}).setdefault(r["variant"], {})[r["metric"]] = entry
    doc["failed_runs"] = failed
    doc["missing_attribution"] = missing_attr
    doc["notes"] = notes
    doc["provenance"] = _provenance([r for r in records if r.completed])
    doc = json_safe(doc)
    write_json(out / "summary.json", doc)  # the DVC metrics file: per variant × metric, small enough to show
    write_json(out / "comparisons.json", json_safe(nested))
    written += [out / "summary.json", out / "comparisons.json"]
    return {**doc, "comparisons": json_safe(nested), "written": [str(p) for p in written]}

def load_summary(results: str | Path) -> dict[str, Any]:
    """summary.json with the paired comparisons (comparisons.json) under the key `comparisons`."""
    results = Path(results)
    doc = _read_json(results / "summary.json")
    comparisons = results / "comparisons.json"
    doc["comparisons"] = _read_json(comparisons) if comparisons.is_file() else {}
    return doc
