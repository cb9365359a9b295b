"""scripts/same_numbers.py, the check that a change left the numbers alone: the same code gives the same
bytes, and a run that differs anywhere but its wall time is named."""
from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "same_numbers.py"
PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 8000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"loo_interval": 2},
    "train": {"batch_size": 2, "steps_per_phase": 3, "eval_interval": 2, "eval_batches": 1, "checkpoint_interval": 3},
    "experiment": {"variants": ["k1_full", "dense"], "seeds": [0]}, "analysis": {},
}


def _script():
    spec = importlib.util.spec_from_file_location("same_numbers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_this_tree_against_itself_is_the_same_bytes(prepare_data, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    out = subprocess.run([sys.executable, str(SCRIPT), str(ROOT), "--params", str(params), "--data",
                          str(prepare_data(PARAMS)), "--variants", "k1_full,dense", "--steps-per-phase", "4"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == ["k1_full seed 0: the same bytes and values",
                                       "dense seed 0: the same bytes and values", "SAME"]


def test_any_difference_but_the_wall_time_is_named(tmp_path):
    a = tmp_path / "a"
    a.mkdir()
    with gzip.open(a / "steps.csv.gz", "wt") as f:
        f.write("step,loss\n0,5.5\n")
    (a / "evals.csv").write_text("step,bpb\n0,7.9\n")
    (a / "metrics.json").write_text(json.dumps({"config_hash": "x", "wall_time_s": 3.0, "steps": 1,
                                                "scalars": {"final_avg_bpb": 4.2, "steps_per_s": 9.0}}))
    b = tmp_path / "b"
    shutil.copytree(a, b)
    differences = _script().differences
    m = json.loads((b / "metrics.json").read_text())
    m.update(config_hash="y", wall_time_s=5.0)
    m["scalars"]["steps_per_s"] = 1.0
    (b / "metrics.json").write_text(json.dumps(m))
    assert differences(a, b) == []
    m["scalars"]["final_avg_bpb"] = 4.2000001
    (b / "metrics.json").write_text(json.dumps(m))
    (b / "evals.csv").write_text("step,bpb\n0,7.8\n")
    with gzip.open(b / "steps.csv.gz", "wt") as f:
        f.write("step,loss\n0,5.4\n")
    assert differences(a, b) == ["steps.csv.gz", "evals.csv", "metrics.json:scalars.final_avg_bpb"]
