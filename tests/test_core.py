"""Invariants of the K-1 method (DESIGN.md §2): exact sparsity, scales on updates, exact LOO,
drill-down and trust as specified, determinism, and clear config errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from k1model import create_k1_model
from k1model.method.attribution import GradScorer, loo_deltas, loo_deltas_reference
from k1model.method.scoring import hybrid_scores
from k1model.config import MethodConfig, ModelConfig
from k1model.errors import NonFiniteLossError
from k1model.app.interpret import gradient_flow, render_responsibility_tree
from k1model.method.selection import drill_down, path_scales, top_k
from k1model.train.step import K1Trainer
from k1model.model import AgentTree, build_topology

SPARSE_VARIANTS = ["k1_full", "flat_topk", "no_trust", "no_loo", "random_path"]
SMALL = ModelConfig(branching=(2, 2), embed_dim=32, num_heads=4, hidden_dim=64, max_seq_len=16)


def batches(n: int, seed: int = 0, B: int = 4, T: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        w = torch.randint(0, 256, (B, T + 1), generator=g)
        out.append((w[:, :-1], w[:, 1:]))
    return out


def make(variant: str, cfg: ModelConfig = SMALL, seed: int = 0, precision: str = "fp32", **method) -> K1Trainer:
    torch.manual_seed(seed)
    model = AgentTree(cfg)
    return K1Trainer(model, MethodConfig(variant=variant, **method), seed=seed, precision=precision)


def agent_snapshot(trainer: K1Trainer, k: int) -> tuple[list[torch.Tensor], list[dict]]:
    params = list(trainer.model.agents[k].parameters())
    state = trainer.optimizer.state  # per tensor: (exp_avg, exp_avg_sq, step)
    return ([p.detach().clone() for p in params],
            [{n: v.clone() for n, v in zip(("exp_avg", "exp_avg_sq", "step"), state[p])} for p in params])


def same_snapshot(a, b) -> bool:
    (pa, sa), (pb, sb) = a, b
    if not all(torch.equal(x, y) for x, y in zip(pa, pb)):
        return False
    for x, y in zip(sa, sb):
        if x.keys() != y.keys() or not all(torch.equal(torch.as_tensor(x[n]), torch.as_tensor(y[n])) for n in x):
            return False
    return True


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # bf16 autocast: the sparse update stays exact
@pytest.mark.parametrize("variant", SPARSE_VARIANTS)
def test_changed_agents_are_exactly_those_with_positive_scale(variant, precision):
    trainer = make(variant, precision=precision, loo_interval=2, trust_increase=0.3)  # fast cooldown: trust matters
    n = len(trainer.model.agents)
    changed_any = False
    for x, y in batches(12):
        before = [agent_snapshot(trainer, k) for k in range(n)]
        rec = trainer.train_step(x, y)
        after = [agent_snapshot(trainer, k) for k in range(n)]
        changed = {k for k in range(n) if not same_snapshot(before[k], after[k])}
        assert changed == {k for k, s in enumerate(rec.scales) if s > 0}, (variant, rec.step, rec.scales)
        assert 0 < len(changed) < n or rec.updated == 0
        changed_any |= bool(changed)
    assert changed_any


def test_scale_multiplies_the_adamw_update_not_the_gradient():
    trainer = make("k1_full", loo_interval=3)
    data = batches(6)
    for x, y in data[:3]:  # build up non-trivial Adam moments first
        trainer.train_step(x, y)
    opt = trainer.optimizer
    before_params = [[p.detach().clone() for p in a.parameters()] for a in trainer.model.agents]
    before_state = {p: tuple(t.clone() for t in st) for p, st in opt.state.items()}
    rec = trainer.train_step(*data[3])
    scaled = [(k, s) for k, s in enumerate(rec.scales) if s > 0]
    assert any(s < 1.0 for _, s in scaled), "need a partially scaled agent on the path"
    for k, s in scaled:
        for p, p0 in zip(trainer.model.agents[k].parameters(), before_params[k]):
            ref_param = torch.nn.Parameter(p0.clone())
            ref_param.grad = p.grad.clone()  # the gradient this step used (kept until the next zero_grad)
            ref = torch.optim.AdamW([ref_param], lr=trainer.method.learning_rate * s, betas=trainer.method.betas,
                                    eps=trainer.method.eps, weight_decay=trainer.method.weight_decay, fused=True)
            m, v, step = before_state[p]
            if step.item() > 0:
                ref.state[ref_param] = {"step": step.clone(), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
            ref.step()
            assert torch.equal(ref_param.detach(), p.detach()), (k, s)
        # and an unscaled (lr·1) update would have differed: the scale really matters
        if s < 1.0:
            p = next(trainer.model.agents[k].parameters())
            assert not torch.equal(p.detach(), before_params[k][0])


def test_dense_equals_plain_adamw_bit_for_bit():
    trainer = make("dense")
    torch.manual_seed(0)
    plain = AgentTree(SMALL)
    plain.load_state_dict(trainer.model.state_dict())
    m = trainer.method
    opt = torch.optim.AdamW(plain.parameters(), lr=m.learning_rate, betas=m.betas, eps=m.eps,
                            weight_decay=m.weight_decay, fused=True)  # the kernel the trainer runs
    for x, y in batches(5):
        rec = trainer.train_step(x, y)
        opt.zero_grad(set_to_none=True)
        _, loss = plain(x, y)
        loss.backward()
        opt.step()
        assert rec.loss == loss.item()
    for (name, a), b in zip(trainer.model.named_parameters(), plain.parameters()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("branching", [(2, 2), (4, 3, 2), (3,)])
def test_batched_loo_equals_one_at_a_time(branching):
    torch.manual_seed(1)
    cfg = ModelConfig(branching=branching, embed_dim=32, num_heads=4, hidden_dim=64, max_seq_len=16)
    model = AgentTree(cfg)
    with torch.no_grad():  # make every agent matter (fresh init is close to identity)
        for p in model.agents.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x, y = batches(1, B=3)[0]
    full, fast = loo_deltas(model, x, y)
    full_ref, ref = loo_deltas_reference(model, x, y)
    assert torch.allclose(full, full_ref, atol=1e-6)
    assert (fast - ref).abs().max().item() <= 1e-5
    assert ref.abs().max() > 1e-3  # the check is not vacuous


def test_grad_scores_equal_per_agent_norms():
    trainer = make("k1_full")
    x, y = batches(1)[0]
    _, loss = trainer.model(x, y)
    loss.backward()
    fused = GradScorer(trainer.model).scores()[0]
    naive = torch.stack([torch.sqrt(sum((p.grad ** 2).sum() for p in a.parameters())) for a in trainer.model.agents])
    assert torch.allclose(fused, naive, rtol=1e-5)


def test_hybrid_formula():
    g = torch.tensor([1.0, 2.0, 3.0])
    d = torch.tensor([0.2, -0.4, 0.0])  # mean |Δ| = 0.2
    assert torch.allclose(hybrid_scores(g, d), torch.tensor([1.0, 2.0 * (1 + 0.4 / 0.2), 3.0]))
    assert torch.equal(hybrid_scores(g, None), g)


def test_drill_down_takes_best_eligible_child_and_stops_in_cooldown():
    topo = build_topology((2, 2), {})
    # 0 root; 1,2 managers; 3,4 under 1; 5,6 under 2
    scores = np.array([0.0, 5.0, 1.0, 0.5, 0.7, 9.0, 0.1])
    ok = np.ones(7, bool)
    assert drill_down(topo, scores, ok) == [0, 1, 4]
    ok[1] = False
    assert drill_down(topo, scores, ok) == [0, 2, 5]
    ok[[5, 6]] = False
    assert drill_down(topo, scores, ok) == [0, 2]  # every child of 2 in cooldown: 2 is the culprit
    ok[2] = False
    assert drill_down(topo, scores, ok) == [0]
    m = MethodConfig()
    scales = path_scales([0, 1, 4], scores, np.ones(7, bool), m, 7)
    assert scales.tolist() == [0.05, 0.15, 0, 0, 1.0, 0, 0]
    cool = np.ones(7, bool)
    cool[0] = False
    assert path_scales([0, 1, 4], scores, cool, m, 7).tolist() == [0, 0.15, 0, 0, 1.0, 0, 0]
    deep = path_scales([0, 1, 2, 3], np.ones(7), np.ones(7, bool), m, 7)
    assert deep[:4].tolist() == [0.05, 0.05, 0.15, 1.0]  # last scale repeats for further ancestors
    assert top_k(scores, np.array([1, 1, 1, 1, 1, 0, 1], bool), 2).tolist() == [0, 1, 1, 0, 0, 0, 0]


@pytest.mark.parametrize("variant", ["k1_full", "flat_topk", "no_loo", "random_path", "no_trust"])
def test_cooldown_and_trust_dynamics(variant):
    m = dict(trust_increase=0.25, trust_threshold=0.6, trust_decay=0.97, loo_interval=3)
    trainer = make(variant, **m)
    trust = np.zeros(len(trainer.model.agents))
    saw_cooldown = False
    for x, y in batches(30):
        rec = trainer.train_step(x, y)
        eligible = trust <= m["trust_threshold"]
        if variant != "no_trust":
            assert rec.eligible == eligible.tolist()
            assert all(s == 0 for s, e in zip(rec.scales, eligible) if not e), "agent in cooldown was updated"
        saw_cooldown |= not eligible.all()
        trust = np.minimum(1.0, trust + m["trust_increase"] * (np.array(rec.scales) > 0)) * m["trust_decay"]
        assert np.allclose(rec.trust, trust, atol=1e-12)
        if variant in ("k1_full", "no_loo", "no_trust"):
            assert rec.path == drill_down(trainer.topology, np.array(rec.scores), np.array(rec.eligible))
    assert saw_cooldown


def test_flat_topk_matches_tree_depth_sparsity():
    trainer = make("flat_topk", trust_threshold=1.0)
    rec = trainer.train_step(*batches(1)[0])
    assert rec.updated == 3 and set(rec.scales) == {0.0, 1.0}


def test_same_seed_same_records_and_weights():
    def run():
        t = make("k1_full", seed=3, loo_interval=2)
        recs = [t.train_step(x, y).as_dict() for x, y in batches(6, seed=5)]
        return recs, t.model.state_dict()

    (r1, w1), (r2, w2) = run(), run()
    assert r1 == r2
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_random_path_is_seeded_and_varies():
    paths = []
    for seed in (0, 0, 1):
        t = make("random_path", seed=seed, trust_threshold=1.0)
        paths.append([tuple(t.train_step(x, y).path) for x, y in batches(8)])
    assert paths[0] == paths[1]
    assert paths[0] != paths[2]
    assert len(set(paths[0])) > 1


def test_non_finite_loss_stops_without_changing_weights():
    trainer = make("k1_full")
    x, y = batches(1)[0]
    with torch.no_grad():
        trainer.model.shared[0].ln_f.weight.fill_(float("nan"))
    before = copy.deepcopy(trainer.model.state_dict())
    with pytest.raises(NonFiniteLossError, match="step 0"):
        trainer.train_step(x, y)
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) or torch.isnan(before[k]).all() for k in before)
    assert all(st[2].item() == 0 for st in trainer.optimizer.state.values())


def test_reset_moments_on_return_clears_adam_state():
    trainer = make("k1_full", trust_increase=0.5, trust_threshold=0.6, trust_decay=0.8, reset_moments_on_return=True)
    opt = trainer.optimizer
    reset_seen = False
    for x, y in batches(25):
        steps_before = {k: opt.state[p][2].item() for k, p in enumerate(next(a.parameters()) for a in trainer.model.agents)}
        returning = trainer.cooled.copy()
        rec = trainer.train_step(x, y)
        for k, s in enumerate(rec.scales):
            p = next(trainer.model.agents[k].parameters())
            if s > 0 and returning[k]:
                assert opt.state[p][2].item() == 1  # fresh moments
                reset_seen |= steps_before[k] > 0
    assert reset_seen


@pytest.mark.parametrize("bad, key", [
    ({"variant": "magic"}, "variant"),
    ({"colour": "red"}, "colour"),
    ({"branching": []}, "branching"),
    ({"trust_threshold": 1.5}, "trust_threshold"),
    ({"trust_threshold": -0.1}, "trust_threshold"),
    ({"embed_dim": 30, "num_heads": 4}, "embed_dim"),
    ({"loo_interval": 0}, "loo_interval"),
])
def test_bad_config_names_the_key(bad, key):
    with pytest.raises(ValueError, match=key) as err:
        create_k1_model({"embed_dim": 32, **bad})
    assert "allowed" in str(err.value)


def test_public_api_and_interpretability():
    model = create_k1_model({"vocab_size": 256, "embed_dim": 32, "hidden_dim": 64, "top_k": 3,
                             "trust_threshold": 0.7, "trust_increase": 0.1, "trust_decay": 0.995,
                             "loo_interval": 1, "branching": [4, 4], "num_heads": 4, "max_seq_len": 16,
                             "variant": "k1_full", "learning_rate": 1e-3, "seed": 0, "dropout": 0.0})
    assert len(model.agent_names) == 21 and model.agent_names[0] == "root"
    assert model.agent_names[1] == "root/language" and model.agent_names[5] == "root/language/basic"
    agent_params = sum(p.numel() for name in model.agent_names for p in model.agent(name).parameters())
    assert agent_params == sum(model.model.agent_parameter_counts())
    x, y = batches(1)[0]
    info = model.train_step(x, y)
    assert {"loss", "updated", "skipped", "avg_trust", "loo_computed", "path", "scales"} <= info.keys()
    assert info["loo_computed"] and info["path"][0] == "root" and info["updated"] + info["skipped"] == 21
    assert info["scales"] == {info["path"][-1]: 1.0, info["path"][-2]: 0.15, "root": 0.05}
    status = model.get_agent_status()
    assert {"name", "level", "parent", "trust", "loo_score", "grad_score", "updates"} <= status[0].keys()
    assert status[1]["parent"] == "root" and status[0]["updates"] == 1
    text = model.responsibility_tree()
    assert "CULPRIT" in text and "Error path: root → " in text and "Updated: 3/21 agents (14%)" in text
    flow = model.gradient_flow()
    assert len(flow) == 20 and "root → root/language" in flow
    out = model.generate(torch.tensor([65, 66]), max_new_tokens=5)
    assert out.shape == (7,)
    topo = model.model.topology
    assert render_responsibility_tree(topo, model.last_record, ascii_only=True).isascii()
    assert gradient_flow(topo, model.last_record)["root → root/logic"] == model.last_record.grad_scores[2]


def test_numbered_names_when_roles_run_out():
    topo = build_topology((4, 3, 2), {1: ("a", "b", "c", "d"), 2: ("x", "y", "z")})
    assert len(topo) == 41 and topo.names[5] == "root/a/x" and topo.names[-1] == "root/d/z/sub1"
    topo = build_topology((5,), {1: ("a", "b")})
    assert topo.names[1:] == tuple(f"root/manager{j}" for j in range(5))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_the_leaf_mean_and_its_gradient_are_autograds_stack_and_mean_bit_for_bit(count):
    """execution.LeafMean hands every leaf one shared gradient instead of slices of an expanded one: the same bits."""
    from k1model.execution import LeafMean

    g = torch.Generator().manual_seed(count)
    leaves = [torch.randn(2, 3, 8, 16, generator=g) for _ in range(count)]
    upstream = torch.randn(2, 3, 8, 16, generator=g)
    ours = [t.clone().requires_grad_() for t in leaves]
    ref = [t.clone().requires_grad_() for t in leaves]
    out = LeafMean.apply(*ours)
    expected = torch.stack(ref).mean(0)
    assert torch.equal(out, expected)
    (out * upstream).sum().backward()
    (expected * upstream).sum().backward()
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, ref))
