"""The parts of summary.json that decide the paper's verdicts: the declared claims as one Holm family (as
specified and tuned), the same claims per domain order (a secondary family), the design they rest on, the
runs that diverged with each affected verdict without them, and the measured coverage of the intervals at
the study's own n. `aggregate.py` calls `claims_doc`; the statistics themselves are `claim_tests.py`."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from k1model.cl_metrics import DIVERGENCE_RULE
from k1model.analysis.claim_tests import Part, claim_parts, part_for, without_runs
from k1model.analysis.claims import all_claims
from k1model.analysis.intervals import INTERVAL_METHODS, coverage
from k1model.analysis.units import orders_are_blocks, describe_units, planned_units, unit_kind

#: the simulation behind summary.json `interval_coverage` (a fraction of a second per distribution)
COVERAGE_REPS = 20000


def declared_claims() -> tuple[Any, ...]:
    """The claims the paper tests (core claims and each strategy's: `claims.all_claims`)."""
    return all_claims()


def design_doc(params: Any) -> dict[str, Any]:
    """What a unit is and how many the params plan: every reported n is a number of initialisations."""
    scheme, orders = params.experiment.init_seed, params.orders
    n_seeds = len(params.experiment.seeds)
    blocked = orders_are_blocks(params)
    units, blocks = planned_units(n_seeds, len(orders), scheme, blocked)
    kind = unit_kind(scheme, len(orders))
    drawn = params.experiment.orders
    return {"init_seed": scheme, "unit": kind, "units_per_variant": units, "blocks": blocks,
            "runs_per_variant": n_seeds * len(orders), "seeds": n_seeds, "orders": ["-".join(o) for o in orders],
            "orders_drawn": drawn.to_dict() if hasattr(drawn, "draw") else None,
            "permutations": math.factorial(len(params.data.domains)),
            "units_text": describe_units(kind, units, n_seeds * len(orders)),
            "analysis": ("the runs are the units (each its own initialisation) and the order is a block: the mean "
                         "of the order means, with the pooled within-order variance, df = n - orders"
                         if kind == "run" and len(orders) > 1 and blocked else
                         "the runs are the units (each its own initialisation); the orders, drawn at random from the "
                         "permutations, are a sample of them, not blocks: their effect is part of the variation "
                         "between units, df = n - 1" if kind == "run" and len(orders) > 1 else
                         "the seeds are the units, each the mean of its runs across the orders (in a balanced "
                         "design the test of a mixed model with a random intercept per initialisation and the "
                         "order as a fixed effect)" if kind == "seed" else
                         "the runs are the units (one order)")}


def diverged_runs(tidy: pd.DataFrame, records: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Runs flagged as diverged: the tidy table's `diverged` flag (kept in the statistics) and failed runs whose
    loss stopped being finite (excluded: they have no numbers)."""
    flagged = tidy[(tidy.metric == "diverged") & (tidy.value == 1.0)]
    out = [{"variant": r.variant, "order": r.order, "seed": int(r.seed), "part": getattr(r, "part", "as_specified"),
            "kept": True} for r in flagged.itertuples()]
    for rec in records:
        if not rec.completed and (rec.metrics.get("divergence") or {}).get("diverged"):
            out.append({"variant": rec.variant, "order": rec.order, "seed": int(rec.seed), "part": "as_specified",
                        "kept": False, "reasons": rec.metrics["divergence"].get("reasons", [])})
    return out


def claims_doc(doc: dict[str, Any], params: Any, cfg: Any, tidy: pd.DataFrame, tidy_tuned: pd.DataFrame | None,
               records: Sequence[Any] = ()) -> dict[str, Any]:
    """Fill `doc` (summary.json) with claims, tuned.claims, by_order.<o>.claims, the families, the design, the
    divergence block and the measured interval coverage; returns the claim entries by part."""
    claims = declared_claims()
    chance = 1.0 / params.model.num_agents
    competence = doc.get("competence")  # one profile, one check: it gates every part
    parts = [part_for("as_specified", tidy, cfg.variants, doc.get("validity"), params, chance, competence=competence)]
    if tidy_tuned is not None and "tuned" in doc:
        tuned_variants = [v for v in cfg.variants if v in set(tidy_tuned.variant)]
        parts.append(part_for("tuned", tidy_tuned, tuned_variants, doc["tuned"].get("validity"), params, chance,
                              competence=competence))
    by_part, family = claim_parts(parts, claims, cfg)
    doc["claims"] = by_part["as_specified"]
    if "tuned" in by_part:
        doc["tuned"]["claims"] = by_part["tuned"]
    doc["claim_family"] = family
    if "by_order" in doc:  # secondary: the claims within each order, a family of their own
        order_parts = [part_for(f"order {o}", tidy[tidy.order == o], cfg.variants, doc["by_order"][o].get("validity"),
                                params, chance, n_orders=1, competence=competence) for o in doc["by_order"]]
        by_order, order_family = claim_parts(order_parts, claims, cfg)
        for o in doc["by_order"]:
            doc["by_order"][o]["claims"] = by_order[f"order {o}"]
        doc["order_claim_family"] = order_family
    doc["design"] = design_doc(params)
    doc["divergence"] = divergence_doc(parts, claims, cfg, by_part, records)
    doc["interval_coverage"] = coverage_doc(doc["design"]["units_per_variant"], cfg.confidence)
    return by_part


def divergence_doc(parts: Sequence[Part], claims: Sequence[Any], cfg: Any, by_part: Mapping[str, Any],
                   records: Sequence[Any]) -> dict[str, Any]:
    """The diverged runs, kept in every statistic, and each verdict that involves one of them recomputed
    without them (the whole family again, so the Holm correction is the one that analysis would have)."""
    runs = []
    for part in parts:
        found = diverged_runs(part.tidy.assign(part=part.name), records if part.name == "as_specified" else ())
        runs += [{**r, "part": part.name} for r in found]
    out: dict[str, Any] = {"rule": DIVERGENCE_RULE, "runs": runs, "sensitivity": {},
                           "policy": "kept in every statistic (never dropped silently); each verdict involving one is "
                                     "also given without it"}
    kept = [r for r in runs if r["kept"]]
    if not kept:
        return out
    reduced = [Part(p.name, without_runs(p.tidy, [(r["variant"], r["order"], r["seed"]) for r in kept
                                                  if r["part"] == p.name]),
                    p.variants, p.validity, p.scheme, p.planned, p.chance, p.competence, p.blocked) for p in parts]
    again, family = claim_parts(reduced, claims, cfg)
    for part in parts:
        touched = {r["variant"] for r in kept if r["part"] == part.name}
        for name, entry in by_part[part.name].items():
            if entry["variant"] in touched or entry["reference"] in touched:
                new = again[part.name][name]
                out["sensitivity"].setdefault(part.name, {})[name] = {
                    "status": new["status"], "status_with": entry["status"], "p_holm": new.get("p_holm"),
                    "mean_diff": new.get("mean_diff"), "n_units": new.get("n_units"), "family_size": family["size"]}
    return out


def coverage_doc(n: int, confidence: float) -> dict[str, Any]:
    """The mean's intervals' coverage simulated at the study's own n (normal, lognormal, t3 samples)."""
    doc: dict[str, Any] = {"n": int(n), "confidence": confidence, "reps": COVERAGE_REPS,
                           "interval": INTERVAL_METHODS["mean"]}
    if n < 2:
        return doc
    doc["coverage"] = coverage(n, confidence, COVERAGE_REPS)
    return doc
