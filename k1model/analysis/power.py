"""What a paired comparison that found no significant difference could have found.

"No significant difference" with n = 3 seeds says little: the study may have been unable to see
any effect of interest. For every paired comparison this module reports

- the **minimum detectable effect** (MDE): the smallest true mean difference the two-sided paired
  t-test detects with 80 % power at the given level, with the observed standard deviation of the
  paired differences (the exact power from scipy's noncentral t distribution, solved with brentq;
  statsmodels' `TTestPower.solve_power` returns its search bracket instead of the root at n <= 3
  and small alpha, so it is not used here);
- the **runs needed**: how many pairs the same test would need for 80 % power against the observed
  mean difference, at the observed standard deviation;
- a **TOST equivalence test** (two one-sided t-tests, statsmodels' `ttost_paired`) of
  |mean difference| < m against a margin m declared in params before any run. A small TOST p
  says the difference lies within ±m; a large one says the data cannot tell.

The level used for the power calculations is the Holm-adjusted one a claim must beat in the worst
case, alpha / m for a family of m tests (the first step of Holm's procedure), so the MDE is what the
study's own multiplicity correction lets it detect. Pure statistics: no I/O, no formatting.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import optimize, stats

POWER = 0.8


def _paired(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    return d[~np.isnan(d)]


def paired_t_power(delta: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test (n pairs, level alpha) against a true mean difference delta."""
    df, nc = n - 1, abs(delta) / sd * math.sqrt(n)
    crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    upper = float(stats.nct.sf(crit, df, nc))
    lower = float(np.nan_to_num(stats.nct.cdf(-crit, df, nc)))  # scipy gives NaN far in this negligible tail
    return upper + lower


def minimum_detectable_effect(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """The smallest |mean difference| a two-sided paired t-test with n pairs at `alpha` detects with
    `power`, for differences of standard deviation `sd`. 0 when sd = 0; NaN when n < 2."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0.0:
        return 0.0
    hi = sd
    while paired_t_power(hi, sd, n, alpha) < power:  # power grows with the difference: bracket the root
        hi *= 2.0
        if hi > 1e9 * sd:
            return math.nan
    return float(optimize.brentq(lambda d: paired_t_power(d, sd, n, alpha) - power, 0.0, hi, xtol=1e-12 * sd,
                                 rtol=1e-10))


def runs_needed(mean_diff: float, sd: float, alpha: float, power: float = POWER, cap: int = 100_000) -> float:
    """Pairs a two-sided paired t-test at `alpha` needs for `power` against `mean_diff` with SD `sd`
    (the smallest such n). inf when the difference is 0 or more than `cap` pairs would be needed."""
    if not (math.isfinite(mean_diff) and math.isfinite(sd)):
        return math.nan
    if mean_diff == 0.0:
        return math.inf
    if sd == 0.0:
        return 2.0
    lo, hi = 2, 2
    while paired_t_power(mean_diff, sd, hi, alpha) < power:
        if hi >= cap:
            return math.inf
        lo, hi = hi, min(hi * 2, cap)
    while lo < hi:  # smallest n with enough power (power grows with n)
        mid = (lo + hi) // 2
        if paired_t_power(mean_diff, sd, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return float(hi)


def tost_paired(x: np.ndarray, y: np.ndarray, margin: float) -> float:
    """p-value of the TOST test of equivalence |mean(x − y)| < margin (paired); NaN when undefined.

    With zero variance of the differences the answer is exact: 0 when |mean| < margin, else 1."""
    from statsmodels.stats.weightstats import ttost_paired

    d = _paired(x, y)
    if d.size < 2 or not (math.isfinite(margin) and margin > 0):
        return math.nan
    if float(d.std(ddof=1)) == 0.0:
        return 0.0 if abs(float(d.mean())) < margin else 1.0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        p = ttost_paired(np.asarray(x, float), np.asarray(y, float), -margin, margin)[0]
    return float(p)


def power_summary(x: np.ndarray, y: np.ndarray, alpha: float, margin: float | None) -> dict[str, float]:
    """MDE, runs needed and TOST p of one paired comparison (x − y), at the level `alpha`."""
    d = _paired(x, y)
    n = int(d.size)
    sd = float(d.std(ddof=1)) if n >= 2 else math.nan
    mean = float(d.mean()) if n else math.nan
    return {
        "diff_sd": sd,
        "mde": minimum_detectable_effect(sd, n, alpha),
        "runs_needed": runs_needed(mean, sd, alpha) if n >= 2 else math.nan,
        "power_alpha": alpha,
        "equivalence_margin": math.nan if margin is None else float(margin),
        "tost_p": math.nan if margin is None else tost_paired(x, y, margin),
    }
