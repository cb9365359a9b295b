"""The claims the paper tests, and the sentences that state what the numbers say about them.

A claim is a hypothesis of the K-1 idea: a variant beats a reference on a metric (or beats chance).
Its status is derived from the numbers only (`STATUSES`): "untestable" for a forgetting claim on a
benchmark where the reference does not forget (analysis/validity.py); "supported" or "contradicted"
when the Holm-adjusted p of the primary test is below alpha = 1 - confidence (by the direction of
the difference); "equivalent" when a TOST test shows the difference within the declared margin;
"inconclusive" otherwise, stated with the minimum detectable effect; "not measured" when a variant
or metric is absent. Overlap of two intervals is never read as evidence. Every
quoted number is registered with its key path (`Numbers`), so numbers.json lets a test check
the paper against the results.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import k1model.strategies  # noqa: F401  (registers the strategies and their claims)
from k1model.report.tables import fmt_num, fmt_p

class Numbers:
    """Quotes numbers from summary.json and remembers where each came from."""

    def __init__(self, summary: Mapping[str, Any], prefix: tuple[str, ...] = ()):
        self.summary = summary
        self.prefix = prefix
        self.entries: dict[str, dict[str, Any]] = {}

    def view(self, *prefix: str) -> "Numbers":
        """The numbers under summary[prefix...] (e.g. the tuned comparison), recorded with their full path."""
        sub = Numbers({**(self.get(*prefix) or {}), "metrics": self.summary.get("metrics", {})}, self.prefix + prefix)
        sub.entries = self.entries
        return sub

    def get(self, *path: str) -> Any:
        node: Any = self.summary
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return node

    def q(self, *path: str, p: bool = False) -> str:
        """The formatted number at `path` (recorded in numbers.json); "n/a" if absent or null."""
        value = self.get(*path)
        text = fmt_p(value) if p else fmt_num(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            full = self.prefix + tuple(path)
            self.entries[".".join(full)] = {"source": list(full), "value": value, "text": text}
        return text

    def ci(self, variant: str, metric: str) -> str:
        """"mean [lo, hi]" of a metric for a variant."""
        mean = self.q(variant, metric, "mean")
        if self.get(variant, metric, "ci_low") is None:
            return mean
        return f"{mean} [{self.q(variant, metric, 'ci_low')}, {self.q(variant, metric, 'ci_high')}]"

@dataclass(frozen=True)
class Claim:
    """A hypothesis of the K-1 idea: `variant` beats `reference` on `metric`.

    With reference "chance" the variant's CI is compared with the chance level of the metric
    (1 / number of agents for top-1 fault accuracy), since no other variant is the baseline.
    """

    name: str
    metric: str
    variant: str
    reference: str
    statement: str

#: the claims about the core variants; each strategy declares its own (`Strategy.claims`), see `all_claims`
CORE_CLAIMS: tuple[Claim, ...] = (
    Claim("less_forgetting", "forgetting", "k1_full", "dense",
          "sparse, attribution-guided updates forget less than dense backpropagation"),
    Claim("lm_quality", "final_avg_bpb", "k1_full", "dense",
          "K-1 ends with a lower average bpb over all domains than dense backpropagation"),
    Claim("attribution_not_sparsity", "forgetting", "k1_full", "random_path",
          "choosing the path by attribution forgets less than a random path of the same sparsity"),
    Claim("sparse_updates", "sparsity_param_fraction", "k1_full", "dense",
          "K-1 changes a smaller fraction of agent parameters per step than dense training"),
    Claim("fault_finding", "attr_fault_top1_hybrid", "k1_full", "chance",
          "hybrid attribution names a planted faulty agent (top-1) more often than chance"),
)


def all_claims() -> tuple[Claim, ...]:
    """Every claim the paper tests: the core claims, then each registered strategy's (DESIGN.md §7, §9), in
    registration order."""
    from k1model.config.registry import STRATEGIES

    return CORE_CLAIMS + tuple(Claim(**c) for s in STRATEGIES.values() for c in s.claims)


def paired_claims() -> tuple[Claim, ...]:
    """The claims decided by a paired comparison (the ones re-tested per order and after tuning)."""
    return tuple(c for c in all_claims() if c.reference != "chance")


def __getattr__(name: str) -> Any:  # CLAIMS, PAIRED_CLAIMS: collected from the registry when read
    if name == "CLAIMS":
        return all_claims()
    if name == "PAIRED_CLAIMS":
        return paired_claims()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

def _comparison(nums: Numbers, a: str, b: str, references: Sequence[str]) -> tuple[str, str] | None:
    """(reference, variant) keys under summary.comparisons for the pair a, b.

    The pair's entry is taken from the family of whichever of the two comes first in
    analysis.references (the same choice as the key-comparisons table).
    """
    comps = nums.get("comparisons") or {}
    for ref in references:
        if ref == a and b in (comps.get(a) or {}):
            return a, b
        if ref == b and a in (comps.get(b) or {}):
            return b, a
    return None

_TEST_SHORT = {"wilcoxon": "Wilcoxon", "ttest_paired": "paired t", "welch": "Welch t"}

#: every status a claim can have, in the order the paper counts them
STATUSES = ("supported", "contradicted", "equivalent", "inconclusive", "untestable", "not measured")
#: metrics whose claims need a benchmark on which the reference forgets (analysis/validity.py)
FORGETTING_METRICS = ("forgetting", "bwt")


def _untestable(nums: Numbers, claim: Claim) -> tuple[str, str, str] | None:
    """The validity check: a forgetting claim on a benchmark where the reference does not forget."""
    if claim.metric not in FORGETTING_METRICS:
        return None
    validity = nums.get("validity")
    if not validity or not validity.get("measured") or validity.get("forgets"):
        return None
    ref, margin = validity["reference"], validity["margin"]
    avg = nums.get("validity", "average") or {}
    value = nums.q("validity", "average", "mean")
    if avg.get("ci_low") is not None:
        value += f" [{nums.q('validity', 'average', 'ci_low')}, {nums.q('validity', 'average', 'ci_high')}]"
    why = (f"the reference {ref} forgets {value} bpb on average, "
           + ("below the declared margin of " + fmt_num(margin) + " bpb" if (avg.get("mean") or 0) < margin
              else "with an interval that includes 0"))
    short = f"untestable on this benchmark ({why})."
    return "untestable", short, (
        f"The claim that {claim.statement} cannot be tested on this benchmark: {why}, so no method can forget "
        f"less than it. (The comparison itself is in the tables; it is not read as evidence either way.)")


def _chance_sentence(nums: Numbers, claim: Claim, cfg: Any, chance: float | None) -> tuple[str, str, str]:
    """A one-variant claim against a chance level: decided by whether the t-interval excludes it."""
    stats_ = nums.get(claim.variant, claim.metric)
    if claim.variant not in nums.summary:
        text = f"{claim.variant} is not in experiment.variants, so this was not tested."
        return "not measured", text, f"The claim that {claim.statement} was not tested: {text}"
    if not stats_ or not stats_.get("n") or chance is None:
        text = f"`{claim.metric}` was not measured for {claim.variant}, so this could not be tested."
        return "not measured", text, f"The claim that {claim.statement} could not be tested: {text}"
    value = f"{claim.variant} {nums.ci(claim.variant, claim.metric)} vs chance {fmt_num(chance)}"
    lo, hi = stats_.get("ci_low"), stats_.get("ci_high")
    conf = f"{cfg.confidence:.0%}"
    if lo is not None and lo > chance:
        return "supported", f"above chance ({value}).", (
            f"{claim.variant}'s {claim.metric} was above chance: {value} (the {conf} t-interval excludes chance), "
            f"which supports the claim that {claim.statement}.")
    if hi is not None and hi < chance:
        return "contradicted", f"below chance ({value}).", (
            f"{claim.variant}'s {claim.metric} was below chance: {value} (the {conf} t-interval excludes chance), "
            f"which contradicts the claim that {claim.statement}.")
    return "inconclusive", f"not distinguishable from chance ({value}).", (
        f"{claim.variant}'s {claim.metric} could not be told apart from chance ({value}; the {conf} t-interval "
        f"includes chance); the claim that {claim.statement} is not supported by these runs.")


def _claim_sentence(nums: Numbers, claim: Claim, cfg: Any, chance: float | None = None) -> tuple[str, str, str]:
    """(status, short, long) for one claim, all derived from summary.json; status in STATUSES.

    Order of the decision: not measured (a variant or metric is absent); untestable (a forgetting claim
    on a benchmark where the reference does not forget); supported / contradicted (Holm-adjusted primary
    test below alpha, by the direction of the difference); equivalent (TOST within the declared margin,
    Holm-adjusted); inconclusive otherwise, stated with the effect the study could have detected."""
    if claim.reference == "chance":
        return _chance_sentence(nums, claim, cfg, chance)
    info = nums.get("metrics", claim.metric) or {}
    unit = info.get("unit", "")
    unit_s = f" {unit}" if unit and unit not in ("fraction", "p") else ""
    absent = [v for v in (claim.variant, claim.reference) if v not in nums.summary]
    if absent:
        text = f"{' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} not in experiment.variants, so this was not tested."
        return "not measured", text, f"The claim that {claim.statement} was not tested: {text}"
    a_stats, b_stats = nums.get(claim.variant, claim.metric), nums.get(claim.reference, claim.metric)
    if not a_stats or not b_stats or not a_stats.get("n") or not b_stats.get("n"):
        missing = [v for v, s in ((claim.variant, a_stats), (claim.reference, b_stats)) if not s or not s.get("n")]
        text = f"`{claim.metric}` was not measured for {', '.join(missing)}, so this could not be tested."
        return "not measured", text, f"The claim that {claim.statement} could not be tested: {text}"
    untestable = _untestable(nums, claim)
    if untestable is not None:
        return untestable
    keys = _comparison(nums, claim.variant, claim.reference, cfg.references)
    a_txt, b_txt = nums.ci(claim.variant, claim.metric), nums.ci(claim.reference, claim.metric)
    values = f"{claim.variant} {a_txt}{unit_s} vs {claim.reference} {b_txt}{unit_s}"
    short_values = (f"{claim.variant} {nums.q(claim.variant, claim.metric, 'mean')} vs {claim.reference} "
                    f"{nums.q(claim.reference, claim.metric, 'mean')}{unit_s}")
    if keys is None:
        text = f"{claim.metric}: {values}; no paired comparison was computed (neither is in analysis.references)."
        return "not measured", text, text
    ref, var = keys
    base = ("comparisons", ref, var, claim.metric)
    entry = nums.get(*base) or {}
    test = cfg.primary_test
    p_key = f"{test}_p_holm"
    p_txt = nums.q(*base, p_key, p=True)
    tests = f"Holm-adjusted {_TEST_SHORT[test]} p {_relation(p_txt)}"
    short_tests = tests
    if test != "ttest_paired":
        tests += f"; paired t-test, Holm-adjusted p {_relation(nums.q(*base, 'ttest_paired_p_holm', p=True))}"
    direction = info.get("direction", "lower")
    diff = entry.get("mean_diff")
    flip = var != claim.variant  # an entry holds (its variant − its reference); say claim.variant − claim.reference
    if diff is not None and flip:
        diff = -diff
    p = entry.get(p_key)
    if p is None or diff is None:
        short = f"test undefined ({short_values})."
        return "inconclusive", short, (
            f"{claim.metric}: {values} ({tests}); the test was undefined, so the claim that "
            f"{claim.statement} is not supported.")
    lo, hi = entry.get("diff_ci_low"), entry.get("diff_ci_high")
    if lo is not None and hi is not None:
        q_lo, q_hi = nums.q(*base, "diff_ci_high" if flip else "diff_ci_low"), nums.q(*base, "diff_ci_low" if flip else "diff_ci_high")
        if flip:  # the interval of the negated difference
            q_lo, q_hi = _neg(q_lo), _neg(q_hi)
        diff_txt = f"difference {fmt_num(diff)} [{q_lo}, {q_hi}]{unit_s}"
    else:
        diff_txt = f"difference {fmt_num(diff)}{unit_s}"
    a_lower = diff < 0
    word = "lower" if a_lower else "higher"
    a_better = a_lower if direction == "lower" else not a_lower
    if p < cfg.alpha:
        status = "supported" if a_better else "contradicted"
        verdict = "supports" if a_better else "contradicts"
        short = f"{claim.variant} had significantly {word} {claim.metric} ({short_values}; {short_tests})."
        return status, short, (
            f"{claim.variant} had significantly {word} {claim.metric} than {claim.reference} ({values}; "
            f"{diff_txt}; {tests}), which {verdict} the claim that {claim.statement}.")
    margin = entry.get("equivalence_margin")
    tost = entry.get("tost_p_holm")
    if margin is not None and tost is not None and tost < cfg.alpha:
        m_txt = nums.q(*base, "equivalence_margin")
        short = f"equivalent within ±{m_txt}{unit_s} ({short_values}; Holm-adjusted TOST p {_relation(nums.q(*base, 'tost_p_holm', p=True))})."
        return "equivalent", short, (
            f"{claim.variant} and {claim.reference} are equivalent on {claim.metric} within the declared margin of "
            f"±{m_txt}{unit_s} ({values}; {diff_txt}; Holm-adjusted TOST p "
            f"{_relation(nums.q(*base, 'tost_p_holm', p=True))}; {tests}), which contradicts the claim that "
            f"{claim.statement} as far as a difference of that size goes.")
    mde_txt = nums.q(*base, "mde")
    needed = entry.get("runs_needed")
    need_txt = ""
    if isinstance(needed, (int, float)) and needed < 1e6:  # inf (no difference at all) and undefined say nothing
        need_txt = (f"; at the observed variance about {nums.q(*base, 'runs_needed')} paired runs would detect the "
                    "observed difference")
    tost_txt = ("" if margin is None or tost is None else
                f", and equivalence within ±{nums.q(*base, 'equivalence_margin')}{unit_s} was not shown either "
                f"(Holm-adjusted TOST p {_relation(nums.q(*base, 'tost_p_holm', p=True))})")
    extra = ""
    min_p, min_p_holm = entry.get("wilcoxon_min_p"), entry.get("wilcoxon_min_p_holm")
    if test == "wilcoxon" and min_p is not None and min_p >= cfg.alpha:
        extra = (f" With {entry.get('n_pairs')} paired seeds the smallest attainable Wilcoxon p is "
                 f"{nums.q(*base, 'wilcoxon_min_p', p=True)}, so this test could not have reached significance.")
    elif test == "wilcoxon" and min_p_holm is not None and min_p_holm >= cfg.alpha:
        extra = (f" With {entry.get('n_pairs')} paired seeds and a Holm family of "
                 f"{nums.q(*base, 'holm_family_size')} tests the smallest attainable adjusted Wilcoxon p is "
                 f"{nums.q(*base, 'wilcoxon_min_p_holm', p=True)}, so this test could not have reached significance.")
    short = f"inconclusive ({short_values}; {short_tests}; MDE {mde_txt}{unit_s})."
    return "inconclusive", short, (
        f"There was no significant difference in {claim.metric} between {claim.variant} and {claim.reference} "
        f"({values}; {diff_txt}; {tests}){tost_txt}. The study could have detected a difference of "
        f"{mde_txt}{unit_s} with 80 % power (paired t-test at the Holm-adjusted level, observed SD of the "
        f"differences){need_txt}. The claim that {claim.statement} is neither supported nor refuted by these "
        f"runs.{extra}")


def _neg(text: str) -> str:
    """The formatted negation of a formatted number ("0.012" -> "-0.012"; "n/a" stays)."""
    if text == "n/a":
        return text
    return text[1:] if text.startswith("-") else f"-{text}"

def _relation(p_text: str) -> str:
    """"= 0.013" or "< 0.001": a formatted p-value after "p"."""
    return p_text.replace("<", "< ", 1) if p_text.startswith("<") else f"= {p_text}"
