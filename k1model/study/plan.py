"""The run plan of a params file: every run it asks for, where it lives, and which job trains it.

The plan is a pure function of the validated params, so the pipeline (at start-up, to build its
DAG) and `k1 train --group` (to know what to train) compute the same thing from the same file.
Paths are relative to the results directory:

    runs/<order>/<variant>/seed<k>            the main comparison ("as specified"): every variant,
                                              evaluation seed and domain order
    sweep/<point>/<variant>/seed<k>           the sensitivity sweep (its own seeds, one order); a point
                                              that cannot change a variant reuses that variant's base run
    tuning/<variant>/<candidate>/seed<k>      tuning runs (tuning seeds, one order)
    tuned/<order>/<variant>/seed<k>           the tuned comparison: the chosen settings, evaluation seeds
                                              (where they are the profile's own, a copy of runs/...: twin_path)

Runs of one part share the model and `train` settings, so up to `train.runs_per_job` of them train
in one process (one job). Jobs are balanced: runs are dealt round-robin, so every job gets a
similar mix of variants. Tuned runs form their own jobs (they wait for the tuning choice).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from k1model.config import Params
from k1model.study.design import Overrides, restrict, sweep_points, tuning_candidates

PARTS = ("runs", "sweep", "tuning", "tuned")


def order_name(order: tuple[str, ...] | list[str]) -> str:
    return "-".join(order)


def main_run_path(variant: str, seed: int, order: tuple[str, ...] | list[str]) -> str:
    """Where the main comparison's run of (variant, seed, order) lives, relative to the results directory."""
    return f"runs/{order_name(order)}/{variant}/seed{seed}"


@dataclass(frozen=True)
class PlannedRun:
    part: str  # one of PARTS
    variant: str
    seed: int
    order: tuple[str, ...]
    point: str  # "as_specified", a sweep point, a tuning candidate, or "tuned"
    overrides: Overrides  # method settings of this run that differ from the params' method section
    path: str  # relative to the results directory
    group: str = ""  # the job that trains it

    @property
    def order_name(self) -> str:
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
    from k1model.method.variants import get_variant

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
    return runs, cells


def plan_runs(params: Params) -> list[PlannedRun]:
    """Every run of the params, each assigned to a job of at most train.runs_per_job runs of its part."""
    runs, _ = _runs_of(params)
    out: list[PlannedRun] = []
    for part in PARTS:
        members = [r for r in runs if r.part == part]
        if not members:
            continue
        n_jobs = math.ceil(len(members) / params.train.runs_per_job)
        width = len(str(n_jobs - 1))
        prefix = {"runs": "g", "sweep": "s", "tuning": "t", "tuned": "u"}[part]
        out += [PlannedRun(**{**r.__dict__, "group": f"{prefix}{i % n_jobs:0{width}d}"}) for i, r in enumerate(members)]
    return out


def sweep_cells(params: Params) -> list[SweepCell]:
    """Every (sweep point, variant, seed) and the run that holds its result."""
    return _runs_of(params)[1]


def job_groups(plan: list[PlannedRun]) -> dict[str, list[PlannedRun]]:
    groups: dict[str, list[PlannedRun]] = {}
    for run in plan:
        groups.setdefault(run.group, []).append(run)
    return groups


def group_runs(params: Params, group: str) -> list[PlannedRun]:
    from k1model.errors import ConfigError

    groups = job_groups(plan_runs(params))
    if group not in groups:
        raise ConfigError(f"--group {group!r} is not in the plan of these params; groups: {', '.join(groups)}")
    return groups[group]


def attribution_groups(params: Params) -> dict[str, list[PlannedRun]]:
    """The main comparison's runs by attribution job: each training job's runs (they finish together) in
    near-equal jobs of at most analysis.runs_per_attribution_job, named <training job>_<i>: few processes
    (imports are paid per process) and, when one training job finishes early, its attributions can run
    beside the others' training."""
    out: dict[str, list[PlannedRun]] = {}
    for group, runs in job_groups(part_runs(params, "runs")).items():
        n = math.ceil(len(runs) / params.analysis.runs_per_attribution_job)
        for i in range(n):
            out[f"{group}_{i}"] = runs[i::n]
    return out


def attribution_runs(params: Params, group: str) -> list[PlannedRun]:
    from k1model.errors import ConfigError

    groups = attribution_groups(params)
    if group not in groups:
        raise ConfigError(f"--group {group!r} is not an attribution job of these params; jobs: {', '.join(groups)}")
    return groups[group]


def part_runs(params: Params, part: str) -> list[PlannedRun]:
    return [r for r in plan_runs(params) if r.part == part]


def twin_path(run: PlannedRun) -> str:
    """The main-comparison run a tuned run equals when the tuning chose the profile's own settings for its
    variant (same variant, seed and order): `k1 train` then copies it instead of training it again."""
    if run.part != "tuned":
        raise ValueError(f"{run.path}: only tuned runs have a twin")
    return main_run_path(run.variant, run.seed, run.order)


def run_dir(root: str | Path, run: PlannedRun) -> Path:
    return Path(root) / run.path


def describe_plan(params: Params) -> dict[str, Any]:
    """Counts of runs and jobs per part (what `snakemake -n` will show)."""
    plan = plan_runs(params)
    return {part: {"runs": sum(r.part == part for r in plan), "jobs": len({r.group for r in plan if r.part == part})}
            for part in PARTS if any(r.part == part for r in plan)}
