"""The tuned comparison's choice (`k1 tune`): every variant's settings, chosen on validation data
with tuning seeds only.

`read_validation` opens only the tuning runs of the plan (tuning seeds, `tuning/...` paths) and
reads only `metrics.json["validation"]`: the validation-split forgetting summary that `k1 train`
keeps apart from the test-split numbers the analysis reports. `choose` sees nothing else: per
variant, the candidate with the lowest mean of `tuning.metric` over the tuning seeds wins (ties:
the earlier candidate). A candidate with a failed or missing run is not eligible and is listed.
The choice, with every candidate's numbers and how many settings were searched, is written to
`tuning/chosen.json` (every tuned variant: what the analysis reads) and, one variant at a time, to
`tuning/<variant>/chosen.json` (`k1 tune --variant`: what that variant's tuned runs read, so a variant added
to the profile leaves the others' tuned runs alone). Both are the same `choose` over the same rows.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from k1model.config import Params, load_params
from k1model.errors import ConfigError, DataError
from k1model.io import read_output_json, rerun_hint, write_json
from k1model.study.design import as_dict
from k1model.study.plan import part_runs, tuned_variants_of


def read_validation(params: Params, results: str | Path, variant: str | None = None) -> pd.DataFrame:
    """One row per tuning run (of `variant` only, when given): variant, candidate, seed, status, value (the
    validation metric)."""
    metric = params.tuning.metric
    rows = []
    for run in part_runs(params, "tuning"):
        if variant is not None and run.variant != variant:
            continue
        path = Path(results) / run.path / "metrics.json"
        status, value = "missing", math.nan
        if path.is_file():
            metrics = read_output_json(path, rerun_hint(path.parent))
            status = metrics.get("status", "completed")
            if status == "completed":
                v = (metrics.get("validation") or {}).get(metric)
                if v is None:
                    raise DataError(f"{path} has no validation.{metric}; rerun `k1 train` for it")
                value = float(v)
        rows.append({"variant": run.variant, "candidate": run.point, "overrides": json.dumps(as_dict(run.overrides)),
                     "seed": run.seed, "status": status, "value": value})
    return pd.DataFrame(rows, columns=["variant", "candidate", "overrides", "seed", "status", "value"])


def choose(table: pd.DataFrame) -> dict[str, Any]:
    """Per variant, the eligible candidate with the lowest mean value (ties: the first listed)."""
    out: dict[str, Any] = {}
    for variant, rows in table.groupby("variant", sort=False):
        candidates = []
        for name, c in rows.groupby("candidate", sort=False):
            ok = bool((c["status"] == "completed").all())
            candidates.append({"candidate": name, "overrides": json.loads(c["overrides"].iloc[0]),
                               "mean": float(c["value"].mean()) if ok else None,
                               "values": [None if math.isnan(v) else v for v in c["value"]],
                               "seeds": [int(s) for s in c["seed"]], "eligible": ok,
                               "failed": [int(s) for s, st in zip(c["seed"], c["status"]) if st != "completed"]})
        eligible = [c for c in candidates if c["eligible"]]
        if not eligible:
            raise DataError(f"tuning: every candidate of {variant} has a failed or missing run; nothing to choose")
        best = min(eligible, key=lambda c: c["mean"])  # min keeps the first of equal means
        out[variant] = {"chosen": best["candidate"], "overrides": best["overrides"], "mean": best["mean"],
                        "candidates": candidates, "searched": len(candidates)}
    return out


def tune(params: str | Path | Params, results: str | Path, out: str | Path, variant: str | None = None) -> dict[str, Any]:
    """Choose every tuned variant's settings (or only `variant`'s) and write the choice to `out`."""
    params = load_params(params)
    if variant is not None and variant not in tuned_variants_of(params):
        raise ConfigError(f"--variant {variant}: not a tuned variant of these params; tuned: "
                          f"{', '.join(tuned_variants_of(params)) or 'none'}")
    table = read_validation(params, results, variant)
    if table.empty:
        raise DataError("the params have no tuning runs (tuning.candidates is empty)")
    variants = choose(table)
    doc = {"metric": f"validation {params.tuning.metric} (bits per byte, lower is better)",
           "seeds": list(params.tuning.seeds), "order": list(params.tuning.order or params.orders[0]),
           "searched": sum(v["searched"] for v in variants.values()), "variants": variants,
           "rule": "per variant, the lowest mean over the tuning seeds of the validation metric; only tuning runs' "
                   "metrics.json['validation'] is read (never test numbers, never evaluation seeds)"}
    write_json(out, doc)
    return doc
