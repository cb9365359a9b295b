"""The points of a study design: readable names, validated method settings, no duplicates.

A point (a sweep point, or a tuning candidate) is a set of method overrides with a readable name in
the Snakemake Paramspace style: `base`, `trust_increase~0.03`, `learning_rate~0.003/ewc_lambda~10`.
Every point is validated as a full method config before any run, and a bad one is named with its key.
This is the part of the design the config layer checks (`Params.check_design`); which candidates a
variant actually runs (dropping the keys it does not read) is `k1model.study.design`.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from k1model.config.method import MethodConfig
from k1model.errors import ConfigError

Overrides = tuple[tuple[str, Any], ...]


def format_value(value: Any) -> str:
    """A value as it appears in a path: 0.003, 1e-05, 1.0_0.15_0.05, per_update, true."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "_".join(format_value(v) for v in value)
    return str(value)


def point_name(overrides: Overrides) -> str:
    """A point's name from its overrides (`key~value/...`; no override: `base`)."""
    return "/".join(f"{k}~{format_value(v)}" for k, v in overrides) or "base"


@dataclass(frozen=True)
class Point:
    """One setting of a sweep or tuning grid: the method keys it changes and its name."""
    name: str
    overrides: Overrides  # (method key, value) pairs, in factor order
    factor: str | None = None  # one-at-a-time: the factor this point varies


def with_overrides(method: MethodConfig, overrides: Iterable[tuple[str, Any]], where: str) -> MethodConfig:
    """`method` with some keys replaced, validated; errors name `where` (the point) and the key."""
    overrides = list(overrides)
    allowed = MethodConfig.field_names()
    for key, _ in overrides:
        if key not in allowed:
            raise ConfigError(f"{where}: {key!r} is not a method key; allowed: {', '.join(allowed)}")
    try:
        cfg = MethodConfig.from_mapping({**method.to_dict(params_only=True), **dict(overrides)})
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    return dataclasses.replace(cfg, variant=method.variant)


def _normalised(method: MethodConfig, overrides: Overrides, where: str) -> Overrides:
    cfg = with_overrides(method, overrides, where)
    return tuple((k, getattr(cfg, k)) for k, _ in overrides)


def sweep_points(params: Any) -> list[Point]:
    """The points of `params.sweep` around `params.method` (the base), validated."""
    sweep, base = params.sweep, params.method
    points = [Point("base", ())]
    seen = {(): "base"}
    if sweep.design == "one_at_a_time":
        candidates = [((key, v),) for key, values in sweep.factors.items() for v in values]
    else:
        keys = list(sweep.factors)
        candidates = [tuple(zip(keys, combo)) for combo in itertools.product(*sweep.factors.values())]
    for raw in candidates:
        where = f"sweep point {point_name(raw)}"
        overrides = _normalised(base, raw, where)
        effective = tuple((k, v) for k, v in overrides if getattr(base, k) != v)
        if sweep.design == "one_at_a_time" and not effective:
            continue  # a factor value equal to the base: that point is the base
        if effective in seen and (sweep.design == "grid" or seen[effective] != "base"):
            raise ConfigError(f"sweep: duplicate points: {point_name(raw)} is the same setting as {seen[effective]}; "
                              "list every value once")
        seen[effective] = point_name(overrides)
        points.append(Point(point_name(overrides), overrides,
                            raw[0][0] if sweep.design == "one_at_a_time" else None))
    return points


def grid_points(method: MethodConfig, grid: Mapping[str, Iterable[Any]], where: str, dup: str) -> list[Point]:
    """Every combination of `grid` (method key -> values) as a validated point around `method`; a duplicate
    (two combinations that normalise to the same setting) is an error, `dup` names the grid in it."""
    keys = list(grid)
    points: list[Point] = []
    seen: dict[Overrides, str] = {}
    for combo in itertools.product(*grid.values()):
        raw = tuple(zip(keys, combo))
        overrides = _normalised(method, raw, f"{where}/{point_name(raw)}")
        if overrides in seen:
            raise ConfigError(f"{dup}: duplicate candidates {point_name(raw)} and {seen[overrides]}; list every "
                              "value once")
        seen[overrides] = point_name(overrides)
        points.append(Point(point_name(overrides), overrides))
    return points


def frontier_points(params: Any) -> dict[str, list[Point]]:
    """Per frontier method: its base and every knob value alone around `params.method`, validated. The frontier's
    replicates must be main-comparison initialisations and its methods and claims' variants in the main comparison (the base point
    is the main comparison's run). Whether the method reads each knob is checked with the run plan
    (`k1model.study.plan`: a knob it does not read would repeat its base run)."""
    frontier, exp = params.frontier, params.experiment
    available = len(params.orders) * len(exp.seeds)
    if frontier.replicates > available:
        raise ConfigError(f"frontier.replicates {frontier.replicates} > the main comparison's {available} "
                          f"initialisations ({len(params.orders)} orders x {len(exp.seeds)} seeds): a frontier run "
                          "pairs with a main-comparison run; lower it or add seeds")
    for key in ("method", "reference"):
        name = getattr(frontier, key)
        if name is not None and name not in frontier.knobs:
            raise ConfigError(f"frontier.{key}: {name!r} has no knobs; add frontier.knobs.{name} or set "
                              f"frontier.{key} to one of {', '.join(frontier.knobs)}")
    out: dict[str, list[Point]] = {}
    for variant, knobs in frontier.knobs.items():
        if variant not in exp.variants:
            raise ConfigError(f"frontier.knobs.{variant}: not in experiment.variants; its base point is its main "
                              "comparison run, so add it there")
        points, seen = [Point("base", ())], {(): "base"}
        base = dataclasses.replace(params.method, variant=variant)
        for key, values in knobs.items():
            for value in values:
                where = f"frontier point {variant}/{point_name(((key, value),))}"
                overrides = _normalised(base, ((key, value),), where)
                if getattr(base, key) == overrides[0][1]:
                    continue  # the profile's own value: the base point
                if overrides in seen:
                    raise ConfigError(f"frontier.knobs.{variant}.{key}: {format_value(value)} is listed twice")
                seen[overrides] = point_name(overrides)
                points.append(Point(point_name(overrides), overrides, key))
        out[variant] = points
    return out


def tuned_variants(params: Any) -> list[str]:
    """The variants `params.tuning` tunes; its candidates may only name them (or 'default')."""
    tuning = params.tuning
    variants = list(tuning.variants or params.experiment.variants)
    unknown = [v for v in tuning.candidates if v != "default" and v not in variants]
    if unknown:
        raise ConfigError(f"tuning.candidates.{unknown[0]}: not a tuned variant; tuned: {', '.join(variants)} "
                          "(or 'default' for all)")
    return variants


def check_tuning(params: Any) -> None:
    """Every tuned variant's whole candidate grid is valid (known keys, allowed values, no duplicates). The
    candidates a variant runs are the grid without the keys it cannot read (`study.design.tuning_candidates`),
    a subset of these combinations, so they are valid too."""
    for v in tuned_variants(params):
        grid = {**params.tuning.candidates.get("default", {}), **params.tuning.candidates.get(v, {})}
        grid_points(dataclasses.replace(params.method, variant=v), grid, f"tuning candidate {v}",
                    f"tuning.candidates for {v}")


def restrict(overrides: Overrides, keys: frozenset[str]) -> Overrides:
    """The overrides of keys in `keys` only (what a variant can read)."""
    return tuple((k, v) for k, v in overrides if k in keys)


def as_dict(overrides: Overrides) -> dict[str, Any]:
    """Overrides as a plain mapping (tuples as lists), as JSON holds them."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in overrides}


def describe(points: Mapping[str, list[Point]] | list[Point]) -> int:
    """How many settings a search tried (for the paper's multiplicity statements)."""
    return sum(len(p) for p in points.values()) if isinstance(points, Mapping) else len(points)
