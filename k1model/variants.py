"""The six variants of the ablation study (DESIGN.md §2.4), each a small config object.

One training loop serves all of them: a variant only says how agents are *selected*
(and whether trust and LOO take part). Everything else (architecture, data order,
optimiser, step budget, seeds) is shared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Selection = Literal["drilldown", "topk", "all", "random_path"]


@dataclass(frozen=True)
class Variant:
    name: str
    selection: Selection
    use_trust: bool  # cooldown gates eligibility
    use_loo: bool  # hybrid (gradient x LOO) scores; False = gradient only, and no LOO is computed
    description: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("k1_full", "drilldown", True, True,
                "drill-down + proportional scales + trust + hybrid (gradient + LOO) scores"),
        Variant("flat_topk", "topk", True, True,
                "no hierarchy: the K highest-scoring eligible agents get scale 1 (K = tree depth)"),
        Variant("no_trust", "drilldown", False, True, "k1_full without the trust cooldown"),
        Variant("no_loo", "drilldown", True, False, "k1_full with gradient-only scores"),
        Variant("dense", "all", False, False, "every agent at scale 1 every step: ordinary backprop"),
        Variant("random_path", "random_path", True, False,
                "control: a uniformly random eligible child at each level, same scales and trust as k1_full"),
    )
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"invalid value for 'variant': {name!r}; allowed: {', '.join(VARIANTS)}") from None
