#!/usr/bin/env bash
# Run by Snakemake inside the freshly created conda environment, from the working
# directory (the repository root): install the k1model package (the `k1` command).
set -euo pipefail
python -m pip install --no-deps .
