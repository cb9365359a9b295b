"""Pure statistics across runs and agents, in the spirit of rliable: no I/O, no formatting.

Per-seed summaries (mean, median, IQM with intervals that keep their coverage at small n:
`intervals.py`), paired comparisons (Wilcoxon, paired t with its t-interval, Welch, Hedges' g,
probability of improvement with a stratified-bootstrap CI, Holm's correction), and the rank and
information measures the attribution probes use (Spearman ρ, entropy, NMI and its permutation
test, agreement of repeated choices).
"""
from __future__ import annotations

import math
import warnings
import zlib
from collections import Counter
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from scipy import stats

from k1model.analysis.intervals import CONSTANT_RTOL, is_constant, mean_interval, median_interval, trimmed_mean_interval

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

def describe(x: np.ndarray, rng: np.random.Generator | None = None, resamples: int = 0,
             confidence: float = 0.95) -> dict[str, float]:
    """n, mean, std (ddof 1), median and IQM with their intervals (`intervals.py`): Hall's skewness-corrected
    t-interval for the mean, Yuen's trimmed-mean interval for the IQM, the order-statistic interval for the
    median with its exact coverage (`median_ci_coverage`, below `confidence` when n is too small to reach it).
    `rng` and `resamples` are accepted for callers of the bootstrap era and unused."""
    x = np.asarray(x, dtype=float)
    x = x[~np.isnan(x)]
    out: dict[str, float] = {"n": int(x.size)}
    if x.size == 0:
        out.update({k: math.nan for k in ("mean", "std", "ci_low", "ci_high", "median", "median_ci_low",
                                          "median_ci_high", "median_ci_coverage", "iqm", "iqm_ci_low",
                                          "iqm_ci_high")})
        return out
    out["mean"] = float(x.mean())
    out["std"] = float(x.std(ddof=1)) if x.size > 1 else math.nan
    out["ci_low"], out["ci_high"] = mean_interval(x, confidence)
    out["median"] = float(np.median(x))
    out["median_ci_low"], out["median_ci_high"], out["median_ci_coverage"] = median_interval(x, confidence)
    out["iqm"] = float(iqm(x, axis=None))
    out["iqm_ci_low"], out["iqm_ci_high"] = trimmed_mean_interval(x, confidence)
    return out

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
    if is_constant(x) and is_constant(y):  # both constant up to float noise: no spread to scale by
        return math.nan
    j = 1.0 - 3.0 / (4.0 * (nx + ny) - 9.0)
    return float(j * (x.mean() - y.mean()) / sp)

def hedges_g_paired(x: np.ndarray, y: np.ndarray) -> float:
    """Paired Hedges' g_z = J · mean(d) / sd(d), d = x − y, J = 1 − 3 / (4(n − 1) − 1).

    Cohen's d_z with the small-sample correction for df = n − 1 (Lakens 2013). It is
    larger than the unpaired g when seeds are positively correlated across variants.
    NaN when n < 3 (J undefined) or sd(d) = 0.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    d = x - y
    n = d.size
    if n < 3:
        return math.nan
    sd = d.std(ddof=1)
    if is_constant(d, _scale(x, y)):
        return math.nan
    j = 1.0 - 3.0 / (4.0 * (n - 1) - 1.0)
    return float(j * d.mean() / sd)


def _scale(*arrays: np.ndarray) -> float:
    """The size of the values compared: what float noise in their differences is relative to."""
    finite = [np.abs(a[np.isfinite(a)]) for a in map(np.asarray, arrays) if np.size(a)]
    return float(max((f.max() for f in finite if f.size), default=0.0))


def zero_noise(d: np.ndarray, scale: float) -> np.ndarray:
    """Differences within float noise of 0 (|d| <= CONSTANT_RTOL · scale) set to exactly 0."""
    d = np.asarray(d, dtype=float).copy()
    d[np.abs(d) <= CONSTANT_RTOL * max(scale, np.finfo(float).tiny)] = 0.0
    return d

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

    Zero differences are dropped (scipy's default "wilcox"; a difference within float noise of 0, relative
    to the values' size, counts as zero), so the effective n is the number of non-zero differences; the
    p-value is exact without ties among them and from the exact sign-flip distribution with ties; the
    smallest p an exact two-sided test can give is 2 / 2**n_nonzero (0.25 at n = 3, 0.0625 at n = 5).
    All differences zero ⇒ p = 1.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    d = zero_noise(x - y, _scale(x, y))
    n_nonzero = int(np.count_nonzero(d))
    out: dict[str, Any] = {"stat": math.nan, "p": math.nan, "n_nonzero": n_nonzero,
                           "min_p": min(1.0, 2.0 ** (1 - n_nonzero)) if n_nonzero else 1.0, "note": ""}
    if d.size == 0:
        out["note"] = "no paired seeds"
        return out
    if n_nonzero == 0:
        out.update(stat=0.0, p=1.0, note="all paired differences are zero")
        return out
    nonzero = d[d != 0]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if np.unique(np.abs(nonzero)).size == nonzero.size or nonzero.size > 16:  # exact, or large-n normal
            res = stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
            out.update(stat=float(res.statistic), p=float(res.pvalue))
        else:  # ties at small n: the exact sign-flip distribution of W+ with mid-ranks (scipy's default here
            out.update(_wilcoxon_ties_exact(nonzero))  # runs the same test with an unvectorised statistic)
    if n_nonzero < 6:
        out["note"] = f"n={n_nonzero} non-zero differences: smallest attainable p is {out['min_p']:.3g}"
    return out

def _wilcoxon_ties_exact(d: np.ndarray) -> dict[str, float]:
    """Exact two-sided signed-rank test of non-zero differences with ties: every one of the 2^n sign flips
    (scipy.stats.permutation_test), W+ = sum of the mid-ranks of |d| where d > 0; stat = min(W+, W−)."""
    ranks = stats.rankdata(np.abs(d))

    def w_plus(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        return ((sample > 0) * ranks).sum(axis=axis)

    res = stats.permutation_test((d,), w_plus, permutation_type="samples", vectorized=True, n_resamples=np.inf,
                                 alternative="two-sided")
    w = float(w_plus(d))
    return {"stat": min(w, float(ranks.sum()) - w), "p": float(res.pvalue)}


def _ttest(fn: Callable[..., Any], *args: Any, **kw: Any) -> tuple[float, float, float]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = fn(*args, **kw)
    df = getattr(res, "df", math.nan)
    return float(res.statistic), float(res.pvalue), float(df)

def paired_difference(d: np.ndarray, blocks: Sequence[Any] | None = None, confidence: float = 0.95,
                      scale: float | None = None) -> dict[str, Any]:
    """The mean of paired differences over independent units, with the domain order as a block.

    Without blocks (or one): the paired t-test, mean d̄, se = s/√n, df = n − 1. With k > 1 blocks (units are
    runs of different orders, each its own initialisation): the estimate is the mean of the block means (each
    order weighted equally) and its standard error comes from the pooled within-block variance,
    se = s_w · √(Σ 1/n_b) / k with df = n − k, so a difference between orders is neither noise nor signal (a
    randomised-block analysis with fixed order effects). The t-interval is the one the test inverts.

    Zero variance up to float noise (relative to `scale`, default the differences' size): the t-test is undefined
    (rounding noise would give p = 1e-142). p = 1 when the mean is 0 (within the noise); otherwise p is the
    exact two-sided sign test's over the units (2 / 2^n when all differ in the same direction) -- what n units
    can show without a variance (a discrete metric can repeat one value in a few runs without being constant)."""
    d = np.asarray(d, dtype=float)
    keep = ~np.isnan(d)
    d = d[keep]
    labels = None if blocks is None else np.asarray(list(blocks), dtype=object)[keep]
    n = int(d.size)
    out: dict[str, Any] = {"n": n, "blocks": 1, "mean_diff": math.nan, "diff_se": math.nan, "diff_df": math.nan,
                           "diff_sd": math.nan, "t": math.nan, "p": math.nan, "ci_low": math.nan,
                           "ci_high": math.nan, "note": ""}
    if n == 0:
        return out
    groups = [d] if labels is None else [d[labels == b] for b in dict.fromkeys(labels.tolist())]
    k = len(groups)
    means = np.array([g.mean() for g in groups])
    mean = float(means.mean())
    out.update(blocks=k, mean_diff=mean)
    df = n - k
    if df < 1:
        out["note"] = f"{n} unit(s) in {k} block(s): no degrees of freedom left for the variance"
        return out
    residual = np.concatenate([g - g.mean() for g in groups])
    var_w = float(np.sum(residual ** 2) / df)
    size = float(np.max(np.abs(d))) if scale is None else float(scale)
    se = math.sqrt(var_w * sum(1.0 / g.size for g in groups)) / k
    out.update(diff_df=float(df), diff_sd=math.sqrt(var_w), diff_se=se)
    crit = float(stats.t.ppf(0.5 + confidence / 2.0, df))
    if is_constant(residual, size):
        zero = is_constant(np.append(means, 0.0), size)
        out.update(diff_se=0.0, diff_sd=0.0, t=0.0 if zero else math.copysign(math.inf, mean),
                   p=1.0 if zero else _sign_test(zero_noise(d, size)), ci_low=mean, ci_high=mean,
                   note="zero variance of the differences (within float noise): "
                        + ("no difference" if zero else "a constant difference, p from the exact sign test"))
        return out
    t = mean / se
    out.update(t=t, p=float(2.0 * stats.t.sf(abs(t), df)), ci_low=mean - crit * se, ci_high=mean + crit * se)
    return out


def _sign_test(d: np.ndarray) -> float:
    """Exact two-sided sign test of the non-zero differences (1 when there are none)."""
    nonzero = d[d != 0]
    if not nonzero.size:
        return 1.0
    return float(stats.binomtest(int((nonzero > 0).sum()), int(nonzero.size)).pvalue)


def compare(x: np.ndarray, y: np.ndarray, direction: str, x_paired: np.ndarray, y_paired: np.ndarray,
            rng: np.random.Generator, resamples: int, confidence: float,
            blocks: Sequence[Any] | None = None) -> dict[str, Any]:
    """All tests of one variant (x) against one reference (y) on one metric, over independent units.

    x, y: every unit's value of each (a unit is one initialisation: `analysis/units.py`); x_paired,
    y_paired: the units both have, in the same order, with `blocks` their domain orders when units of
    several orders are pooled. Differences are variant − reference in the metric's units; the primary
    t-test and its interval are `paired_difference` (order as a block); the Wilcoxon signed-rank test takes
    the paired differences (H0: each is symmetric about 0), Welch and Hedges' g the unpaired units. `rng`
    and `resamples` serve the bootstrap CI of the probability of improvement, a descriptive number.
    """
    notes = []
    x, y = np.asarray(x, float), np.asarray(y, float)
    x_paired, y_paired = np.asarray(x_paired, float), np.asarray(y_paired, float)
    n_pairs = int(x_paired.size)
    scale = _scale(x, y)
    pd_ = paired_difference(x_paired - y_paired, blocks, confidence, scale)
    out: dict[str, Any] = {
        "n_pairs": n_pairs, "n_variant": int(x.size), "n_reference": int(y.size),
        "mean_variant": float(x.mean()) if x.size else math.nan,
        "mean_reference": float(y.mean()) if y.size else math.nan,
        "mean_diff": pd_["mean_diff"], "diff_ci_low": pd_["ci_low"], "diff_ci_high": pd_["ci_high"],
        "diff_se": pd_["diff_se"], "diff_df": pd_["diff_df"], "diff_sd": pd_["diff_sd"], "blocks": pd_["blocks"],
    }
    tail = (1.0 - confidence) / 2.0 * 100.0
    w = wilcoxon_test(x_paired, y_paired)
    out.update(wilcoxon_stat=w["stat"], wilcoxon_p=w["p"], wilcoxon_min_p=w["min_p"])
    if w["note"]:
        notes.append(f"Wilcoxon: {w['note']}")
    out.update(ttest_paired_stat=pd_["t"], ttest_paired_p=pd_["p"])
    if pd_["note"]:
        notes.append(f"paired t: {pd_['note']}")
    if x.size >= 2 and y.size >= 2:
        if is_constant(x, scale) and is_constant(y, scale):
            same = is_constant(np.array([x.mean(), y.mean()]), scale)
            out.update(welch_stat=math.nan, welch_df=math.nan, welch_p=1.0 if same else 0.0)
            notes.append("Welch: both samples constant (within float noise)")
        else:
            t, p, df = _ttest(stats.ttest_ind, x, y, equal_var=False)
            out.update(welch_stat=t, welch_df=df, welch_p=p)
    else:
        out.update(welch_stat=math.nan, welch_df=math.nan, welch_p=math.nan)
    out["hedges_g"] = hedges_g(x, y)
    out["hedges_g_paired"] = _hedges_g_units(pd_)
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
        notes.append(f"only {n_pairs} paired unit(s): paired tests undefined")
    out["note"] = "; ".join(notes)
    return out


def _hedges_g_units(pd_: dict[str, Any]) -> float:
    """Paired Hedges' g_z from a `paired_difference`: J · mean / s (s: the within-block SD of the units),
    J = 1 − 3 / (4 df − 1). NaN with zero variance or df < 2."""
    df, sd = pd_["diff_df"], pd_["diff_sd"]
    if not (df >= 2 and sd and math.isfinite(sd)):
        return math.nan
    return float((1.0 - 3.0 / (4.0 * df - 1.0)) * pd_["mean_diff"] / sd)


# ----------------------------------------------------------------- ranks and information


def average_ranks(a: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties get their average rank (scipy.stats.rankdata's default, without importing scipy.stats)."""
    _, inverse, counts = np.unique(np.asarray(a, dtype=np.float64), return_inverse=True, return_counts=True)
    end = np.cumsum(counts)
    return ((end - counts + 1 + end) / 2.0)[inverse.ravel()]

def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman ρ (average ranks for ties) over the pairs where both are finite; NaN if undefined
    (fewer than 2 pairs or a constant side)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(np.corrcoef(average_ranks(a), average_ranks(b))[0, 1])

def blame_stats(blame: Sequence[float], k: int, among: Iterable[int] | None = None) -> dict[str, float] | None:
    """How agent k ranks by blame against `among` (default: every other agent; k itself is ignored there).

    top1: 1 if k's blame is strictly the highest, 1/(1+t) if it ties with t others at the top, else 0.
    auc:  P(blame_k > blame_j) + ½ P(blame_k = blame_j) over the others j.
    rank: mid-rank of k among k and the others (1 = most blamed).
    None when there is no other agent to compare with."""
    blame = np.asarray(blame, dtype=np.float64)
    others = [j for j in (range(len(blame)) if among is None else among) if j != k]
    if not others:
        return None
    b, o = blame[k], blame[others]
    greater, ties, less = int((o > b).sum()), int((o == b).sum()), int((o < b).sum())
    return {"top1": (1.0 / (1 + ties)) if greater == 0 else 0.0,
            "auc": (less + 0.5 * ties) / len(others),
            "rank": 1.0 + greater + 0.5 * ties}

def path_agreement(paths: Sequence[Sequence[int]]) -> float:
    """Probability that two different draws chose the same full path: Σ c(c−1) / (M(M−1))."""
    m = len(paths)
    if m < 2:
        return math.nan
    counts = Counter(tuple(p) for p in paths)
    return float(sum(c * (c - 1) for c in counts.values()) / (m * (m - 1)))

def entropy_bits(labels: Iterable[Any]) -> float:
    """Shannon entropy (bits) of the empirical distribution of `labels`."""
    counts = np.array(list(Counter(labels).values()), dtype=np.float64)
    if counts.sum() == 0:
        return math.nan
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() + 0.0)

def _entropy_nats(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())

def _mutual_info(table: np.ndarray) -> np.ndarray:
    """I(rows; cols) in nats of one table [r, c] or a stack [n, r, c] of tables with equal totals."""
    t = np.asarray(table, dtype=np.float64)
    n = t.sum(axis=(-2, -1), keepdims=True)
    p = t / n
    pr, pc = p.sum(-1, keepdims=True), p.sum(-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / (pr * pc)), 0.0)
    return np.maximum(terms.sum(axis=(-2, -1)), 0.0)

def nmi(table: Sequence[Sequence[float]]) -> float:
    """Normalised mutual information of a contingency table: I(R; C) / ((H(R) + H(C)) / 2).

    Arithmetic-mean normalisation (sklearn's default). 1 = each row label determines the column
    label and vice versa; 0 = independent. 0 when exactly one side is constant; NaN when both are
    (or the table is empty)."""
    t = np.asarray(table, dtype=np.float64)
    total = t.sum()
    if total <= 0:
        return math.nan
    hr, hc = _entropy_nats(t.sum(1) / total), _entropy_nats(t.sum(0) / total)
    denom = 0.5 * (hr + hc)
    if denom <= 0:
        return math.nan
    return float(min(1.0, _mutual_info(t) / denom))

def _tables(rows: np.ndarray, cols_stack: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Contingency tables of `rows` against each row of `cols_stack` [n, len] -> [n, n_rows, n_cols]."""
    n = cols_stack.shape[0]
    idx = (np.arange(n)[:, None] * (n_rows * n_cols) + rows[None, :] * n_cols + cols_stack).ravel()
    return np.bincount(idx, minlength=n * n_rows * n_cols).reshape(n, n_rows, n_cols)

def nmi_permutation_test(rows: Sequence[int], cols: Sequence[int], n_permutations: int, seed: Any,
                         null: str = "shuffle", chunk: int = 200) -> dict[str, Any]:
    """NMI of two label sequences and a Monte-Carlo p-value, p = (1 + #{NMI_null ≥ NMI_obs}) / (1 + n).

    null="shuffle": `cols` permuted across positions (i.i.d. null). null="circular": `rows` rotated
    against `cols` by a uniform offset in 1..len−1 (keeps the autocorrelation of both sequences).
    The marginals are the same under both nulls, so only I changes. Fixed RNG: `seed`."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if rows.shape != cols.shape or rows.ndim != 1:
        raise ValueError("rows and cols must be 1-D label sequences of equal length")
    if null not in ("shuffle", "circular"):
        raise ValueError(f"null must be 'shuffle' or 'circular', got {null!r}")
    _, rows = np.unique(rows, return_inverse=True)
    _, cols = np.unique(cols, return_inverse=True)
    nr, nc, m = int(rows.max(initial=-1)) + 1, int(cols.max(initial=-1)) + 1, len(rows)
    observed = nmi(_tables(rows, cols[None, :], nr, nc)[0]) if m else math.nan
    out: dict[str, Any] = {"nmi": observed, "p": math.nan, "n_permutations": int(n_permutations), "null": null,
                           "null_mean": math.nan, "null_q95": math.nan}
    if not math.isfinite(observed) or m < 2:
        return out
    rng = np.random.default_rng(seed)
    hr = _entropy_nats(np.bincount(rows) / m)
    hc = _entropy_nats(np.bincount(cols) / m)
    denom = 0.5 * (hr + hc)
    null_vals = []
    for start in range(0, n_permutations, chunk):
        n = min(chunk, n_permutations - start)
        if null == "shuffle":
            perm_cols = rng.permuted(np.broadcast_to(cols, (n, m)), axis=1)
            tables = _tables(rows, perm_cols, nr, nc)
        else:
            shifts = rng.integers(1, m, size=n)
            rolled = rows[(np.arange(m)[None, :] + shifts[:, None]) % m]
            idx = (np.arange(n)[:, None] * (nr * nc) + rolled * nc + cols[None, :]).ravel()
            tables = np.bincount(idx, minlength=n * nr * nc).reshape(n, nr, nc)
        null_vals.append(np.minimum(1.0, _mutual_info(tables) / denom))
    null_arr = np.concatenate(null_vals)
    exceed = int((null_arr >= observed - 1e-12).sum())
    out.update(p=(1 + exceed) / (1 + n_permutations), null_mean=float(null_arr.mean()),
               null_q95=float(np.quantile(null_arr, 0.95)))
    return out
