"""Reading runs: every run's `metrics.json` / `attribution.json` scalars into one tidy table.

The tidy table (variant, seed, metric, value) is the only input of every statistic, so tables,
summary, figures and paper agree.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from k1model.errors import DataError, K1Error

def run_dir(runs: str | Path, variant: str, seed: int) -> Path:
    """The run directory of one variant × seed (the layout `k1 train --out` is given)."""
    return Path(runs) / variant / f"seed{seed}"

@dataclass
class RunRecord:
    variant: str
    seed: int
    path: Path
    status: str
    metrics: dict[str, Any]
    attribution: dict[str, Any] | None

    @property
    def completed(self) -> bool:
        return self.status == "completed"

def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}); re-run the step that writes it") from err
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object")
    return data

def load_runs(runs: str | Path, variants: Sequence[str], seeds: Sequence[int]) -> list[RunRecord]:
    """Read every run named by variants × seeds; a K1Error names *every* missing metrics.json.

    A run that crashed leaves `failure.json` (status "failed") instead of metrics.json
    (`k1 train`); it is returned as a failed run rather than reported missing.
    """
    def present(d: Path) -> bool:
        return (d / "metrics.json").is_file() or (d / "failure.json").is_file()

    missing = [run_dir(runs, v, s) / "metrics.json" for v in variants for s in seeds if not present(run_dir(runs, v, s))]
    if missing:
        listing = "\n  ".join(str(p) for p in missing)
        raise K1Error(
            f"{len(missing)} of {len(variants) * len(seeds)} runs are missing (no metrics.json):\n  {listing}\n"
            "run `k1 train` for them (or the pipeline), or remove them from experiment.variants/seeds"
        )
    records = []
    for v in variants:
        for s in seeds:
            d = run_dir(runs, v, s)
            if (d / "metrics.json").is_file():
                metrics = _read_json(d / "metrics.json")
                status = str(metrics.get("status", "completed"))
            else:
                metrics = _read_json(d / "failure.json")
                status = str(metrics.get("status", "failed"))
                status = "failed" if status == "completed" else status
            attr_path = d / "attribution.json"
            attribution = _read_json(attr_path) if attr_path.is_file() else None
            records.append(RunRecord(v, s, d, status, metrics, attribution))
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
    """Long table (variant, seed, metric, value) of completed runs; null scalars stay as NaN rows.

    Failed runs are not in the table (their scalars are not trustworthy); `aggregate`
    lists them in summary.json and in the table notes.
    """
    rows: list[tuple[str, int, str, float]] = []
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
                rows.append((rec.variant, rec.seed, str(name), _scalar(value, f"{rec.path / source}: scalars.{name}")))
    df = pd.DataFrame(rows, columns=["variant", "seed", "metric", "value"])
    dup = df.duplicated(["variant", "seed", "metric"], keep=False)
    if dup.any():
        first = df[dup].iloc[0]
        raise DataError(
            f"metric {first.metric!r} appears in both metrics.json and attribution.json of "
            f"{first.variant}/seed{first.seed}; scalar names must be unique per run"
        )
    df["seed"] = df["seed"].astype(int)
    return df
