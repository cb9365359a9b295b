"""Attribution probes (`k1 attribute`, k1model/probes.py): known answers for the statistics,
planted faults on constructed cases, resampling, randomisation, and the CLI end to end."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from k1model.analysis import probes as P
from k1model.cli import main as k1
from k1model.config import MethodConfig, ModelConfig
from k1model.errors import CheckpointError, ConfigError, DataError, K1Error
from k1model.train.step import K1Trainer
from k1model.model import AgentTree, build_topology

SMALL = ModelConfig(branching=(2, 2), embed_dim=32, num_heads=4, hidden_dim=64, max_seq_len=16)
TOPO = build_topology((2, 2), {})

PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 40000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2, 2], "embed_dim": 32, "num_heads": 4, "hidden_dim": 64, "max_seq_len": 32,
              "dropout": 0.0},
    "method": {"learning_rate": 0.003, "loo_interval": 4, "trust_increase": 0.02},  # no cooldown in 24 steps
    "train": {"batch_size": 4, "steps_per_phase": 12, "eval_interval": 6, "eval_batches": 2,
              "checkpoint_interval": 12, "sparsity_interval": 6, "device": "cpu"},
    "experiment": {"variants": ["k1_full", "dense", "flat_topk"], "seeds": [0]},
    "analysis": {"rng_seed": 0, "bootstrap_resamples": 100, "confidence": 0.95,
                 "resample_batches": 4, "fault_batches": 1, "randomisation_batches": 2, "permutations": 200,
                 "windows": 4},
}


def pattern_batches(n: int, seed: int, B: int = 8, T: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Arithmetic byte sequences: learnable in a few dozen steps, so a fault can really hurt."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        start = torch.randint(0, 256, (B, 1), generator=g)
        step = torch.randint(1, 4, (B, 1), generator=g)
        w = (start + step * torch.arange(T + 1)) % 256
        out.append((w[:, :-1], w[:, 1:]))
    return out


@pytest.fixture(scope="module")
def trained_model() -> AgentTree:
    torch.manual_seed(0)
    model = AgentTree(SMALL)
    trainer = K1Trainer(model, MethodConfig(variant="dense"), seed=0)
    for x, y in pattern_batches(60, 0):
        trainer.train_step(x, y)
    return model


# ------------------------------------------------------------------ ranking / faults


def test_blame_stats_only_k_nonzero_is_perfect():
    for k in range(7):
        blame = np.zeros(7)
        blame[k] = 1.0
        s = P.blame_stats(blame, k)
        assert s == {"top1": 1.0, "auc": 1.0, "rank": 1.0}
        sibs = TOPO.children[TOPO.parents[k]] if k else ()
        if sibs:
            assert P.blame_stats(blame, k, sibs)["top1"] == 1.0
        other = (k + 1) % 7
        assert P.blame_stats(blame, other) == {"top1": 0.0, "auc": 5 / 6 * 0.5, "rank": 2 + 2.5}


def test_blame_stats_ties_and_chance():
    assert P.blame_stats([1.0, 1.0, 0.0], 0) == {"top1": 0.5, "auc": 0.75, "rank": 1.5}
    assert P.blame_stats([3.0, 1.0, 2.0], 1)["auc"] == 0.0
    assert P.blame_stats([1.0], 0) is None  # nobody to compare with
    assert P.walk_probability(TOPO, 0) == 1.0
    assert P.walk_probability(TOPO, 1) == 0.5 and P.walk_probability(TOPO, 6) == 0.25


def test_only_agent_with_gradient_is_named(trained_model):
    """Constructed case: every other agent frozen, so only k has a non-zero gradient score."""
    model = copy.deepcopy(trained_model)
    (x, y), = pattern_batches(1, 5)
    for k in range(7):
        for j, agent in enumerate(model.agents):
            agent.requires_grad_(j == k)
        att = P.batch_attribution(model, P.GradScorer(model), x, y)
        assert att["grad"][k] > 0 and np.count_nonzero(att["grad"]) == 1
        stats = P._trial_stats(model.topology, k, att)
        assert stats["top1_grad"] == 1.0 and stats["auc_grad"] == 1.0
        if k:
            assert stats["top1_sibling_grad"] == 1.0


def test_planted_faults_are_found_and_weights_restored(trained_model):
    model = trained_model
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    cfg = P.probe_config({"fault_loss_increase": 1.0})
    out = P.planted_faults(model, pattern_batches(2, 100), cfg, [0, 0])
    s = out["summary"]
    for m in P.METHODS:
        assert s[f"top1_{m}"] == 1.0 and s[f"auc_{m}"] == 1.0 and s[f"top1_sibling_{m}"] == 1.0
    assert s["path_hit_hybrid"] == 1.0
    assert s["n_faults"] == 7 and s["faults_off_target"] == []
    assert all(0.7 <= f["loss_increase"] <= 1.3 for f in out["faults"])
    assert s["chance"]["top1"] == pytest.approx(1 / 7) and s["chance"]["top1_sibling"] == 0.5
    assert s["chance"]["path_hit"] == pytest.approx((2 * 0.5 + 4 * 0.25) / 6)
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())  # bit-for-bit restored


def test_fault_agent_cap_covers_levels():
    topo = build_topology((4, 3, 2), {})
    chosen = P.fault_agent_set(topo, 8)
    assert len(chosen) == 8 and chosen[0] == 0 and chosen[-1] == len(topo) - 1
    assert {topo.levels[k] for k in chosen} == {0, 1, 2, 3}
    assert P.fault_agent_set(topo, None) == list(range(len(topo)))


# ------------------------------------------------------------------ statistics


def test_nmi_known_answers():
    assert P.nmi(np.eye(3) * 10) == pytest.approx(1.0)
    assert P.nmi(np.outer([1, 2, 3], [4, 5])) == pytest.approx(0.0, abs=1e-12)
    assert P.nmi([[5, 5]]) == 0.0  # one culprit, two domains: no information
    assert math.isnan(P.nmi([[4]]))
    t = np.array([[2.0, 1.0], [1.0, 2.0]])  # by hand: I = Σ p log(p / (p_r p_c)), H = log 2 each side
    p = t / t.sum()
    mi = sum(p[i, j] * math.log(p[i, j] / 0.25) for i in range(2) for j in range(2))
    assert P.nmi(t) == pytest.approx(mi / math.log(2))


def test_permutation_p_values():
    rows = np.repeat([0, 1, 2], 20)
    perfect = P.nmi_permutation_test(rows, rows + 7, 500, seed=1)
    assert perfect["nmi"] == pytest.approx(1.0) and perfect["p"] == pytest.approx(1 / 501)
    crossed = P.nmi_permutation_test(np.tile([0, 1], 30), np.repeat([0, 1], 30), 300, seed=1)
    assert crossed["nmi"] == pytest.approx(0.0, abs=1e-12) and crossed["p"] == 1.0  # every null draw is >= 0
    # under independence p is ~uniform (calibrated), and close to the chi-squared test's p
    from scipy.stats import chi2_contingency

    ps = []
    for s in range(100):
        rng = np.random.default_rng(s)
        a, b = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
        ps.append(P.nmi_permutation_test(a, b, 200, seed=s)["p"])
    assert np.mean(np.array(ps) < 0.05) <= 0.12 and 0.4 <= np.mean(ps) <= 0.6
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    indep = P.nmi_permutation_test(a, b, 400, seed=2)
    table = np.zeros((3, 3))
    np.add.at(table, (a, b), 1)
    assert indep["p"] == pytest.approx(chi2_contingency(table).pvalue, abs=0.03)
    assert indep["p"] * 401 == pytest.approx(round(indep["p"] * 401))  # (1 + #exceed) / (1 + n)
    assert P.nmi_permutation_test(a, b, 400, seed=2) == indep  # fixed RNG
    blocks = np.repeat([0, 1, 2], [15, 20, 25])  # unequal blocks: no rotation lines up again
    circ = P.nmi_permutation_test(blocks, blocks, 200, seed=1, null="circular")
    assert circ["p"] == pytest.approx(1 / 201)


def test_spearman_and_entropy():
    assert P.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert P.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(P.spearman([1, 1, 1], [1, 2, 3]))
    assert P.entropy_bits(["a", "a"]) == 0.0 and P.entropy_bits("abcd") == pytest.approx(2.0)


def test_window_rank_correlation():
    stable = np.tile(np.arange(7.0), (50, 1)) + np.random.default_rng(0).normal(0, 0.01, (50, 7))
    assert P.window_rank_correlation(stable, windows=5)["mean"] == pytest.approx(1.0)
    flip = np.vstack([np.tile(np.arange(7.0), (10, 1)), np.tile(-np.arange(7.0), (10, 1))])
    w = P.window_rank_correlation(flip, window_steps=10, phases=[0] * 10 + [1] * 10)
    assert w["n_windows"] == 2 and w["mean"] == pytest.approx(-1.0) and w["pairs"][0]["crosses_phase"] is True


def test_path_agreement():
    assert P.path_agreement([[0, 1, 3]] * 5) == 1.0
    assert P.path_agreement([[0, 1, 3], [0, 1, 4], [0, 2, 5], [0, 2, 6]]) == 0.0
    assert P.path_agreement([[0, 1, 3], [0, 1, 3], [0, 2, 5]]) == pytest.approx(2 / 6)


def _log(names, culprits, domains, grad=None, loo=None):
    n = len(culprits)
    rows = {"step": range(n), "phase": [0] * n, "domain": domains, "culprit": culprits,
            "loo_computed": [1] * n, "scales": ["{}"] * n}
    for k, name in enumerate(names):
        rows[f"grad_{name}"] = grad[:, k] if grad is not None else 1.0
        rows[f"loo_{name}"] = loo[:, k] if loo is not None else np.nan
        rows[f"score_{name}"] = rows[f"grad_{name}"]
    return pd.DataFrame(rows)


def test_step_log_probes_known_answers():
    names = list(TOPO.names)
    leaves = [names[k] for k in TOPO.leaves]
    domains = ["a"] * 30 + ["b"] * 30 + ["c"] * 30
    culprits = [leaves[0]] * 30 + [leaves[1]] * 30 + [leaves[2]] * 30
    cut_short = ["root"] * 10 + [names[1]] * 5  # paths stopped by cooldown: not attribution's choice
    log = _log(names, culprits + cut_short, domains + ["a"] * 15)
    spec = P.specialisation(log, names, "drilldown", 300, [0, 0], leaves=leaves)
    assert spec["nmi"] == pytest.approx(1.0) and spec["p"] == pytest.approx(1 / 301)
    assert spec["contingency"]["counts"] == [[30, 0, 0], [0, 30, 0], [0, 0, 30], [0, 0, 0]]
    assert spec["steps_used"] == 90 and spec["left_out_culprits"] == {"root": 10, names[1]: 5}
    assert P.specialisation(_log(names, culprits, domains), names, "all", 10, [0])["defined"] is False
    one = P.specialisation(_log(names, culprits, ["a"] * 90), names, "drilldown", 10, [0, 0])
    assert one["defined"] is False and math.isnan(one["nmi"])

    rng = np.random.default_rng(0)
    grad = rng.random((5, 7))
    agree = P.grad_loo_agreement(_log(names, [""] * 5, ["a"] * 5, grad, -grad), names)
    assert agree["n_loo_steps"] == 5 and agree["mean"] == pytest.approx(1.0)


def test_flat_topk_culprit_is_top_selected_agent():
    names = list(TOPO.names)
    df = _log(names, [""] * 2, ["a", "b"], grad=np.array([[5, 1, 2, 0, 9, 0, 0], [1, 2, 3, 4, 5, 6, 7.0]]))
    df["scales"] = [json.dumps({names[0]: 1.0, names[2]: 1.0}), json.dumps({names[3]: 1.0, names[1]: 1.0})]
    assert P._top_selected(df, names) == [names[0], names[3]]


def test_probe_config_validation():
    assert P.probe_config(None)["resample_batches"] == P.DEFAULT_ANALYSIS["resample_batches"]
    assert P.probe_config({"bootstrap_resamples": 5})["permutations"] == 1000  # other consumers' keys ignored
    with pytest.raises(ConfigError, match="analysis.fault_batches"):
        P.probe_config({"fault_batches": 0})
    with pytest.raises(ConfigError, match="fault_loss_increase"):
        P.probe_config({"fault_loss_increase": None, "fault_noise": None})


# ------------------------------------------------------------------ checkpoint probes


def test_resampling_same_batch_agrees_and_randomisation_changes(trained_model):
    batch = pattern_batches(1, 7)[0]
    for use_loo in (False, True):
        res = P.resample_probe(trained_model, [batch] * 4, use_loo)
        assert res["path_agreement"] == 1.0 and res["culprit_entropy_bits"] == 0.0
    before = {n: p.detach().clone() for n, p in trained_model.state_dict().items()}
    rnd = P.randomisation_probe(trained_model, pattern_batches(4, 8), True, [0, 0])
    assert [s["agents_randomised"] for s in rnd["stages"]] == [4, 6, 7]
    assert rnd["stages"][-1]["loss"] > rnd["loss_trained"]
    assert all(0.0 <= s["culprit_change"] <= 1.0 for s in rnd["stages"])
    assert all(torch.equal(before[n], p) for n, p in trained_model.state_dict().items())


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    import yaml

    from k1model.data import prepare
    from k1model.train.protocol import run_training

    root = tmp_path_factory.mktemp("probes")
    prepare(PARAMS["data"], root / "data", seq_len=PARAMS["model"]["max_seq_len"])
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(PARAMS))
    runs = {}
    for variant in ("k1_full", "dense"):
        runs[variant] = root / "runs" / variant / "seed0"
        run_training(PARAMS, root / "data", variant, 0, runs[variant], progress=False)
    return root, params_file, runs


def test_cli_attribute_end_to_end(tiny_runs, capsys):
    root, params_file, runs = tiny_runs
    for variant, run in runs.items():
        assert k1(["attribute", "--params", str(params_file), "--data", str(root / "data"), "--run", str(run),
                   "--threads", "1"]) == 0
        assert "attr_fault_top1_hybrid" in capsys.readouterr().out
        result = json.loads((run / "attribution.json").read_text())
        scalars = result["scalars"]
        assert set(P.SCALAR_NAMES) <= set(scalars)
        assert all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in scalars.values())
        for m in P.METHODS:  # LOO is a measurement on the checkpoint: defined for every variant
            assert 0.0 <= scalars[f"attr_fault_top1_{m}"] <= 1.0 and 0.0 <= scalars[f"attr_fault_auc_{m}"] <= 1.0
        assert 0.0 <= scalars["attr_resample_path_agreement"] <= 1.0
        assert len(result["details"]["faults"]) == 7
        assert len(result["details"]["randomisation"]["stages"]) == 3
        if variant == "k1_full":
            assert scalars["attr_grad_loo_spearman"] is not None
            assert scalars["attr_specialisation_nmi"] is not None and 0 < scalars["attr_specialisation_p"] <= 1
            assert result["details"]["specialisation"]["contingency"]["domains"] == ["alpha", "beta"]
        else:
            assert scalars["attr_grad_loo_spearman"] is None
            assert scalars["attr_specialisation_nmi"] is None and scalars["attr_specialisation_p"] is None
    first = json.loads((runs["k1_full"] / "attribution.json").read_text())["scalars"]
    again = P.attribute_run(__import__("yaml").safe_load(params_file.read_text()), root / "data", runs["k1_full"])
    assert again["scalars"] == first  # deterministic


def test_missing_run_and_checkpoint_are_named(tiny_runs, tmp_path, capsys):
    import shutil

    import yaml

    root, params_file, runs = tiny_runs
    params = yaml.safe_load(params_file.read_text())
    missing = tmp_path / "nope"
    with pytest.raises(K1Error, match=str(missing)):
        P.attribute_run(params, root / "data", missing)
    assert k1(["attribute", "--params", str(params_file), "--data", str(root / "data"), "--run", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err

    run = tmp_path / "run"
    shutil.copytree(runs["dense"], run)
    (run / "steps.csv.gz").unlink()
    with pytest.raises(DataError, match="steps.csv.gz"):
        P.attribute_run(params, root / "data", run)
    (run / "checkpoint.pt").unlink()
    with pytest.raises(CheckpointError, match=str(run / "checkpoint.pt")):
        P.attribute_run(params, root / "data", run)
    (run / "metrics.json").unlink()
    with pytest.raises(DataError, match="metrics.json"):
        P.attribute_run(params, root / "data", run)
