"""The sentences that state what the numbers say about the claims the paper tests (declared in
`k1model.analysis.claims`).

A claim is a hypothesis of the K-1 idea, declared before any run: a variant beats a reference on a metric
(or beats chance), or -- kind "property" -- a design constant that is measured, not tested. `k1 aggregate`
tests every claim and decides its status (`k1model.analysis.claim_tests`: the gates, one Holm family over
the claims as specified and tuned, the equivalence tests that have the power to succeed) and writes each
claim's numbers to summary.json (`claims`, `tuned.claims`, `by_order.<order>.claims`). This module turns an
entry into sentences (`SENTENCES`, one per status). Overlap of two intervals is never read as evidence. Every
quoted number is registered with its key path (`Numbers`), so numbers.json lets a test check the paper
against the results, and every path is in summary.json.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from k1model.analysis.claim_tests import STATUSES
from k1model.analysis.claims import Claim
from k1model.analysis.tables import fmt_num, fmt_p, fmt_units
from k1model.config import TEST_NAMES


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

_UNIT_WORD = {"run": "runs, each its own initialisation", "seed": "seeds (each the mean of its runs in every order)"}

__all__ = ["Numbers", "STATUSES", "SENTENCES"]


def _unit_text(unit: str) -> str:
    return f" {unit}" if unit and unit not in ("fraction", "p", "flag") else ""


def _untestable(nums: Numbers, claim: Claim) -> tuple[str, str, str]:
    """The validity check: a forgetting claim on a benchmark where the reference does not forget."""
    validity = nums.get("validity") or {}
    ref, margin = validity.get("reference", "the reference"), validity.get("margin")
    avg = nums.get("validity", "average") or {}
    value = nums.q("validity", "average", "mean")
    if avg.get("ci_low") is not None:
        value += f" [{nums.q('validity', 'average', 'ci_low')}, {nums.q('validity', 'average', 'ci_high')}]"
    why = (f"the reference {ref} forgets {value} bpb on average, "
           + ("below the declared margin of " + fmt_num(margin) + " bpb" if (avg.get("mean") or 0) < (margin or 0)
              else "with an interval that includes 0"))
    short = f"untestable on this benchmark ({why})."
    return "untestable", short, (
        f"The claim that {claim.statement} cannot be tested on this benchmark: {why}, so no method can forget "
        f"less than it. (The comparison itself is in the tables; it is not read as evidence either way.)")


def _not_competent(nums: Numbers, claim: Claim, entry: Mapping[str, Any]) -> tuple[str, str, str]:
    """The competence check: the reference did not learn every domain beyond the declared n-gram floor."""
    c = nums.get("competence") or {}
    short_of = ", ".join(entry.get("short_of_floor") or c.get("short_of_floor") or []) or "its domains"
    why = (f"{c.get('reference', 'the reference')} did not reach the {c.get('floor', 'declared')} floor right after "
           f"its phase on {short_of}, by the declared rule: the upper end of its interval")
    would = entry.get("verdict_if_competent")
    record = ""
    if would == "untestable":  # the validity check: the reference does not forget, nothing was tested
        record = " Had it been competent it would read untestable: the benchmark's reference does not forget."
    elif would == "measured":  # a design property: its values, no test
        base = ("claims", claim.name)
        record = (f" For the record: {claim.variant} {nums.q(*base, 'mean_variant')}, {claim.reference} "
                  f"{nums.q(*base, 'mean_reference')} (a design property, measured, not tested).")
    elif would:
        base = ("claims", claim.name)
        record = (f" For the record, its test (counted in the Holm family) would read {would}: difference "
                  f"{nums.q(*base, 'mean_diff')} [{nums.q(*base, 'diff_ci_low')}, {nums.q(*base, 'diff_ci_high')}], "
                  f"Holm p {_relation(nums.q(*base, 'p_holm', p=True))}, n = {entry.get('n_units')}.")
    return "not competent", f"not competent ({why})" + (f"; the test would read {would}." if would else "."), (
        f"The claim that {claim.statement} is not read: {why}, so the declared check cannot vouch that this "
        f"profile's models learned the language of every domain (the comparison is in the tables).{record}")


def _not_measured(nums: Numbers, claim: Claim, entry: Mapping[str, Any]) -> tuple[str, str, str]:
    reason = entry.get("reason") or "the claim's variants or metric are absent"
    return "not measured", f"{reason}, so this could not be tested.", (
        f"The claim that {claim.statement} could not be tested: {reason}.")


def _values(nums: Numbers, claim: Claim, base: tuple[str, ...], unit_s: str) -> tuple[str, str]:
    """("k1_full 0.51 [0.40, 0.62] bpb vs dense 0.77 [...] bpb", the same with means only)."""
    if claim.reference == "chance":
        chance = nums.q(*base, "chance")
        return (f"{claim.variant} {nums.ci(claim.variant, claim.metric)} vs chance {chance}",
                f"{claim.variant} {nums.q(claim.variant, claim.metric, 'mean')} vs chance {chance}")
    return (f"{claim.variant} {nums.ci(claim.variant, claim.metric)}{unit_s} vs {claim.reference} "
            f"{nums.ci(claim.reference, claim.metric)}{unit_s}",
            f"{claim.variant} {nums.q(claim.variant, claim.metric, 'mean')} vs {claim.reference} "
            f"{nums.q(claim.reference, claim.metric, 'mean')}{unit_s}")


def _measured(nums: Numbers, claim: Claim, entry: Mapping[str, Any]) -> tuple[str, str, str]:
    """A design constant: the two values with their intervals, no test."""
    base = ("claims", claim.name)
    unit_s = _unit_text((nums.get("metrics", claim.metric) or {}).get("unit", ""))
    var = f"{nums.q(*base, 'mean_variant')} [{nums.q(*base, 'variant_ci_low')}, {nums.q(*base, 'variant_ci_high')}]"
    ref = (f"{nums.q(*base, 'mean_reference')} [{nums.q(*base, 'reference_ci_low')}, "
           f"{nums.q(*base, 'reference_ci_high')}]")
    values = f"{claim.variant} {var}{unit_s} vs {claim.reference} {ref}{unit_s} over {nums.q(*base, 'n_units')} units"
    return "measured", f"measured: {values} (a design property, not tested).", (
        f"That {claim.statement} is a property of the method's design, measured rather than tested: {values}.")


def _tested(nums: Numbers, claim: Claim, entry: Mapping[str, Any], cfg: Any) -> tuple[str, str, str]:
    """supported / contradicted / equivalent / inconclusive: the entry's tests, Holm over the declared claims."""
    status = entry["status"]
    base = ("claims", claim.name)
    unit_s = _unit_text((nums.get("metrics", claim.metric) or {}).get("unit", ""))
    values, short_values = _values(nums, claim, base, unit_s)
    test = entry.get("test", cfg.primary_test)
    n_txt = f"n = {nums.q(*base, 'n_units')} {_UNIT_WORD.get(entry.get('unit'), 'units')}"
    p_holm = nums.q(*base, "p_holm", p=True)
    tests = (f"{TEST_NAMES.get(test, test)} p {_relation(nums.q(*base, 'p', p=True))}, Holm-adjusted over the "
             f"{nums.q(*base, 'family_size')} declared claims p {_relation(p_holm)}; {n_txt}")
    short_tests = f"Holm-adjusted p {_relation(p_holm)}"
    if "zero variance" in str(entry.get("note", "")):
        tests += (" (the differences have no variance, so the p-value is the exact sign test's: at least 2/2^n "
                  "with n units)")
    diff = entry.get("mean_diff")
    diff_txt = (f"difference {nums.q(*base, 'mean_diff')} [{nums.q(*base, 'diff_ci_low')}, "
                f"{nums.q(*base, 'diff_ci_high')}]{unit_s}")
    if entry.get("p_holm") is None or diff is None:
        return "inconclusive", f"test undefined ({short_values}).", (
            f"{claim.metric}: {values} ({n_txt}); the test was undefined, so the claim that {claim.statement} is "
            "not supported.")
    word = "lower" if diff < 0 else "higher"
    than = "chance" if claim.reference == "chance" else claim.reference
    if status in ("supported", "contradicted"):
        verdict = "supports" if status == "supported" else "contradicts"
        short = f"{claim.variant} had significantly {word} {claim.metric} ({short_values}; {short_tests})."
        return status, short, (f"{claim.variant} had significantly {word} {claim.metric} than {than} ({values}; "
                               f"{diff_txt}; {tests}), which {verdict} the claim that {claim.statement}.")
    m_txt = nums.q(*base, "equivalence_margin")
    if status == "equivalent":
        tost = _relation(nums.q(*base, "tost_p_holm", p=True))
        short = f"equivalent within ±{m_txt}{unit_s} ({short_values}; Holm-adjusted TOST p {tost})."
        return status, short, (
            f"{claim.variant} and {than} are equivalent on {claim.metric} within the declared margin of "
            f"±{m_txt}{unit_s} ({values}; {diff_txt}; Holm-adjusted TOST p {tost}; {tests}), which contradicts the "
            f"claim that {claim.statement} as far as a difference of that size goes.")
    short_values = f"{short_values}; {short_tests}"
    return _inconclusive(nums, claim, entry, cfg, f"({values}; {diff_txt}; {tests})", short_values, unit_s, than)


def _inconclusive(nums: Numbers, claim: Claim, entry: Mapping[str, Any], cfg: Any, evidence: str, short_values: str,
                  unit_s: str, than: str) -> tuple[str, str, str]:
    """No significant difference: what the study could have detected, whether equivalence was shown or testable,
    how many initialisations the declared margin needs, and when the Wilcoxon test could not have succeeded."""
    base = ("claims", claim.name)
    m_txt = nums.q(*base, "equivalence_margin")
    mde_txt = nums.q(*base, "mde")
    if entry.get("mde") is None:  # no variance: no MDE of a t-test; the sign test's floor decides
        short = f"inconclusive ({short_values}; no variance)."
        power = "With no variance there is no t-test and no MDE"
    else:
        short = f"inconclusive ({short_values}; MDE {mde_txt}{unit_s})."
        power = (f"The study could have detected a difference of {mde_txt}{unit_s} with 80 % power (the same test at "
                 "the worst-case Holm level, the observed standard error)")
    return "inconclusive", short, (
        f"There was no significant difference in {claim.metric} between {claim.variant} and {than} "
        f"{evidence}{_equivalence_note(nums, entry, base, m_txt, unit_s)}. {power}"
        f"{_units_for_margin(nums, entry, base, m_txt, unit_s)}. The claim that {claim.statement} is neither "
        f"supported nor refuted by these runs.{_wilcoxon_floor(nums, entry, base, cfg)}")


def _equivalence_note(nums: Numbers, entry: Mapping[str, Any], base: tuple[str, ...], m_txt: str, unit_s: str) -> str:
    """Why equivalence was not shown: its TOST failed, or it had too little power to be run at this n."""
    if entry.get("equivalence_margin") is None:
        return ""
    if entry.get("equivalence_testable"):
        return (f", and equivalence within ±{m_txt}{unit_s} was not shown either (Holm-adjusted TOST p "
                f"{_relation(nums.q(*base, 'tost_p_holm', p=True))})")
    return (f"; no equivalence test at this n: a TOST within the declared ±{m_txt}{unit_s} would have power "
            f"{nums.q(*base, 'equivalence_power')} at a true difference of 0 with "
            f"{nums.q(*base, 'planned_units')} initialisations (80 % needs ±{nums.q(*base, 'margin_for_power')}"
            f"{unit_s})")


def _units_for_margin(nums: Numbers, entry: Mapping[str, Any], base: tuple[str, ...], m_txt: str, unit_s: str) -> str:
    """How many initialisations would detect a difference of the declared margin."""
    if entry.get("equivalence_margin") is None:
        return ""
    count = entry.get("units_for_margin")
    return (f"; about {nums.q(*base, 'units_for_margin')} initialisations" if count is not None else
            f"; more than {fmt_units(float('inf'))} initialisations") + (
        f" would detect a difference of the declared ±{m_txt}{unit_s}")


def _wilcoxon_floor(nums: Numbers, entry: Mapping[str, Any], base: tuple[str, ...], cfg: Any) -> str:
    """The Wilcoxon test could not have reached significance with this few paired units (or after Holm)."""
    test = entry.get("test", cfg.primary_test)
    min_p, min_p_holm = entry.get("wilcoxon_min_p"), entry.get("wilcoxon_min_p_holm")
    if test == "wilcoxon" and min_p is not None and min_p >= cfg.alpha:
        return (f" With {entry.get('n_units')} paired units the smallest attainable Wilcoxon p is "
                f"{nums.q(*base, 'wilcoxon_min_p', p=True)}, so this test could not have reached significance.")
    if test == "wilcoxon" and min_p_holm is not None and min_p_holm >= cfg.alpha:
        return (f" With {entry.get('n_units')} paired units and {nums.q(*base, 'family_size')} declared claims the "
                f"smallest attainable adjusted Wilcoxon p is {nums.q(*base, 'wilcoxon_min_p_holm', p=True)}, so this "
                "test could not have reached significance.")
    return ""


#: the sentence of each status (a new status -- e.g. a competence check -- adds its gate in
#: analysis/claim_tests.py and its sentence here)
SENTENCES: dict[str, Callable[..., tuple[str, str, str]]] = {
    "not measured": lambda nums, claim, entry, cfg: _not_measured(nums, claim, entry),
    "untestable": lambda nums, claim, entry, cfg: _untestable(nums, claim),
    "not competent": lambda nums, claim, entry, cfg: _not_competent(nums, claim, entry),
    "measured": lambda nums, claim, entry, cfg: _measured(nums, claim, entry),
    **{status: _tested for status in ("supported", "contradicted", "equivalent", "inconclusive")},
}


def _claim_sentence(nums: Numbers, claim: Claim, cfg: Any, chance: float | None = None) -> tuple[str, str, str]:
    """(status, short, long) for one claim, from its entry in summary.json (`claims.<name>` of the view);
    the status was decided by `k1 aggregate` (analysis/claim_tests.py). `chance` is unused (the entry has it)."""
    entry = nums.get("claims", claim.name)
    if not isinstance(entry, Mapping) or entry.get("status") not in SENTENCES:
        text = "summary.json has no test of this claim (rerun `k1 aggregate`)."
        return "not measured", text, f"The claim that {claim.statement} was not tested: {text}"
    return SENTENCES[entry["status"]](nums, claim, entry, cfg)


def _relation(p_text: str) -> str:
    """"= 0.013" or "< 0.001": a formatted p-value after "p"."""
    return p_text.replace("<", "< ", 1) if p_text.startswith("<") else f"= {p_text}"
