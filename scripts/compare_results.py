#!/usr/bin/env python3
"""Compare two pipeline results trees: `k1 compare` (k1model/analysis/compare.py) under its old name.

    python scripts/compare_results.py BEFORE/results AFTER/results [--atol 0] [--rtol 0] [--json out.json]

Every number of tidy.csv, summary.json, comparisons.json, metrics.json and each run's metrics.json,
attribution.json, steps.csv.gz and evals.csv, exactly or within the tolerance; the largest difference per
metric; whether every claim's verdict (paper/numbers.json) is the same. Exit status 0 when all agree, 1
when something differs, 2 for bad arguments.
"""
from __future__ import annotations

import sys

from k1model.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
