"""`frontier:` each method along the knob that trades learning against stability (DESIGN.md §12).

A method that learns less can forget less for that reason alone, so one setting per method answers
nothing. Each method listed under `knobs` is run one knob value at a time around the profile's own
settings (the base, which is the main comparison's setting), and the methods are compared by their
frontiers: plasticity (mean R[j][j]) against forgetting and against final average bpb.

The frontier's runs are those of `seeds`: frontier seed i trains in the i-th domain order of the main
comparison (cycling), so its base point is that seed's main-comparison run and is never trained twice.
The two claims (`method` against `reference`) are declared here, before any run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from k1model.config.checks import Integer, ListOf, MapOf, Nullable, Section, setting
from k1model.config.experiment import METHOD_KEY, VALUES, VARIANT


@dataclass(frozen=True)
class FrontierConfig(Section):
    SECTION = "frontier"
    DESCRIPTION = ("stability-plasticity frontiers: every listed method run one knob value at a time around the "
                   "profile's settings, on `seeds`; no knobs = no frontier")

    knobs: Mapping[str, Mapping[str, tuple[Any, ...]]] = setting(
        check=MapOf(VARIANT, MapOf(METHOD_KEY, VALUES, "a mapping method key -> values"),
                    "a mapping variant -> {method key: values}"),
        factory=dict, doc="per method, the knobs that trade learning against stability and their values (one at a "
                          "time around the profile's settings; the profile's own value is the base point)")
    seeds: tuple[int, ...] = setting((), ListOf(Integer(0), unique=True, what="a list of distinct evaluation seeds"),
                                     "the frontier's runs: evaluation seeds (a subset of experiment.seeds); seed i "
                                     "trains in the i-th order of the main comparison, cycling")
    method: str | None = setting("k1_full", Nullable(VARIANT), "the method the frontier claims test")
    reference: str | None = setting("dense", Nullable(VARIANT),
                                    "the reference along whose frontier the method's forgetting is compared")

    @property
    def active(self) -> bool:
        return bool(self.knobs)
