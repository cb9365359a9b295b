"""Intervals keep their coverage at the study's sample sizes; MDE, runs needed and TOST match hand
computations (k1model/analysis/intervals.py, power.py; issue 17, DESIGN.md §11)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from k1model.analysis import intervals as I
from k1model.analysis import power as P
from k1model.analysis import stats as S

SIZES = (3, 5, 10)
TRIALS = 6000


def _coverage(interval, n: int, trials: int, seed: int) -> float:
    rng = np.random.default_rng([seed, n])
    hits = 0
    for _ in range(trials):
        lo, hi = interval(rng.normal(size=n))[:2]
        hits += lo <= 0.0 <= hi
    return hits / trials


@pytest.mark.parametrize("n", SIZES)
def test_t_interval_of_the_mean_covers_95_percent(n):
    cov = _coverage(lambda x: I.t_interval(x, 0.95), n, TRIALS, 1)
    assert abs(cov - 0.95) <= 0.03, cov


@pytest.mark.parametrize("n", SIZES)
def test_trimmed_mean_interval_of_the_iqm_covers_95_percent(n):
    cov = _coverage(lambda x: I.trimmed_mean_interval(x, 0.95), n, TRIALS, 2)
    assert abs(cov - 0.95) <= 0.03, cov


@pytest.mark.parametrize("n", SIZES)
def test_median_interval_covers_what_it_states(n):
    stated = I.median_interval(np.arange(float(n)), 0.95)[2]
    cov = _coverage(lambda x: I.median_interval(x, 0.95), n, TRIALS, 3)
    assert abs(cov - stated) <= 0.03, (cov, stated)
    assert stated == pytest.approx({3: 0.75, 5: 0.9375, 10: 1 - 2 * 11 / 1024}[n])


def test_the_coverage_test_catches_the_percentile_bootstrap():
    """The check can fail: the percentile bootstrap of the mean (the old interval) undercovers at n = 3."""
    def percentile(x):
        rng = np.random.default_rng(0)
        dist = S.stratified_bootstrap([x], lambda a: a.mean(axis=1), rng, 400)
        return np.percentile(dist, [2.5, 97.5])

    cov = _coverage(percentile, 3, 1500, 4)
    assert cov < 0.92, cov  # about 0.74


def test_describe_uses_the_small_sample_intervals():
    x = np.array([1.0, 2.0, 4.0, 7.0, 11.0])
    d = S.describe(x, confidence=0.95)
    half = stats.t.ppf(0.975, 4) * x.std(ddof=1) / math.sqrt(5)
    assert (d["ci_low"], d["ci_high"]) == pytest.approx((x.mean() - half, x.mean() + half))
    assert (d["median_ci_low"], d["median_ci_high"], d["median_ci_coverage"]) == (1.0, 11.0, 0.9375)
    # IQM of 5 values: 1 trimmed each side; Yuen: winsorised [2, 2, 4, 7, 7], h = 3, df = 2
    w = np.array([2.0, 2.0, 4.0, 7.0, 7.0])
    half = stats.t.ppf(0.975, 2) * w.std(ddof=1) / ((3 / 5) * math.sqrt(5))
    assert d["iqm"] == pytest.approx(13 / 3)
    assert (d["iqm_ci_low"], d["iqm_ci_high"]) == pytest.approx((13 / 3 - half, 13 / 3 + half))


def test_paired_difference_interval_is_the_t_interval():
    x, y = np.array([1.0, 2.0, 4.0, 3.0]), np.array([0.5, 1.0, 1.0, 2.5])
    out = S.compare(x, y, "lower", x, y, np.random.default_rng(0), 50, 0.95)
    assert (out["diff_ci_low"], out["diff_ci_high"]) == pytest.approx(I.t_interval(x - y, 0.95))


def _power(delta: float, sd: float, n: int, alpha: float) -> float:
    """Power of the two-sided paired t-test, by hand from the noncentral t distribution."""
    df, nc = n - 1, delta / sd * math.sqrt(n)
    crit = stats.t.ppf(1 - alpha / 2, df)
    return stats.nct.sf(crit, df, nc) + np.nan_to_num(stats.nct.cdf(-crit, df, nc))  # scipy: NaN far in the tail


@pytest.mark.parametrize("n, sd, alpha", [(3, 0.05, 0.05), (10, 0.2, 0.05 / 4), (5, 1.0, 0.01)])
def test_minimum_detectable_effect_matches_the_noncentral_t(n, sd, alpha):
    mde = P.minimum_detectable_effect(sd, n, alpha)
    hi = sd
    while _power(hi, sd, n, alpha) < 0.8:  # bracket the root (nct is NaN far out in the tail)
        hi *= 1.5
    by_hand = optimize.brentq(lambda d: _power(d, sd, n, alpha) - 0.8, 1e-9, hi)
    assert mde == pytest.approx(by_hand, rel=1e-4)


def test_minimum_detectable_effect_known_value():
    # G*Power / statsmodels: paired t, two-sided alpha 0.05, 80 % power, n = 10 -> d_z = 0.996
    assert P.minimum_detectable_effect(1.0, 10, 0.05) == pytest.approx(0.996, abs=5e-4)
    assert P.minimum_detectable_effect(0.0, 10, 0.05) == 0.0 and math.isnan(P.minimum_detectable_effect(1.0, 1, 0.05))


def test_runs_needed_known_case():
    # effect size 1 (mean = SD), two-sided alpha 0.05, 80 % power: n = 10 pairs (power 0.803; 9 give 0.76)
    assert P.runs_needed(1.0, 1.0, 0.05) == 10
    assert _power(1.0, 1.0, 9, 0.05) < 0.8 <= _power(1.0, 1.0, 10, 0.05)
    assert P.runs_needed(0.0, 1.0, 0.05) == math.inf
    assert P.runs_needed(0.01, 1.0, 0.05) == pytest.approx(78_491, abs=2)  # (z_.975 + z_.8)^2 / 0.01^2 + ~2


def test_tost_matches_the_two_one_sided_tests_by_hand():
    x, y = np.array([1.0, 2.0, 3.0]), np.zeros(3)  # differences: mean 2, SD 1, n = 3
    se = 1.0 / math.sqrt(3)
    lower = stats.t.sf((2 - (-5)) / se, 2)  # H0: mean <= -5
    upper = stats.t.cdf((2 - 5) / se, 2)  # H0: mean >= 5
    assert P.tost_paired(x, y, 5.0) == pytest.approx(max(lower, upper))
    assert P.tost_paired(x, y, 1.0) > 0.5  # a margin below the observed difference: not equivalent
    same = np.array([1.0, 1.0, 1.0])
    assert P.tost_paired(same + 0.01, same, 0.05) == 0.0  # exact with zero variance


def test_power_summary_at_the_holm_level():
    x, y = np.array([1.0, 1.2, 0.9, 1.1]), np.array([1.0, 1.0, 1.0, 1.0])
    out = P.power_summary(x, y, 0.05 / 3, 0.5)
    sd = float((x - y).std(ddof=1))
    assert out["diff_sd"] == pytest.approx(sd)
    assert out["mde"] == pytest.approx(P.minimum_detectable_effect(sd, 4, 0.05 / 3))
    assert out["power_alpha"] == pytest.approx(0.05 / 3)
    assert 0 < out["tost_p"] < 0.05
