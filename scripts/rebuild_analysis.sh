#!/usr/bin/env bash
# Rebuild a profile's statistics, tables, figures and paper from its committed runs, without training:
#   scripts/rebuild_analysis.sh competent
# Reads outputs/<profile>/results/ (every run's metrics.json, evals.csv and attribution.json, and floors.json, kept
# in git) and outputs/<profile>/data/prepared/manifest.json; writes summary.json, tables/, figures/ and paper/ in
# place, so `git diff` shows whether the rebuild gives the committed numbers. Step logs and checkpoints are not in
# git: the one figure drawn from a step log (the responsibility tree) is left out, and says so in its notes.
set -euo pipefail
profile=${1:?usage: scripts/rebuild_analysis.sh PROFILE   (e.g. competent: params/competent.yaml, outputs/competent/)}
params="params/$profile.yaml"
out="outputs/$profile"
results="$out/results"
for need in "$params" "$results/floors.json" "$out/data/prepared/manifest.json"; do
  [ -e "$need" ] || { echo "error: $need is missing: rebuild_analysis.sh needs the profile's committed runs (git checkout $out)" >&2; exit 2; }
done
k1 aggregate --params "$params" --results "$results" --floors "$results/floors.json"
k1 figures --params "$params" --results "$results" --out "$results/figures"
k1 paper --params "$params" --results "$results" --data "$out/data/prepared" --out "$out/paper"
