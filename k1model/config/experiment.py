"""`experiment:` which runs the pipeline makes (variants × seeds × domain orders), and how a run's seed is made."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

import k1model.config.registry as registry
from k1model.config.checks import (AnyValue, Either, Integer, ListOf, MapOf, Nested, Nullable, OneOf, Section, Text,
                                   setting)
from k1model.config.train import DOMAIN

VARIANT = OneOf(registry.variant_names)  # the registered variants, read when checking
ORDER = ListOf(DOMAIN, min_len=1, unique=True, what="a list of domains (a permutation of data.domains)")
#: the largest seed: seeds are stored as signed 64-bit integers (the tidy table's seed column, torch's generators)
MAX_SEED = 2**63 - 1
SEED = Integer(0, MAX_SEED)
SEEDS = ListOf(SEED, unique=True, what=f"a list of distinct integers from 0 to {MAX_SEED}")
METHOD_KEY = Text(r"[a-z_]+", "a method key")
VALUES = ListOf(AnyValue(), min_len=1, what="a non-empty list of values")


INIT_SEEDS = ("per_order", "shared")


def init_seed(seed: int, order: Sequence[str], scheme: str) -> int | None:
    """The seed a run's initial weights and data stream come from, or None for the seed itself (`shared`).

    `per_order`: a stable hash of (seed, order) -- the first 8 bytes of sha256("k1-init:<seed>:<a>-<b>-...")
    modulo 2**31 -- so seed k in two orders starts from two unrelated initialisations, and the same (seed,
    order) always from the same one, on every machine and Python."""
    if scheme == "shared":
        return None
    if scheme != "per_order":
        raise ValueError(f"experiment.init_seed must be one of {INIT_SEEDS}, got {scheme!r}")
    digest = hashlib.sha256(f"k1-init:{int(seed)}:{'-'.join(order)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31


@dataclass(frozen=True)
class OrderDraw(Section):
    """`experiment.orders: {draw: k, seed: s}`: k distinct orders drawn uniformly from the permutations."""

    SECTION = "experiment.orders"
    DESCRIPTION = "draw k distinct domain orders uniformly from the permutations of data.domains, with a fixed seed"

    draw: int = setting(2, Integer(1), "how many distinct orders (at most the number of permutations)")
    seed: int = setting(0, Integer(0), "seed of the draw (numpy's default_rng)")

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """Without defaults (`draw` required): a validator that fills defaults (Snakemake's) visits this branch of
        `orders` for a list or null too, and must not try to set keys there."""
        out = super().schema()
        for node in out["properties"].values():
            node.pop("default", None)
        return {**out, "required": ["draw"]}

    def orders(self, domains: Sequence[str]) -> list[tuple[str, ...]]:
        """The drawn orders, in the order drawn: uniform random permutations of `domains` (numpy's default_rng
        seeded with `seed`), repeats discarded, until `draw` distinct ones. The same params give the same orders."""
        total = math.factorial(len(domains))
        if self.draw > total:
            raise self.invalid("draw", f"at most {total}, the number of orders of the {len(domains)} domains")
        rng = np.random.default_rng(self.seed)
        drawn: list[tuple[str, ...]] = []
        while len(drawn) < self.draw:
            order = tuple(domains[i] for i in rng.permutation(len(domains)))
            if order not in drawn:
                drawn.append(order)
        return drawn


ORDERS = Either(ListOf(ORDER, min_len=1, unique=True), Nested(OrderDraw, nullable=False),
                what="a list of domain orders (each a permutation of data.domains), or {draw: k, seed: s}")


@dataclass(frozen=True)
class ExperimentConfig(Section):
    """`experiment:` the main comparison's variants, seeds and domain orders."""
    SECTION = "experiment"
    DESCRIPTION = "the main comparison: every variant x seed x domain order (seeds fixed before any run)"

    variants: tuple[str, ...] = setting(("k1_full", "dense"), ListOf(VARIANT, min_len=1, unique=True),
                                        "variants to train (see k1model.method.variants)")
    seeds: tuple[int, ...] = setting((0, 1, 2), ListOf(SEED, min_len=1, unique=True),
                                     "evaluation seeds, fixed before any run")
    orders: tuple[tuple[str, ...], ...] | OrderDraw | None = setting(
        None, Nullable(ORDERS),
        "domain orders: a list (each a permutation of data.domains), or {draw: k, seed: s} for k distinct orders "
        "drawn uniformly from the permutations; every run is trained in each; null = data.domains")
    init_seed: str = setting("per_order", OneOf(INIT_SEEDS),
                             "what a run's initial weights and data stream derive from: per_order = a stable hash of "
                             "(seed, order), so every run is its own initialisation; shared = the seed alone, the "
                             "same in every order (the behaviour before issue 31; its runs keep their config hash)")


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
        """The params ask for a sweep (they name factors)."""
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
        """The params ask for tuning (they name candidates)."""
        return bool(self.candidates)
