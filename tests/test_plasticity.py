"""Structural plasticity (DESIGN.md §9, variant k1_grow): agent slots, grow, prune, merge, rollback."""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from k1model.config import MethodConfig, ModelConfig, load_params
from k1model.errors import ConfigError
from k1model.method.variants import VARIANTS
from k1model.model import AgentTree
from k1model.strategies.plasticity_plugin import Plasticity, free_slot, restore, sibling_leaf_pairs, snapshot
from k1model.topology import ACTIVE, INACTIVE, MERGED, PRUNED, build_topology, live_topology
from k1model.train.protocol import RunGroup, run_specs
from k1model.train.step import K1Trainer

SLOTS = ModelConfig(branching=(2, 2), embed_dim=16, num_heads=2, hidden_dim=32, max_seq_len=8, max_agents=15)
PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 20000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2, 2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16,
              "max_agents": 15},
    "method": {"learning_rate": 0.003, "loo_interval": 4, "grow_window": 12, "grow_share": 0.4,
               "prune_threshold": 0.004, "prune_rounds": 2},
    "train": {"batch_size": 4, "steps_per_phase": 40, "eval_interval": 20, "eval_batches": 1,
              "checkpoint_interval": 10, "sparsity_interval": 1},
    "experiment": {"variants": ["k1_grow", "k1_full", "dense", "ewc", "replay", "flat_topk", "random_path",
                                "no_loo", "joint"], "seeds": [0]},
    "analysis": {"references": ["k1_full"]},
}


def with_changes(**sections) -> dict:
    p = copy.deepcopy(PARAMS)
    for section, values in sections.items():
        p[section] = {**p[section], **values}
    return p


@pytest.fixture(scope="module")
def data_dir(prepare_data) -> Path:
    return prepare_data(PARAMS)


@pytest.fixture(scope="module")
def grown(data_dir, tmp_path_factory):
    """One k1_grow run of the test profile (events happen in it)."""
    out = tmp_path_factory.mktemp("grow") / "run"
    p = load_params(PARAMS)
    metrics = RunGroup(p, data_dir, run_specs(p, ["k1_grow"], [0], out)).run(progress=False)[0]
    return out, metrics


def batch(seed: int = 0, n: int = 4, T: int = 8):
    w = torch.randint(0, 256, (n, T + 1), generator=torch.Generator().manual_seed(seed))
    return w[:, :-1], w[:, 1:]


# ------------------------------------------------------------------ slots and the live tree

def test_slots_are_chains_below_every_leaf_and_the_live_tree_skips_what_is_not_active():
    topo = build_topology((2, 2), {}, slots_per_leaf=2)
    assert len(topo) == 15 and topo.names[7] == "root/manager0/agent0/g1"
    assert topo.names[11] == "root/manager0/agent0/g1/g2" and topo.parents[11] == 7
    assert topo.leaves == (11, 12, 13, 14)  # chain ends, in the order of the leaves they hang from
    states = np.array([ACTIVE] * 7 + [INACTIVE] * 8)
    assert live_topology(topo, states).leaves == (3, 4, 5, 6)
    states[1] = PRUNED  # manager0 passes through: its children hang from the root
    states[7] = ACTIVE
    live = live_topology(topo, states)
    assert live.children[0] == (2, 3, 4) and live.parents[7] == 3 and live.leaves == (4, 5, 6, 7)
    assert free_slot(topo, states, 7) == 11 and free_slot(topo, states, 4) == 8
    assert sibling_leaf_pairs(live) == [(5, 6)]  # 4's live siblings 2 and 3 are not leaves


def test_a_model_with_slots_computes_exactly_what_the_model_without_them_computes():
    base = ModelConfig(branching=(2, 2), embed_dim=16, num_heads=2, hidden_dim=32, max_seq_len=8)
    x, y = batch()
    for batching in ("loop", "batched"):
        plain = AgentTree(base, runs=2, seeds=[3, 4], run_batching=batching)
        slots = AgentTree(SLOTS, runs=2, seeds=[3, 4], run_batching=batching)
        for k in range(7):  # the same initial agents: slots are initialised after them
            for a, b in zip(plain.agent_parameters(k, 1), slots.agent_parameters(k, 1)):
                assert torch.equal(a, b)
        xs, ys = x.expand(2, *x.shape), y.expand(2, *y.shape)
        assert torch.equal(plain(xs, ys)[1], slots(xs, ys)[1])


def test_a_grow_leaves_the_probe_loss_unchanged(data_dir):
    """Train a while so every weight is non-trivial, then activate every slot in turn."""
    torch.manual_seed(0)
    model = AgentTree(SLOTS)
    trainer = K1Trainer(model, MethodConfig(variant="k1_full", loo_interval=3))
    for i in range(8):
        trainer.train_step(*batch(i))
    x, y = batch(99, n=8)
    model.eval()
    with torch.no_grad():
        before = model(x, y)[1]
        for slot in range(7, 15):
            states = model.slot_states(0)
            states[slot] = ACTIVE
            model.set_structure(0, states)
            assert abs(float(model(x, y)[1] - before)) <= 1e-6, model.topology.names[slot]


def test_grow_events_are_recorded_and_exact(grown):
    out, metrics = grown
    events = metrics["structure_events"]
    grows = [e for e in events if e["kind"] == "grow"]
    assert grows, events
    for e in grows:
        assert e["kept"] and abs(e["loss_after"] - e["loss_before"]) <= 1e-6
        assert e["agents"][1].startswith(e["agents"][0] + "/")  # the new child hangs below the blamed leaf
        assert set(e) >= {"step", "kind", "agents", "loss_before", "loss_after", "kept"}
    sizes = metrics["structure_sizes"]
    assert sizes[0]["active_agents"] == 7 and sizes[-1]["active_agents"] == metrics["scalars"]["active_agents"]
    assert metrics["scalars"]["grow_events"] == len(grows)
    status = {a["name"]: a["status"] for a in metrics["agents"]}
    for e in grows:
        assert status[e["agents"][1]] in ("active", "pruned", "merged")


def test_inactive_slots_are_untouched_never_selected_and_not_counted(grown):
    out, metrics = grown
    blob = torch.load(out / "checkpoint.pt", weights_only=True)["trainer"]
    fresh = AgentTree(load_params(PARAMS).model, seeds=[metrics.get("init_seed", metrics["seed"])])  # its init seed
    never = [a["name"] for a in metrics["agents"] if a["status"] == "inactive"]
    assert never, "the test profile must leave some slots unused"
    names = list(fresh.topology.names)
    for name in never:
        k = names.index(name)
        prefix = f"agents.{k}.copies.0."
        for key, value in blob["model"].items():
            if key.startswith(prefix):
                assert torch.equal(value, fresh.state_dict()[key]), key  # weights as initialised
        assert metrics["update_counts"][name] == 0
    steps = pd.read_csv(out / "steps.csv.gz")
    for scales in steps["scales"]:
        assert not set(json.loads(scales)) & set(never)
    assert steps[[f"grad_{n}" for n in never]].isna().all().all()  # no numbers for non-agents
    # the optimiser state of a never-active slot is still all zeros
    opt = blob["optimizer"]
    offsets = np.cumsum([0] + [len(list(fresh.agent_parameters(k))) for k in range(len(names))])
    n_shared = len(fresh.shared_parameters(0))
    for name in never:
        k = names.index(name)
        for i in range(offsets[k] + n_shared, offsets[k + 1] + n_shared):
            assert not opt["exp_avg"][i].any() and not opt["exp_avg_sq"][i].any() and opt["steps"][i] == 0
    # sparsity is a fraction of the live tree: agents_changed never exceeds the active agents
    assert metrics["sparsity"]["scales_agree_with_weights"]
    assert metrics["sparsity"]["sparsity_agent_fraction"] <= 1.0


def test_runs_that_do_not_grow_are_bit_identical_with_and_without_slots(data_dir, tmp_path):
    """Slots are excluded from everything: every other variant gives the same numbers with them."""
    variants = [v for v in PARAMS["experiment"]["variants"] if v != "k1_grow"]
    with_slots = load_params(PARAMS)
    without = load_params(with_changes(model={"max_agents": None}, experiment={"variants": variants}))
    a = RunGroup(with_slots, data_dir, run_specs(with_slots, variants, [0], tmp_path / "a" / "{variant}")).run(progress=False)
    b = RunGroup(without, data_dir, run_specs(without, variants, [0], tmp_path / "b" / "{variant}")).run(progress=False)
    for ma, mb in zip(a, b):
        assert ma["R"] == mb["R"] and ma["R_valid"] == mb["R_valid"], ma["variant"]
        assert ma["sparsity"]["sparsity_param_fraction"] == mb["sparsity"]["sparsity_param_fraction"], ma["variant"]
        assert [ma["update_counts"][n] for n in mb["update_counts"]] == list(mb["update_counts"].values())


def test_a_growing_run_trains_the_same_alone_and_beside_other_runs(grown, data_dir, tmp_path):
    out, alone = grown
    p = load_params(PARAMS)
    together = RunGroup(p, data_dir, run_specs(p, ["k1_full", "k1_grow", "dense"], [0], tmp_path / "{variant}")
                        ).run(progress=False)[1]
    assert together["R"] == alone["R"] and together["structure_events"] == alone["structure_events"]


# ------------------------------------------------------------------ prune, merge, rollback

def _trained_grow_trainer(**method):
    torch.manual_seed(0)
    model = AgentTree(SLOTS)
    trainer = K1Trainer(model, MethodConfig(variant="k1_grow", loo_interval=1, grow_window=1000, **method))
    for i in range(6):
        trainer.train_step(*batch(i))
    return model, trainer


def _state(trainer) -> dict:
    """The run's whole state (weights, slot states, optimiser, trust, ...) but the plugin's own log."""
    state = copy.deepcopy(trainer.state_dict())
    state.pop("plugins")
    return state


def _equal(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if torch.is_tensor(a):
        return torch.equal(a, b)
    return a == b


@pytest.mark.parametrize("kind", ["prune", "merge"])
def test_a_rolled_back_event_restores_weights_and_optimiser_state_bit_for_bit(kind):
    model, trainer = _trained_grow_trainer(structure_tolerance=0.0)
    run = trainer.trainer.context(0)
    plugin: Plasticity = trainer.plugins[0]
    before = _state(trainer)
    probe = plugin._probe_loss(run)
    def tentative(keep: int, drop: int):
        states, weights = model.slot_states(0), model.lineage_weights(0)
        states[drop] = MERGED
        weights[keep - 3], weights[drop - 3] = weights[keep - 3] + weights[drop - 3], 0.0
        return states, weights

    def loss_with(states, weights) -> float:
        snap = snapshot(run, [])
        model.set_structure(0, states, weights)
        loss = plugin._probe_loss(run)
        restore(run, snap)
        return loss

    if kind == "prune":  # bypassing the root costs far more than a tolerance of 0
        agents = [0]
        states, weights = model.slot_states(0), None
        states[0] = PRUNED
    else:  # a merge of two leaves that raises the probe loss
        agents = next([k, d] for k, d in ((3, 4), (4, 3), (5, 6), (6, 5)) if loss_with(*tentative(k, d)) > probe)
        states, weights = tentative(*agents)
    # the snapshot covers what an event could change: make the tentative structure change weights too
    snap = snapshot(run, agents)
    model.set_structure(0, states, weights)
    with torch.no_grad():
        for p in model.agent_parameters(agents[0]):
            p.add_(1.0)
    trainer.optimizer.state[model.agent_parameters(agents[0])[0]][0].add_(1.0)
    after = plugin._probe_loss(run)
    assert after - probe > 0  # really worse
    restore(run, snap)
    assert _equal(_state(trainer), before)
    assert plugin._probe_loss(run) == probe
    # and through the plugin's own path: the event is recorded as rolled back, nothing changed
    plugin._try(run, 6, kind, agents, states, weights)
    assert plugin.events[-1]["kept"] is False and _equal(_state(trainer), before)


def test_merges_happen_and_a_merged_agent_is_never_selected_again():
    model, trainer = _trained_grow_trainer(merge_similarity=-0.99, merge_rounds=1, structure_tolerance=10.0,
                                           prune_threshold=0.0)
    for i in range(6, 12):
        trainer.train_step(*batch(i))
    plugin = trainer.plugins[0]
    merges = [e for e in plugin.events if e["kind"] == "merge" and e["kept"]]
    assert merges
    w = model.lineage_weights(0)
    assert abs(w.sum() - 1.0) < 1e-6 and (w == 0).any()
    gone = {model.topology.index(e["agents"][1]) for e in merges}
    for i in range(12, 18):
        record = trainer.train_step(*batch(i))
        assert all(record.scales[k] == 0 for k in gone)
        assert model.slot_states(0)[list(gone)].tolist() == [MERGED] * len(gone)


def test_an_interrupted_run_resumes_across_events_to_the_same_numbers(grown, data_dir, tmp_path):
    out, full = grown
    p = load_params(PARAMS)
    first_event = min(e["step"] for e in full["structure_events"])
    stop = first_event + 3  # after an event, before the end
    assert stop < 80
    spec = run_specs(p, ["k1_grow"], [0], tmp_path / "run")
    assert RunGroup(p, data_dir, spec).run(max_steps=stop, progress=False) == [None]
    resumed = RunGroup(p, data_dir, spec).run(progress=False)[0]
    assert resumed["R"] == full["R"] and resumed["structure_events"] == full["structure_events"]
    assert resumed["structure_sizes"] == full["structure_sizes"]
    a = torch.load(out / "checkpoint.pt", weights_only=True)["trainer"]["model"]
    b = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["trainer"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ bad params

@pytest.mark.parametrize("change, message", [
    ({"model": {"max_agents": 5}}, "model.max_agents=5 is not allowed: model.max_agents must be at least the 7"),
    ({"model": {"max_agents": 12}}, "7 + a multiple of the 4 leaves (7, 11, 15, 19"),
    ({"model": {"max_agents": None}}, "variant k1_grow grows new agents but model.max_agents=None"),
    ({"method": {"grow_share": 1.5}}, "method.grow_share=1.5"),
    ({"method": {"grow_share": 0.0}}, "method.grow_share=0.0"),
    ({"method": {"merge_similarity": 1.2}}, "method.merge_similarity=1.2"),
    ({"method": {"prune_threshold": -0.1}}, "method.prune_threshold=-0.1"),
    ({"method": {"structure_tolerance": -1}}, "method.structure_tolerance=-1"),
    ({"method": {"grow_window": 0}}, "method.grow_window=0"),
    ({"method": {"prune_rounds": 0}}, "method.prune_rounds=0"),
    ({"method": {"merge_rounds": 0}}, "method.merge_rounds=0"),
])
def test_bad_plasticity_params_fail_with_clear_errors(change, message):
    with pytest.raises(ConfigError) as err:
        load_params(with_changes(**change))
    assert message in str(err.value)


def test_the_variant_is_registered_with_its_keys():
    reads = VARIANTS["k1_grow"].reads()
    assert {"grow_window", "grow_share", "prune_threshold", "prune_rounds", "merge_similarity", "merge_rounds",
            "structure_tolerance"} <= reads
    assert "grow_window" not in VARIANTS["k1_full"].reads()
