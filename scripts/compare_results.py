#!/usr/bin/env python3
"""Compare the scientific numbers of two pipeline result trees, bit for bit.

    python scripts/compare_results.py BEFORE/results AFTER/results [--tolerance 0]

Every numeric leaf of `summary.json`, `comparisons.json`, `tidy.csv` and each run's `metrics.json`
and `attribution.json` is compared (exactly, or within --tolerance); wall-clock times and other
machine-dependent fields are skipped. Non-numeric fields that differ are listed separately
(e.g. a config hash after a config field was added). Exit status 1 when a number differs.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

SKIP = ("wall_time_s", "steps_per_s", "timing_s", "total_wall_time_s", "versions", "python", "provenance.versions")


def leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, obj


def skipped(path: str) -> bool:
    return any(part in path.split(".") or path.endswith(part) or f".{part}." in f".{path}." for part in SKIP)


def compare_json(a: Path, b: Path, tol: float, report: dict) -> None:
    la, lb = dict(leaves(json.loads(a.read_text()))), dict(leaves(json.loads(b.read_text())))
    for key in sorted(set(la) | set(lb)):
        if skipped(key):
            continue
        va, vb = la.get(key, "<absent>"), lb.get(key, "<absent>")
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (va, vb))
        if numeric:
            report["numbers"] += 1
            same = va == vb or (math.isnan(va) and math.isnan(vb)) if tol == 0 else abs(va - vb) <= tol
            if not same:
                report["diff"].append(f"{a.name}:{key}: {va} != {vb}")
        elif va != vb:
            report["other"].append(f"{a.name}:{key}: {va!r} -> {vb!r}")


def compare_tidy(a: Path, b: Path, tol: float, report: dict) -> None:
    ta, tb = pd.read_csv(a), pd.read_csv(b)
    keys = [c for c in ta.columns if c != "value"]
    merged = ta.merge(tb, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
    merged = merged[~merged["metric"].isin(["wall_time_s", "steps_per_s"])]
    for _, r in merged.iterrows():
        report["numbers"] += 1
        va, vb = r["value_a"], r["value_b"]
        same = (va == vb or (pd.isna(va) and pd.isna(vb))) if tol == 0 else abs(va - vb) <= tol
        if r["_merge"] != "both" or not same:
            report["diff"].append(f"tidy.csv {tuple(r[k] for k in keys)}: {va} != {vb}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--tolerance", type=float, default=0.0)
    args = ap.parse_args()
    report: dict[str, Any] = {"numbers": 0, "diff": [], "other": [], "files": 0}
    for name in ("summary.json", "comparisons.json"):
        compare_json(args.before / name, args.after / name, args.tolerance, report)
        report["files"] += 1
    compare_tidy(args.before / "tidy.csv", args.after / "tidy.csv", args.tolerance, report)
    report["files"] += 1
    runs_a = sorted(p.relative_to(args.before) for p in args.before.glob("runs/**/metrics.json"))
    runs_b = sorted(p.relative_to(args.after) for p in args.after.glob("runs/**/metrics.json"))
    if runs_a != runs_b:
        report["diff"].append(f"different runs: {sorted(set(runs_a) ^ set(runs_b))}")
    for rel in runs_a:
        for name in ("metrics.json", "attribution.json"):
            a, b = args.before / rel.parent / name, args.after / rel.parent / name
            if a.is_file() and b.is_file():
                compare_json(a, b, args.tolerance, report)
                report["files"] += 1
    print(f"compared {report['numbers']} numbers in {report['files']} files "
          f"({'exactly' if args.tolerance == 0 else f'within {args.tolerance:g}'}); "
          f"{len(report['diff'])} differ")
    for line in report["diff"][:50]:
        print("  DIFF", line)
    others = sorted(set(report["other"]))
    if others:
        print(f"{len(others)} non-numeric fields differ, e.g.:")
        for line in others[:10]:
            print("  ", line)
    return 1 if report["diff"] else 0


if __name__ == "__main__":
    sys.exit(main())
