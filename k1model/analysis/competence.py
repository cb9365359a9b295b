"""Did the networks learn their tasks? The competence check beside the forgetting check (DESIGN.md §12).

A forgetting result means something only for a model that first learned its domains. The check: the
reference method (`analysis.forgetting_reference`, dense by default) reaches the declared floor
(`analysis.competence_floor`, a smoothed byte n-gram model fitted on the training split, default the
trigram) or better on every domain right after that domain's own phase: R[j][j] of its runs, whose
interval (`analysis.confidence`) must lie at or below the floor. A profile that fails it is "not
competent" and every one of its claims is marked so: what such a study forgets is byte statistics.

Pure: the R matrices come in as records, the floors as the dict `k1 floors` writes; no I/O.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np

from k1model.analysis.intervals import t_interval


def own_phase_bpb(records: Iterable[Any], variant: str) -> dict[str, list[float]]:
    """{domain: [R[j][j] of every completed run of `variant`]}: each domain's bpb right after its own phase."""
    out: dict[str, list[float]] = {}
    for rec in records:
        if rec.variant != variant or not rec.completed or not rec.metrics.get("R"):
            continue
        R = np.asarray(rec.metrics["R"], dtype=float)
        domains = list(rec.metrics.get("domains") or dict.fromkeys(rec.metrics.get("phases") or []))
        for j, domain in enumerate(domains[: R.shape[0]]):
            out.setdefault(domain, []).append(float(R[j, j]))
    return out


def competence_check(records: Iterable[Any], floors: Mapping[str, Any], *, reference: str, floor: str,
                     confidence: float, split: str = "test") -> dict[str, Any]:
    """Per domain: the floor's bpb, the reference's R[j][j] (n, mean, interval) and whether it reached the
    floor (upper bound of the interval at or below it); `competent` when every domain did.

    `floors` is `k1 floors`' document ({"domains": {domain: {split: {name: bpb}}}})."""
    learned = own_phase_bpb(records, reference)
    doc: dict[str, Any] = {
        "reference": reference, "floor": floor, "split": split, "confidence": float(confidence),
        "rule": (f"competent when {reference}'s bpb on every domain right after its own phase (R[j][j]) reaches the "
                 f"{floor} floor: the upper bound of its {confidence:.0%} t-interval at or below the {floor} model's "
                 f"held-out bpb ({split} split; the n-gram model fitted on the domain's training split)"),
        "domains": {},
    }
    known = floors.get("domains", {})
    for domain, values in learned.items():
        arr = np.asarray(values, dtype=float)
        arr = arr[np.isfinite(arr)]
        bound = known.get(domain, {}).get(split, {}).get(floor)
        lo, hi = t_interval(arr, confidence) if arr.size >= 2 else (math.nan, math.nan)
        mean = float(arr.mean()) if arr.size else math.nan
        reached = bool(bound is not None and arr.size >= 2 and hi <= bound)
        doc["domains"][domain] = {"n": int(arr.size), "mean": mean, "ci_low": lo, "ci_high": hi,
                                  "floor_bpb": None if bound is None else float(bound), "reached": reached,
                                  "margin": None if bound is None else float(bound - mean)}
    missing = [d for d, v in doc["domains"].items() if v["floor_bpb"] is None]
    doc["missing_floors"] = missing
    doc["competent"] = bool(doc["domains"]) and not missing and all(v["reached"] for v in doc["domains"].values())
    doc["short_of_floor"] = [d for d, v in doc["domains"].items() if not v["reached"]]
    return doc
