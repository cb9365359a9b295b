"""The GPU check's CPU smoke mode: the one-call script runs every part end to end at tiny sizes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_runs_every_part_in_its_cpu_smoke_mode(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--no-install", "--device", "cpu",
                           "--tiny", "--runs", "1,2", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {n: p["status"] for n, p in result["parts"].items()} == dict.fromkeys(
        ("bench", "batching", "precision", "training"), "ok")
    rows = result["parts"]["batching"]["result"]["rows"]
    assert [r["runs"] for r in rows] == [1, 2]
    assert all(r["first_loss_max_abs_diff"] < 1e-4 for r in rows)  # loop and batched compute the same step
    runs = result["parts"]["training"]["result"]["runs"]
    assert set(runs) == {"k1_full", "dense"} and all(r["device"] == "cpu" for r in runs.values())
    text = (tmp_path / "gpu_check.txt").read_text()
    assert "[training] ok" in text and "R=2" in text


def test_the_gpu_check_refuses_a_missing_gpu_with_a_clear_error(tmp_path):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the missing-GPU error cannot be shown")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cuda",
                           "--out-dir", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "CUDA is not available here" in done.stderr
    assert not (tmp_path / "gpu_check.json").exists()
