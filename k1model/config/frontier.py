"""`frontier:` each method along the knob that trades learning against stability (DESIGN.md §12).

A method that learns less can forget less for that reason alone, so one setting per method answers
nothing. Each method listed under `knobs` is run one knob value at a time around the profile's own
settings (the base, which is the main comparison's setting), and the methods are compared by their
frontiers: plasticity (mean R[j][j]) against forgetting and against final average bpb.

The frontier's runs are `replicates` initialisations of the main comparison: its (order, seed) pairs, order by
order for the first evaluation seed, then the next seed. A frontier run starts from the same initialisation and
sees the same order as the main-comparison run it pairs with, so its base point is read, never trained twice.
The two claims (`method` against `reference`) are declared here, before any run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from k1model.config.checks import Integer, MapOf, Nullable, Section, setting
from k1model.config.experiment import METHOD_KEY, VALUES, VARIANT


@dataclass(frozen=True)
class FrontierConfig(Section):
    SECTION = "frontier"
    DESCRIPTION = ("stability-plasticity frontiers: every listed method run one knob value at a time around the "
                   "profile's settings, on `replicates` of the main comparison's initialisations; no knobs = no "
                   "frontier")

    knobs: Mapping[str, Mapping[str, tuple[Any, ...]]] = setting(
        check=MapOf(VARIANT, MapOf(METHOD_KEY, VALUES, "a mapping method key -> values"),
                    "a mapping variant -> {method key: values}"),
        factory=dict, doc="per method, the knobs that trade learning against stability and their values (one at a "
                          "time around the profile's settings; the profile's own value is the base point)")
    replicates: int = setting(3, Integer(2), "runs per frontier setting: the main comparison's first N "
                              "initialisations, its (order, seed) pairs order by order for the first evaluation "
                              "seed, then the next (at least 2: a setting's interval needs two runs)")
    method: str | None = setting("k1_full", Nullable(VARIANT), "the method the frontier claims test")
    reference: str | None = setting("dense", Nullable(VARIANT),
                                    "the reference along whose frontier the method's forgetting is compared")

    @property
    def active(self) -> bool:
        return bool(self.knobs)
