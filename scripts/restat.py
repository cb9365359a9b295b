#!/usr/bin/env python3
"""Re-decide a finished study's claims from its committed tidy table with today's design and statistics.

    python scripts/restat.py --params params/forgetting.yaml --results outputs/forgetting/results \
        --old outputs/forgetting/paper/numbers.json > outputs/forgetting/restat.md

The tidy table (`results/tidy.csv`) is the only input of the statistics, so the verdicts of a study whose
runs are no longer on disk can be recomputed without retraining (k1model/report/restat.py): the declared
claims as one Holm family over the main and tuned comparisons, on their units (one initialisation each:
with `experiment.init_seed: shared` the seed), the claims within each order, and the verdicts without the
runs that diverged. With --old, the verdicts (and Holm p) the study's paper gave are printed beside the new
ones. With shared init seeds, a column gives each claim's verdict with every run taken as a unit, for
comparison. Prints Markdown.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from k1model.report.restat import run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, required=True)
    ap.add_argument("--results", type=Path, required=True, help="results directory holding tidy.csv")
    ap.add_argument("--old", type=Path, default=None, help="the paper's numbers.json (its claims' old verdicts)")
    args = ap.parse_args(argv)
    old = json.loads(args.old.read_text(encoding="utf-8")) if args.old else None
    sys.stdout.write(run(args.params, args.results, old))
    return 0


if __name__ == "__main__":
    sys.exit(main())
