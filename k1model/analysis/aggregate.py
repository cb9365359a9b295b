"""`k1 aggregate`: runs -> tidy table -> summaries, claims and paired comparisons -> summary.json, tables.

The statistics themselves are `summaries.py` (one set of runs), `study_stats.py` (the study's other
parts) and `study_claims.py` (the declared claims, their Holm family and verdicts' numbers); this module
reads the runs, assembles summary.json (every number the paper quotes), comparisons.json (the exploratory
comparisons), metrics.json (DVC) and the tables, and writes them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from k1model.analysis.metric_info import metric_info
from k1model.analysis.runs import RunRecord, _read_json, load_runs, tidy_table
from k1model.analysis.settings import load_analysis_config
from k1model.analysis.summaries import (HEADLINE_METRICS, by_variant, completed_runs, decomposition_tests,
                                        nested_comparisons, sorted_tidy, statistics, validity_check)
from k1model.analysis.study_claims import claims_doc
from k1model.analysis.validity import domain_summary, phase_table
from k1model.errors import DataError
from k1model.io import json_safe, write_csv, write_json
from k1model.analysis.tables import write_claims_table, write_forgetting_tables, write_tables

def _provenance(records: Sequence[RunRecord]) -> dict[str, Any]:
    def unique(key: str) -> list[Any]:
        return sorted({json.dumps(r.metrics.get(key), sort_keys=True) for r in records if key in r.metrics})

    versions: dict[str, list[str]] = {}
    for r in records:
        for k, v in (r.metrics.get("versions") or {}).items():
            versions.setdefault(str(k), [])
            if str(v) not in versions[str(k)]:
                versions[str(k)].append(str(v))
    return {
        "config_hashes": [json.loads(s) for s in unique("config_hash")],
        "devices": [json.loads(s) for s in unique("device")],
        "versions": {k: v[0] if len(v) == 1 else sorted(v) for k, v in sorted(versions.items())},
        "total_wall_time_s": float(sum(float(r.metrics.get("wall_time_s") or 0.0) for r in records)),
    }

def competence_doc(records: Sequence[RunRecord], floors_path: Path | None, cfg: Any) -> dict[str, Any]:
    """The competence check of the main comparison (`competence.py`) against the floors `k1 floors` wrote; without
    a floors file the check is not made, and summary.json says so (the paper prints it at the top)."""
    from k1model.analysis.competence import competence_check

    a = cfg.params.analysis
    if floors_path is None or not Path(floors_path).is_file():
        return {"checked": False, "reference": a.forgetting_reference, "floor": a.competence_floor,
                "reason": f"no reference floors ({floors_path or 'none given'}): run `k1 floors` and pass --floors"}
    floors = _read_json(Path(floors_path))
    doc = competence_check(records, floors, reference=a.forgetting_reference, floor=a.competence_floor,
                           confidence=cfg.confidence)
    return {"checked": True, **doc}


def aggregate(params: str | Path | Mapping[str, Any], results: str | Path, out: str | Path | None = None,
              floors: str | Path | None = None) -> dict[str, Any]:
    """Read every run of the plan under `results`, compute every statistic, and write into `out`
    (default `results`): tidy.csv, tables/, summary.json, comparisons.json and metrics.json (DVC).
    `floors`: the reference floors of the data (`k1 floors`; default `results`/floors.json when present), for
    the competence check.

    Parts: the main comparison ("as specified"), per domain order when there are several, the
    tuned comparison and the sweep when the params define them. Returns the summary.json
    content plus the key `written` (paths of every file written), which is not stored.
    """
    from k1model.analysis.study_stats import order_statistics, sweep_statistics, tuned_statistics
    from k1model.study.plan import part_runs

    cfg = load_analysis_config(params)
    p = cfg.params
    out = Path(results if out is None else out)
    records = load_runs(results, part_runs(p, "runs"))
    failed, notes = completed_runs(records, cfg, "main")
    several = len(p.orders) > 1
    missing_attr = [r.label if several else f"{r.variant}/seed{r.seed}" for r in records
                    if r.completed and r.attribution is None]
    if missing_attr:
        notes.append("no attribution.json (attribution metrics missing) for: " + ", ".join(missing_attr))
    tidy = tidy_table(records)
    if tidy.empty:
        raise DataError(f"no scalars found in any run under {results}")
    tidy = sorted_tidy(tidy, cfg.variants)
    summary, comp, stat_notes = statistics(tidy, cfg)
    notes += stat_notes
    written = write_tables(out / "tables", summary, comp, cfg, notes)
    phases = phase_table(records)
    validity = validity_check(phases, tidy, cfg)
    written += write_forgetting_tables(out / "tables", domain_summary(phases, cfg.confidence), validity, cfg)

    doc: dict[str, Any] = {"n_seeds": len(cfg.seeds), "n_orders": len(p.orders), "orders": [list(o) for o in p.orders],
                           "config": cfg.as_dict()}
    doc["metrics"] = {m: {**metric_info(m)[0]._asdict(), "known": metric_info(m)[1]}
                      for m in dict.fromkeys(summary.metric)}
    doc.update(by_variant(summary, cfg.variants))
    doc["validity"] = validity
    floors_path = Path(floors) if floors is not None else Path(results) / "floors.json"
    if floors_path.is_file():
        doc["floors"] = _read_json(floors_path)
    doc["competence"] = competence_doc(records, floors_path if floors_path.is_file() else floors, cfg)
    doc["decomposition"] = decomposition_tests(tidy, cfg)
    doc["failed_runs"] = failed
    doc["missing_attribution"] = missing_attr
    doc["notes"] = notes
    doc["provenance"] = _provenance([r for r in records if r.completed])
    comparisons_doc: dict[str, Any] = nested_comparisons(comp)
    tidy_all = [tidy.assign(part="as_specified", point="as_specified")]
    tidy_t = None
    if len(p.orders) > 1:
        doc["by_order"], written_o = order_statistics(tidy, cfg, out / "tables", phases)
        written += written_o
    if p.tuning.active:
        tuned, tidy_t, written_t = tuned_statistics(p, cfg, results, out)
        doc["tuned"] = tuned
        comparisons_doc = {"as_specified": comparisons_doc, "tuned": tuned.pop("comparisons")}
        tidy_all.append(tidy_t.assign(part="tuned", point="tuned"))
        written += written_t
    else:
        comparisons_doc = {"as_specified": comparisons_doc}
    claims_doc(doc, p, cfg, tidy, tidy_t, records)
    written += write_claims_table(out / "tables", doc, cfg)
    if p.sweep.active:
        doc["sweep"], tidy_s, written_s = sweep_statistics(p, cfg, results, out / "tables")
        tidy_all.append(tidy_s)
        written += written_s
    if p.frontier.active:
        from k1model.analysis.frontier_stats import frontier_statistics

        doc["frontier"], written_f = frontier_statistics(p, cfg.confidence, results, out / "tables", cfg.alpha,
                                                         doc["competence"])
        written += written_f
    full = pd.concat(tidy_all, ignore_index=True)[["part", "point", "variant", "order", "seed", "metric", "value"]]
    write_csv(out / "tidy.csv", full)
    doc = json_safe(doc)
    write_json(out / "summary.json", doc)
    write_json(out / "comparisons.json", json_safe(comparisons_doc))
    headline = {"as_specified": by_variant(summary, cfg.variants, HEADLINE_METRICS)}
    if "tuned" in doc:
        headline["tuned"] = {v: {m: doc["tuned"][v][m] for m in HEADLINE_METRICS if m in doc["tuned"][v]}
                             for v in doc["tuned"] if isinstance(doc["tuned"][v], dict) and v in cfg.variants}
    write_json(out / "metrics.json", {part: {v: {m: {k: st[k] for k in ("mean", "ci_low", "ci_high")}
                                                 for m, st in ms.items()} for v, ms in vs.items()}
                                      for part, vs in json_safe(headline).items()})
    written = [out / "tidy.csv"] + written + [out / "summary.json", out / "comparisons.json", out / "metrics.json"]
    return {**doc, "comparisons": json_safe(comparisons_doc["as_specified"]), "written": [str(w) for w in written]}


def load_summary(results: str | Path) -> dict[str, Any]:
    """summary.json with the main comparison's exploratory paired comparisons (comparisons.json) under the key
    `comparisons` (and the tuned comparison's under `tuned.comparisons`). The paper reads summary.json alone
    (`read_summary`): every number it quotes is there."""
    results = Path(results)
    doc = _read_json(results / "summary.json")
    path = results / "comparisons.json"
    comparisons = _read_json(path) if path.is_file() else {}
    doc["comparisons"] = comparisons.get("as_specified", {})
    if "tuned" in doc and "tuned" in comparisons:
        doc["tuned"]["comparisons"] = comparisons["tuned"]
    return doc


def read_summary(results: str | Path) -> dict[str, Any]:
    """summary.json as written: what the paper quotes (every number of it is in this committed file)."""
    return _read_json(Path(results) / "summary.json")
