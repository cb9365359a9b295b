"""The declared claims as one family of tests, and each claim's verdict (issue 31; DESIGN.md §11).

A claim (`k1model.report.claims`: the core claims and each strategy's) says that a variant beats a
reference on a metric, or beats a fixed level (chance). They were declared before any run, so they -- and
nothing else -- form the family whose p-values Holm's procedure corrects: every claim tested in the main
comparison ("as specified") and in the tuned comparison, together. Exploratory comparisons (every
variant against every reference, `summaries.comparisons`) are tables, not verdicts.

Each claim passes the *gates* first (`GATES`, in order); a gate that applies gives the claim its status
and keeps it out of the family:

- "not measured": a variant, the reference or the metric is absent;
- "not competent": the profile's reference did not learn its domains (`competence.py`: its bpb right after
  each domain's phase does not reach the declared n-gram floor), so every claim is about byte statistics;
- "untestable": a forgetting claim on a benchmark whose reference does not forget (`validity.py`).

A claim of kind "property" states a design constant (K-1 changes fewer weights per step than dense: true
by construction) and is reported as a measured property (status "measured"), never tested. Every other
claim is tested on its units (`units.py`: one initialisation each, the order as a block) with the primary
test, Holm-corrected over the family; then

- "supported" / "contradicted": Holm-adjusted p below alpha, by the direction of the difference;
- "equivalent": the TOST equivalence test within the declared margin, Holm-corrected over the family's
  equivalence tests, is below alpha -- run only where it has 80 % power at a true difference of 0 at the
  planned n (`power.power_summary`), else the claim says "no equivalence test at this n";
- "inconclusive": neither, stated with its minimum detectable effect.

To add a status (say, a competence check), add a gate function to `GATES` and its sentence to the report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from k1model.analysis.intervals import mean_interval
from k1model.analysis.metric_info import metric_info
from k1model.analysis.power import power_summary
from k1model.analysis.stats import _cell_rng, compare, holm
from k1model.analysis.units import orders_are_blocks, paired_units, planned_units
from k1model.analysis.validity import FORGETTING_METRICS

#: every status a claim can have, in the order the paper counts them
STATUSES = ("supported", "contradicted", "equivalent", "inconclusive", "measured", "not competent", "untestable",
            "not measured")
#: the statuses of a claim that was tested (a member of the Holm family)
TESTED = ("supported", "contradicted", "equivalent", "inconclusive")


@dataclass(frozen=True)
class Part:
    """One set of runs the claims are tested on: its tidy table, variants, validity check and design."""

    name: str  # "as_specified", "tuned", or "order <name>"
    tidy: pd.DataFrame
    variants: Sequence[str]
    validity: Mapping[str, Any] | None
    scheme: str  # experiment.init_seed
    planned: tuple[int, int]  # (units, blocks) per variant as the params plan them
    chance: float | None  # the chance level of a claim against "chance"
    competence: Mapping[str, Any] | None = None  # the profile's competence check (competence.py), if made
    blocked: bool = True  # the order is a block of the paired comparisons (units.orders_are_blocks)


Gate = Callable[[Any, Part], "dict[str, Any] | None"]


def not_measured(claim: Any, part: Part) -> dict[str, Any] | None:
    """A variant, the reference or the metric is absent from these runs."""
    sides = [claim.variant] + ([] if claim.reference == "chance" else [claim.reference])
    absent = [v for v in sides if v not in part.variants]
    if absent:  # named by the list the variant is missing from (a tuned claim's: the tuned variants)
        listed = "the tuned variants (tuning.variants)" if part.name == "tuned" else "experiment.variants"
        return {"status": "not measured", "absent_variants": absent,
                "reason": f"{' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} not in {listed}"}
    if claim.reference == "chance" and part.chance is None:
        return {"status": "not measured", "reason": "no chance level (the tree's size is unknown)"}
    values = part.tidy[(part.tidy.metric == claim.metric) & part.tidy.value.notna()]
    missing = [v for v in sides if not (values.variant == v).any()]
    if missing:
        return {"status": "not measured", "missing_metric": missing,
                "reason": f"`{claim.metric}` was not measured for {', '.join(missing)}"}
    return None


def not_competent(claim: Any, part: Part) -> dict[str, Any] | None:
    """Any claim of a profile whose reference did not reach the declared floor on every domain. The verdict is
    withheld, not the evidence: the claim is still tested (and counted in the Holm family), and the status it
    would have had is kept as `verdict_if_competent`."""
    c = part.competence
    if not c or not c.get("checked") or c.get("competent"):
        return None
    return {"status": "not competent", "reason": "competence", "short_of_floor": list(c.get("short_of_floor") or []),
            "withhold": True}


def untestable(claim: Any, part: Part) -> dict[str, Any] | None:
    """A forgetting claim on a benchmark whose reference does not forget (the validity check)."""
    v = part.validity
    if claim.metric not in FORGETTING_METRICS or not v or not v.get("measured") or v.get("forgets"):
        return None
    return {"status": "untestable", "reason": "validity"}


#: checked in order before a claim is tested; the first that applies decides its status
GATES: list[Gate] = [not_measured, not_competent, untestable]


def gate(claim: Any, part: Part) -> dict[str, Any] | None:
    for check in GATES:
        found = check(claim, part)
        if found is not None:
            return found
    return None


def claim_entry(claim: Any, part: Part, cfg: Any) -> dict[str, Any]:
    """One claim's entry on one part: its gate, or its units and raw tests (the family is applied later)."""
    info, _ = metric_info(claim.metric)
    entry: dict[str, Any] = {"claim": claim.name, "part": part.name, "variant": claim.variant,
                             "reference": claim.reference, "metric": claim.metric, "direction": info.direction,
                             "kind": getattr(claim, "kind", "test"), "status": None, "reason": ""}
    found = gate(claim, part)
    if found is not None and not found.get("withhold"):
        entry.update(found)
        return entry
    if found is not None:  # tested, its verdict withheld after the family (apply_family)
        later = [g(claim, part) for g in GATES[GATES.index(not_competent) + 1:]]
        later = next((g for g in later if g is not None), None)
        if later is not None:  # a later gate decides what it would read (e.g. untestable): nothing to test
            entry.update({k: v for k, v in found.items() if k != "withhold"}, verdict_if_competent=later["status"])
            return entry
        entry.update({k: v for k, v in found.items() if k not in ("status", "withhold")},
                     withheld_status=found["status"])
    ref: str | float = part.chance if claim.reference == "chance" else claim.reference
    units = paired_units(part.tidy, claim.variant, ref, claim.metric, part.scheme, blocked=part.blocked)
    rng = _cell_rng(cfg.rng_seed, "claim", part.name, claim.name)
    res = compare(units.x, units.y, info.direction, units.x_paired, units.y_paired, rng, cfg.bootstrap_resamples,
                  cfg.confidence, units.blocks)
    test = cfg.primary_test if not (claim.reference == "chance" and cfg.primary_test == "welch") else "ttest_paired"
    entry.update(unit=units.kind, n_units=res["n_pairs"], n_runs=units.runs, test=test,
                 chance=part.chance if claim.reference == "chance" else None,
                 mean_variant=float(np.mean(units.x_paired)) if units.x_paired.size else math.nan,
                 mean_reference=float(np.mean(units.y_paired)) if units.y_paired.size else math.nan,
                 **{k: res[k] for k in ("mean_diff", "diff_ci_low", "diff_ci_high", "diff_se", "diff_df", "diff_sd",
                                        "blocks", "ttest_paired_p", "wilcoxon_p", "wilcoxon_min_p", "welch_p",
                                        "hedges_g_paired", "note")},
                 p=res[f"{test}_p"], planned_units=part.planned[0])
    if entry["kind"] == "property":  # a design constant: the values with their intervals, no test
        for side, values in (("variant", units.x_paired), ("reference", units.y_paired)):
            lo, hi = mean_interval(values, cfg.confidence)
            entry.update({f"{side}_ci_low": lo, f"{side}_ci_high": hi})
        entry["status"] = "measured"
        if entry.get("withheld_status"):  # a property is not tested: its status is withheld here
            entry["verdict_if_competent"], entry["status"] = "measured", entry.pop("withheld_status")
    return entry


def apply_family(entries: Iterable[dict[str, Any]], cfg: Any) -> dict[str, Any]:
    """Holm over the tested entries (the family), then power, equivalence and each entry's status. Returns the
    family's description (its members, size and the level used for power)."""
    entries = list(entries)
    members = [e for e in entries if e["status"] is None]
    adjusted = holm([e["p"] for e in members])
    size = int(sum(np.isfinite(e["p"]) for e in members)) if members else 0
    alpha_m = cfg.alpha / max(size, 1)
    margins = cfg.equivalence_margins or {}
    for e, p_holm in zip(members, adjusted):
        e.update(p_holm=float(p_holm), family_size=size,
                 wilcoxon_min_p_holm=min(1.0, e["wilcoxon_min_p"] * max(size, 1)))
        e.update(power_summary(e, alpha_m, margins.get(e["metric"]), (e["planned_units"], _blocks(e))))
    tost = [e for e in members if e["equivalence_testable"]]
    for e, p in zip(tost, holm([e["tost_p"] for e in tost])):
        e["tost_p_holm"] = float(p)
    for e in members:
        e.setdefault("tost_p_holm", math.nan)
        e["status"] = decide(e, cfg.alpha)
        if e.get("withheld_status"):  # a gate that withholds the verdict, not the test (not_competent)
            e["verdict_if_competent"], e["status"] = e["status"], e.pop("withheld_status")
    return {"members": [f"{e['part']}/{e['claim']}" for e in members], "size": size, "power_alpha": alpha_m,
            "equivalence_tests": len(tost), "test": cfg.primary_test, "alpha": cfg.alpha,
            "rule": "Holm over the declared claims tested (as specified and tuned together); equivalence tests "
                    "(TOST) only where they have 80 % power at a true difference of 0 at the planned n, "
                    "Holm-corrected among themselves"}


def _blocks(entry: Mapping[str, Any]) -> int:
    """Blocks of the planned design: the domain orders when units are runs of several orders, else 1."""
    return int(entry.get("blocks") or 1) if entry.get("unit") == "run" else 1


def decide(entry: Mapping[str, Any], alpha: float) -> str:
    """The status of a tested claim from its Holm-adjusted tests (see the module docstring)."""
    p, diff = entry.get("p_holm"), entry.get("mean_diff")
    if p is None or diff is None or not (math.isfinite(p) and math.isfinite(diff)):
        return "inconclusive"
    if p < alpha:
        lower = diff < 0
        better = lower if entry["direction"] == "lower" else not lower
        return "supported" if better else "contradicted"
    tost = entry.get("tost_p_holm")
    if entry.get("equivalence_testable") and tost is not None and math.isfinite(tost) and tost < alpha:
        return "equivalent"
    return "inconclusive"


def claim_parts(parts: Sequence[Part], claims: Sequence[Any], cfg: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every claim on every part, one Holm family across the parts: ({part: {claim: entry}}, family)."""
    out: dict[str, dict[str, Any]] = {}
    entries = []
    for part in parts:
        out[part.name] = {}
        for claim in claims:
            if part.name != "as_specified" and claim.reference == "chance":
                continue  # attribution probes run on the main comparison only
            e = claim_entry(claim, part, cfg)
            out[part.name][claim.name] = e
            entries.append(e)
    family = apply_family(entries, cfg)
    return out, family


def without_runs(tidy: pd.DataFrame, runs: Iterable[tuple[str, str, int]]) -> pd.DataFrame:
    """The tidy table without the given (variant, order, seed) runs (a sensitivity analysis)."""
    drop = set(runs)
    keys = list(zip(tidy["variant"], tidy["order"], tidy["seed"].astype(int)))
    return tidy[[k not in drop for k in keys]]


def part_for(name: str, tidy: pd.DataFrame, variants: Sequence[str], validity: Mapping[str, Any] | None,
             params: Any, chance: float | None, n_orders: int | None = None,
             competence: Mapping[str, Any] | None = None) -> Part:
    """A Part with the planned design of the params (`n_orders`: the orders it spans, default all)."""
    scheme = params.experiment.init_seed
    orders = len(params.orders) if n_orders is None else n_orders
    blocked = orders_are_blocks(params)
    return Part(name, tidy, variants, validity, scheme,
                planned_units(len(params.experiment.seeds), orders, scheme, blocked), chance, competence, blocked)
