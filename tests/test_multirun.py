"""Many runs in one process (DESIGN.md §10): every run's untouched agents stay bit-identical, each
run decides and learns exactly as it would alone, outputs keep their format, an interrupted process
resumes to the same results, and bad groupings are refused with clear errors."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from k1model.cli import main as k1
from k1model.config import MethodConfig, ModelConfig, load_params
from k1model.errors import ConfigError
from k1model.model import AgentTree
from k1model.train.protocol import RunGroup, run_specs, run_training
from k1model.train.step import K1Trainer, Trainer

SMALL = ModelConfig(branching=(2, 2), embed_dim=32, num_heads=4, hidden_dim=64, max_seq_len=16)
VARIANTS = ["k1_full", "random_path", "flat_topk", "dense"]
SEEDS = [3, 4, 5, 6]
PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 20000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2, 2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"learning_rate": 0.003, "loo_interval": 3, "trust_increase": 0.25},
    "train": {"batch_size": 4, "steps_per_phase": 6, "eval_interval": 3, "eval_batches": 1,
              "checkpoint_interval": 2, "sparsity_interval": 1},
    "experiment": {"variants": ["k1_full", "dense", "no_loo"], "seeds": [0, 1]},
    "analysis": {},
}


def batches(n: int, runs: int, seed: int = 0, B: int = 4, T: int = 16):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        w = torch.randint(0, 256, (runs, B, T + 1), generator=g)
        out.append((w[..., :-1], w[..., 1:]))
    return out


def methods(**kw):
    return [MethodConfig(variant=v, loo_interval=2, trust_increase=0.3, **kw) for v in VARIANTS]


@pytest.mark.parametrize("batching", ["loop", "batched"])
def test_each_run_decides_and_learns_as_it_would_alone(batching):
    stacked = Trainer(AgentTree(SMALL, runs=4, seeds=SEEDS, run_batching=batching), methods(), SEEDS)
    alone = [K1Trainer(AgentTree(SMALL, seeds=[s]), m, seed=s) for s, m in zip(SEEDS, methods())]
    for x, y in batches(8, 4):
        records = stacked.train_step(x, y)
        for r, trainer in enumerate(alone):
            single = trainer.train_step(x[r], y[r])
            assert records[r].path == single.path and records[r].scales == single.scales, (VARIANTS[r], single.step)
            if batching == "loop":  # each run's own kernels: the very same numbers
                assert records[r].loss == single.loss and records[r].grad_scores == single.grad_scores
            else:  # batched kernels round differently: the same run up to float rounding
                assert records[r].loss == pytest.approx(single.loss, rel=1e-5)
    for r, trainer in enumerate(alone):
        run_w = stacked.model.run_state(r)
        for k, v in trainer.model.state_dict().items():
            if batching == "loop":
                assert torch.equal(run_w[k], v), (VARIANTS[r], k)
            else:  # Adam turns rounding in near-zero gradients into lr-sized steps: bound by a few lr
                assert (run_w[k] - v).abs().max().item() <= 5 * 3e-3, (VARIANTS[r], k)


def test_untouched_agents_of_every_run_stay_bit_identical():
    stacked = Trainer(AgentTree(SMALL, runs=4, seeds=SEEDS), methods(), SEEDS)
    opt, n = stacked.optimizer, len(stacked.model.agents)

    def snapshot(r: int, k: int):
        return [(p.detach().clone(), *(t.clone() for t in opt.state[p])) for p in stacked.model.agent_parameters(k, r)]

    partial = False
    for x, y in batches(10, 4, seed=1):
        before = [[snapshot(r, k) for k in range(n)] for r in range(4)]
        records = stacked.train_step(x, y)
        for r, rec in enumerate(records):
            changed = {k for k in range(n) if not all(all(torch.equal(a, b) for a, b in zip(sa, sb))
                                                     for sa, sb in zip(before[r][k], snapshot(r, k)))}
            assert changed == {k for k, s in enumerate(rec.scales) if s > 0}, (VARIANTS[r], rec.step)
            partial |= 0 < len(changed) < n
    assert partial


@pytest.fixture(scope="module")
def data_dir(prepare_data) -> Path:
    return prepare_data(PARAMS)


def read(run: Path) -> tuple[dict, pd.DataFrame, dict]:
    metrics = json.loads((run / "metrics.json").read_text())
    weights = torch.load(run / "checkpoint.pt", weights_only=True)["trainer"]["model"]
    return metrics, pd.read_csv(run / "steps.csv.gz"), weights


def same_run(a: Path, b: Path) -> None:
    (ma, sa, wa), (mb, sb, wb) = read(a), read(b)
    for key in ("R", "R0", "R_valid", "update_counts", "final_bpb", "sparsity", "validation"):
        assert ma[key] == mb[key], key
    drop = {"wall_time_s", "steps_per_s"}
    assert {k: v for k, v in ma["scalars"].items() if k not in drop} == \
        {k: v for k, v in mb["scalars"].items() if k not in drop}
    pd.testing.assert_frame_equal(sa, sb)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())


def test_cli_trains_many_runs_in_one_process_with_the_outputs_of_single_runs(data_dir, tmp_path, capsys):
    import yaml

    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    pattern = str(tmp_path / "group" / "{variant}" / "seed{seed}")
    assert k1(["train", "--params", str(params), "--data", str(data_dir), "--variant", "k1_full,dense,no_loo",
               "--seed", "0,1", "--out", pattern]) == 0
    out = capsys.readouterr().out
    assert out.count("final avg bpb") == 6
    for variant in ("k1_full", "dense", "no_loo"):
        alone = tmp_path / "alone" / variant
        run_training(PARAMS, data_dir, variant, 1, alone, progress=False)
        same_run(tmp_path / "group" / variant / "seed1", alone)
        metrics = json.loads((tmp_path / "group" / variant / "seed1" / "metrics.json").read_text())
        assert metrics["process_runs"] == 6 and metrics["threads"] == 1


def test_an_interrupted_group_resumes_to_the_same_results(data_dir, tmp_path):
    def specs(root):
        return run_specs(load_params(PARAMS), ["k1_full", "dense"], [0, 1], root / "{variant}" / "seed{seed}")

    RunGroup(PARAMS, data_dir, specs(tmp_path / "full")).run(progress=False)
    assert RunGroup(PARAMS, data_dir, specs(tmp_path / "cut")).run(max_steps=5, progress=False) == [None] * 4
    # one run lost its resumable state: it restarts alone, the others resume together
    (tmp_path / "cut" / "dense" / "seed0" / "resume.pt").unlink()
    results = RunGroup(PARAMS, data_dir, specs(tmp_path / "cut")).run(progress=False)
    assert all(m["status"] == "completed" for m in results)
    for variant in ("k1_full", "dense"):
        for seed in (0, 1):
            same_run(tmp_path / "full" / variant / f"seed{seed}", tmp_path / "cut" / variant / f"seed{seed}")


def test_bad_groupings_are_refused(data_dir, tmp_path, capsys):
    import yaml

    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    base = ["train", "--params", str(params), "--data", str(data_dir)]
    assert k1([*base, "--variant", "k1_full,dense", "--seed", "0,1", "--out", str(tmp_path / "{variant}")]) == 2
    assert "{seed}" in capsys.readouterr().err
    assert k1([*base, "--variant", "dense,dense", "--seed", "0", "--out", str(tmp_path / "{variant}/{seed}")]) == 2
    assert "duplicate" in capsys.readouterr().err
    p = load_params(PARAMS)
    specs = run_specs(p, ["k1_full", "dense"], [0], tmp_path / "{variant}")
    wider = dataclasses.replace(specs[1], model=ModelConfig(branching=(3,), embed_dim=16, num_heads=2,
                                                            hidden_dim=32, max_seq_len=16))
    with pytest.raises(ConfigError, match="different model settings"):
        RunGroup(p, data_dir, [specs[0], wider])
    with pytest.raises(ConfigError, match="duplicate runs"):
        RunGroup(p, data_dir, [specs[0], specs[0]])


def _stacked_pass(model: AgentTree, x: torch.Tensor, y: torch.Tensor):
    """The model's functions composed over [runs, ...] tensors (what forward did before it went run by run)."""
    outs = model.run_tree(model.embed(x))
    logits = model.head(model.leaf_mean(outs))
    return logits, model.run_losses(logits, y), outs


@pytest.mark.parametrize("attention", ["native", "masked"])
@pytest.mark.parametrize("branching,slots", [((2, 2), 15), ((3,), None), ((2, 1, 2), None)])
def test_the_run_by_run_forward_is_the_stacked_functions_bit_for_bit(attention, branching, slots):
    """With loop batching forward_with_outputs takes each run through the whole tree in turn instead of stacking
    every agent's output over the runs: losses, logits, every agent's output and every gradient are the same bits
    as the stacked path's, with a run that has grown a slot and a run whose lineages are weighted by a merge."""
    from k1model import kernels
    from k1model.topology import ACTIVE, MERGED

    if attention == "native" and kernels.unavailable():
        pytest.skip(kernels.unavailable())
    cfg = ModelConfig(branching=branching, embed_dim=16, num_heads=2, hidden_dim=32, max_seq_len=16,
                      max_agents=slots)
    x, y = batches(1, 3, seed=7)[0]
    results = []
    for compose in (lambda m: m.forward_with_outputs(x, y), lambda m: _stacked_pass(m, x, y)):
        model = AgentTree(cfg, runs=3, attention=attention, seeds=[1, 2, 3])
        if slots:
            n = len(model.topology.leaves)
            grown = model.slot_states(1)
            grown[len(model.agents) - n] = ACTIVE  # run 1: the first slot is active
            model.set_structure(1, grown)
            merged, weights = model.slot_states(2), model.lineage_weights(2)
            merged[4], weights[0], weights[1] = MERGED, weights[0] + weights[1], 0.0  # run 2: leaf 4 merged into 3
            model.set_structure(2, merged, weights)
        logits, losses, outs = compose(model)
        (losses.sum() + 0.1 * logits.square().mean()).backward()
        results.append([losses, logits, *outs, *[p.grad for p in model.parameters() if p.grad is not None]])
    run_by_run, stacked = results
    assert len(run_by_run) == len(stacked) > 10
    assert all(torch.equal(a, b) for a, b in zip(run_by_run, stacked))
