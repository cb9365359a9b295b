"""`experiment:` which runs the pipeline makes (variants × seeds)."""
from __future__ import annotations

from dataclasses import dataclass

from typing import Any, Mapping

import k1model.config.registry as registry
from k1model.config.checks import AnyValue, Integer, ListOf, MapOf, Nullable, OneOf, Section, Text, setting
from k1model.config.train import DOMAIN

VARIANT = OneOf(registry.variant_names)  # the registered variants, read when checking
ORDER = ListOf(DOMAIN, min_len=1, unique=True, what="a list of domains (a permutation of data.domains)")
SEEDS = ListOf(Integer(0), unique=True, what="a list of distinct non-negative integers")
METHOD_KEY = Text(r"[a-z_]+", "a method key")
VALUES = ListOf(AnyValue(), min_len=1, what="a non-empty list of values")


@dataclass(frozen=True)
class ExperimentConfig(Section):
    SECTION = "experiment"
    DESCRIPTION = "the main comparison: every variant x seed x domain order (seeds fixed before any run)"

    variants: tuple[str, ...] = setting(("k1_full", "dense"), ListOf(VARIANT, min_len=1, unique=True),
                                        "variants to train (see k1model.method.variants)")
    seeds: tuple[int, ...] = setting((0, 1, 2), ListOf(Integer(0), min_len=1, unique=True),
                                     "evaluation seeds, fixed before any run")
    orders: tuple[tuple[str, ...], ...] | None = setting(
        None, Nullable(ListOf(ORDER, min_len=1, unique=True)),
        "domain orders (each a permutation of data.domains); every run is trained in each; null = data.domains")


@dataclass(frozen=True)
class SweepConfig(Section):
    """A sensitivity study around the profile's own method settings (the base)."""

    SECTION = "sweep"
    DESCRIPTION = ("sensitivity study: method keys varied around the profile's settings (the base); no factors = "
                   "no sweep")

    design: str = setting("one_at_a_time", OneOf(("one_at_a_time", "grid")),
                          "one_at_a_time: the base plus every factor value alone; grid: every combination")
    factors: Mapping[str, tuple[Any, ...]] = setting(check=MapOf(METHOD_KEY, VALUES, "a mapping method key -> values"),
                                                     factory=dict, doc="method key -> values to try")
    variants: tuple[str, ...] = setting(("k1_full", "dense"), ListOf(VARIANT, min_len=1, unique=True),
                                        "variants run at every point (a point that cannot change a variant reuses "
                                        "its base run)")
    seeds: tuple[int, ...] = setting((), SEEDS, "the sweep's own seeds")
    order: tuple[str, ...] | None = setting(None, Nullable(ORDER), "domain order of the sweep; null = the first order")

    @property
    def active(self) -> bool:
        return bool(self.factors)


@dataclass(frozen=True)
class TuningConfig(Section):
    """Per-variant choice of method settings on the validation split with tuning seeds."""

    SECTION = "tuning"
    DESCRIPTION = ("the tuned comparison: every variant's settings chosen on the validation split with tuning "
                   "seeds (disjoint from experiment.seeds), then run on the evaluation seeds; no candidates = none")

    candidates: Mapping[str, Mapping[str, tuple[Any, ...]]] = setting(
        check=MapOf(Text(r"[a-z0-9_]+", "a variant name or 'default'"),
                    MapOf(METHOD_KEY, VALUES, "a mapping method key -> values"),
                    "a mapping variant (or default) -> {method key: values}"),
        factory=dict, doc="candidate values per variant ('default' applies to every variant, a variant's entry "
                          "adds or overrides keys); every combination is a candidate")
    variants: tuple[str, ...] | None = setting(None, Nullable(ListOf(VARIANT, min_len=1, unique=True)),
                                               "variants to tune; null = experiment.variants")
    seeds: tuple[int, ...] = setting((), SEEDS, "tuning seeds (disjoint from experiment.seeds)")
    metric: str = setting("final_avg_bpb", OneOf(("final_avg_bpb", "forgetting", "bwt")),
                          "the validation metric that chooses (lower is better), from each run's validation R matrix")
    order: tuple[str, ...] | None = setting(None, Nullable(ORDER), "domain order of the tuning runs; null = the first order")

    @property
    def active(self) -> bool:
        return bool(self.candidates)
