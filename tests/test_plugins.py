"""The extension points of the trainer: plugin hooks (loss term, batch source, phase events, state in
the checkpoint), variants as compositions of registered parts, and safe checkpoints."""
from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pytest
import torch

from k1model.config import MethodConfig, ModelConfig
from k1model.errors import CheckpointError
from k1model.method.variants import VARIANTS, Variant, register_variant
from k1model.model import AgentTree
from k1model.config.registry import PLUGINS, register_plugin, unregister_plugin, unregister_variant
from k1model.train.plugins import Plugin
from k1model.train.protocol import run_training
from k1model.train.step import K1Trainer

PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 20000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"learning_rate": 0.003, "loo_interval": 3},
    "train": {"batch_size": 4, "steps_per_phase": 6, "eval_interval": 3, "eval_batches": 1,
              "checkpoint_interval": 2, "sparsity_interval": 2},
    "experiment": {"variants": ["k1_full", "dense", "logged_dense"], "seeds": [0, 1]},
    "analysis": {},
}
SMALL = ModelConfig(branching=(2,), embed_dim=16, num_heads=2, hidden_dim=32, max_seq_len=16)


class Logger(Plugin):
    """Records every hook call; its log is its state, so a resumed run must continue it."""

    name = "test_logger"

    def __init__(self) -> None:
        self.log: list[str] = []

    def before_phase(self, run, phase):
        self.log.append(f"before:{phase.index}:{phase.domain}:{run.step}")

    def batch(self, run, x, y, phase):
        self.log.append(f"batch:{run.step}")
        return x, y

    def loss_term(self, run, loss):
        self.log.append(f"loss:{run.step}")
        return None

    def after_update(self, run, record):
        self.log.append(f"update:{record.step}")

    def after_phase(self, run, phase):
        self.log.append(f"after:{phase.index}:{run.step}")

    def state_dict(self):
        return {"log": list(self.log)}

    def load_state_dict(self, state):
        self.log = list(state["log"])


@pytest.fixture(scope="module", autouse=True)
def logged_variant():
    register_plugin(Logger)
    register_variant(Variant("logged_dense", "all", "gradient", False, ("test_logger",), "dense + a hook logger"))
    yield
    unregister_variant("logged_dense")
    unregister_plugin("test_logger")


@pytest.fixture(scope="module")
def data_dir(prepare_data) -> Path:
    return prepare_data(PARAMS)


def batch(seed: int = 0, B: int = 4, T: int = 16):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(0, 256, (B, T + 1), generator=g)
    return w[:, :-1], w[:, 1:]


def test_hooks_fire_in_protocol_order_and_their_state_survives_resume(data_dir, tmp_path):
    full = run_training(PARAMS, data_dir, "logged_dense", 0, tmp_path / "full", progress=False)
    log = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)["trainer"]["plugins"]["test_logger"]["log"]
    assert log[0] == "before:0:alpha:0" and "before:1:beta:6" in log and log[-1] == "after:1:12"
    step3 = log.index("batch:3")
    assert log[step3:step3 + 3] == ["batch:3", "loss:3", "update:3"]  # batch source, loss term, after update
    assert log.index("after:0:6") < log.index("before:1:beta:6")
    assert run_training(PARAMS, data_dir, "logged_dense", 0, tmp_path / "cut", max_steps=5, progress=False) is None
    resumed = run_training(PARAMS, data_dir, "logged_dense", 0, tmp_path / "cut", progress=False)
    log2 = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["trainer"]["plugins"]["test_logger"]["log"]
    assert log2 == log and resumed["R"] == full["R"]
    dense = run_training(PARAMS, data_dir, "dense", 0, tmp_path / "dense", progress=False)
    assert dense["R"] == full["R"]  # hooks that change nothing change nothing


class Penalty(Plugin):
    """An L2 pull towards zero: a loss term, like EWC's."""

    name = "penalty"

    def __init__(self, strength: float) -> None:
        self.strength = strength

    def loss_term(self, run, loss):
        return self.strength * sum(p.pow(2).sum() for p in run.parameters())


class FixedBatch(Plugin):
    name = "fixed"

    def __init__(self, x, y) -> None:
        self.x, self.y = x, y

    def batch(self, run, x, y, phase):
        return self.x, self.y


def trainer_with(plugins) -> K1Trainer:
    return K1Trainer(AgentTree(SMALL, seeds=[0]), MethodConfig(variant="dense"), seed=0, plugins=plugins)


def test_a_loss_term_changes_the_update_and_a_zero_term_does_not():
    x, y = batch()
    plain, zero, strong = trainer_with([]), trainer_with([Penalty(0.0)]), trainer_with([Penalty(1.0)])
    losses = {t.train_step(x, y).loss for t in (plain, zero, strong)}
    assert len(losses) == 1  # the reported loss is the data loss; the term only changes the gradient
    w = {n: p for n, p in plain.model.named_parameters()}
    assert all(torch.equal(w[n], p) for n, p in zero.model.named_parameters())
    assert not all(torch.equal(w[n], p) for n, p in strong.model.named_parameters())


def test_the_batch_hook_replaces_what_the_step_trains_on(data_dir, tmp_path):
    fx, fy = batch(seed=9, B=4)
    trainer = trainer_with([FixedBatch(fx, fy)])
    x, y = batch(seed=1)
    for plugin in trainer.plugins:
        x, y = plugin.batch(trainer.trainer.context(0), x, y, None)
    rec = trainer.train_step(x, y)
    ref = AgentTree(SMALL, seeds=[0])
    assert rec.loss == ref(fx, fy)[1].item()


def test_variants_are_compositions_of_registered_parts():
    from k1model.method.scoring import SCORERS
    from k1model.method.selection import SELECTORS

    for v in VARIANTS.values():
        assert v.selector in SELECTORS and v.scorer in SCORERS and all(p in PLUGINS for p in v.plugins), v
    assert VARIANTS["k1_full"].uses_loo and not VARIANTS["no_loo"].uses_loo and not VARIANTS["no_trust"].cooldown
    with pytest.raises(ValueError, match="already registered"):
        register_variant(VARIANTS["dense"])


class _Boom:
    """Unpickling this runs a command: what a poisoned checkpoint on a shared remote would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_checkpoint_that_would_run_code_is_refused(data_dir, tmp_path):
    from k1model.analysis.probes import attribute_run

    run = tmp_path / "run"
    run_training(PARAMS, data_dir, "k1_full", 0, run, max_steps=3, progress=False)
    marker = tmp_path / "pwned.txt"
    blob = torch.load(run / "resume.pt", weights_only=True)
    blob["trainer"]["extra"] = _Boom(marker)
    torch.save(blob, run / "resume.pt")
    with pytest.raises(CheckpointError, match=str(run / "resume.pt")) as err:
        run_training(PARAMS, data_dir, "k1_full", 0, run, progress=False)
    assert "could run code" in str(err.value) and not marker.exists()
    done = tmp_path / "done"
    run_training(PARAMS, data_dir, "k1_full", 1, done, progress=False)
    blob = torch.load(done / "checkpoint.pt", weights_only=True)
    blob["config_hash"] = _Boom(marker)
    torch.save(blob, done / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=str(done / "checkpoint.pt")):
        attribute_run(PARAMS, data_dir, done)
    assert not marker.exists()
    assert isinstance(pickle.dumps(_Boom(marker)), bytes)  # the payload itself is a valid pickle


def test_threads_are_part_of_a_runs_identity(data_dir, tmp_path):
    from k1model.cli import build_parser

    assert build_parser().parse_args(["train", "--params", "p", "--data", "d", "--variant", "dense", "--seed", "0",
                                      "--out", "o"]).threads == 1  # the pipeline's setting
    run = tmp_path / "run"
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        run_training(PARAMS, data_dir, "dense", 0, run, max_steps=3, progress=False)
        torch.set_num_threads(2)
        with pytest.raises(CheckpointError, match="thread"):
            run_training(PARAMS, data_dir, "dense", 0, run, progress=False)
        torch.set_num_threads(1)
        metrics = run_training(PARAMS, data_dir, "dense", 0, run, progress=False)
        assert metrics["threads"] == 1
        assert json.loads((run / "metrics.json").read_text())["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_params_copy_is_untouched_by_validation():
    from k1model.config import load_params

    raw = copy.deepcopy(PARAMS)
    load_params(raw)
    assert raw == PARAMS
