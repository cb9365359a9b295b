"""Where forgetting lives (DESIGN.md §11): the `method.shared_update` option and the per-run forgetting
decomposition (drift per part, swap test) of `k1model/train/decomposition.py`."""
from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from k1model.config import ModelConfig, method_config
from k1model.config.params import load_params
from k1model.errors import ConfigError
from k1model.model import AgentTree
from k1model.train.decomposition import decomposition, snapshot, swap_test
from k1model.train.protocol import run_training
from k1model.train.step import Trainer

PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta", "gamma"], "max_bytes": 30000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2, 2], "embed_dim": 32, "num_heads": 4, "hidden_dim": 64, "max_seq_len": 32,
              "dropout": 0.0},
    "method": {"learning_rate": 0.003, "loo_interval": 4},
    "train": {"batch_size": 4, "steps_per_phase": 8, "eval_interval": 8, "eval_batches": 1,
              "checkpoint_interval": 5, "sparsity_interval": 4, "device": "cpu"},
    "experiment": {"variants": ["k1_full", "dense"], "seeds": [0, 1]},
    "analysis": {},
}


@pytest.fixture(scope="module")
def data_dir(prepare_data):
    return prepare_data(PARAMS)


def _with(rule: str) -> dict:
    p = copy.deepcopy(PARAMS)
    p["method"]["shared_update"] = rule
    return p


def _trainer(variant: str, rule: str, seed: int = 0) -> Trainer:
    cfg = ModelConfig(branching=(2, 2), embed_dim=16, num_heads=2, hidden_dim=32, max_seq_len=8)
    method = dataclasses.replace(method_config(load_params(_with(rule)).method, variant))
    return Trainer(AgentTree(cfg, runs=1, seeds=[seed]), [method], [seed])


def _state(trainer: Trainer) -> list[torch.Tensor]:
    """The shared weights of run 0 and their optimiser state."""
    params = trainer.model.run_groups(0)[0]
    return [t.clone() for p in params for t in (p.detach(), *trainer.optimizer.state[p])]


def test_bad_shared_update_is_refused():
    with pytest.raises(ConfigError, match="method.shared_update"):
        load_params(_with("sometimes"))


def test_shared_update_default_is_the_old_update_bit_for_bit():
    """every_step (the default) passes the shared weights to the optimiser exactly as before the option existed."""
    a, b = _trainer("k1_full", "every_step"), _trainer("k1_full", "every_step")
    old_step = b.optimizer.step
    b.optimizer.step = lambda scales, live, returning=None, shared=None: old_step(scales, live, returning)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        x = torch.randint(0, 256, (1, 4, 8), generator=g)
        ra, rb = a.train_step(x, x.roll(-1, -1)), b.train_step(x, x.roll(-1, -1))
        assert ra[0].shared_updated and ra[0].scales == rb[0].scales
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_with_agents_leaves_shared_weights_untouched_on_idle_steps():
    trainer = _trainer("k1_full", "with_agents")
    g = torch.Generator().manual_seed(1)
    idle = busy = 0
    for _ in range(30):
        before = _state(trainer)
        x = torch.randint(0, 256, (1, 4, 8), generator=g)
        record = trainer.train_step(x, x.roll(-1, -1))[0]
        after = _state(trainer)
        same = all(torch.equal(u, v) for u, v in zip(before, after))
        assert record.shared_updated == (record.updated > 0)
        assert same == (record.updated == 0)  # weights, both moments and the step count: all or nothing
        idle += record.updated == 0
        busy += record.updated > 0
    assert idle and busy  # the trust cooldown made some steps idle


def test_frozen_after_first_phase_carries_no_forgetting(data_dir, tmp_path):
    """Frozen shared weights do not move after phase 0, and the swap test gives them exactly zero forgetting."""
    m = run_training(_with("frozen_after_first_phase"), data_dir, "dense", 0, tmp_path / "run", progress=False)
    steps = pd.read_csv(tmp_path / "run" / "steps.csv.gz")
    assert (steps["shared_updated"] == (steps["phase"] == 0)).all()
    dec = m["decomposition"]
    assert [d["shared"] for d in dec["drift"]][1:] == [0.0, 0.0] and dec["drift"][0]["shared"] > 0
    assert all(d["agents"] > 0 for d in dec["drift"])
    assert [d["carried_by_shared"] for d in dec["domains"]] == [0.0, 0.0]
    assert m["scalars"]["forgetting_shared"] == 0.0 and m["scalars"]["drift_shared"] == 0.0
    R = np.asarray(m["R"])
    for row in dec["domains"]:  # the swap with an unchanged part is the final model itself, bit for bit
        assert row["old_shared"] == R[-1, row["phase"]] and row["final"] == R[-1, row["phase"]]


def test_decomposition_of_a_default_run(data_dir, tmp_path):
    m = run_training(PARAMS, data_dir, "k1_full", 1, tmp_path / "run", progress=False)
    dec, R = m["decomposition"], np.asarray(m["R"])
    assert [d["phase"] for d in dec["drift"]] == [0, 1, 2] and [d["phase"] for d in dec["domains"]] == [0, 1]
    for row in dec["domains"]:
        j = row["phase"]
        assert row["lost"] == pytest.approx(R[-1, j] - R[j, j])
        assert row["carried_by_shared"] == pytest.approx(R[-1, j] - row["old_shared"])
        assert row["old_shared"] != R[-1, j]  # shared weights move every step: restoring them changes the bpb
    s = m["scalars"]
    assert s["forgetting_shared"] == pytest.approx(np.mean([r["carried_by_shared"] for r in dec["domains"]]))
    assert s["shared_update_fraction"] == 1.0 and s["drift_shared"] > 0


def test_swap_test_restores_the_final_weights_exactly():
    cfg = ModelConfig(branching=(2,), embed_dim=16, num_heads=2, hidden_dim=32, max_seq_len=8)
    model = AgentTree(cfg, runs=2, seeds=[0, 1])
    old = {0: snapshot(model, 0)}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    final = [p.detach().clone() for p in model.parameters()]
    seen = []

    def evaluate(domains):
        seen.append([p.detach().clone() for p in model.shared[0].parameters()])
        return {d: np.array([1.0, 2.0]) for d in domains}

    out = swap_test(model, [0, 1], [old, {}], [["a", "b"], ["a", "b"]], evaluate)
    assert out[1] == [] and [r["domain"] for r in out[0]] == ["a"]
    assert torch.equal(seen[0][0], old[0][0][0])  # first evaluation: run 0's old shared weights
    assert all(torch.equal(p, f) for p, f in zip(model.parameters(), final))


def test_decomposition_arithmetic():
    R = [[1.0, 3.0, 3.0], [1.5, 1.2, 3.0], [1.9, 1.6, 1.1]]
    drifts = [{"phase": i, "shared": 1.0, "shared_relative": 0.1 * i, "agents": 1.0, "agents_relative": 0.2}
              for i in range(3)]
    swaps = [{"phase": 0, "domain": "a", "old_shared": 1.4, "old_agents": 1.8},
             {"phase": 1, "domain": "b", "old_shared": 1.6, "old_agents": 1.3}]
    doc, scalars = decomposition(R, drifts, swaps)
    assert [r["lost"] for r in doc["domains"]] == pytest.approx([0.9, 0.4])
    assert scalars["forgetting_shared"] == pytest.approx((0.5 + 0.0) / 2)
    assert scalars["forgetting_agents"] == pytest.approx((0.1 + 0.3) / 2)
    assert scalars["drift_shared"] == pytest.approx(0.15)  # phases after the first
    json.dumps(doc)


# --------------------------------------------------------------------------- what the LOO changes
def _loo_run(monkeypatch, deltas=None, steps=12):
    """k1_full on random batches; `deltas(grad_like)` replaces the LOO Δ (None: the real LOO)."""
    import k1model.train.step as step_module

    if deltas is not None:
        real = step_module.loo_deltas

        def fake(model, x, y, outs=None):
            base, loo = real(model, x, y, outs=outs)
            return base, deltas(loo)

        monkeypatch.setattr(step_module, "loo_deltas", fake)
    trainer = _trainer("k1_full", "every_step")
    trainer.runs[0].method = dataclasses.replace(trainer.runs[0].method, loo_interval=3)
    g = torch.Generator().manual_seed(2)
    records = []
    for _ in range(steps):
        x = torch.randint(0, 256, (1, 4, 8), generator=g)
        records.append(trainer.train_step(x, x.roll(-1, -1))[0])
    return records


def test_loo_effect_is_recorded_at_the_right_steps(monkeypatch):
    records = _loo_run(monkeypatch)
    for r in records:
        assert (r.loo_hurt is not None) == r.loo_computed and r.loo_changed is not None
    dense = _trainer("dense", "every_step")
    x = torch.randint(0, 256, (1, 4, 8))
    rec = dense.train_step(x, x.roll(-1, -1))[0]
    assert rec.loo_changed is None and rec.loo_hurt is None


def test_loo_that_never_hurts_never_changes_a_choice(monkeypatch):
    """w_k = 1 + relu(−Δ_k)/mean|Δ|: with every Δ_k > 0 the hybrid score is the gradient score."""
    records = _loo_run(monkeypatch, deltas=lambda loo: loo.abs() + 1e-3)
    assert not any(r.loo_hurt for r in records if r.loo_computed)
    assert not any(r.loo_changed for r in records)


def test_a_hurting_agent_changes_the_choice(monkeypatch):
    """A manager that hurts a lot (large negative Δ) is blamed more than its gradient alone says: the
    drill-down goes to it on steps where the gradient alone would have gone to its sibling."""
    def hurting(loo):
        out = loo.abs() + 1e-3
        out[..., 2] = -100.0  # the second manager hurts badly
        return out

    records = _loo_run(monkeypatch, deltas=hurting, steps=30)
    assert all(r.loo_hurt for r in records if r.loo_computed)
    changed = [r for r in records if r.loo_changed]
    assert changed and all(2 in r.path for r in changed)
    assert all(r.grad_scores[1] > r.grad_scores[2] for r in changed)  # gradient alone: the other manager
