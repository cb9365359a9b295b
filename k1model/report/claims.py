"""The claims the paper tests, and the sentences that state what the numbers say about them.

A claim is a hypothesis of the K-1 idea: a variant beats a reference on a metric (or beats chance).
Its status is derived from the numbers only: "supported" or "contradicted" when the Holm-adjusted
p of the primary test is below alpha = 1 - confidence (by the direction of the difference),
"no significant difference" otherwise, "not measured" when a variant or metric is absent. Every
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

def _overlap(nums: Numbers, a: str, b: str, metric: str) -> bool | None:
    lo_a, hi_a = nums.get(a, metric, "ci_low"), nums.get(a, metric, "ci_high")
    lo_b, hi_b = nums.get(b, metric, "ci_low"), nums.get(b, metric, "ci_high")
    if None in (lo_a, hi_a, lo_b, hi_b):
        return None
    return not (hi_a < lo_b or hi_b < lo_a)

def _chance_sentence(nums: Numbers, claim: Claim, cfg: Any, chance: float | None) -> tuple[str, str, str]:
    """A one-variant claim against a chance level: decided by whether the bootstrap CI excludes it."""
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
            f"{claim.variant}'s {claim.metric} was above chance: {value} (the {conf} bootstrap CI excludes chance), "
            f"which supports the claim that {claim.statement}.")
    if hi is not None and hi < chance:
        return "contradicted", f"below chance ({value}).", (
            f"{claim.variant}'s {claim.metric} was below chance: {value} (the {conf} bootstrap CI excludes chance), "
            f"which contradicts the claim that {claim.statement}.")
    return "no significant difference", f"not distinguishable from chance ({value}).", (
        f"There was no significant difference between {claim.variant}'s {claim.metric} and chance ({value}; the "
        f"{conf} bootstrap CI includes chance); the claim that {claim.statement} is not supported by these runs.")

def _claim_sentence(nums: Numbers, claim: Claim, cfg: Any, chance: float | None = None) -> tuple[str, str, str]:
    """(status, short, long) for one claim, all derived from summary.json.

    status ∈ supported, contradicted, no significant difference, not measured.
    """
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
    # an entry holds (its variant − its reference); express it as claim.variant − claim.reference
    if diff is not None and var != claim.variant:
        diff = -diff
    p = entry.get(p_key)
    if p is None or diff is None:
        short = f"test undefined ({short_values})."
        return "no significant difference", short, (
            f"{claim.metric}: {values} ({tests}); the test was undefined, so the claim that "
            f"{claim.statement} is not supported.")
    a_lower = diff < 0
    word = "lower" if a_lower else "higher"
    a_better = a_lower if direction == "lower" else not a_lower
    if p < cfg.alpha:
        status = "supported" if a_better else "contradicted"
        verdict = "supports" if a_better else "contradicts"
        short = f"{claim.variant} had significantly {word} {claim.metric} ({short_values}; {short_tests})."
        return status, short, (
            f"{claim.variant} had significantly {word} {claim.metric} than {claim.reference} ({values}; {tests}), "
            f"which {verdict} the claim that {claim.statement}.")
    overlap = _overlap(nums, claim.variant, claim.reference, claim.metric)
    descriptive = ""
    if overlap is not None:
        descriptive = (f" Descriptively, {claim.variant}'s mean is {word} and the {cfg.confidence:.0%} bootstrap "
                       f"CIs {'overlap' if overlap else 'do not overlap'}.")
    extra = ""
    min_p, min_p_holm = entry.get("wilcoxon_min_p"), entry.get("wilcoxon_min_p_holm")
    if test == "wilcoxon" and min_p is not None and min_p >= cfg.alpha:
        extra = (f" With {entry.get('n_pairs')} paired seeds the smallest attainable Wilcoxon p is "
                 f"{nums.q(*base, 'wilcoxon_min_p', p=True)}, so this test could not have reached significance.")
    elif test == "wilcoxon" and min_p_holm is not None and min_p_holm >= cfg.alpha:
        extra = (f" With {entry.get('n_pairs')} paired seeds and a Holm family of "
                 f"{nums.q(*base, 'holm_family_size')} tests the smallest attainable adjusted Wilcoxon p is "
                 f"{nums.q(*base, 'wilcoxon_min_p_holm', p=True)}, so this test could not have reached significance.")
    short = f"no significant difference ({short_values}; {short_tests})."
    return "no significant difference", short, (
        f"There was no significant difference in {claim.metric} between {claim.variant} and {claim.reference} "
        f"({values}; {tests}); the claim that {claim.statement} is not supported by these runs."
        f"{descriptive}{extra}")

def _relation(p_text: str) -> str:
    """"= 0.013" or "< 0.001": a formatted p-value after "p"."""
    return p_text.replace("<", "< ", 1) if p_text.startswith("<") else f"= {p_text}"
