"""The paper's sections on the forgetting question: the statistics that decide a claim at small n, the
benchmark-validity check, which domain is forgotten after which phase, where in the model the
forgetting lives, and what the leave-one-out step changes. Every number comes from summary.json
through `Numbers` (so numbers.json records its source)."""
from __future__ import annotations

from typing import Any

from k1model.analysis.intervals import median_interval_rank
from k1model.config import HOLM_FAMILIES, TEST_NAMES
from k1model.report.claims import Numbers
from k1model.report.tables import fmt_num


def statistics_paragraph(nums: Numbers, cfg: Any, conf: str) -> str:
    """How every interval and verdict of the paper is made."""
    n = int(nums.get("n_seeds") or 0) * max(1, int(nums.get("n_orders") or 1))
    _, coverage = median_interval_rank(max(n, 2), cfg.confidence)
    margins = ", ".join(f"{k} ±{fmt_num(v)}" for k, v in (cfg.equivalence_margins or {}).items()) or "none"
    return (
        f"**Statistics.** Every run (a seed in a domain order) is one unit; a variant has {n} runs. Per metric "
        f"and variant: the mean with its {conf} Student t-interval, the interquartile mean (Agarwal et al. 2021) "
        f"with Yuen's trimmed-mean t-interval, and the median with the distribution-free order-statistic interval, "
        f"whose exact coverage at n = {n} is {coverage:.1%}"
        + (" (below the nominal level: n is too small for a 95 % interval of a median)" if coverage < cfg.confidence
           else "") + ". These intervals keep their nominal coverage at the sample sizes used: the test suite "
        "simulates normal samples at n = 3, 5 and 10 and requires coverage within 3 points of the nominal level (a "
        "percentile bootstrap of the mean, used by earlier versions of this pipeline, covers 74 %, 84 % and 89 %). "
        f"Each variant is compared with {', '.join(cfg.references)} per metric on the runs both have, paired by "
        f"seed and order: the {TEST_NAMES[cfg.primary_test]} (primary), the Wilcoxon signed-rank and Welch "
        f"tests, Hedges' g (unpaired and paired) and the probability of improvement (with a bootstrap interval, "
        f"descriptive). p-values are Holm-corrected within each family ({HOLM_FAMILIES[cfg.holm_family]}). A "
        "comparison that is not significant is read with two more numbers: the minimum detectable effect (the "
        "difference the paired t-test would detect with 80 % power at the worst-case Holm level α/m, with the "
        "observed SD of the paired differences) with the runs a significant result would need, and a TOST "
        f"equivalence test against margins declared in the params file ({margins}), Holm-corrected like the "
        "tests. Verdicts: supported or contradicted (significant, by direction), equivalent within ±m, "
        "inconclusive (neither; stated with its MDE), untestable (a forgetting claim on a benchmark where the "
        "reference does not forget: next paragraph). Overlapping or separate intervals are never read as "
        "evidence.\n")


def validity_section(nums: Numbers, title: str = "Does the benchmark forget?") -> str:
    """The benchmark-validity check of the forgetting claims, with the reference's forgetting per domain."""
    v = nums.get("validity")
    if not v or not v.get("measured"):
        return ""
    ref, margin = v["reference"], fmt_num(v["margin"])
    avg = f"{nums.q('validity', 'average', 'mean')} [{nums.q('validity', 'average', 'ci_low')}, " \
          f"{nums.q('validity', 'average', 'ci_high')}]"
    verdict = ("**it does**: the forgetting claims below are tested." if v.get("forgets") else
               "**it does not**: every forgetting claim is *untestable on this benchmark*, whatever the method "
               "does; a method cannot forget less than a reference that does not forget.")
    lines = [f"### {title}\n",
             f"A forgetting claim is only a test where the reference forgets. The rule, fixed in the params file "
             f"(`analysis.forgetting_reference`, `analysis.forgetting_margin`): the benchmark forgets when {ref}'s "
             f"mean forgetting is at least {margin} bpb and its {v['confidence']:.0%} t-interval lies above 0. "
             f"Here {ref} forgets {avg} bpb on average over {nums.q('validity', 'average', 'n')} runs, so {verdict}\n"]
    by_order = v.get("domains") or {}
    if by_order:
        lines.append(f"| order | domain (phase) | {ref} forgetting, bpb [CI] | forgets |\n|:---|:---|---:|:---|")
        for order, by_domain in by_order.items():
            for domain, d in by_domain.items():
                key = ("validity", "domains", order, domain)
                cell = f"{nums.q(*key, 'mean')} [{nums.q(*key, 'ci_low')}, {nums.q(*key, 'ci_high')}]"
                lines.append(f"| {order} | {domain} ({d['position'] + 1}) | {cell} | {'yes' if d['forgets'] else 'no'} |")
        lines.append("")
    return "\n".join(lines) + "\n"
