"""The frontier's runs (DESIGN.md §12): every method of `frontier.knobs` at each knob value alone.

The frontier's replicates are the main comparison's first initialisations, (order, seed) pairs order by order
for the first evaluation seed, then the next; the base point of a method is its main-comparison runs, read, never
trained twice. Other points live under `frontier/<point>/<variant>/<order>/seed<k>` (relative to the results).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k1model.config.design import frontier_points, restrict

from k1model.errors import ConfigError


@dataclass(frozen=True)
class FrontierCell:
    """Where the result of (variant, point, seed) lives: its own run, or the main comparison's (base)."""

    variant: str
    point: str
    knob: str | None
    value: Any
    seed: int
    order: tuple[str, ...]
    path: str
    own_run: bool


def replicates(params: Any) -> list[tuple[int, tuple[str, ...]]]:
    """The frontier's (seed, order) pairs: the main comparison's first `frontier.replicates` initialisations."""
    pairs = [(seed, tuple(order)) for seed in params.experiment.seeds for order in params.orders]
    return pairs[:params.frontier.replicates]


def frontier_cells(params: Any, main_path: Any) -> list[FrontierCell]:
    """Every cell of the frontier; `main_path(variant, seed, order)` is the main comparison's run path."""
    from k1model.method.variants import get_variant

    if not params.frontier.active:
        return []
    cells: list[FrontierCell] = []
    for variant, points in frontier_points(params).items():
        reads = get_variant(variant).reads()
        for point in points:
            key, value = (point.overrides[0] if point.overrides else (None, None))
            if point.overrides and not restrict(point.overrides, reads):
                raise ConfigError(f"frontier.knobs.{variant}.{key}: {variant} does not read {key}, so every value "
                                  f"would repeat its base run; knobs it reads: {', '.join(sorted(reads))}")
            for seed, order in replicates(params):
                base = not point.overrides
                path = (main_path(variant, seed, order) if base
                        else f"frontier/{point.name}/{variant}/{'-'.join(order)}/seed{seed}")
                cells.append(FrontierCell(variant, point.name, key, value, seed, order, path, not base))
    return cells
