"""The run plan of a params file: every run it asks for, where it lives, and what it depends on.

The plan is a pure function of the validated params (no torch), so the pipeline (at start-up, to build its
DAG) and `k1 train --run` (to know what to train) compute the same thing from the same file.
Paths are relative to the results directory:

    runs/<order>/<variant>/seed<k>            the main comparison ("as specified"): every variant,
                                              evaluation seed and domain order
    sweep/<point>/<variant>/seed<k>           the sensitivity sweep (its own seeds, one order); a point
                                              that cannot change a variant reuses that variant's base run
    tuning/<variant>/<candidate>/seed<k>      tuning runs (tuning seeds, one order)
    tuned/<order>/<variant>/seed<k>           the tuned comparison: the chosen settings, evaluation seeds
                                              (where they are the profile's own, a copy of runs/...: twin_path)

A run is a job of the pipeline, named by its path. What a job depends on is the run's own identity
(`run_identity`: the model and train settings, its variant, seed, domain order and the method settings its
variant reads), never its position in the plan, so adding a variant, a seed or a strategy to a profile leaves
every existing run's job as it is. Tuning is chosen per variant the same way (`tuning_identity`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k1model.config import Params, method_config
from k1model.config.checks import plain
from k1model.errors import ConfigError
from k1model.method.variants import get_variant
from k1model.study.design import Overrides, restrict, sweep_points, tuning_candidates, with_overrides
from k1model.study.frontier import frontier_cells

PARTS = ("runs", "sweep", "tuning", "tuned", "frontier")


def order_name(order: tuple[str, ...] | list[str]) -> str:
    """A domain order as the path component of its runs (`prose-code-science`)."""
    return "-".join(order)


def main_run_path(variant: str, seed: int, order: tuple[str, ...] | list[str]) -> str:
    """Where the main comparison's run of (variant, seed, order) lives, relative to the results directory."""
    return f"runs/{order_name(order)}/{variant}/seed{seed}"


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: its part, variant, seed, order, point, settings and path."""
    part: str  # one of PARTS
    variant: str
    seed: int
    order: tuple[str, ...]
    point: str  # "as_specified", a sweep point, a tuning candidate, or "tuned"
    overrides: Overrides  # method settings of this run that differ from the params' method section
    path: str  # relative to the results directory

    @property
    def order_name(self) -> str:
        """Its domain order as a path component."""
        return order_name(self.order)


@dataclass(frozen=True)
class SweepCell:
    """Where the result of (point, variant) lives: its own run, or the variant's base run."""

    point: str
    factor: str | None
    variant: str
    seed: int
    path: str
    own_run: bool


def _runs_of(params: Params) -> tuple[list[PlannedRun], list[SweepCell]]:
    exp = params.experiment
    runs = [PlannedRun("runs", v, s, o, "as_specified", (), main_run_path(v, s, o))
            for o in params.orders for v in exp.variants for s in exp.seeds]
    cells: list[SweepCell] = []
    if params.sweep.active:
        order = tuple(params.sweep.order or params.orders[0])
        for point in sweep_points(params):
            for v in params.sweep.variants:
                effective = restrict(point.overrides, get_variant(v).reads())
                own = point.name == "base" or bool(effective)
                where = point.name if own else "base"
                for s in params.sweep.seeds:
                    path = f"sweep/{where}/{v}/seed{s}"
                    cells.append(SweepCell(point.name, point.factor, v, s, path, own))
                    if own:
                        runs.append(PlannedRun("sweep", v, s, order, point.name, effective, path))
    if params.tuning.active:
        order = tuple(params.tuning.order or params.orders[0])
        candidates = tuning_candidates(params)
        for v, points in candidates.items():
            for point in points:
                runs += [PlannedRun("tuning", v, s, order, point.name, point.overrides,
                                    f"tuning/{v}/{point.name}/seed{s}") for s in params.tuning.seeds]
        runs += [PlannedRun("tuned", v, s, o, "tuned", (), f"tuned/{order_name(o)}/{v}/seed{s}")
                 for o in params.orders for v in candidates for s in exp.seeds]
    for cell in frontier_cells(params, main_run_path):
        if cell.own_run:
            runs.append(PlannedRun("frontier", cell.variant, cell.seed, cell.order, cell.point,
                                   ((cell.knob, cell.value),), cell.path))
    return runs, cells


def plan_runs(params: Params) -> list[PlannedRun]:
    """Every run of the params: the main comparison's, then the sweep's, the tuning runs and the tuned runs."""
    return _runs_of(params)[0]


def sweep_cells(params: Params) -> list[SweepCell]:
    """Every (sweep point, variant, seed) and the run that holds its result."""
    return _runs_of(params)[1]


def part_runs(params: Params, part: str) -> list[PlannedRun]:
    """The planned runs of one part (runs, sweep, tuning, tuned)."""
    return [r for r in plan_runs(params) if r.part == part]


def planned_run(params: Params, path: str) -> PlannedRun:
    """The planned run at `path` (relative to the results directory)."""
    plan = {r.path: r for r in plan_runs(params)}
    run = plan.get(str(path).strip("/"))
    if run is None:
        example = next(iter(plan), "runs/<order>/<variant>/seed<k>")
        raise ConfigError(f"--run {path!r} is not a run of these params; their runs are paths such as {example!r}")
    return run


def _digest(blob: Any) -> str:
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_identity(params: Params, run: PlannedRun) -> dict[str, Any]:
    """What the run's numbers depend on, as far as the params say: the model, the train settings, its variant,
    seed, init seed (experiment.init_seed) and domain order, and the method settings its variant reads, with its
    overrides. (A tuned run's chosen settings come from the tuning choice, a file of its own; the prepared
    data is an input too.) Keys no part of the variant reads are left out, so a new strategy's settings or
    another variant's never change this run."""
    method = with_overrides(method_config(params.method, run.variant), run.overrides, run.path)
    reads = get_variant(run.variant).reads()
    return {"model": plain(params.model), "train": params.train.identity(), "variant": run.variant,
            "seed": run.seed, "init_seed": params.init_seed_of(run.seed, run.order), "order": list(run.order),
            "method": {k: v for k, v in plain(method).items() if k in reads}}


def run_fingerprint(params: Params, run: PlannedRun) -> str:
    """A short hash of `run_identity`: the pipeline reruns a run's job when, and only when, it changes."""
    return _digest(run_identity(params, run))


def tuned_variants_of(params: Params) -> list[str]:
    """The variants the tuning chooses settings for (each one tuning choice)."""
    return list(dict.fromkeys(r.variant for r in part_runs(params, "tuning")))


def tuning_identity(params: Params, variant: str) -> dict[str, Any]:
    """What the tuning choice of `variant` depends on: its tuning runs (their identities) and the metric."""
    runs = [r for r in part_runs(params, "tuning") if r.variant == variant]
    if not runs:
        tuned = ", ".join(tuned_variants_of(params))
        raise ConfigError(f"{variant} is not a tuned variant of these params; tuned: {tuned or 'none'}")
    return {"metric": params.tuning.metric, "runs": {r.path: run_identity(params, r) for r in runs}}


def tuning_fingerprint(params: Params, variant: str) -> str:
    """A short hash of `tuning_identity`."""
    return _digest(tuning_identity(params, variant))


def choice_path(variant: str) -> str:
    """Where the tuning choice of one variant lives, relative to the results directory (what its tuned runs read)."""
    return f"tuning/{variant}/chosen.json"


def twin_path(run: PlannedRun) -> str:
    """The main-comparison run a tuned run equals when the tuning chose the profile's own settings for its
    variant (same variant, seed and order): `k1 train` then copies it instead of training it again."""
    if run.part != "tuned":
        raise ValueError(f"{run.path}: only tuned runs have a twin")
    return main_run_path(run.variant, run.seed, run.order)


def run_dir(root: str | Path, run: PlannedRun) -> Path:
    """The run's directory under a results root."""
    return Path(root) / run.path


def describe_plan(params: Params) -> dict[str, int]:
    """Runs per part (each is one job of the pipeline: what `snakemake -n` will show)."""
    plan = plan_runs(params)
    return {part: sum(r.part == part for r in plan) for part in PARTS if any(r.part == part for r in plan)}
