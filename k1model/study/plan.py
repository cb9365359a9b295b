"""The run plan of a params file: every run it asks for, where it lives, and which job trains it.

The plan is a pure function of the validated params, so the pipeline (at start-up, to build its
DAG) and `k1 train --group` (to know what to train) compute the same thing from the same file.
Runs that share the model and the `train` settings may train in one process; `train.runs_per_job`
caps how many do. Jobs are balanced: runs are dealt round-robin, so every job gets a similar mix
of variants (their costs differ).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from k1model.config import Params


@dataclass(frozen=True)
class PlannedRun:
    variant: str
    seed: int
    path: str  # relative to the runs root
    group: str  # the job that trains it


def run_path(variant: str, seed: int) -> str:
    return f"{variant}/seed{seed}"


def plan_runs(params: Params) -> list[PlannedRun]:
    """Every run of `experiment` (variants x seeds), grouped into jobs of at most train.runs_per_job."""
    runs = [(v, s) for v in params.experiment.variants for s in params.experiment.seeds]
    n_jobs = math.ceil(len(runs) / params.train.runs_per_job)
    width = len(str(n_jobs - 1))
    return [PlannedRun(v, s, run_path(v, s), f"g{i % n_jobs:0{width}d}") for i, (v, s) in enumerate(runs)]


def job_groups(plan: list[PlannedRun]) -> dict[str, list[PlannedRun]]:
    groups: dict[str, list[PlannedRun]] = {}
    for run in plan:
        groups.setdefault(run.group, []).append(run)
    return dict(sorted(groups.items()))


def group_runs(params: Params, group: str) -> list[PlannedRun]:
    from k1model.errors import ConfigError

    groups = job_groups(plan_runs(params))
    if group not in groups:
        raise ConfigError(f"--group {group!r} is not in the plan of these params; groups: {', '.join(groups)}")
    return groups[group]


def run_dir(root: str | Path, run: PlannedRun) -> Path:
    return Path(root) / run.path
