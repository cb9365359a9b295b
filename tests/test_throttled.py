"""The throttled control (DESIGN.md §12): dense whose agents are updated on a random share of steps.
At share 1.0 it is dense bit for bit; below, the agents move on about that share of steps and stand
exactly still on the others, while the shared weights are updated every step (as in K-1)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from k1model.config import MethodConfig
from k1model.method.selection import select_throttled
from k1model.topology import build_topology
from k1model.train.protocol import run_training

PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 12000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"learning_rate": 0.003},
    "train": {"batch_size": 4, "steps_per_phase": 20, "eval_interval": 10, "eval_batches": 1,
              "checkpoint_interval": 20, "sparsity_interval": 1},
    "experiment": {"variants": ["dense", "throttled"], "seeds": [0]},
    "analysis": {},
}


@pytest.fixture(scope="module")
def data_dir(prepare_data) -> Path:
    return prepare_data(PARAMS)


def with_share(share: float) -> dict:
    p = copy.deepcopy(PARAMS)
    p["method"]["throttle_share"] = share
    return p


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["trainer"]["model"]


def test_at_share_one_it_is_dense_bit_for_bit(data_dir, tmp_path):
    dense = run_training(with_share(1.0), data_dir, "dense", 0, tmp_path / "dense", progress=False)
    throttled = run_training(with_share(1.0), data_dir, "throttled", 0, tmp_path / "throttled", progress=False)
    assert throttled["R"] == dense["R"] and throttled["R_valid"] == dense["R_valid"]
    wd, wt = weights(tmp_path / "dense"), weights(tmp_path / "throttled")
    assert wd.keys() == wt.keys() and all(torch.equal(wd[k], wt[k]) for k in wd)
    steps = [pd.read_csv(tmp_path / name / "steps.csv.gz") for name in ("dense", "throttled")]
    assert steps[0]["loss"].tolist() == steps[1]["loss"].tolist()


def test_below_one_agents_move_on_that_share_of_steps_only(data_dir, tmp_path):
    metrics = run_training(with_share(0.3), data_dir, "throttled", 0, tmp_path / "t", progress=False)
    steps = pd.read_csv(tmp_path / "t" / "steps.csv.gz")
    updated = steps["updated"].to_numpy()
    assert set(np.unique(updated)) <= {0, 3}  # all three agents, or none
    assert 0.1 < (updated > 0).mean() < 0.55  # 40 Bernoulli(0.3) draws
    assert metrics["scalars"]["idle_step_fraction"] == pytest.approx((updated == 0).mean())
    assert metrics["scalars"]["shared_update_fraction"] == 1.0
    # measured by comparing weights (sparsity_interval 1): idle steps changed no agent weight at all
    assert metrics["sparsity"]["scales_agree_with_weights"] is True
    again = run_training(with_share(0.3), data_dir, "throttled", 0, tmp_path / "again", progress=False)
    assert again["R"] == metrics["R"]  # the draws are the run's own: reproducible


def test_the_selector_draws_a_share_of_full_updates():
    topo = build_topology((2, 2), {})
    method = MethodConfig(throttle_share=0.25)
    rng = np.random.default_rng(0)
    n = len(topo)
    scores, eligible = np.ones(n), np.ones(n, dtype=bool)
    picks = [select_throttled(topo, scores, eligible, method, rng)[1] for _ in range(4000)]
    full = np.array([p.sum() for p in picks])
    assert set(np.unique(full)) == {0.0, float(n)}
    assert (full > 0).mean() == pytest.approx(0.25, abs=0.03)
