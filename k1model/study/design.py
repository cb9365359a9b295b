"""The study design above the config layer: which tuning candidates each variant runs.

The points themselves (names, validated settings, the sweep) are `k1model.config.design`, re-exported
here; a variant's candidates leave out the keys it cannot read (`Variant.reads()`), so a candidate that
only changes such a key is not run twice.
"""
from __future__ import annotations

from typing import Any

from k1model.config.design import (Overrides, Point, as_dict, check_tuning, describe, format_value, grid_points,
                                   point_name, restrict, sweep_points, tuned_variants, with_overrides)
from k1model.config.method import MethodConfig

__all__ = ["Overrides", "Point", "as_dict", "check_tuning", "describe", "format_value", "point_name", "restrict",
           "sweep_points", "tuning_candidates", "with_overrides"]


def tuning_candidates(params: Any) -> dict[str, list[Point]]:
    """Per tuned variant: every combination of its candidate values (keys it does not read dropped)."""
    import dataclasses

    from k1model.method.variants import get_variant

    out: dict[str, list[Point]] = {}
    for v in tuned_variants(params):
        grid = {**params.tuning.candidates.get("default", {}), **params.tuning.candidates.get(v, {})}
        reads = get_variant(v).reads()
        grid = {k: vals for k, vals in grid.items() if k in reads or k not in MethodConfig.field_names()}
        points = grid_points(dataclasses.replace(params.method, variant=v), grid, f"tuning candidate {v}",
                             f"tuning.candidates for {v}")
        out[v] = points or [Point("base", ())]
    return out
