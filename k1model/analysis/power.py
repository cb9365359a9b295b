"""What a paired comparison could have found, and what an equivalence test can find, at the study's n.

"No significant difference" with a handful of initialisations says little: the study may have been unable
to see any effect of interest. Every paired claim therefore reports

- the **minimum detectable effect** (MDE): the smallest true mean difference the two-sided t-test of the
  claim detects with 80 % power at the given level, with the observed standard error of the mean difference
  (exact power from scipy's noncentral t distribution, solved with brentq; statsmodels' `TTestPower.solve_power`
  returns its search bracket instead of the root at n <= 3 and small alpha, so it is not used here);
- the **units needed for a declared effect**: how many initialisations the same test needs for 80 % power
  against the effect declared in the params before any run (`analysis.equivalence_margins`, the smallest
  effect of interest), at the observed standard deviation. Power against the *observed* difference
  ("runs needed") is not reported: it is a function of the p-value and says nothing more (Hoenig & Heisey 2001);
- a **TOST equivalence test** (two one-sided t-tests) of |mean difference| < m against the declared margin m,
  run only where it can succeed: its power at a true difference of 0, at the planned n and the observed
  standard deviation, must be at least 80 % (`tost_power`); otherwise the claim says "no equivalence test
  at this n" and the margin that would have had that power (`margin_for_power`).

Every function takes the standard error and degrees of freedom of the test (a blocked design has df = n − k);
`minimum_detectable_effect(sd, n, alpha)` is the plain paired case (se = sd / √n, df = n − 1). The level
used for power is the Holm-adjusted one a claim must beat in the worst case, alpha / m for a family of m
tests. Pure statistics: no I/O, no formatting.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from k1model.analysis.intervals import is_constant

POWER = 0.8


def _paired(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    return d[~np.isnan(d)]


def t_power(delta: float, se: float, df: float, alpha: float) -> float:
    """Power of a two-sided t-test (standard error `se`, `df` degrees of freedom, level alpha) against a true
    mean difference delta."""
    nc = abs(delta) / se
    crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))
    upper = float(stats.nct.sf(crit, df, nc))
    lower = float(np.nan_to_num(stats.nct.cdf(-crit, df, nc)))  # scipy gives NaN far in this negligible tail
    return upper + lower


def paired_t_power(delta: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test (n pairs, level alpha) against a true mean difference delta."""
    return t_power(delta, sd / math.sqrt(n), n - 1, alpha)


def detectable_effect(se: float, df: float, alpha: float, power: float = POWER) -> float:
    """The smallest |mean difference| a two-sided t-test with standard error `se` and `df` degrees of freedom
    detects at `alpha` with `power`. 0 when se = 0; NaN when df < 1 or se is not finite."""
    if not (df >= 1 and math.isfinite(se)):
        return math.nan
    if se == 0.0:
        return 0.0
    hi = se
    while t_power(hi, se, df, alpha) < power:  # power grows with the difference: bracket the root
        hi *= 2.0
        if hi > 1e9 * se:
            return math.nan
    return float(optimize.brentq(lambda d: t_power(d, se, df, alpha) - power, 0.0, hi, xtol=1e-12 * se, rtol=1e-10))


def minimum_detectable_effect(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """The MDE of a two-sided paired t-test with n pairs of differences of standard deviation `sd`."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    return detectable_effect(sd / math.sqrt(n), n - 1, alpha, power)


def units_for_effect(effect: float, sd: float, alpha: float, blocks: int = 1, power: float = POWER,
                     cap: int = 100_000) -> float:
    """Initialisations a two-sided t-test at `alpha` needs for `power` against a declared `effect`, with units of
    standard deviation `sd` in `blocks` blocks (domain orders; df = n − blocks): the smallest such n, at least
    blocks + 1. inf when more than `cap` would be needed or the effect is 0; NaN when undefined."""
    if not (math.isfinite(effect) and math.isfinite(sd)) or sd < 0:
        return math.nan
    if effect == 0.0:
        return math.inf
    lo = hi = blocks + 1
    if sd == 0.0:
        return float(lo)

    def enough(n: int) -> bool:
        return t_power(effect, sd / math.sqrt(n), n - blocks, alpha) >= power

    while not enough(hi):
        if hi >= cap:
            return math.inf
        lo, hi = hi, min(hi * 2, cap)
    while lo < hi:  # smallest n with enough power (power grows with n)
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid + 1, hi)
    return float(hi)


def tost_p(mean: float, se: float, df: float, margin: float) -> float:
    """p-value of the TOST test of |true mean| < margin from an estimate `mean` with standard error `se`:
    max of the two one-sided t-tests. With se = 0 the answer is exact: 0 when |mean| < margin, else 1."""
    if not (math.isfinite(mean) and math.isfinite(margin) and margin > 0 and df >= 1):
        return math.nan
    if se == 0.0:
        return 0.0 if abs(mean) < margin else 1.0
    lower = float(stats.t.sf((mean + margin) / se, df))  # H0: mean <= -margin
    upper = float(stats.t.cdf((mean - margin) / se, df))  # H0: mean >= margin
    return max(lower, upper)


def tost_paired(x: np.ndarray, y: np.ndarray, margin: float) -> float:
    """p-value of the TOST test of equivalence |mean(x − y)| < margin (paired); NaN when undefined.
    Zero variance of the differences (within float noise) is exact: 0 when |mean| < margin, else 1."""
    d = _paired(x, y)
    if d.size < 2:
        return math.nan
    size = float(np.nanmax(np.abs(np.concatenate([np.ravel(x), np.ravel(y)]).astype(float))))
    se = 0.0 if is_constant(d, size) else float(d.std(ddof=1)) / math.sqrt(d.size)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return tost_p(float(d.mean()), se, d.size - 1, margin)


def tost_power(margin: float, se: float, df: float, alpha: float) -> float:
    """Power of the TOST test (each one-sided test at `alpha`) to show |difference| < margin when the true
    difference is 0, for an estimate with standard error `se` estimated on `df` degrees of freedom.

    TOST rejects when |d̂| < margin − c·ŝe, c = t_{1−α, df}; d̂ ~ N(0, se²) and ŝe = se·√(V/df) with
    V ~ χ²_df independent of it, so power = E_V[max(0, 2Φ((margin − c·se·√(V/df)) / se) − 1)], integrated
    over V by quadrature (no simulation)."""
    if not (math.isfinite(margin) and margin >= 0 and math.isfinite(se) and df >= 1):
        return math.nan
    if margin == 0.0:
        return 0.0
    if se == 0.0:
        return 1.0
    c = float(stats.t.ppf(1.0 - alpha, df))
    u = margin / se
    w_max = math.sqrt(df) * u / c  # v = w², acceptance region empty beyond v = df (u / c)²
    # with v = w² the χ² density times dv = 2w dw is ∝ w^(df−1) e^(−w²/2): smooth, so Gauss–Legendre is exact to
    # ~1e-10 with these nodes (tests/test_intervals.py checks it against simulation)
    w = 0.5 * w_max * (_NODES + 1.0)
    log_density = (df - 1.0) * np.log(w) - w * w / 2.0 - (df / 2.0 - 1.0) * math.log(2.0) - special.gammaln(df / 2.0)
    accept = 2.0 * special.ndtr(u - c * w / math.sqrt(df)) - 1.0
    value = 0.5 * w_max * float(np.sum(_WEIGHTS * accept * np.exp(log_density)))
    return float(min(max(value, 0.0), 1.0))


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(256)


def margin_for_power(se: float, df: float, alpha: float, power: float = POWER) -> float:
    """The smallest equivalence margin whose TOST has `power` at a true difference of 0 (standard error `se`,
    `df` degrees of freedom, each one-sided test at alpha). 0 when se = 0; NaN when undefined."""
    if not (math.isfinite(se) and df >= 1):
        return math.nan
    if se == 0.0:
        return 0.0
    hi = se
    while tost_power(hi, se, df, alpha) < power:
        hi *= 2.0
        if hi > 1e9 * se:
            return math.nan
    return float(optimize.brentq(lambda m: tost_power(m, se, df, alpha) - power, 0.0, hi, xtol=1e-9 * se))


def power_summary(test: dict, alpha: float, margin: float | None, planned: tuple[int, int]) -> dict[str, Any]:
    """What one paired comparison could show, from its `paired_difference`/`compare` numbers (diff_se, diff_df,
    diff_sd, mean_diff) at the level `alpha` (the worst-case Holm level): the MDE at the observed standard error
    (undefined without variance: the t-test then gives way to the sign test, `stats.paired_difference`); and, for a
    declared margin m, the units needed to detect a difference of m, the power of the TOST at a true
    difference of 0 at the planned n (`planned` = (units, blocks)), the margin that would have 80 % power, and
    the TOST p only where that power is reached (else NaN: "no equivalence test at this n")."""
    se, df, sd, mean = (float(test.get(k, math.nan)) for k in ("diff_se", "diff_df", "diff_sd", "mean_diff"))
    units, blocks = planned
    p_se, p_df = (sd / math.sqrt(units), units - blocks) if units > blocks else (math.nan, 0)
    out: dict[str, Any] = {"power_alpha": alpha, "mde": detectable_effect(se, df, alpha) if se != 0 else math.nan,
                           "planned_units": units, "equivalence_margin": math.nan, "units_for_margin": math.nan,
                           "equivalence_power": math.nan, "margin_for_power": math.nan,
                           "equivalence_testable": False, "tost_p": math.nan}
    if math.isfinite(p_se):
        out["margin_for_power"] = margin_for_power(p_se, p_df, alpha)
    if margin is None or not math.isfinite(sd):
        return out
    out.update(equivalence_margin=float(margin), units_for_margin=units_for_effect(margin, sd, alpha, blocks))
    if math.isfinite(p_se):
        out["equivalence_power"] = tost_power(margin, p_se, p_df, alpha)
    out["equivalence_testable"] = bool(out["equivalence_power"] >= POWER)
    if out["equivalence_testable"]:
        out["tost_p"] = tost_p(mean, se, df, margin)
    return out
