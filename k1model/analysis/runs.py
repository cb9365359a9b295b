"""Reading runs: every run's `metrics.json` / `attribution.json` scalars into one tidy table.

The tidy table (variant, order, seed, metric, value) is the only input of every statistic, so
tables, summary, figures and paper agree. A run is one unit of the statistics: a (seed, domain
order) pair; comparisons pair runs by seed and order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from k1model.errors import DataError, K1Error
from k1model.io import read_output_json, rerun_hint

@dataclass
class RunRecord:
    variant: str
    seed: int
    path: Path
    status: str
    metrics: dict[str, Any]
    attribution: dict[str, Any] | None
    order: str = ""  # the domain order's name, e.g. prose-code-science
    point: str = "as_specified"

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def label(self) -> str:
        return f"{self.variant}/{self.order}/seed{self.seed}" if self.order else f"{self.variant}/seed{self.seed}"


def _read_json(path: Path, fix: str = "re-run the step that writes it") -> dict[str, Any]:
    """A JSON object; a damaged file is a DamagedOutputError naming it, what is wrong and `fix`."""
    return read_output_json(path, fix)


def read_run_file(path: Path) -> dict[str, Any]:
    """metrics.json / failure.json / attribution.json of a run folder, with how to rebuild it if damaged."""
    if path.name == "attribution.json":
        return read_output_json(path, f"delete it and rerun the attribution of that run (snakemake reruns it; by "
                                      f"hand `k1 attribute --params ... --data ... --run {path.parent}`)")
    return read_output_json(path, rerun_hint(path.parent))


def load_runs(results: str | Path, planned: Sequence[Any], attribution: bool = True) -> list[RunRecord]:
    """Read every planned run (`k1model.study.plan`) under `results`; a K1Error names *every* missing one.

    A run whose loss stopped being finite has status "failed" in its metrics.json (or only a
    failure.json, from older runs); it is returned as a failed run rather than reported missing.
    """
    def present(d: Path) -> bool:
        return (d / "metrics.json").is_file() or (d / "failure.json").is_file()

    dirs = [Path(results) / run.path for run in planned]
    missing = [d / "metrics.json" for d in dirs if not present(d)]
    if missing:
        listing = "\n  ".join(str(p) for p in missing)
        raise K1Error(
            f"{len(missing)} of {len(dirs)} runs are missing (no metrics.json):\n  {listing}\n"
            "run `k1 train` for them (or the pipeline), or remove them from the params (experiment.variants/seeds)"
        )
    records = []
    for run, d in zip(planned, dirs):
        if (d / "metrics.json").is_file():
            metrics = read_run_file(d / "metrics.json")
            status = str(metrics.get("status", "completed"))
        else:
            metrics = read_run_file(d / "failure.json")
            status = str(metrics.get("status", "failed"))
            status = "failed" if status == "completed" else status
        attr_path = d / "attribution.json"
        attr = read_run_file(attr_path) if attribution and attr_path.is_file() else None
        if attr is not None and attr.get("status") == "skipped":
            attr = None
        records.append(RunRecord(run.variant, run.seed, d, status, metrics, attr, run.order_name, run.point))
    return records


def _scalar(value: Any, where: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    raise DataError(f"{where} must be a number or null, got {value!r}")

def tidy_table(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Long table (variant, order, seed, metric, value) of completed runs; null scalars stay as NaN rows.

    Failed runs are not in the table (their scalars are not trustworthy); `aggregate`
    lists them in summary.json and in the table notes.
    """
    rows: list[tuple[str, str, int, str, float]] = []
    for rec in records:
        if not rec.completed:
            continue
        for source, doc in (("metrics.json", rec.metrics), ("attribution.json", rec.attribution)):
            if doc is None:
                continue
            scalars = doc.get("scalars")
            if not isinstance(scalars, Mapping):
                raise DataError(f"{rec.path / source} has no `scalars` object (flat metric → number)")
            for name, value in scalars.items():
                rows.append((rec.variant, rec.order, rec.seed, str(name),
                             _scalar(value, f"{rec.path / source}: scalars.{name}")))
    df = pd.DataFrame(rows, columns=["variant", "order", "seed", "metric", "value"])
    dup = df.duplicated(["variant", "order", "seed", "metric"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise DataError(
            f"metric {first.metric!r} appears in both metrics.json and attribution.json of "
            f"{first.variant}/{first.order}/seed{first.seed}; scalar names must be unique per run"
        )
    df["seed"] = df["seed"].astype(int)
    return df
