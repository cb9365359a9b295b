"""The continual-learning baselines (DESIGN.md §7): EWC, experience replay, K-1 + replay, joint.
Known answers (a hand-computed Fisher and penalty gradient), exact reductions to `dense`, a uniform
reservoir, resume across their state, compute-matched batches and clear errors."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from k1model.config import MethodConfig, ModelConfig, load_params
from k1model.errors import ConfigError
from k1model.model import AgentTree
from k1model.strategies.ewc_plugin import EWC, empirical_fisher
from k1model.strategies.joint_plugin import Joint
from k1model.strategies.replay_plugin import Replay, Reservoir
from k1model.train.plugins import Phase
from k1model.train.protocol import run_training
from k1model.train.step import K1Trainer

TINY = ModelConfig(branching=(2,), embed_dim=16, num_heads=2, hidden_dim=32, max_seq_len=8)
PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta", "gamma"], "max_bytes": 12000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"learning_rate": 0.003, "loo_interval": 3, "ewc_lambda": 50.0, "fisher_batches": 2,
               "replay_buffer": 40, "replay_fraction": 0.5},
    "train": {"batch_size": 4, "steps_per_phase": 6, "eval_interval": 3, "eval_batches": 1,
              "checkpoint_interval": 4, "sparsity_interval": 2},
    "experiment": {"variants": ["dense", "ewc", "replay", "k1_replay", "joint"], "seeds": [0, 1]},
    "analysis": {},
}


def with_method(**kw) -> dict:
    p = copy.deepcopy(PARAMS)
    p["method"].update(kw)
    return p


@pytest.fixture(scope="module")
def data_dir(prepare_data) -> Path:
    return prepare_data(PARAMS)


def outputs(run: Path) -> tuple[dict, dict]:
    metrics = json.loads((run / "metrics.json").read_text())
    blob = torch.load(run / "checkpoint.pt", weights_only=True)
    return metrics, blob["trainer"]


# ------------------------------------------------------------------ exact reductions to dense

@pytest.mark.parametrize("variant, off", [("ewc", {"ewc_lambda": 0.0}), ("replay", {"replay_fraction": 0.0})])
def test_switched_off_baselines_equal_dense_bit_for_bit(data_dir, tmp_path, variant, off):
    dense = run_training(with_method(**off), data_dir, "dense", 0, tmp_path / "dense", progress=False)
    other = run_training(with_method(**off), data_dir, variant, 0, tmp_path / variant, progress=False)
    assert other["R"] == dense["R"] and other["R_valid"] == dense["R_valid"]
    (_, wd), (_, wo) = outputs(tmp_path / "dense"), outputs(tmp_path / variant)
    assert all(torch.equal(wd["model"][k], wo["model"][k]) for k in wd["model"])
    plugin = wo["plugins"][variant]
    if variant == "ewc":  # the Fisher was really computed (twice: after phases 0 and 1), and multiplied by 0
        assert plugin["phases_seen"] == 2 and plugin["fisher"] is not None
    else:  # the buffer really filled
        assert plugin["buffer"]["seen"] == 18 * 4 and plugin["replayed"] == 0


def test_switched_on_baselines_differ_from_dense(data_dir, tmp_path):
    dense = run_training(PARAMS, data_dir, "dense", 1, tmp_path / "dense", progress=False)
    ewc = run_training(PARAMS, data_dir, "ewc", 1, tmp_path / "ewc", progress=False)
    assert ewc["R"][0] == dense["R"][0]  # identical until the first Fisher exists
    assert ewc["R"][-1] != dense["R"][-1]
    replay = run_training(PARAMS, data_dir, "replay", 1, tmp_path / "replay", progress=False)
    assert replay["R"][0] != dense["R"][0]  # replays within the first domain too, once the buffer holds a share


# ------------------------------------------------------------------ EWC known answers

def sequences(n: int, T: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(0, 256, (n, T + 1), generator=g)
    return w[:, :-1], w[:, 1:]


def test_empirical_fisher_equals_a_per_sequence_loop():
    model = AgentTree(TINY, seeds=[3])
    x, y = sequences(6)
    params = model.run_state(0)
    fisher = empirical_fisher(AgentTree(TINY, seeds=[0], attention="math"), params, [(x[:4], y[:4]), (x[4:], y[4:])],
                              chunk=3)
    by_hand = {k: torch.zeros_like(v) for k, v in params.items()}
    model.eval()
    for i in range(6):
        model.zero_grad(set_to_none=True)
        model(x[i:i + 1], y[i:i + 1])[1].backward()
        for (k, p) in model.run_parameters(0).items():
            by_hand[k] += p.grad.square()
    for k in params:
        assert torch.allclose(fisher[k], by_hand[k] / 6, rtol=1e-4, atol=1e-10), k
    assert sum(v.sum() for v in fisher.values()) > 0


def test_ewc_penalty_gradient_is_lambda_f_times_the_displacement():
    lam = 7.0
    trainer = K1Trainer(AgentTree(TINY, seeds=[1]), MethodConfig(variant="ewc", ewc_lambda=lam), seed=1)
    run = trainer.trainer.context(0)
    live = trainer.model.run_parameters(0)
    g = torch.Generator().manual_seed(5)
    ewc = EWC()
    ewc.fisher = {k: torch.rand(v.shape, generator=g) for k, v in live.items()}
    ewc.anchor = {k: v.detach() + 0.01 * torch.randn(v.shape, generator=g) for k, v in live.items()}
    term = ewc.loss_term(run, torch.tensor(0.0))
    term.backward()
    for k, p in live.items():
        expect = lam * ewc.fisher[k] * (p.detach() - ewc.anchor[k])
        assert torch.allclose(p.grad, expect, rtol=1e-5, atol=1e-9), k
    by_hand = 0.5 * lam * sum((ewc.fisher[k] * (p.detach() - ewc.anchor[k]) ** 2).sum() for k, p in live.items())
    assert term.item() == pytest.approx(by_hand.item(), rel=1e-5)


# ------------------------------------------------------------------ replay

def test_reservoir_gives_every_seen_window_the_same_inclusion_probability():
    capacity, stream, trials = 20, 200, 3000
    counts = np.zeros(stream)
    rng = np.random.default_rng(0)
    windows = torch.arange(stream, dtype=torch.int16).view(-1, 1)
    for t in range(trials):
        res = Reservoir(capacity, 1, [0, t])
        res.offer(windows)
        counts[res.windows[:, 0].long().numpy()] += 1
    p = capacity / stream
    expected = trials * p
    chi2 = ((counts - expected) ** 2 / (expected * (1 - p))).sum()
    bound = stats.chi2.ppf(0.999, stream - 1)
    assert chi2 < bound, (chi2, bound)
    # the test has power: keeping the first windows (no reservoir) is far outside the bound
    first = np.zeros(stream)
    first[:capacity] = trials
    assert ((first - expected) ** 2 / (expected * (1 - p))).sum() > 100 * bound
    assert rng is not None


def test_replay_only_reads_windows_already_trained_on_and_keeps_the_batch_size():
    plugin = Replay()
    trainer = K1Trainer(AgentTree(TINY, seeds=[0]), MethodConfig(variant="replay", replay_buffer=12,
                                                                 replay_fraction=0.5), seed=0)
    run = trainer.trainer.context(0)
    seen: set[tuple[int, ...]] = set()
    replayed_any = False
    for step in range(40):
        domain = step // 10  # a new "domain" every 10 steps: tokens 0-49, 50-99, ...
        x, y = sequences(4, seed=step)
        x, y = x % 50 + 50 * domain, y % 50 + 50 * domain
        phase = Phase(step // 10, f"d{domain}", 10, 10 * domain, np.zeros(9, np.uint8), 8, 4, 0)
        bx, by = plugin.batch(run, x, y, phase)
        assert bx.shape == x.shape and by.shape == y.shape  # compute-matched: same tokens per step
        rows = [tuple(r) for r in torch.cat([bx, by[:, -1:]], 1).tolist()]
        fresh = {tuple(r) for r in torch.cat([x, y[:, -1:]], 1).tolist()}
        for r in rows:
            assert r in fresh or r in seen  # a replayed window was trained on at an earlier step
            assert max(r) < 50 * (domain + 1)  # never a later domain
        replayed_any |= any(r not in fresh for r in rows)
        seen |= {r for r in rows if r in fresh}
    assert replayed_any and plugin.replayed == 2 * (40 - 1)  # from step 1: the buffer then holds >= 2 windows


def test_joint_batches_hold_equal_shares_of_every_domain():
    tokens = {d: np.full(100, i * 10, np.uint8) + np.arange(100, dtype=np.uint8) % 5 for i, d in enumerate("abc")}
    plugin = Joint()
    phase = Phase(0, "a", 10, 0, tokens["a"], 8, 6, 0, count=3, domain_tokens=tokens)
    counts = np.zeros(3)
    for _ in range(10):
        x, y = plugin.batch(None, torch.zeros(6, 8, dtype=torch.long), torch.zeros(6, 8, dtype=torch.long), phase)
        counts += np.bincount(x[:, 0].numpy() // 10, minlength=3)
    assert counts.tolist() == [20, 20, 20]


# ------------------------------------------------------------------ checkpoints, resume, errors

@pytest.mark.parametrize("variant", ["ewc", "replay", "k1_replay", "joint"])
def test_their_state_is_in_the_checkpoint_and_resume_is_exact(data_dir, tmp_path, variant):
    full = run_training(PARAMS, data_dir, variant, 1, tmp_path / "full", progress=False)
    assert run_training(PARAMS, data_dir, variant, 1, tmp_path / "cut", max_steps=9, progress=False) is None
    resumed = run_training(PARAMS, data_dir, variant, 1, tmp_path / "cut", progress=False)
    assert resumed["R"] == full["R"] and resumed["update_counts"] == full["update_counts"]
    (_, a), (_, b) = outputs(tmp_path / "full"), outputs(tmp_path / "cut")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    name = {"k1_replay": "replay"}.get(variant, variant)
    assert a["plugins"][name].keys() == b["plugins"][name].keys() and a["plugins"][name]


@pytest.mark.parametrize("change, key", [
    ({"ewc_lambda": -1.0}, "method.ewc_lambda"),
    ({"ewc_gamma": 0.0}, "method.ewc_gamma"),
    ({"ewc_gamma": 1.5}, "method.ewc_gamma"),
    ({"replay_fraction": 1.0}, "method.replay_fraction"),
    ({"replay_fraction": -0.1}, "method.replay_fraction"),
    ({"replay_buffer": 1, "replay_fraction": 0.5}, "method.replay_buffer"),
    ({"fisher_batches": 0}, "method.fisher_batches"),
])
def test_bad_params_name_the_key(change, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        load_params(with_method(**change))
    assert "\n" not in str(err.value)
