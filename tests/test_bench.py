"""Smoke test of `k1 bench` (structure, table, CLI; no timing assertions) and checks that the speed-ups
behind it keep results exact: the LOO that reuses the training forward equals the plain one bit for bit,
and a training step has one host sync."""
from __future__ import annotations

import json

import pytest
import torch

from k1model.method.attribution import loo_deltas, loo_deltas_reference
from k1model.app.bench import PLAIN, VARIANT_ORDER, count_host_syncs, format_table, parse_trees, run_benchmark
from k1model.app.bench.experiments import runnable_kernels
from k1model.cli import build_parser
from k1model.config import MethodConfig, ModelConfig
from k1model.errors import ConfigError
from k1model.train.step import K1Trainer
from k1model.method.variants import VARIANTS
from k1model.execution import default_execution
from k1model.model import AgentTree

TINY = dict(width=16, heads=2, context=8, batch=2, repeats=1, warmup=1, loo_interval=3, multi_runs=2,
            reference=(ModelConfig(branching=(2,), embed_dim=16, num_heads=2, hidden_dim=32, max_seq_len=8), 2))


@pytest.fixture(scope="module")
def result():
    return run_benchmark([(2,)], **TINY)


def test_json_structure(result):
    assert {"meta", "trees", "targets"} <= result.keys()
    assert result["meta"]["width"] == 16 and result["meta"]["hidden"] == 64 and "amortisation" in result["meta"]
    (tree,) = result["trees"]
    assert tree["branching"] == [2] and tree["agents"] == 3
    assert list(tree["variants"]) == list(VARIANT_ORDER)
    for name, row in [*tree["variants"].items(), (PLAIN, tree[PLAIN])]:
        assert row["step_s"]["n"] == 1 and row["step_s"]["median"] > 0
        assert row["amortised_step_s"] > 0 and row["tokens_per_s"] > 0 and row["ratio_to_dense"] > 0
        assert row["memory"]["step"]["peak_extra_mb"] is not None and row["memory"]["params_mb"] > 0
        has_loo = name != PLAIN and VARIANTS[name].uses_loo
        assert (row["loo_step_s"] is not None) == has_loo == (row["host_syncs"]["loo_step"] is not None)
        if has_loo:  # amortised = ((I-1) * step + loo step) / I from the medians
            expect = (2 * row["step_s"]["median"] + row["loo_step_s"]["median"]) / 3
            assert row["amortised_step_s"] == pytest.approx(expect)
    assert tree["variants"]["dense"]["ratio_to_dense"] == 1.0
    assert tree["variants"]["ewc"]["fisher_s_per_phase"] > 0 and tree["variants"]["dense"]["fisher_s_per_phase"] is None
    loo = tree["loo"]
    assert loo["speedup"] > 0 and loo["max_abs_diff"] < 1e-4
    assert tree["optimizer"]["bit_equal"] is True  # foreach equals the for-loop
    assert tree["optimizer"]["fused_max_rel_diff"] < 1e-4  # fused: same update up to rounding
    assert set(result["targets"]) >= {"k1_full_amortised_over_dense", "batched_loo_speedup",
                                      "dense_step_fraction_of_matmul", "multi_run_step_speedup"}
    ex = result["execution"]
    kernels = runnable_kernels(TINY["reference"][0], torch.device("cpu"))
    assert {"masked", "causal", "math"} <= set(kernels)
    assert len(ex["rows"]) == len(kernels) * 2 * 2 and all(r["per_run_step_s"]["median"] > 0 for r in ex["rows"].values())
    eff = result["efficiency"]
    assert eff["flops_per_step"] > 0 and 0 < eff["fraction_of_matmul"] < 2
    assert eff["attention"] == default_execution("cpu")[0]
    # the matmuls of the step, shape by shape: 4 linear layers x (forward, input grad, weight grad) + the head's 3
    assert len(eff["matmul_shapes"]) == 15 and all(s["gflops"] > 0 for s in eff["matmul_shapes"])
    assert sum(s["flops"] for s in eff["matmul_shapes"]) == pytest.approx(eff["flops_per_step"], rel=0.01)
    assert eff["model_shapes_gflops"] > 0 and 0 < eff["matmul_share_of_step"] < 2
    assert sum(eff["breakdown"]["share"].values()) == pytest.approx(1.0) and eff["breakdown"]["share"]["matmul"] > 0
    json.dumps(result)  # JSON-able as is


def test_table_prints(result):
    table = format_table(result)
    for word in ("k1_full", "dense", "plain_adamw", "LOO eval", "targets", "tree [2]", "execution choices",
                 "efficiency", "model's own shapes", "where the step's time goes"):
        assert word in table


def _step_syncs(counted: dict) -> int:
    """Host syncs of the step itself; structural plasticity's decisions (k1_grow: at a LOO round the
    sibling similarities, one sync; at an event the probe losses) are counted apart."""
    return counted["k1model"] - sum(n for site, n in counted["sites"].items() if site.startswith("plasticity_plugin.py"))


def test_every_trainer_step_has_one_host_sync(result):
    for name, row in result["trees"][0]["variants"].items():
        assert _step_syncs(row["host_syncs"]["step"]) == 1, (name, row["host_syncs"]["step"]["sites"])
        if row["host_syncs"]["loo_step"] is not None:
            assert _step_syncs(row["host_syncs"]["loo_step"]) == 1, (name, row["host_syncs"]["loo_step"]["sites"])
    grow = result["trees"][0]["variants"]["k1_grow"]["host_syncs"]
    assert grow["step"]["k1model"] == 1, grow["step"]["sites"]  # no structure check between LOO rounds


def test_cli_writes_json_and_prints_table(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = build_parser().parse_args(["bench", "--trees", "2", "--width", "16", "--context", "8", "--batch", "2",
                                      "--repeats", "1", "--warmup", "0", "--loo-interval", "2", "--threads", "1",
                                      "--multi-runs", "2", "--out", str(out)])
    assert args.func(args) == 0  # routed lazily to k1model.bench:cli_bench
    assert "k1_full" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["trees"][0]["agents"] == 3 and data["meta"]["threads"] == 1


@pytest.mark.slow
def test_versus_times_two_trees_side_by_side(tmp_path, capsys):
    """`k1 bench --versus TREE`: two workers, one per tree; against this very tree both run the same step,
    so their first-step losses are equal."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "versus.json"
    args = build_parser().parse_args(["bench", "--versus", str(root), "--params", str(root / "params" / "tiny.yaml"),
                                      "--versus-runs", "1,2", "--repeats", "2", "--warmup", "0", "--out", str(out)])
    assert args.func(args) == 0
    assert "side by side" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data["runs"]) == {"1", "2"}
    for row in data["runs"].values():
        assert row["speedup"] > 0 and row["reference_s_per_run_step"]["n"] == 2
        assert row["first_step_loss"]["reference"] == row["first_step_loss"]["this"]
    assert data["kernels"]["this"]["attention"] == data["kernels"]["reference"]["attention"]


def test_versus_refuses_a_folder_that_is_not_a_checkout(tmp_path):
    args = build_parser().parse_args(["bench", "--versus", str(tmp_path)])
    with pytest.raises(ConfigError, match="not a checkout"):
        args.func(args)


def test_parse_trees():
    assert parse_trees("2,2;4,4;4,3,2") == [(2, 2), (4, 4), (4, 3, 2)]
    for bad in ("", "a,b", "2,0"):
        with pytest.raises(ConfigError, match="trees"):
            parse_trees(bad)


def test_count_host_syncs_sees_item_and_cpu():
    t = torch.ones(3)
    counted = count_host_syncs(lambda: (t.sum().item(), t.cpu(), float(t[0])))
    assert counted["total"] == 3 and counted["k1model"] == 3


@pytest.mark.parametrize("branching", [(2, 2), (3, 2)])
def test_loo_reusing_training_forward_is_bit_identical(branching):
    cfg = ModelConfig(branching=branching, embed_dim=32, num_heads=4, hidden_dim=64, max_seq_len=16)
    model = AgentTree(cfg, seeds=[0])
    with torch.no_grad():
        for p in model.agents.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    g = torch.Generator().manual_seed(1)
    w = torch.randint(0, 256, (3, 17), generator=g)
    x, y = w[:, :-1], w[:, 1:]
    model.train()
    _, loss, outs = model.forward_with_outputs(x, y)
    assert torch.equal(loss, model(x, y)[1])
    full, fresh = loo_deltas(model, x, y)
    full2, reused = loo_deltas(model, x, y, outs=[o.detach() for o in outs])
    assert torch.equal(full, full2) and torch.equal(fresh, reused)
    _, ref = loo_deltas_reference(model, x, y)
    assert (fresh - ref).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="agent outputs"):
        loo_deltas(model, x, y, outs=outs[:2])


def test_trainer_loo_equals_loo_of_the_pre_update_model():
    cfg = ModelConfig(branching=(2, 2), embed_dim=32, num_heads=4, hidden_dim=64, max_seq_len=16)
    trainer = K1Trainer(AgentTree(cfg, seeds=[0]), MethodConfig(variant="k1_full", loo_interval=2))
    g = torch.Generator().manual_seed(2)
    for step in range(4):
        w = torch.randint(0, 256, (3, 17), generator=g)
        x, y = w[:, :-1], w[:, 1:]
        before = AgentTree(cfg, seeds=[0])
        before.load_state_dict(trainer.model.state_dict())
        rec = trainer.train_step(x, y)
        assert rec.loo_computed == (step % 2 == 0)
        if rec.loo_computed:
            _, expect = loo_deltas(before, x, y)
            assert rec.loo == expect.double().tolist()
