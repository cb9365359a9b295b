"""Train the same runs with this tree and with another checkout, and compare them byte for byte.

The check that a change left the numbers alone ("a refactor proves itself"): both trees train the given
variants and seeds from the same params file and prepared data, each in its own process
(`PYTHONPATH=TREE`, this environment's Python), and every run's step log and learning curves must be
the same bytes and its metrics the same values, apart from wall time and the config hash (which names
the code's kernels). Exit status 0 when all agree.

    git worktree add /tmp/k1-main main
    python scripts/same_numbers.py /tmp/k1-main --params params/default.yaml --data data/prepared \
        --variants k1_full,dense,ewc,replay,k1_grow --attention masked --steps-per-phase 40

`--attention` and `--steps-per-phase` set those keys of `train` in a copy of the params file (e.g. torch's
kernel, which the code before the native kernels also ran, and a short run).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

THIS = Path(__file__).resolve().parents[1]
TIMING = {"wall_time_s", "steps_per_s", "config_hash"}
#: provenance a newer tree adds to metrics.json (which kernels ran, named since issue 28): compared where both have it
NEW_PROVENANCE = {"kernels"}


def train(tree: Path, params: Path, data: Path, variants: str, seed: str, out: Path) -> None:
    code = "import sys; from k1model.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "train", "--params", str(params), "--data", str(data), "--variant", variants,
           "--seed", seed, "--out", str(out / "{variant}" / "seed{seed}")]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"training with {tree} failed:\n{done.stderr[-3000:]}")


def differences(a: Path, b: Path) -> list[str]:
    found = []
    if gzip.open(a / "steps.csv.gz").read() != gzip.open(b / "steps.csv.gz").read():
        found.append("steps.csv.gz")
    if (a / "evals.csv").read_bytes() != (b / "evals.csv").read_bytes():
        found.append("evals.csv")
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    sa, sb = ma.pop("scalars", {}), mb.pop("scalars", {})
    keys = (set(ma) | set(mb)) - {k for k in NEW_PROVENANCE if (k in ma) != (k in mb)}
    found += [f"metrics.json:{k}" for k in sorted(keys) if k not in TIMING and ma.get(k) != mb.get(k)]
    found += [f"metrics.json:scalars.{k}" for k in sorted(set(sa) | set(sb)) if k not in TIMING and sa.get(k) != sb.get(k)]
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", type=Path, help="another checkout of this project (e.g. a worktree of main)")
    ap.add_argument("--params", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="prepared data (`k1 prepare`)")
    ap.add_argument("--variants", default="k1_full,dense")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--attention", help="set train.attention (e.g. masked)")
    ap.add_argument("--steps-per-phase", type=int, help="set train.steps_per_phase")
    args = ap.parse_args()
    if not (args.other / "k1model" / "__init__.py").is_file():
        sys.exit(f"{args.other} is not a checkout of this project (no k1model/ in it)")
    with tempfile.TemporaryDirectory() as tmp:
        params = yaml.safe_load(args.params.read_text())
        if args.attention:
            params.setdefault("train", {})["attention"] = args.attention
        if args.steps_per_phase:
            params.setdefault("train", {})["steps_per_phase"] = args.steps_per_phase
        args.params = Path(tmp) / args.params.name
        args.params.write_text(yaml.safe_dump(params, sort_keys=False))
        runs = {}
        for name, tree in (("other", args.other.resolve()), ("this", THIS)):
            runs[name] = Path(tmp) / name
            train(tree, args.params.resolve(), args.data.resolve(), args.variants, args.seed, runs[name])
        bad = 0
        for variant in args.variants.split(","):
            diff = differences(runs["other"] / variant / f"seed{args.seed}", runs["this"] / variant / f"seed{args.seed}")
            bad += bool(diff)
            print(f"{variant} seed {args.seed}: " + ("the same bytes and values" if not diff else "DIFFERENT: " + ", ".join(diff)))
    print("SAME" if not bad else "DIFFERENT")
    return int(bool(bad))


if __name__ == "__main__":
    sys.exit(main())
