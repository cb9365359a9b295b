"""`experiment:` which runs the pipeline makes (variants × seeds)."""
from __future__ import annotations

from dataclasses import dataclass

from k1model.config.checks import Integer, ListOf, OneOf, Section, setting
from k1model.config.method import _variant_names

VARIANT = OneOf(_variant_names)


@dataclass(frozen=True)
class ExperimentConfig(Section):
    SECTION = "experiment"
    DESCRIPTION = "the runs: every variant x seed (seeds fixed before any run)"

    variants: tuple[str, ...] = setting(("k1_full", "dense"), ListOf(VARIANT, min_len=1, unique=True),
                                        "variants to train (see k1model.method.variants)")
    seeds: tuple[int, ...] = setting((0, 1, 2), ListOf(Integer(0), min_len=1, unique=True),
                                     "evaluation seeds, fixed before any run")
