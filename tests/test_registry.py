"""Strategies are one module and one registration (issue 19): a toy strategy written in a fixture, with no edit
anywhere else, gets its settings validated and documented, its variant trained, swept and tuned, its checks run
and its paper text and claim in the report. Scores always come from the variant's registered scorer, and every
key a part reads is a method key."""
from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from k1model.config import MethodConfig, ModelConfig, load_params, params_schema
from k1model.config import registry
from k1model.errors import ConfigError
from k1model.method.variants import VARIANTS, Variant, register_variant
from k1model.model import AgentTree
from k1model.train.plugins import Plugin
from k1model.train.step import K1Trainer

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 20000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"learning_rate": 0.003, "loo_interval": 3},
    "train": {"batch_size": 4, "steps_per_phase": 6, "eval_interval": 3, "eval_batches": 1,
              "checkpoint_interval": 2, "sparsity_interval": 2},
    "experiment": {"variants": ["k1_full", "dense"], "seeds": [0]},
    "analysis": {},
}

# The whole toy strategy: what a contributor writes, in one file, and nothing else.
TOY = '''
"""A toy strategy: dense updates plus a pull of every weight towards zero, after a warm-up."""
from k1model.config.checks import Integer, Number, setting
from k1model.config.registry import Strategy, register_strategy
from k1model.errors import ConfigError
from k1model.method.variants import Variant
from k1model.train.plugins import Plugin


class Shrink(Plugin):
    def loss_term(self, run, loss):
        if run.step < run.method.toy_warmup:
            return None
        return run.method.toy_strength * sum(p.pow(2).sum() for p in run.parameters())


def check_warmup(params):
    if params.method.toy_warmup > params.train.steps_per_phase:
        raise ConfigError(f"method.toy_warmup={params.method.toy_warmup} is longer than a phase "
                          f"(train.steps_per_phase={params.train.steps_per_phase}); shorten it")


register_strategy(Strategy(
    name="toy",
    plugin=Shrink,
    settings={"toy_strength": setting(0.0, Number(0.0), "pull of every weight towards zero (0 = off)"),
              "toy_warmup": setting(0, Integer(0), "steps before the pull starts")},
    variants=(Variant("toy_dense", "all", "gradient", False, ("toy",), "dense + a pull towards zero"),),
    checks=(check_warmup,),
    paper="`toy_dense` pulls every weight towards zero with strength {method.toy_strength:g}",
    claims=({"name": "toy_forgets_less", "metric": "forgetting", "variant": "toy_dense", "reference": "dense",
             "statement": "the toy forgets less than dense backpropagation"},),
))
'''


@pytest.fixture()
def toy(tmp_path, monkeypatch):
    """The toy strategy's module, imported (registered) like any strategy; unregistered afterwards."""
    (tmp_path / "toy_strategy.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("toy_strategy")
    yield module
    registry.unregister_strategy("toy")
    sys.modules.pop("toy_strategy", None)


def with_toy(**method):
    return {**PARAMS, "method": {**PARAMS["method"], **method},
            "experiment": {"variants": ["k1_full", "dense", "toy_dense"], "seeds": [0]}}


def test_a_strategys_settings_are_method_keys_with_checks_defaults_and_docs(toy):
    p = load_params(with_toy(toy_strength=0.5))
    assert p.method.toy_strength == 0.5 and p.method["toy_warmup"] == 0  # given, and the default
    assert MethodConfig(variant="toy_dense", toy_strength=2).toy_strength == 2.0  # checks normalise
    assert p.method.to_dict()["toy_strength"] == 0.5 and "toy_dense" in p.experiment.variants
    with pytest.raises(ConfigError, match=r"method\.toy_strength=-1 is not allowed: .* >= 0"):
        load_params(with_toy(toy_strength=-1))
    with pytest.raises(ConfigError, match=r"did you mean method\.toy_strength\?"):
        load_params(with_toy(toy_strenght=0.5))
    with pytest.raises(ConfigError, match=r"method\.toy_warmup=7 is longer than a phase"):  # its check
        load_params(with_toy(toy_warmup=7))
    method = params_schema()["properties"]["method"]["properties"]
    assert method["toy_strength"] == {"type": "number", "minimum": 0.0,
                                      "description": "pull of every weight towards zero (0 = off)", "default": 0.0}
    enum = params_schema()["properties"]["experiment"]["properties"]["variants"]["items"]["enum"]
    assert enum[-1] == "toy_dense"


def test_a_strategys_variant_reads_its_keys_and_the_study_sweeps_and_tunes_them(toy):
    from k1model.study.plan import part_runs, sweep_cells

    assert {"toy_strength", "toy_warmup"} <= VARIANTS["toy_dense"].reads()
    assert "toy_strength" not in VARIANTS["dense"].reads()
    sweep = {"factors": {"toy_strength": [0.1]}, "variants": ["dense", "toy_dense"], "seeds": [10]}
    tuning = {"candidates": {"default": {"toy_strength": [0.0, 0.1]}}, "seeds": [20]}
    p = load_params({**with_toy(), "sweep": sweep, "tuning": tuning})
    cells = {(c.point, c.variant): c for c in sweep_cells(p)}
    assert cells[("toy_strength~0.1", "toy_dense")].own_run  # the sweep changes the toy variant's run ...
    assert cells[("toy_strength~0.1", "dense")].path == "sweep/base/dense/seed10"  # ... and reuses dense's
    tuned = {(r.variant, r.point) for r in part_runs(p, "tuning")}
    assert {("toy_dense", "toy_strength~0"), ("toy_dense", "toy_strength~0.1"), ("dense", "base")} <= tuned
    assert not any(v == "dense" and point != "base" for v, point in tuned)


def test_a_strategys_variant_trains_through_its_plugin(toy, prepare_data, tmp_path):
    from k1model.train.protocol import run_training

    data = prepare_data(PARAMS)
    dense = run_training(with_toy(), data, "dense", 0, tmp_path / "dense", progress=False)
    off = run_training(with_toy(toy_strength=0.0), data, "toy_dense", 0, tmp_path / "off", progress=False)
    on = run_training(with_toy(toy_strength=0.5), data, "toy_dense", 0, tmp_path / "on", progress=False)
    assert off["R"] == dense["R"]  # a zero pull is dense, bit for bit
    assert on["R"] != dense["R"] and on["method"]["toy_strength"] == 0.5


def test_a_strategys_paper_text_and_claims_reach_the_report(toy):
    from k1model.analysis import claims as report_claims
    from k1model.report.study_sections import baselines_paragraph

    claims = {c.name: c for c in report_claims.all_claims()}
    assert claims["toy_forgets_less"].variant == "toy_dense" and claims["toy_forgets_less"].reference == "dense"
    assert "toy_forgets_less" in {c.name for c in report_claims.CLAIMS} | {c.name for c in report_claims.PAIRED_CLAIMS}
    text = baselines_paragraph(load_params(with_toy(toy_strength=0.25)), ["dense", "toy_dense"])
    assert "`toy_dense` pulls every weight towards zero with strength 0.25" in text
    assert "toy_dense" not in baselines_paragraph(load_params(with_toy()), ["dense"])


def test_registering_a_strategy_refuses_what_would_go_wrong_silently():
    from k1model.config.checks import Number, setting
    from k1model.train.plugins import Plugin

    def bad(**kw):
        return registry.Strategy(**{"name": "bad", **kw})

    with pytest.raises(ValueError, match="'learning_rate' already exists"):
        registry.register_strategy(bad(settings={"learning_rate": setting(0.1, Number(0.0), "x")}))
    with pytest.raises(ValueError, match=r"reads method key\(s\) \['loo_intervall'\]"):  # a typo in what it reads
        registry.register_strategy(bad(reads=("loo_intervall",)))
    with pytest.raises(ValueError, match="made with k1model.config.checks.setting"):
        registry.register_strategy(bad(settings={"bad_x": 1.0}))
    with pytest.raises(ValueError, match="variant name"):
        registry.register_strategy(bad(variants=(VARIANTS["dense"],)))

    class Keyed(Plugin):
        keys = ("bad_x",)

    with pytest.raises(ValueError, match="not as Plugin.keys"):  # keys are declared once, as settings
        registry.register_strategy(bad(plugin=Keyed))
    with pytest.raises(ValueError, match="a claim needs exactly the fields"):
        registry.register_strategy(bad(claims=({"name": "c", "metric": "forgetting"},)))
    assert "bad" not in registry.STRATEGIES and "bad" not in registry.PLUGINS


def test_every_key_a_part_reads_is_a_method_key():
    from k1model.method.scoring import SCORERS
    from k1model.method.selection import SELECTOR_KEYS, SELECTORS
    from k1model.method.trust import COOLDOWN_KEYS
    from k1model.method.variants import OPTIMIZER_KEYS
    from k1model.config.registry import PLUGINS

    keys = set(MethodConfig.field_names())
    assert set(SELECTOR_KEYS) == set(SELECTORS)
    parts = {"optimizer": OPTIMIZER_KEYS, "cooldown": COOLDOWN_KEYS,
             **{f"selector {n}": k for n, k in SELECTOR_KEYS.items()},
             **{f"scorer {n}": s.keys for n, s in SCORERS.items()},
             **{f"plugin {n}": cls.keys for n, cls in PLUGINS.items()}}
    unknown = {part: sorted(set(k) - keys) for part, k in parts.items() if set(k) - keys}
    assert not unknown, f"parts read keys MethodConfig does not have: {unknown}"
    assert PLUGINS["ewc"].keys == ("ewc_lambda", "ewc_gamma", "fisher_batches")
    assert "loo_interval" in PLUGINS["plasticity"].keys  # declared with `reads`
    for v in VARIANTS.values():
        assert v.reads() <= keys, v.name


def test_the_registry_finds_the_strategies_on_first_lookup_without_torch():
    """Nothing registers at import; the first lookup loads the core variants and every built-in strategy, in
    their order, from their declarations alone: validating and planning a profile imports no torch."""
    code = textwrap.dedent("""
        import sys
        import k1model.strategies, k1model.config.registry
        print("IMPORTED", "k1model.strategies.ewc" in sys.modules)
        from k1model.config import load_params, registry
        from k1model.study.plan import plan_runs
        params = load_params("params/default.yaml")
        print("RUNS", len(plan_runs(params)), "LAMBDA", params.method.ewc_lambda)
        print("STRATEGIES", *registry.STRATEGIES)
        print("VARIANTS", *registry.VARIANTS)
        print("TORCH", "torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines["IMPORTED"] == "False"  # importing the package and the registry loaded no declaration
    assert lines["RUNS"] == "33 LAMBDA 10.0"
    assert lines["STRATEGIES"] == "ewc replay joint plasticity"
    assert lines["VARIANTS"].split()[:6] == ["k1_full", "flat_topk", "no_trust", "no_loo", "dense", "random_path"]
    assert lines["TORCH"] == "False"


def test_a_strategy_registered_before_the_first_lookup_comes_after_the_built_ins():
    code = textwrap.dedent("""
        from k1model.config import registry
        from k1model.method.variants import Variant
        registry.register(registry.Strategy(name="early", variants=(Variant("early_dense", "all", "gradient", False),)))
        print(*registry.VARIANTS)
        print(*registry.STRATEGIES)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    variants, strategies = (line.split() for line in out.stdout.splitlines())
    assert variants[0] == "k1_full" and variants[-1] == "early_dense" and strategies == ["ewc", "replay", "joint",
                                                                                         "plasticity", "early"]


def test_every_strategys_plugin_imports_as_a_plugin_with_its_name_and_keys():
    for name, strategy in registry.STRATEGIES.items():
        cls = registry.plugin_class(name)
        assert issubclass(cls, Plugin) and cls.name == name and cls.keys == strategy.keys, name


# ------------------------------------------------------------------------------------------- scorers


def toy_loo_scores(grad: torch.Tensor, loo: torch.Tensor | None) -> torch.Tensor:
    """Blame by LOO alone: s_k = max(0, -Δ_k) + 1e-3 g_k (unlike hybrid's g_k · weight)."""
    return grad if loo is None else torch.relu(-loo) + 1e-3 * grad


CALLS: list = []


def recorded_toy_loo_scores(grad: torch.Tensor, loo: torch.Tensor | None) -> torch.Tensor:
    CALLS.append(None if loo is None else loo.clone())
    return toy_loo_scores(grad, loo)


@pytest.fixture()
def toy_scorer():
    from k1model.method.scoring import SCORERS, Scorer, register_scorer

    register_scorer(Scorer("toy_loo", True, recorded_toy_loo_scores, ("loo_interval",)))
    register_variant(Variant("toy_loo_path", "drilldown", "toy_loo", False, (), "drill-down on LOO blame alone"))
    CALLS.clear()
    yield
    registry.unregister_variant("toy_loo_path")
    SCORERS.pop("toy_loo")


@pytest.mark.parametrize("slots", [False, True])
def test_scores_come_from_the_variants_registered_scorer(toy_scorer, slots):
    """A LOO-based scorer that is not hybrid: the step must call it (issue 19: it computed hybrid scores)."""
    cfg = ModelConfig(branching=(2, 2), embed_dim=16, num_heads=2, hidden_dim=32, max_seq_len=16,
                      max_agents=11 if slots else None)
    trainer = K1Trainer(AgentTree(cfg, seeds=[0]), MethodConfig(variant="toy_loo_path", loo_interval=2), seed=0)
    g = torch.Generator().manual_seed(3)
    live = np.ones(cfg.num_slots, dtype=bool) if not slots else np.arange(cfg.num_slots) < cfg.num_agents
    for step in range(4):
        w = torch.randint(0, 256, (4, 17), generator=g)
        rec = trainer.train_step(w[:, :-1], w[:, 1:])
        grad = torch.tensor(rec.grad_scores, dtype=torch.float32)
        assert rec.loo_computed == (step % 2 == 0)
        loo = trainer.latest_loo.float()  # the latest LOO (steps 0 and 2), which the scorer must see
        want = torch.zeros_like(grad)
        want[torch.from_numpy(live)] = toy_loo_scores(grad[live], loo[live])
        assert torch.equal(torch.tensor(rec.scores, dtype=torch.float32), want), step
        assert rec.scores != [s * (1 + max(0, -d) / (np.mean(np.abs(loo.numpy()[live])) + 1e-12))
                              for s, d in zip(rec.grad_scores, loo.tolist())]  # not hybrid's
    assert len(CALLS) == 4 and all(c is not None for c in CALLS)  # once per step, with the run's latest LOO


def test_registered_settings_behave_like_fields():
    import dataclasses
    import pickle

    m = MethodConfig(variant="ewc", ewc_lambda=1.0)
    assert m == MethodConfig(variant="ewc", ewc_lambda=1.0) != MethodConfig(variant="ewc")
    assert hash(m) == hash(MethodConfig(variant="ewc", ewc_lambda=1.0))  # hashable, as before
    kept = dataclasses.replace(m, variant="dense")
    assert kept.ewc_lambda == 1.0 and kept.variant == "dense"
    assert dataclasses.replace(m, ewc_lambda=2).ewc_lambda == 2.0  # checked: normalised to a float
    assert pickle.loads(pickle.dumps(m)) == m and m["ewc_lambda"] == 1.0 and "ewc_lambda" in m
    with pytest.raises(TypeError, match="unexpected keyword argument 'ewc_lamda'"):
        MethodConfig(ewc_lamda=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.ewc_lambda = 3.0
