#!/usr/bin/env python3
"""Re-decide a finished study's claims from its committed tidy table with today's statistics.

    python scripts/restat.py --params params/study.yaml --results outputs/study/results \
        [--old outputs/study/paper/numbers.json]

The tidy table (`results/tidy.csv`) is the only input of the statistics, so the verdicts of a study
whose runs are no longer on disk can be recomputed without retraining: the main comparison, each
domain order and the tuned comparison, each with the benchmark-validity check on the runs'
average forgetting (the per-domain check needs the R matrices, i.e. the runs). With --old, the
verdicts the study's paper gave are printed beside the new ones. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from k1model.analysis.summaries import by_variant, nested_comparisons, statistics
from k1model.analysis.settings import load_analysis_config
from k1model.analysis.validity import benchmark_forgets, phase_table
from k1model.io import json_safe
from k1model.report.claims import Numbers, _claim_sentence, all_claims


def summary_of(tidy: pd.DataFrame, cfg) -> dict:
    """What `k1 aggregate` would write for these runs (summary + comparisons + validity on the averages)."""
    summary, comp, _ = statistics(tidy, cfg)
    ref = cfg.forgetting_reference
    average = tidy.loc[(tidy.variant == ref) & (tidy.metric == "forgetting"), "value"].to_numpy(float)
    validity = benchmark_forgets(phase_table([]), average, ref,
                                 cfg.forgetting_margin, cfg.confidence)
    validity["measured"] = bool(average.size)
    doc = {"n_seeds": len(cfg.seeds), "metrics": {}, **by_variant(summary, cfg.variants),
           "comparisons": nested_comparisons(comp), "validity": validity}
    for m in summary.metric.unique():
        row = summary[summary.metric == m].iloc[0]
        doc["metrics"][m] = {"direction": row.direction, "unit": row.unit}
    return json_safe(doc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, required=True)
    ap.add_argument("--results", type=Path, required=True, help="results directory holding tidy.csv")
    ap.add_argument("--old", type=Path, default=None, help="the paper's numbers.json (its claims' old verdicts)")
    args = ap.parse_args(argv)
    cfg = load_analysis_config(args.params)
    tidy = pd.read_csv(args.results / "tidy.csv")
    old = json.loads(args.old.read_text()) if args.old else {}
    old_status = {("as specified", k): v["status"] for k, v in old.get("claims", {}).items()}
    study = old.get("study", {})
    for name, entry in (study.get("tuned") or {}).items():
        if isinstance(entry, dict) and "status" in entry:
            old_status[("tuned", name)] = entry["status"]
    for order, claims in ((study.get("orders") or {}).get("per_order") or {}).items():
        for name, entry in claims.items():
            if isinstance(entry, dict) and "status" in entry:
                old_status[(f"order {order}", name)] = entry["status"]
    parts = {"as specified": tidy[tidy.part == "as_specified"]}
    for order, sub in parts["as specified"].groupby("order", sort=False):
        parts[f"order {order}"] = sub
    if (tidy.part == "tuned").any():
        parts["tuned"] = tidy[tidy.part == "tuned"]
    chance = None
    branching = list(cfg.params.model.branching)
    if branching:
        n, width = 1, 1
        for b in branching:
            width *= b
            n += width
        chance = 1.0 / n
    print("| part | claim | before (bootstrap CIs, 'no significant difference') | now | now, in short |")
    print("|:---|:---|:---|:---|:---|")
    for part, sub in parts.items():
        nums = Numbers(summary_of(sub[["variant", "order", "seed", "metric", "value"]], cfg))
        for claim in all_claims():
            if part != "as specified" and claim.reference == "chance":
                continue
            status, short, _ = _claim_sentence(nums, claim, cfg, chance)
            before = old_status.get((part, claim.name), "n/a")
            print(f"| {part} | {claim.name} | {before} | {status} | {short} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
