"""Paper sections on the study's design and its statistics (issue 31): what a unit is and how many there
are, how the orders were chosen, how a claim is tested, what the intervals cover at this n, which runs
diverged and what each verdict is without them, and the limits that follow. Every number comes from
summary.json through `Numbers` (so numbers.json records its source)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from k1model.analysis.intervals import median_interval_rank
from k1model.config import HOLM_FAMILIES, TEST_NAMES
from k1model.report.claims import Numbers
from k1model.analysis.tables import fmt_num, fmt_p

_DIST = {"normal": "normal", "lognormal": "lognormal(0, 1)", "t3": "t with 3 degrees of freedom"}


def design_paragraph(nums: Numbers) -> str:
    """Seeds, orders (listed or drawn), the init seed of a run, and so the unit of analysis and its n."""
    d = nums.get("design") or {}
    if not d:
        return ""
    orders = d.get("orders") or []
    drawn = d.get("orders_drawn")
    if drawn:
        how = (f"{nums.q('design', 'orders_drawn', 'draw')} orders drawn uniformly from the "
               f"{nums.q('design', 'permutations')} permutations of the domains with seed "
               f"{nums.q('design', 'orders_drawn', 'seed')}, before any run ({', '.join(orders)})")
    else:
        how = f"{len(orders)} order{'s' if len(orders) != 1 else ''} listed in the params ({', '.join(orders)})"
    if d.get("init_seed") == "per_order":
        init = ("a run's initial weights and data stream come from a stable hash of its seed and its domain order, "
                "so every run is its own initialisation")
    else:
        init = ("a run's initial weights and data stream come from its seed alone (`experiment.init_seed: shared`, "
                "the setting these runs were trained with), so the runs of one seed in different orders share one "
                "initialisation and are not independent")
    return (f"**Design.** Domain orders: {how}. Seeds: {nums.q('design', 'seeds')}; {init}. The unit of analysis is "
            f"the initialisation: a variant has {d.get('units_text')} as planned. Paired claims are tested on the "
            f"units both variants have: {d.get('analysis')}. Per-order results are a secondary table.\n")


def coverage_sentence(nums: Numbers) -> str:
    """The measured coverage of the mean's intervals at the study's own n (summary.json interval_coverage)."""
    cov = nums.get("interval_coverage") or {}
    if not cov.get("coverage"):
        return ""
    parts = []
    for dist in cov["coverage"]:
        key = ("interval_coverage", "coverage", dist)
        parts.append(f"{_DIST.get(dist, dist)} {nums.q(*key, 'hall')} (t-interval {nums.q(*key, 't')})")
    return (f" At this study's n = {nums.q('interval_coverage', 'n')} units the pipeline measured the coverage of the "
            f"nominal {cov.get('confidence', 0.95):.0%} interval of a mean (in brackets: Student's t-interval) on "
            f"{nums.q('interval_coverage', 'reps')} simulated samples per population, as a fraction: "
            + "; ".join(parts) + ". On skewed data (lognormal) it still covers less than nominal.")


def statistics_paragraph(nums: Numbers, cfg: Any, conf: str) -> str:
    """How every interval and verdict of the paper is made."""
    d = nums.get("design") or {}
    n = int(d.get("units_per_variant") or 0)
    _, coverage = median_interval_rank(max(n, 2), cfg.confidence)
    margins = ", ".join(f"{k} ±{fmt_num(v)}" for k, v in (cfg.equivalence_margins or {}).items()) or "none"
    family = nums.get("claim_family") or {}
    return (
        f"**Statistics.** Every statistic is over units, one initialisation each ({d.get('units_text', 'runs')} per "
        f"variant). Per metric and variant: the mean with its {conf} skewness-corrected t-interval (Hall 1992: the "
        f"t-interval of a studentised mean transformed to remove its skewness), the interquartile mean (Agarwal et al. 2021) with Yuen's trimmed-mean "
        f"interval, and the median with the distribution-free order-statistic interval, whose exact coverage at "
        f"n = {n} is {coverage:.1%}"
        + (" (below the nominal level: n is too small for a 95 % interval of a median)" if coverage < cfg.confidence
           else "") + "." + coverage_sentence(nums) + " "
        f"The verdicts are those of the claims declared before any run: each is tested with the "
        f"{TEST_NAMES[cfg.primary_test]} over its paired units -- {d.get('analysis', '')} --, and the p-values of the "
        f"claims tested -- as specified and tuned together, {nums.q('claim_family', 'size')} tests -- are "
        f"Holm-corrected as one family. A claim that is not significant is read with its minimum detectable effect "
        f"(the difference the same test detects with 80 % power at the worst-case Holm level α/m = "
        f"{fmt_p(family.get('power_alpha'))}, at the observed standard error) and the initialisations that would "
        f"detect the declared smallest effect of interest; and with a TOST equivalence test against margins declared "
        f"in the params before any run ({margins}), run only where it has at least 80 % power to show equivalence at "
        f"a true difference of 0 at the planned n (otherwise the claim says \"no equivalence test at this n\" and "
        f"the margin that would have had that power). Power against the observed difference is not reported: it "
        f"restates the p-value. A design constant (`sparse_updates`) is reported as a measured property, not tested. "
        f"Verdicts: supported or contradicted (significant, by direction), equivalent within ±m, inconclusive "
        f"(neither; stated with its MDE), untestable (a forgetting claim on a benchmark where the reference does not "
        f"forget: next section), measured. The exploratory comparisons of every variant with "
        f"{', '.join(cfg.references)} (Wilcoxon, Welch, Hedges' g, probability of improvement; Holm within "
        f"{HOLM_FAMILIES[cfg.holm_family]}) are tables, not verdicts. Overlapping or separate intervals are never "
        f"read as evidence.\n")


def properties_section(claims: Mapping[str, Mapping[str, Any]], declared: Sequence[Any]) -> str:
    """The design constants, measured (their sentences)."""
    measured = [c for c in declared if claims.get(c.name, {}).get("status") == "measured"]
    if not measured:
        return ""
    lines = ["### Measured properties\n", "Design constants of the method are measured, not tested:\n"]
    lines += [f"- **{c.name}.** {claims[c.name]['sentence']}" for c in measured]
    return "\n".join(lines) + "\n\n"


def divergence_section(nums: Numbers) -> str:
    """Runs that diverged (kept), the rule, and each affected verdict without them."""
    div = nums.get("divergence") or {}
    runs = div.get("runs") or []
    if not div:
        return ""
    if not runs:
        return f"**Diverged runs.** None ({div.get('rule', '')}).\n"
    listed = "; ".join(f"{r['variant']}/{r['order']}/seed{r['seed']} ({r['part'].replace('_', ' ')}"
                       + (", kept" if r.get("kept") else ", failed: excluded, it has no numbers") + ")" for r in runs)
    lines = [f"**Diverged runs.** {len(runs)} run(s) diverged ({div.get('rule', '')}): {listed}. They are "
             f"{div.get('policy', 'kept')}."]
    sens = div.get("sensitivity") or {}
    if sens:
        rows = []
        for part, claims in sens.items():
            for name, s in claims.items():
                key = ("divergence", "sensitivity", part, name)
                rows.append(f"{name} ({part.replace('_', ' ')}): {s['status_with']} with them, {s['status']} without "
                            f"(Holm-adjusted p {nums.q(*key, 'p_holm', p=True)}"
                            + (f", difference {nums.q(*key, 'mean_diff')}" if s.get("mean_diff") is not None else "")
                            + f", n = {nums.q(*key, 'n_units')})")
        lines.append("Without them: " + "; ".join(rows) + ".")
    return " ".join(lines) + "\n"


def limitations(nums: Numbers, cfg: Any) -> list[str]:
    """What the design cannot show: the Wilcoxon floor at this n, the size of the family, skewed data."""
    d = nums.get("design") or {}
    n = int(d.get("units_per_variant") or 0)
    family = nums.get("claim_family") or {}
    m = int(family.get("size") or 0)
    lim = []
    min_p = 2.0 ** (1 - n) if n else 1.0
    if cfg.primary_test == "wilcoxon" and min_p >= cfg.alpha:
        lim.append(f"With {n} units per variant the smallest two-sided Wilcoxon p is {fmt_p(min_p)} ≥ α = "
                   f"{cfg.alpha:g}: no claim can be significant under the primary test in this profile, and the results "
                   "are a smoke test of the pipeline rather than evidence.")
    elif cfg.primary_test == "wilcoxon" and m and min_p * m >= cfg.alpha:
        lim.append(f"With {n} units the smallest Wilcoxon p is {fmt_p(min_p)}, and Holm multiplies the smallest by the "
                   f"{m} declared claims tested: no claim can reach significance under the primary test whatever the "
                   "data. More initialisations, or the paired t-test as primary test (`analysis.primary_test`), fixed "
                   "before looking at the results, would change that.")
    lim.append(f"Holm over the {m} declared claims tested is conservative, and with few initialisations even large "
               "effects may not survive it: every inconclusive claim states the difference it could have detected. "
               "Intervals of means are skewness-corrected t-intervals, whose coverage on skewed data at this n is "
               "stated in the statistics paragraph.")
    return lim
