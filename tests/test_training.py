"""The `k1 train` protocol: outputs, resume after interruption, stale-config refusal,
corrupt checkpoints, non-finite loss, and measured sparsity."""
from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from k1model.cli import main as k1
from k1model.errors import CheckpointError, ConfigError, NonFiniteLossError
from k1model.train.protocol import Run, run_training

PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 40000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2, 2], "embed_dim": 32, "num_heads": 4, "hidden_dim": 64, "max_seq_len": 32,
              "dropout": 0.0},
    "method": {"learning_rate": 0.003, "loo_interval": 4, "trust_increase": 0.2},
    "train": {"batch_size": 4, "steps_per_phase": 12, "eval_interval": 6, "eval_batches": 2,
              "checkpoint_interval": 5, "sparsity_interval": 1, "device": "cpu"},
    "experiment": {"variants": ["k1_full", "dense", "flat_topk", "no_trust", "no_loo", "random_path"],
                   "seeds": [0, 1]},
    "analysis": {},
}


@pytest.fixture(scope="module")
def data_dir(prepare_data) -> Path:
    return prepare_data(PARAMS)


def test_run_writes_all_outputs_and_measured_sparsity(data_dir, tmp_path):
    m = run_training(PARAMS, data_dir, "k1_full", 0, tmp_path / "run", progress=False)
    assert m["status"] == "completed" and m["steps"] == 24
    assert np.array(m["R"]).shape == (2, 2) and len(m["R0"]) == 2
    for key in ("final_avg_bpb", "forgetting", "bwt", "fwt", "sparsity_param_fraction", "idle_step_fraction"):
        assert key in m["scalars"]
    assert m["sparsity"]["scales_agree_with_weights"] is True
    assert 0 < m["sparsity"]["sparsity_param_fraction"] < 0.6  # at most the path's 3 of 7 agents
    steps = pd.read_csv(tmp_path / "run" / "steps.csv.gz")
    assert len(steps) == 24 and {"grad_root", "loo_root", "trust_root", "scales", "path"} <= set(steps.columns)
    assert steps["loo_computed"].sum() == 6  # steps 0, 4, ..., 20
    evals = pd.read_csv(tmp_path / "run" / "evals.csv")
    assert set(evals["domain"]) == {"alpha", "beta"} and evals["end_of_phase"].sum() == 4
    assert sum(m["update_counts"].values()) == steps["updated"].sum()


def test_dense_changes_every_agent_every_step(data_dir, tmp_path):
    m = run_training(PARAMS, data_dir, "dense", 0, tmp_path / "run", progress=False)
    assert m["sparsity"]["sparsity_agent_fraction"] == 1.0
    assert m["sparsity"]["sparsity_param_fraction"] > 0.99


def test_interrupted_run_resumes_to_identical_metrics(data_dir, tmp_path):
    full = run_training(PARAMS, data_dir, "k1_full", 1, tmp_path / "full", progress=False)
    assert run_training(PARAMS, data_dir, "k1_full", 1, tmp_path / "cut", max_steps=7, progress=False) is None
    assert not (tmp_path / "cut" / "metrics.json").exists()
    # the resumable state is not a declared pipeline output (Snakemake deletes those before a rerun)
    assert (tmp_path / "cut" / "resume.pt").exists() and not (tmp_path / "cut" / "checkpoint.pt").exists()
    resumed = run_training(PARAMS, data_dir, "k1_full", 1, tmp_path / "cut", progress=False)
    for key in ("R", "R0", "update_counts", "final_bpb"):
        assert resumed[key] == full[key], key
    drop = {"wall_time_s", "steps_per_s"}
    assert {k: v for k, v in resumed["scalars"].items() if k not in drop} == \
        {k: v for k, v in full["scalars"].items() if k not in drop}
    a = pd.read_csv(tmp_path / "full" / "steps.csv.gz")
    b = pd.read_csv(tmp_path / "cut" / "steps.csv.gz")
    pd.testing.assert_frame_equal(a, b)
    wa = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["trainer"]["model"]
    wb = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["trainer"]["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_stale_config_is_refused(data_dir, tmp_path):
    run_training(PARAMS, data_dir, "k1_full", 0, tmp_path / "run", max_steps=3, progress=False)
    changed = copy.deepcopy(PARAMS)
    changed["method"]["learning_rate"] = 0.01
    with pytest.raises(CheckpointError, match="stale"):
        run_training(changed, data_dir, "k1_full", 0, tmp_path / "run", progress=False)


def test_corrupt_checkpoint_is_reported(data_dir, tmp_path):
    run_training(PARAMS, data_dir, "k1_full", 0, tmp_path / "run", max_steps=3, progress=False)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # only a finished run has its final checkpoint
    (tmp_path / "run" / "resume.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        run_training(PARAMS, data_dir, "k1_full", 0, tmp_path / "run", progress=False)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    run_training(PARAMS, data_dir, "k1_full", 0, out, max_steps=5, progress=False)
    good = (out / "resume.pt").read_bytes()
    import k1model.train.step as trainer_mod

    real = trainer_mod.Trainer.train_step

    def poisoned(self, x, y):
        if self.step_count == 7:
            with torch.no_grad():
                self.model.shared[0].ln_f.weight.fill_(float("nan"))
        return real(self, x, y)

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", poisoned)
    with pytest.raises(NonFiniteLossError, match="step 7"):
        run_training(PARAMS, data_dir, "k1_full", 0, out, progress=False)
    assert (out / "resume.pt").read_bytes() == good
    assert json.loads((out / "failure.json").read_text())["step"] == 7


def test_variant_outside_experiment_is_rejected(data_dir, tmp_path):
    params = copy.deepcopy(PARAMS)
    params["experiment"]["variants"] = ["dense"]
    with pytest.raises(ConfigError, match="experiment.variants"):
        Run(params, data_dir, "k1_full", 0, tmp_path)


def test_cli_train_and_errors(data_dir, tmp_path, capsys):
    import yaml

    params_file = tmp_path / "p.yaml"
    params_file.write_text(yaml.safe_dump(PARAMS))
    out = tmp_path / "run"
    assert k1(["train", "--params", str(params_file), "--data", str(data_dir), "--variant", "no_loo",
               "--seed", "0", "--out", str(out)]) == 0
    assert "final avg bpb" in capsys.readouterr().out
    assert k1(["train", "--params", str(params_file), "--data", str(data_dir), "--variant", "no_loo",
               "--seed", "0", "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().out
    bad = copy.deepcopy(PARAMS)
    bad["train"]["steps_per_phase"] = -3
    params_file.write_text(yaml.safe_dump(bad))
    assert k1(["train", "--params", str(params_file), "--data", str(data_dir), "--variant", "no_loo",
               "--seed", "0", "--out", str(tmp_path / "x")]) == 2
    assert "steps_per_phase" in capsys.readouterr().err
    params_file.write_text(yaml.safe_dump(PARAMS))
    assert k1(["train", "--params", str(params_file), "--data", str(tmp_path / "nodata"), "--variant", "no_loo",
               "--seed", "0", "--out", str(tmp_path / "y")]) == 2
    assert "k1 prepare" in capsys.readouterr().err


def test_method_variant_in_params_is_rejected(data_dir, tmp_path):
    params = copy.deepcopy(PARAMS)
    params["method"]["variant"] = "dense"
    with pytest.raises(ConfigError, match="method.variant"):
        Run(params, data_dir, "k1_full", 0, tmp_path)
