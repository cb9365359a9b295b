"""The statistics of one set of runs: per-metric summaries, exploratory paired comparisons, the
benchmark-validity check and the forgetting decomposition's tests, from the tidy table.

Every statistic is over *units*, one initialisation each (`units.py`, `experiment.init_seed`): the runs
when each run has its own init seed, the seeds (each the mean of its orders) when a seed's runs share one.
Per metric × variant: n (units), mean, std, median and interquartile mean (IQM, Agarwal et al.
2021, "Deep RL at the Edge of the Statistical Precipice"), each with an interval that keeps its
coverage at small n (`intervals.py`: Hall's skewness-corrected t-interval for the mean, Yuen's trimmed-mean interval, the
order-statistic interval of the median with its exact coverage).

Exploratory paired comparisons of every variant against each reference variant (default `k1_full`
and `dense`), per metric, on the units both have, the order as a block: paired t-test, Wilcoxon
signed-rank, Welch's t-test (unpaired), Hedges' g (unpaired and paired), the direction-aware
probability of improvement, the minimum detectable effect and, where it has the power, a TOST
equivalence test against the declared margin (`power.py`). Their p-values are Holm-corrected within a
*family* (`analysis.holm_family`: every variant against one reference on one metric, or every variant
× metric against one reference); they describe, they do not decide: the verdicts are the declared
claims', one Holm family of their own (`claim_tests.py`).

Used by `aggregate.py` (the main comparison) and `study_stats.py` (orders, tuned, sweep).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd

from k1model.analysis.metric_info import _metric_order, metric_info
from k1model.analysis.power import power_summary
from k1model.analysis.runs import RunRecord
from k1model.analysis.settings import AnalysisSettings
from k1model.analysis.stats import _cell_rng, compare, describe, holm, paired_difference
from k1model.analysis.units import paired_units, planned_units, unit_values
from k1model.analysis.validity import benchmark_forgets
from k1model.config import TEST_NAMES
from k1model.errors import K1Error

log = logging.getLogger(__name__)

def summarise(tidy: pd.DataFrame, cfg: AnalysisSettings) -> pd.DataFrame:
    """One row per metric × variant (registry order, then variant order of the params), over the units: n is
    the number of initialisations with a value, n_runs the runs behind them."""
    rows = []
    units = unit_values(tidy, cfg.scheme)
    for metric in _metric_order(tidy["metric"].unique()):
        info, known = metric_info(metric)
        for variant in cfg.variants:
            sel = units[(units.metric == metric) & (units.variant == variant)]
            x = sel["value"].to_numpy(float)
            d = describe(x, _cell_rng(cfg.rng_seed, "summary", metric, variant), cfg.bootstrap_resamples,
                         cfg.confidence)
            rows.append({"metric": metric, "variant": variant, "direction": info.direction,
                         "unit": info.unit, "group": info.group, "known": known, **d,
                         "n_runs": int(sel["runs"][sel["value"].notna()].sum())})
    cols = ["metric", "variant", "direction", "unit", "group", "known", "n", "n_runs", "mean", "std", "ci_low",
            "ci_high", "median", "median_ci_low", "median_ci_high", "median_ci_coverage", "iqm", "iqm_ci_low",
            "iqm_ci_high"]
    return pd.DataFrame(rows, columns=cols)

_COMPARISON_COLUMNS = [
    "reference", "variant", "metric", "direction", "n_pairs", "n_variant", "n_reference",
    "mean_variant", "mean_reference", "mean_diff", "diff_ci_low", "diff_ci_high",
    "wilcoxon_stat", "wilcoxon_p", "wilcoxon_p_holm", "wilcoxon_min_p", "wilcoxon_min_p_holm",
    "ttest_paired_stat", "ttest_paired_p", "ttest_paired_p_holm",
    "welch_stat", "welch_df", "welch_p", "welch_p_holm",
    "hedges_g", "hedges_g_paired", "poi", "poi_ci_low", "poi_ci_high",
    "holm_family_size", "significant", "better", "diff_se", "diff_df", "diff_sd", "blocks", "power_alpha", "mde",
    "equivalence_margin", "units_for_margin", "equivalence_power", "margin_for_power", "equivalence_testable",
    "tost_p", "tost_p_holm", "equivalent", "verdict", "note",
]

def comparisons(tidy: pd.DataFrame, cfg: AnalysisSettings, references: Sequence[str] | None = None,
                variants: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every variant against every reference (default: the params'), per metric, with Holm-adjusted
    p per family (exploratory); units are initialisations (`units.py`), paired by order and seed."""
    notes: list[str] = []
    ref_list = list(cfg.references if references is None else references)
    var_list = list(cfg.variants if variants is None else variants)
    n_orders = tidy["order"].nunique() if not tidy.empty else 1
    planned = planned_units(len(set(tidy["seed"])) if not tidy.empty else 0, n_orders, cfg.scheme, cfg.order_blocks)
    rows, plans = [], []
    refs = [r for r in ref_list if r in var_list]
    for r in ref_list:
        if r not in var_list:
            notes.append(f"reference variant {r!r} is not in experiment.variants: no comparisons against it")
    metrics = _metric_order(tidy["metric"].unique())
    orders = list(dict.fromkeys(tidy["order"]))
    by_metric = {m: rows for m, rows in tidy.groupby("metric", sort=False)}
    for ref in refs:
        for variant in var_list:
            if variant == ref:
                continue
            for metric in metrics:
                info, _ = metric_info(metric)
                if info.direction == "none":  # descriptive (e.g. a tree's size): reported, not tested
                    continue
                units = paired_units(by_metric[metric], variant, ref, metric, cfg.scheme, orders, cfg.order_blocks)
                res = compare(units.x, units.y, info.direction, units.x_paired, units.y_paired,
                              _cell_rng(cfg.rng_seed, "compare", ref, variant, metric), cfg.bootstrap_resamples,
                              cfg.confidence, units.blocks)
                if not units.x.size or not units.y.size:
                    missing = variant if not units.x.size else ref
                    res["note"] = (res["note"] + "; " if res["note"] else "") + f"{metric} undefined (null) for {missing}"
                rows.append({"reference": ref, "variant": variant, "metric": metric, "direction": info.direction, **res})
                plans.append((planned[0], planned[1] if units.kind == "run" else 1))
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
    # what a non-significant comparison could have shown: power at the worst-case Holm level alpha / m
    # (analysis/power.py), and equivalence within the declared margin where the TOST has the power to show it
    power = [power_summary(row, cfg.alpha / max(int(m), 1), cfg.equivalence_margins.get(metric), plan)
             for row, m, metric, plan in zip(df.to_dict("records"), df["holm_family_size"], df["metric"], plans)]
    for key in ("power_alpha", "mde", "equivalence_margin", "units_for_margin", "equivalence_power",
                "margin_for_power", "equivalence_testable", "tost_p"):
        df[key] = [row[key] for row in power]
    df["tost_p_holm"] = df.groupby(keys, sort=False)["tost_p"].transform(lambda q: holm(q.to_numpy(float)))
    df["equivalent"] = (df["tost_p_holm"] < cfg.alpha).fillna(False).astype(bool)
    df["verdict"] = [verdict(b, e) for b, e in zip(df["better"], df["equivalent"])]
    return df[_COMPARISON_COLUMNS], notes


#: what a paired comparison says, from its tests alone (a claim may add "untestable": analysis/validity.py)
VERDICTS = {"variant": "variant better", "reference": "reference better", "equivalent": "equivalent",
            "inconclusive": "inconclusive", "n/a": "n/a"}


def verdict(better: str, equivalent: bool) -> str:
    """variant better / reference better (significant, Holm); equivalent (TOST within the margin);
    inconclusive (neither: read it with the MDE); n/a (the test was undefined)."""
    if better in ("variant", "reference"):
        return VERDICTS[better]
    if better == "n/a":
        return VERDICTS["n/a"]
    return VERDICTS["equivalent"] if equivalent else VERDICTS["inconclusive"]

def validity_check(phases: pd.DataFrame, tidy: pd.DataFrame, cfg: AnalysisSettings) -> dict[str, Any]:
    """Does this set of runs' benchmark forget? (`validity.py`; the reference is analysis.forgetting_reference;
    its average forgetting over the units, one initialisation each)."""
    ref = cfg.forgetting_reference
    units = unit_values(tidy[(tidy.variant == ref) & (tidy.metric == "forgetting")], cfg.scheme)
    average = units["value"].dropna().to_numpy(float)
    doc = benchmark_forgets(phases, average, ref, cfg.forgetting_margin, cfg.confidence)
    doc["measured"] = bool(average.size)
    return doc


def decomposition_tests(tidy: pd.DataFrame, cfg: AnalysisSettings) -> dict[str, Any]:
    """Per variant: do the shared weights carry more of the forgetting than the agents? The paired
    difference forgetting_shared − forgetting_agents over the units (the order as a block), its t-interval
    and t-test (`stats.paired_difference`)."""
    out: dict[str, Any] = {}
    sub = tidy[tidy.metric.isin(["forgetting_shared", "forgetting_agents"])]
    if not {"forgetting_shared", "forgetting_agents"} <= set(sub.metric):
        return out
    for variant in cfg.variants:
        mine = sub[sub.variant == variant]
        if mine.empty:
            continue
        pair = mine.assign(variant=mine.metric).drop(columns="metric").assign(metric="forgetting")
        units = paired_units(pair, "forgetting_shared", "forgetting_agents", "forgetting", cfg.scheme,
                             blocked=cfg.order_blocks)
        if units.x_paired.size < 2:
            continue
        res = paired_difference(units.x_paired - units.y_paired, units.blocks, cfg.confidence)
        out[variant] = {"n": res["n"], "mean": res["mean_diff"], "ci_low": res["ci_low"], "ci_high": res["ci_high"],
                        "ttest_p": res["p"]}
    return out


def statistics(tidy: pd.DataFrame, cfg: AnalysisSettings) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Per-metric summaries and paired comparisons of one set of runs, with notes on undefined metrics."""
    notes: list[str] = []
    summary = summarise(tidy, cfg)
    unknown = sorted(summary.loc[~summary.known, "metric"].unique())
    if unknown:
        msg = "direction unknown (not in METRIC_INFO), lower-is-better assumed for: " + ", ".join(unknown)
        log.warning(msg)
        notes.append(msg)
    # one note per set of variants, naming every metric undefined for exactly that set
    undefined: dict[tuple[str, ...], list[str]] = {}
    for metric, grp in summary[summary.n == 0].groupby("metric", sort=False):
        undefined.setdefault(tuple(grp.variant), []).append(metric)
    for variants, metrics in undefined.items():
        notes.append(f"{', '.join(metrics)} undefined (null in every run) for: " + ", ".join(variants))
    comp, comp_notes = comparisons(tidy, cfg)
    return summary, comp, notes + comp_notes


STAT_KEYS = ["mean", "std", "ci_low", "ci_high", "median", "median_ci_low", "median_ci_high", "median_ci_coverage",
             "iqm", "iqm_ci_low", "iqm_ci_high", "n", "n_runs"]
#: the numbers a person compares across experiments: the DVC metrics file (results/metrics.json)
HEADLINE_METRICS = ("final_avg_bpb", "forgetting", "bwt")


def by_variant(summary: pd.DataFrame, variants: Sequence[str], metrics: Sequence[str] | None = None) -> dict:
    out = {}
    for variant in variants:
        sub = summary[summary.variant == variant]
        if metrics is not None:
            sub = sub[sub.metric.isin(metrics)]
        out[variant] = {r["metric"]: {k: r[k] for k in STAT_KEYS} for _, r in sub.iterrows()}
    return out


def nested_comparisons(comp: pd.DataFrame) -> dict:
    nested: dict[str, dict[str, dict[str, Any]]] = {}
    for _, r in comp.iterrows():
        entry = r.drop(["reference", "variant", "metric"]).to_dict()
        nested.setdefault(r["reference"], {}).setdefault(r["variant"], {})[r["metric"]] = entry
    return nested


def sorted_tidy(tidy: pd.DataFrame, variants: Sequence[str]) -> pd.DataFrame:
    rank = {v: i for i, v in enumerate(variants)}
    return (tidy.assign(_rank=tidy.variant.map(rank)).sort_values(["_rank", "order", "seed", "metric"], kind="stable")
            .drop(columns="_rank").reset_index(drop=True))


def completed_runs(records: list[RunRecord], cfg: AnalysisSettings, what: str) -> tuple[list[dict], list[str]]:
    """Failed runs (refused unless analysis.allow_failed) and the notes that list them."""
    failed = [{"variant": r.variant, "seed": r.seed, "order": r.order, "status": r.status, "path": str(r.path),
               "error": r.metrics.get("error", r.metrics.get("message"))} for r in records if not r.completed]
    notes = []
    if failed and not cfg.allow_failed:
        listing = "\n  ".join(f"{f['path']} (status {f['status']}{': ' + str(f['error']) if f['error'] else ''})"
                              for f in failed)
        raise K1Error(
            f"{len(failed)} run(s) did not complete:\n  {listing}\nre-run them, or set analysis.allow_failed: true "
            "to aggregate without them (they are then listed in summary.json `failed_runs` and in the table notes)")
    if failed:
        several = len({r.order for r in records}) > 1  # name the order only when there are several

        def name(f: dict) -> str:
            return f"{f['variant']}/{f['order']}/seed{f['seed']}" if several else f"{f['variant']}/seed{f['seed']}"

        notes.append(f"failed runs excluded from the {what} statistics: "
                     + ", ".join(f"{name(f)} ({f['status']})" for f in failed))
    units = {v: sum(r.completed for r in records if r.variant == v) for v in dict.fromkeys(r.variant for r in records)}
    few = {v: n for v, n in units.items() if n < 2}
    if few:
        raise K1Error("fewer than 2 completed runs for " + ", ".join(f"{v} ({n})" for v, n in few.items())
                      + f" in the {what} comparison; statistics across seeds need at least 2")
    return failed, notes


