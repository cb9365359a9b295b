"""Across-run statistics behind `k1 aggregate`.

One tidy table (variant, seed, metric, value), built from every run's
`metrics.json["scalars"]` and `attribution.json["scalars"]`, is the only input of every
statistic here, so the tables, `summary.json`, the figures and the paper all agree.

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

Params keys read: `experiment.variants`, `experiment.seeds`, `analysis.rng_seed`,
`analysis.bootstrap_resamples`, `analysis.confidence`, and (optional, with defaults)
`analysis.allow_failed` (false), `analysis.references` ([k1_full, dense]),
`analysis.primary_test` (wilcoxon), `analysis.holm_family` (reference_metric).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from k1model.config import load_params
from k1model.errors import ConfigError, DataError, K1Error
from k1model.io import atomic_path, write_json, write_text

log = logging.getLogger(__name__)

__all__ = [
    "MetricInfo",
    "METRIC_INFO",
    "metric_info",
    "AnalysisConfig",
    "load_analysis_config",
    "run_dir",
    "RunRecord",
    "load_runs",
    "tidy_table",
    "iqm",
    "stratified_bootstrap",
    "bootstrap_ci",
    "describe",
    "summarise",
    "holm",
    "hedges_g",
    "hedges_g_paired",
    "probability_of_improvement",
    "wilcoxon_test",
    "compare",
    "comparisons",
    "markdown_table",
    "latex_table",
    "aggregate",
    "cli_aggregate",
    "TEST_NAMES",
    "HOLM_FAMILIES",
    "TABLE_GROUPS",
    "KEY_METRICS",
    "fmt_num",
    "fmt_p",
    "fmt_ci",
]

# --------------------------------------------------------------------------- registry


class MetricInfo(NamedTuple):
    """What a metric means. `direction` is "lower" or "higher" (which is better)."""

    direction: str
    description: str
    unit: str
    group: str = "other"


METRIC_INFO: dict[str, MetricInfo] = {
    # language modelling and forgetting (metrics.py)
    "final_avg_bpb": MetricInfo("lower", "mean held-out bpb over all domains after the last phase", "bpb", "forgetting"),
    "forgetting": MetricInfo("lower", "final minus best earlier bpb, mean over all but the last domain (positive = forgetting)", "bpb", "forgetting"),
    "bwt": MetricInfo("lower", "backward transfer, mean R[T,j] − R[j,j] (positive = forgetting)", "bpb", "forgetting"),
    "fwt": MetricInfo("lower", "forward transfer, mean R[j−1,j] − R0[j] (negative = earlier phases helped)", "bpb", "forgetting"),
    "final_train_loss": MetricInfo("lower", "training loss over the last 5% of steps", "bits/byte", "lm"),
    # sparsity
    "sparsity_param_fraction": MetricInfo("lower", "fraction of agent parameters changed per step (measured; lower = sparser)", "fraction", "sparsity"),
    "sparsity_agent_fraction": MetricInfo("lower", "fraction of agents with any changed parameter per step (measured; lower = sparser)", "fraction", "sparsity"),
    "idle_step_fraction": MetricInfo("lower", "fraction of steps in which no agent was updated (all in cooldown)", "fraction", "sparsity"),
    # cost
    "wall_time_s": MetricInfo("lower", "wall-clock training time", "s", "cost"),
    "steps_per_s": MetricInfo("higher", "training throughput", "steps/s", "cost"),
    # attribution probes (probes.py)
    "attr_grad_loo_spearman": MetricInfo("higher", "Spearman ρ between gradient scores and LOO Δ at LOO steps", "ρ", "attribution"),
    "attr_window_rank_corr": MetricInfo("higher", "rank correlation of agent scores between consecutive windows (stability over time)", "ρ", "attribution"),
    "attr_resample_path_agreement": MetricInfo("higher", "how often the same culprit path is chosen across resampled batches", "fraction", "attribution"),
    "attr_resample_culprit_entropy": MetricInfo("lower", "entropy of the culprit over resampled batches (0 = always the same)", "bits", "attribution"),
    "attr_fault_top1_grad": MetricInfo("higher", "planted fault: top-1 accuracy of gradient attribution", "fraction", "faults"),
    "attr_fault_top1_loo": MetricInfo("higher", "planted fault: top-1 accuracy of LOO attribution", "fraction", "faults"),
    "attr_fault_top1_hybrid": MetricInfo("higher", "planted fault: top-1 accuracy of hybrid attribution", "fraction", "faults"),
    "attr_fault_auc_grad": MetricInfo("higher", "planted fault: AUC of gradient scores for the damaged agent", "AUC", "faults"),
    "attr_fault_auc_loo": MetricInfo("higher", "planted fault: AUC of LOO scores for the damaged agent", "AUC", "faults"),
    "attr_fault_auc_hybrid": MetricInfo("higher", "planted fault: AUC of hybrid scores for the damaged agent", "AUC", "faults"),
    "attr_fault_path_hit": MetricInfo("higher", "planted fault: how often the damaged agent lies on the chosen error path", "fraction", "faults"),
    "attr_randomisation_change": MetricInfo("higher", "change of attribution when weights are randomised (sanity check; higher = depends on the model)", "1 − ρ", "attribution"),
    "attr_specialisation_nmi": MetricInfo("higher", "normalised mutual information of culprit leaf × domain", "NMI", "attribution"),
    "attr_specialisation_p": MetricInfo("lower", "permutation-test p of specialisation against a shuffled-domain null", "p", "attribution"),
}

# prefix rules for families of metrics the probes may add (checked in order)
_PREFIX_RULES: tuple[tuple[str, MetricInfo], ...] = (
    ("attr_fault_top1_sibling_", MetricInfo("higher", "planted fault: top-1 accuracy among the damaged agent's siblings", "fraction", "faults")),
    ("attr_fault_top1_", MetricInfo("higher", "planted fault: top-1 accuracy", "fraction", "faults")),
    ("attr_fault_auc_", MetricInfo("higher", "planted fault: AUC", "AUC", "faults")),
    ("attr_fault_path_hit", MetricInfo("higher", "planted fault: path hit rate", "fraction", "faults")),
    ("final_bpb_", MetricInfo("lower", "final held-out bpb on one domain", "bpb", "lm")),
    ("sparsity_", MetricInfo("lower", "measured sparsity (lower = sparser)", "fraction", "sparsity")),
)

TABLE_GROUPS: dict[str, str] = {
    "forgetting": "Language modelling and forgetting (bpb; lower is better)",
    "lm": "Final held-out bpb per domain and training loss (lower is better)",
    "sparsity": "Measured update sparsity (lower = sparser)",
    "attribution": "Attribution stability",
    "faults": "Planted-fault attribution accuracy",
    "cost": "Compute cost",
}

#: metrics of the short comparison table the paper embeds
KEY_METRICS: tuple[str, ...] = (
    "final_avg_bpb", "forgetting", "bwt", "sparsity_param_fraction",
    "attr_fault_top1_hybrid", "attr_resample_path_agreement",
)

TEST_NAMES: dict[str, str] = {
    "wilcoxon": "Wilcoxon signed-rank (paired)",
    "ttest_paired": "paired t-test",
    "welch": "Welch t-test (unpaired)",
}


#: Holm families (analysis.holm_family): which p-values are corrected together, per test
HOLM_FAMILIES: dict[str, str] = {
    "reference": "all comparisons (every variant × every metric) against one reference, per test",
    "reference_metric": "the comparisons of every variant against one reference on one metric, per test",
}


def metric_info(name: str) -> tuple[MetricInfo, bool]:
    """(info, known). Unknown metrics default to lower-is-better; callers note that in tables."""
    if name in METRIC_INFO:
        return METRIC_INFO[name], True
    for prefix, info in _PREFIX_RULES:
        if name.startswith(prefix):
            return info, True
    group = "attribution" if name.startswith("attr_") else "other"
    return MetricInfo("lower", "(not in METRIC_INFO; lower-is-better assumed)", "", group), False


# --------------------------------------------------------------------------- params


@dataclass(frozen=True)
class AnalysisConfig:
    """The experiment grid and analysis settings, validated."""

    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    rng_seed: int = 0
    bootstrap_resamples: int = 2000
    confidence: float = 0.95
    allow_failed: bool = False
    references: tuple[str, ...] = ("k1_full", "dense")
    primary_test: str = "wilcoxon"
    holm_family: str = "reference_metric"
    params: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def alpha(self) -> float:
        """Significance level used for every "significant" statement: 1 − confidence."""
        return round(1.0 - self.confidence, 12)

    def as_dict(self) -> dict[str, Any]:
        return {
            "variants": list(self.variants), "seeds": list(self.seeds), "rng_seed": self.rng_seed,
            "bootstrap_resamples": self.bootstrap_resamples, "confidence": self.confidence,
            "alpha": self.alpha, "allow_failed": self.allow_failed,
            "references": list(self.references), "primary_test": self.primary_test,
            "holm_family": self.holm_family,
            "holm_family_meaning": HOLM_FAMILIES[self.holm_family],
            "bootstrap": "percentile, stratified by variant (seeds resampled within variant)",
        }


#: analysis.* keys read by this module (the probes read the rest; see probes.DEFAULT_ANALYSIS)
STATISTICS_KEYS = ("rng_seed", "bootstrap_resamples", "confidence", "allow_failed", "references", "primary_test",
                   "holm_family")


def load_analysis_config(params: str | Path | Mapping[str, Any]) -> AnalysisConfig:
    """Read and validate the keys this layer uses (a path to params YAML, or the parsed dict)."""
    data = dict(params) if isinstance(params, Mapping) else load_params(params, required=("experiment", "analysis"))
    exp = data.get("experiment")
    if not isinstance(exp, Mapping):
        raise ConfigError("params: section `experiment` (with `variants` and `seeds`) is missing")
    variants, seeds = exp.get("variants"), exp.get("seeds")
    if not isinstance(variants, list) or not variants or not all(isinstance(v, str) for v in variants):
        raise ConfigError(f"params: experiment.variants must be a non-empty list of names, got {variants!r}")
    if len(set(variants)) != len(variants):
        raise ConfigError(f"params: experiment.variants has duplicates: {variants}")
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"params: experiment.seeds must be a list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"params: experiment.seeds has duplicates: {seeds}")
    if len(seeds) < 2:
        raise K1Error(
            f"params: experiment.seeds has {len(seeds)} seed(s) ({seeds}); across-run statistics "
            "need at least 2 seeds per variant (3 in the default profile, ≥ 10 for the paper)"
        )
    ana = data.get("analysis")
    if not isinstance(ana, Mapping):
        raise ConfigError("params: section `analysis` is missing")
    for key in ("rng_seed", "bootstrap_resamples", "confidence"):
        if key not in ana:
            raise ConfigError(f"params: analysis.{key} is required")
    from k1model.probes import DEFAULT_ANALYSIS  # the probes own the other half of `analysis`

    allowed = sorted(set(STATISTICS_KEYS) | set(DEFAULT_ANALYSIS))
    unknown = sorted(set(ana) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join('analysis.' + k for k in unknown)}; allowed: {', '.join(allowed)}")
    rng_seed, resamples, conf = ana["rng_seed"], ana["bootstrap_resamples"], ana["confidence"]
    if not isinstance(rng_seed, int) or isinstance(rng_seed, bool) or rng_seed < 0:
        raise ConfigError(f"params: analysis.rng_seed must be an integer ≥ 0, got {rng_seed!r}")
    if not isinstance(resamples, int) or isinstance(resamples, bool) or resamples < 1:
        raise ConfigError(f"params: analysis.bootstrap_resamples must be an integer ≥ 1, got {resamples!r}")
    if not isinstance(conf, (int, float)) or not 0.0 < float(conf) < 1.0:
        raise ConfigError(f"params: analysis.confidence must be in (0, 1), got {conf!r}")
    allow_failed = ana.get("allow_failed", False)
    if not isinstance(allow_failed, bool):
        raise ConfigError(f"params: analysis.allow_failed must be true or false, got {allow_failed!r}")
    refs = ana.get("references", ["k1_full", "dense"])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise ConfigError(f"params: analysis.references must be a list of variant names, got {refs!r}")
    primary = ana.get("primary_test", "wilcoxon")
    if primary not in TEST_NAMES:
        raise ConfigError(f"params: analysis.primary_test must be one of {sorted(TEST_NAMES)}, got {primary!r}")
    family = ana.get("holm_family", "reference_metric")
    if family not in HOLM_FAMILIES:
        raise ConfigError(f"params: analysis.holm_family must be one of {sorted(HOLM_FAMILIES)}, got {family!r}")
    return AnalysisConfig(
        variants=tuple(variants), seeds=tuple(seeds), rng_seed=rng_seed, bootstrap_resamples=resamples,
        confidence=float(conf), allow_failed=allow_failed, references=tuple(refs),
        primary_test=primary, holm_family=family, params=data,
    )


# --------------------------------------------------------------------------- runs → tidy


def run_dir(runs: str | Path, variant: str, seed: int) -> Path:
    """The run directory of one variant × seed (the layout `k1 train --out` is given)."""
    return Path(runs) / variant / f"seed{seed}"


@dataclass
class RunRecord:
    variant: str
    seed: int
    path: Path
    status: str
    metrics: dict[str, Any]
    attribution: dict[str, Any] | None

    @property
    def completed(self) -> bool:
        return self.status == "completed"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}); re-run the step that writes it") from err
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object")
    return data


def load_runs(runs: str | Path, variants: Sequence[str], seeds: Sequence[int]) -> list[RunRecord]:
    """Read every run named by variants × seeds; a K1Error names *every* missing metrics.json.

    A run that crashed leaves `failure.json` (status "failed") instead of metrics.json
    (`k1 train`); it is returned as a failed run rather than reported missing.
    """
    def present(d: Path) -> bool:
        return (d / "metrics.json").is_file() or (d / "failure.json").is_file()

    missing = [run_dir(runs, v, s) / "metrics.json" for v in variants for s in seeds if not present(run_dir(runs, v, s))]
    if missing:
        listing = "\n  ".join(str(p) for p in missing)
        raise K1Error(
            f"{len(missing)} of {len(variants) * len(seeds)} runs are missing (no metrics.json):\n  {listing}\n"
            "run `k1 train` for them (or the pipeline), or remove them from experiment.variants/seeds"
        )
    records = []
    for v in variants:
        for s in seeds:
            d = run_dir(runs, v, s)
            if (d / "metrics.json").is_file():
                metrics = _read_json(d / "metrics.json")
                status = str(metrics.get("status", "completed"))
            else:
                metrics = _read_json(d / "failure.json")
                status = str(metrics.get("status", "failed"))
                status = "failed" if status == "completed" else status
            attr_path = d / "attribution.json"
            attribution = _read_json(attr_path) if attr_path.is_file() else None
            records.append(RunRecord(v, s, d, status, metrics, attribution))
    return records


def _scalar(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    raise DataError(f"{where} must be a number or null, got {value!r}")


def tidy_table(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Long table (variant, seed, metric, value) of completed runs; null scalars stay as NaN rows.

    Failed runs are not in the table (their scalars are not trustworthy); `aggregate`
    lists them in summary.json and in the table notes.
    """
    rows: list[tuple[str, int, str, float]] = []
    for rec in records:
        if not rec.completed:
            continue
        for source, doc in (("metrics.json", rec.metrics), ("attribution.json", rec.attribution)):
            if doc is None:
                continue
            scalars = doc.get("scalars")
            if not isinstance(scalars, Mapping):
                raise DataError(f"{rec.path / source} has no `scalars` object (flat metric → number)")
            for name, value in scalars.items():
                rows.append((rec.variant, rec.seed, str(name), _scalar(value, f"{rec.path / source}: scalars.{name}")))
    df = pd.DataFrame(rows, columns=["variant", "seed", "metric", "value"])
    dup = df.duplicated(["variant", "seed", "metric"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise DataError(
            f"metric {first.metric!r} appears in both metrics.json and attribution.json of "
            f"{first.variant}/seed{first.seed}; scalar names must be unique per run"
        )
    df["seed"] = df["seed"].astype(int)
    return df


def _metric_order(metrics: Iterable[str]) -> list[str]:
    """Registry order first (it groups related metrics), then the rest alphabetically."""
    present = set(metrics)
    known = [m for m in METRIC_INFO if m in present]
    return known + sorted(present - set(known))


# --------------------------------------------------------------------------- statistics


def iqm(x: np.ndarray, axis: int | None = -1) -> np.ndarray | float:
    """Interquartile mean: mean of the middle 50% (25% trimmed each side), as in rliable."""
    return stats.trim_mean(x, 0.25, axis=axis)


def _cell_rng(rng_seed: int, *keys: str) -> np.random.Generator:
    """A generator per (metric, variant, …) cell, so adding a metric never shifts other CIs."""
    return np.random.default_rng([rng_seed, *(zlib.crc32(k.encode()) for k in keys)])


def stratified_bootstrap(
    samples: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    rng: np.random.Generator,
    resamples: int,
) -> np.ndarray:
    """Bootstrap distribution of `statistic` with every stratum resampled independently.

    `samples[k]` are the per-seed values of stratum k (a variant); each resample draws
    len(samples[k]) values with replacement from stratum k only. `statistic` receives one
    (resamples, n_k) array per stratum and returns (resamples,) values.
    """
    draws = []
    for x in samples:
        x = np.asarray(x, dtype=float)
        if x.size == 0:
            raise ValueError("stratified_bootstrap: empty stratum")
        draws.append(x[rng.integers(0, x.size, size=(resamples, x.size))])
    return np.asarray(statistic(*draws), dtype=float)


def bootstrap_ci(
    x: np.ndarray,
    statistic: Callable[..., np.ndarray],
    rng: np.random.Generator,
    resamples: int,
    confidence: float,
) -> tuple[float, float]:
    """Percentile bootstrap CI of a one-sample statistic (axis=1 aware); NaN for n < 2."""
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return math.nan, math.nan
    dist = stratified_bootstrap([x], lambda a: statistic(a, axis=1), rng, resamples)
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(dist, [tail, 100.0 - tail])
    return float(lo), float(hi)


def describe(x: np.ndarray, rng: np.random.Generator, resamples: int, confidence: float) -> dict[str, float]:
    """n, mean, std (ddof 1), median, IQM and bootstrap CIs of mean, median and IQM."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    out: dict[str, float] = {"n": int(x.size)}
    if x.size == 0:
        out.update({k: math.nan for k in ("mean", "std", "ci_low", "ci_high", "median", "median_ci_low",
                                          "median_ci_high", "iqm", "iqm_ci_low", "iqm_ci_high")})
        return out
    out["mean"] = float(x.mean())
    out["std"] = float(x.std(ddof=1)) if x.size > 1 else math.nan
    out["ci_low"], out["ci_high"] = bootstrap_ci(x, np.mean, rng, resamples, confidence)
    out["median"] = float(np.median(x))
    out["median_ci_low"], out["median_ci_high"] = bootstrap_ci(x, np.median, rng, resamples, confidence)
    out["iqm"] = float(iqm(x, axis=None))
    out["iqm_ci_low"], out["iqm_ci_high"] = bootstrap_ci(x, iqm, rng, resamples, confidence)
    return out


def summarise(tidy: pd.DataFrame, cfg: AnalysisConfig) -> pd.DataFrame:
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


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values; NaN entries are not part of the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    mask = ~np.isnan(p)
    q = p[mask]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * q[order])
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[mask] = res
    return out


def hedges_g(x: np.ndarray, y: np.ndarray) -> float:
    """Unpaired Hedges' g = J · (mean x − mean y) / s_pooled, J = 1 − 3 / (4(nx + ny) − 9).

    s_pooled = sqrt(((nx−1)s_x² + (ny−1)s_y²) / (nx + ny − 2)) with ddof-1 variances
    (Hedges 1981). NaN when undefined (n < 2 in a group, or zero pooled SD).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    nx, ny = x.size, y.size
    if nx < 2 or ny < 2:
        return math.nan
    sp = math.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))
    if sp == 0.0:
        return math.nan
    j = 1.0 - 3.0 / (4.0 * (nx + ny) - 9.0)
    return float(j * (x.mean() - y.mean()) / sp)


def hedges_g_paired(x: np.ndarray, y: np.ndarray) -> float:
    """Paired Hedges' g_z = J · mean(d) / sd(d), d = x − y, J = 1 − 3 / (4(n − 1) − 1).

    Cohen's d_z with the small-sample correction for df = n − 1 (Lakens 2013). It is
    larger than the unpaired g when seeds are positively correlated across variants.
    NaN when n < 3 (J undefined) or sd(d) = 0.
    """
    d = np.asarray(x, float) - np.asarray(y, float)
    n = d.size
    if n < 3:
        return math.nan
    sd = d.std(ddof=1)
    if sd == 0.0:
        return math.nan
    j = 1.0 - 3.0 / (4.0 * (n - 1) - 1.0)
    return float(j * d.mean() / sd)


def probability_of_improvement(x: np.ndarray, y: np.ndarray, direction: str = "lower") -> float:
    """P(X better than Y) + ½ P(X = Y) over all pairs of runs (rliable's metric).

    "Better" is X < Y for lower-is-better metrics, X > Y for higher-is-better ones.
    Works on the last axis, so bootstrap arrays of shape (B, n) give B values.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if direction not in ("lower", "higher"):
        raise ValueError(f"direction must be 'lower' or 'higher', got {direction!r}")
    diff = x[..., :, None] - y[..., None, :]
    better = diff < 0 if direction == "lower" else diff > 0
    return np.mean(better + 0.5 * (diff == 0), axis=(-2, -1))


def wilcoxon_test(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank on x − y, honest about what small n can show.

    Zero differences are dropped (scipy's default "wilcox"), so the effective n is the
    number of non-zero differences; the smallest p an exact two-sided test can give is
    2 / 2**n_nonzero (0.25 at n = 3, 0.0625 at n = 5). All differences zero ⇒ p = 1.
    """
    d = np.asarray(x, float) - np.asarray(y, float)
    n_nonzero = int(np.count_nonzero(d))
    out: dict[str, Any] = {"stat": math.nan, "p": math.nan, "n_nonzero": n_nonzero,
                           "min_p": min(1.0, 2.0 ** (1 - n_nonzero)) if n_nonzero else 1.0, "note": ""}
    if d.size == 0:
        out["note"] = "no paired seeds"
        return out
    if n_nonzero == 0:
        out.update(stat=0.0, p=1.0, note="all paired differences are zero")
        return out
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    out.update(stat=float(res.statistic), p=float(res.pvalue))
    if n_nonzero < 6:
        out["note"] = f"n={n_nonzero} non-zero differences: smallest attainable p is {out['min_p']:.3g}"
    return out


def _ttest(fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[float, float, float]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = fn(*args, **kw)
    df = getattr(res, "df", math.nan)
    return float(res.statistic), float(res.pvalue), float(df)


def compare(x: np.ndarray, y: np.ndarray, direction: str, x_paired: np.ndarray, y_paired: np.ndarray,
            rng: np.random.Generator, resamples: int, confidence: float) -> dict[str, Any]:
    """All tests of one variant (x) against one reference (y) on one metric.

    x, y: all non-missing values of each; x_paired, y_paired: values on the common seeds,
    in the same seed order. Differences are variant − reference in the metric's units.
    """
    notes = []
    n_pairs = int(x_paired.size)
    d = x_paired - y_paired
    out: dict[str, Any] = {
        "n_pairs": n_pairs, "n_variant": int(x.size), "n_reference": int(y.size),
        "mean_variant": float(x.mean()) if x.size else math.nan,
        "mean_reference": float(y.mean()) if y.size else math.nan,
        "mean_diff": float(d.mean()) if n_pairs else math.nan,
    }
    tail = (1.0 - confidence) / 2.0 * 100.0
    if n_pairs >= 2:
        dist = stratified_bootstrap([d], lambda a: a.mean(axis=1), rng, resamples)
        out["diff_ci_low"], out["diff_ci_high"] = (float(v) for v in np.percentile(dist, [tail, 100 - tail]))
    else:
        out["diff_ci_low"] = out["diff_ci_high"] = math.nan
    w = wilcoxon_test(x_paired, y_paired)
    out.update(wilcoxon_stat=w["stat"], wilcoxon_p=w["p"], wilcoxon_min_p=w["min_p"])
    if w["note"]:
        notes.append(f"Wilcoxon: {w['note']}")
    if n_pairs >= 2:
        if np.all(d == d[0]):
            notes.append("paired t: zero variance of differences")
        t, p, _ = _ttest(stats.ttest_rel, x_paired, y_paired)
        out.update(ttest_paired_stat=t, ttest_paired_p=p)
    else:
        out.update(ttest_paired_stat=math.nan, ttest_paired_p=math.nan)
    if x.size >= 2 and y.size >= 2:
        t, p, df = _ttest(stats.ttest_ind, x, y, equal_var=False)
        out.update(welch_stat=t, welch_df=df, welch_p=p)
    else:
        out.update(welch_stat=math.nan, welch_df=math.nan, welch_p=math.nan)
    out["hedges_g"] = hedges_g(x, y)
    out["hedges_g_paired"] = hedges_g_paired(x_paired, y_paired)
    if x.size and y.size:
        out["poi"] = float(probability_of_improvement(x, y, direction))
        if x.size >= 2 and y.size >= 2:
            dist = stratified_bootstrap([x, y], lambda a, b: probability_of_improvement(a, b, direction),
                                        rng, resamples)
            out["poi_ci_low"], out["poi_ci_high"] = (float(v) for v in np.percentile(dist, [tail, 100 - tail]))
        else:
            out["poi_ci_low"] = out["poi_ci_high"] = math.nan
    else:
        out["poi"] = out["poi_ci_low"] = out["poi_ci_high"] = math.nan
    if n_pairs < 2:
        notes.append(f"only {n_pairs} paired seed(s): paired tests undefined")
    out["note"] = "; ".join(notes)
    return out


_COMPARISON_COLUMNS = [
    "reference", "variant", "metric", "direction", "n_pairs", "n_variant", "n_reference",
    "mean_variant", "mean_reference", "mean_diff", "diff_ci_low", "diff_ci_high",
    "wilcoxon_stat", "wilcoxon_p", "wilcoxon_p_holm", "wilcoxon_min_p", "wilcoxon_min_p_holm",
    "ttest_paired_stat", "ttest_paired_p", "ttest_paired_p_holm",
    "welch_stat", "welch_df", "welch_p", "welch_p_holm",
    "hedges_g", "hedges_g_paired", "poi", "poi_ci_low", "poi_ci_high",
    "holm_family_size", "significant", "better", "note",
]


def comparisons(tidy: pd.DataFrame, cfg: AnalysisConfig) -> tuple[pd.DataFrame, list[str]]:
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


# --------------------------------------------------------------------------- formatting


def fmt_num(x: Any, digits: int = 4) -> str:
    """A number as the tables and the paper print it ("n/a" for missing)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}"


def fmt_p(p: Any) -> str:
    """p-values: 3 significant digits, "<0.001" below that."""
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return "n/a"
    return "<0.001" if p < 1e-3 else f"{float(p):.3g}"


def fmt_ci(mean: Any, lo: Any, hi: Any) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return fmt_num(mean)
    return f"{fmt_num(mean)} [{fmt_num(lo)}, {fmt_num(hi)}]"


_NUMERIC_CELL = re.compile(r"^(n/a|[-+<]?\d.*)$")


def _is_numeric_column(col: pd.Series) -> bool:
    """Right-align a column whose cells all look like numbers (or n/a)."""
    return bool(len(col)) and all(_NUMERIC_CELL.match(str(v)) for v in col)


def markdown_table(df: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """A GitHub-flavoured Markdown table of string cells, then notes as a list."""
    cells = df.astype(str).map(lambda s: s.replace("|", "\\|").replace("\n", " "))
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    align = "|" + "|".join("---:" if _is_numeric_column(df[c]) else ":---" for c in df.columns) + "|"
    lines = [header, align] + ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    if df.empty:
        lines.append("| " + " | ".join("" for _ in df.columns) + " |")
    out = "\n".join(lines) + "\n"
    if notes:
        out += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return out


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}",
                  # non-ASCII symbols the tables use, so pdflatex needs no extra packages
                  "↓": r"$\downarrow$", "↑": r"$\uparrow$", "−": "-", "×": r"$\times$", "ρ": r"$\rho$",
                  "Δ": r"$\Delta$", "≥": r"$\geq$", "≤": r"$\leq$", "‖": r"$\|$"}


def _tex(s: Any) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(s))


def latex_table(df: pd.DataFrame, caption: str, label: str, notes: Sequence[str] = ()) -> str:
    """A booktabs table (\\usepackage{booktabs}, and graphicx for wide ones); hand-formatted, no jinja2 needed."""
    spec = "".join("r" if _is_numeric_column(df[c]) else "l" for c in df.columns)
    wide = len(df.columns) > 8  # scale wide tables to the line width (needs \usepackage{graphicx})
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{_tex(caption)}}}",
             rf"\label{{{label}}}"] + ([r"\resizebox{\linewidth}{!}{%"] if wide else []) + [
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_tex(c) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex(v) for v in row) + r" \\" for row in df.astype(str).itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"] + (["}"] if wide else [])
    if notes:
        lines.append(r"\par\footnotesize " + " ".join(_tex(n) for n in notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.10g", lineterminator="\n")


def _write_table(tables: Path, name: str, csv_df: pd.DataFrame, show_df: pd.DataFrame, caption: str,
                 notes: Sequence[str], written: list[Path]) -> None:
    _write_csv(tables / f"{name}.csv", csv_df)
    write_text(tables / f"{name}.md", f"**{caption}**\n\n" + markdown_table(show_df, notes))
    write_text(tables / f"{name}.tex", latex_table(show_df, caption, f"tab:{name}", notes))
    written += [tables / f"{name}.{ext}" for ext in ("csv", "md", "tex")]


def _summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "metric": summary.metric, "variant": summary.variant,
        "better": summary.direction.map({"lower": "lower", "higher": "higher"}),
        "n": summary.n.astype(int).astype(str),
        "mean [95% CI]": [fmt_ci(r.mean, r.ci_low, r.ci_high) for r in summary.itertuples()],
        "std": summary["std"].map(fmt_num),
        "median [CI]": [fmt_ci(r.median, r.median_ci_low, r.median_ci_high) for r in summary.itertuples()],
        "IQM [CI]": [fmt_ci(r.iqm, r.iqm_ci_low, r.iqm_ci_high) for r in summary.itertuples()],
    })


def _group_display(summary: pd.DataFrame, metrics: Sequence[str], variants: Sequence[str], n_seeds: int) -> pd.DataFrame:
    """Variants as rows, metrics as columns, cells "mean [CI]" (n shown when below the seed count)."""
    out = {"variant": list(variants)}
    for m in metrics:
        col = []
        for v in variants:
            r = summary[(summary.metric == m) & (summary.variant == v)].iloc[0]
            cell = fmt_ci(r["mean"], r["ci_low"], r["ci_high"])
            if 0 < r["n"] < n_seeds:
                cell += f" (n={int(r['n'])})"
            col.append(cell)
        arrow = "↓" if metric_info(m)[0].direction == "lower" else "↑"
        out[f"{m} {arrow}"] = col
    return pd.DataFrame(out)


def _comparison_display(comp: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "reference": comp.reference, "variant": comp.variant, "metric": comp.metric,
        "n": comp.n_pairs.astype(int).astype(str),
        "diff [95% CI]": [fmt_ci(r.mean_diff, r.diff_ci_low, r.diff_ci_high) for r in comp.itertuples()],
        "Wilcoxon p": comp.wilcoxon_p.map(fmt_p), "Wilcoxon p (Holm)": comp.wilcoxon_p_holm.map(fmt_p),
        "paired t p": comp.ttest_paired_p.map(fmt_p), "paired t p (Holm)": comp.ttest_paired_p_holm.map(fmt_p),
        "Welch p": comp.welch_p.map(fmt_p), "Welch p (Holm)": comp.welch_p_holm.map(fmt_p),
        "g": comp.hedges_g.map(lambda v: fmt_num(v, 3)), "g_z": comp.hedges_g_paired.map(lambda v: fmt_num(v, 3)),
        "P(improve) [CI]": [fmt_ci(r.poi, r.poi_ci_low, r.poi_ci_high) for r in comp.itertuples()],
        "better": comp.better,
    })


def _json_clean(obj: Any) -> Any:
    """NaN/inf → None recursively; numpy scalars → Python (summary.json stays strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


# --------------------------------------------------------------------------- the command


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
    _write_csv(out / "tidy.csv", tidy)
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

    conf_pct = f"{cfg.confidence * 100:g}%"
    base_notes = [f"mean [{conf_pct} percentile bootstrap CI over seeds, {cfg.bootstrap_resamples} resamples, "
                  f"rng_seed {cfg.rng_seed}]; n = seeds with a value"] + notes
    tables = out / "tables"
    _write_table(tables, "summary", summary, _summary_display(summary),
                 "Per-metric summary across seeds", base_notes, written)
    comp_notes_tbl = [
        f"diff = variant − reference; Holm families: {HOLM_FAMILIES[cfg.holm_family]}; "
        f"'better' uses the Holm-adjusted {TEST_NAMES[cfg.primary_test]} p < {cfg.alpha:g}",
        "g: unpaired Hedges' g (pooled SD); g_z: paired Hedges' g on the seed-wise differences; "
        "P(improve): probability that a run of the variant beats a run of the reference (direction-aware)",
        f"with n paired seeds the smallest two-sided Wilcoxon p is 2/2^n ({fmt_p(2.0 ** (1 - len(cfg.seeds)))} "
        f"at n={len(cfg.seeds)}), and the smallest Holm-adjusted one m times that in a family of m tests "
        f"(column wilcoxon_min_p_holm of comparisons.csv)",
    ] + notes
    _write_table(tables, "comparisons", comp, _comparison_display(comp),
                 "Paired comparisons against the reference variants", comp_notes_tbl, written)
    # key metrics only, and each pair of references once (in the family of the earlier reference)
    ref_rank = {r: i for i, r in enumerate(cfg.references)}
    dup = comp.variant.map(lambda v: ref_rank.get(v, len(ref_rank))) < comp.reference.map(ref_rank)
    key = comp[comp.metric.isin(KEY_METRICS) & ~dup]
    _write_table(tables, "comparisons_key", key, _comparison_display(key),
                 "Key comparisons against the reference variants", comp_notes_tbl, written)
    for group, caption in TABLE_GROUPS.items():
        sub = summary[summary.group == group]
        metrics = list(dict.fromkeys(sub.metric))
        gnotes = [f"cells: mean [{conf_pct} bootstrap CI]; ↓ lower is better, ↑ higher is better"]
        gnotes += [n for n in notes if any(m in n for m in metrics) or n.startswith("failed")]
        if not metrics:
            gnotes.append(f"no {group} metrics in the runs")
        _write_table(tables, group, sub, _group_display(summary, metrics, cfg.variants, len(cfg.seeds)),
                     caption, gnotes, written)

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
    doc = _json_clean(doc)
    write_json(out / "summary.json", doc)  # the DVC metrics file: per variant × metric, small enough to show
    write_json(out / "comparisons.json", _json_clean(nested))
    written += [out / "summary.json", out / "comparisons.json"]
    return {**doc, "comparisons": _json_clean(nested), "written": [str(p) for p in written]}


def load_summary(results: str | Path) -> dict[str, Any]:
    """summary.json with the paired comparisons (comparisons.json) under the key `comparisons`."""
    results = Path(results)
    doc = _read_json(results / "summary.json")
    comparisons = results / "comparisons.json"
    doc["comparisons"] = _read_json(comparisons) if comparisons.is_file() else {}
    return doc


def cli_aggregate(args: argparse.Namespace) -> int:
    result = aggregate(args.params, args.runs, args.out)
    for path in result["written"]:
        print(path)
    if result["failed_runs"]:
        print(f"note: {len(result['failed_runs'])} failed run(s) excluded; see summary.json failed_runs")
    return 0
