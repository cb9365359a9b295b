"""Experiments the benchmark reports but the trainer does not use (kept measured, not merged)."""
from __future__ import annotations

import collections
import copy
import statistics
from typing import Any

import torch
import torch.nn.functional as F

from k1model.app.bench.measure import _summary, _timed
from k1model.config import MethodConfig
from k1model.model import AgentTree

def _grouped_level(blocks, xs: torch.Tensor) -> torch.Tensor:
    """All blocks of one level at once: xs [n, B, T, D] (input of each block) -> outputs [n, B, T, D]."""
    n, B, T, D = xs.shape
    H = blocks[0].attn.num_heads

    def stack(get):
        return torch.stack([get(b) for b in blocks])

    def norm(x, ln):
        return (F.layer_norm(x, (D,)) * stack(lambda b: getattr(b, ln).weight)[:, None, None, :]
                + stack(lambda b: getattr(b, ln).bias)[:, None, None, :])

    def linear(x, get):
        w, b = stack(lambda blk: get(blk).weight), stack(lambda blk: get(blk).bias)
        return torch.baddbmm(b[:, None, :], x.reshape(n, B * T, -1), w.transpose(1, 2)).view(n, B, T, -1)

    q, k, v = linear(norm(xs, "ln1"), lambda b: b.attn.qkv).split(D, dim=-1)
    q, k, v = (t.reshape(n * B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
    att = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(n, B, T, D)
    xs = xs + linear(att, lambda b: b.attn.proj)
    hidden = F.gelu(linear(norm(xs, "ln2"), lambda b: b.fc))
    return xs + linear(hidden, lambda b: b.out)

def grouped_forward(model: AgentTree, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Loss of `model` with every level's agents batched (see module docstring). Dropout must be 0."""
    topo = model.topology
    levels: dict[int, list[int]] = collections.defaultdict(list)
    for i, level in enumerate(topo.levels):
        levels[level].append(i)
    outs: list[torch.Tensor | None] = [None] * len(topo)
    h0 = model.embed(idx)
    for level in sorted(levels):
        ids = levels[level]
        if level == 0:
            xs = h0.unsqueeze(0)
        else:
            prev = levels[level - 1]
            pos = torch.tensor([prev.index(topo.parents[i]) for i in ids], device=h0.device)
            xs = torch.stack([outs[p] for p in prev]).index_select(0, pos)
        ys = _grouped_level([model.agents[i] for i in ids], xs)
        for j, i in enumerate(ids):
            outs[i] = ys[j]
    logits = model.readout(outs)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))

def sibling_batching_experiment(model: AgentTree, x: torch.Tensor, y: torch.Tensor, repeats: int,
                                device: torch.device) -> dict[str, Any]:
    model = copy.deepcopy(model)
    grads = {}
    losses = {}
    fns = {"straightforward": lambda: model(x, y)[1], "grouped": lambda: grouped_forward(model, x, y)}
    for name, fn in fns.items():
        model.zero_grad(set_to_none=True)
        loss = fn()
        loss.backward()
        losses[name] = loss.detach()
        grads[name] = [p.grad.detach().clone() for p in model.agents.parameters()]
    rel = max(((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()
              for a, b in zip(grads["straightforward"], grads["grouped"]))

    def fwd_bwd(fn):
        def run():
            model.zero_grad(set_to_none=True)
            fn().backward()
        return run

    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats + 1):  # first round is warm-up
        for name, fn in (list(fns.items()) if r % 2 == 0 else list(fns.items())[::-1]):
            t = _timed(fwd_bwd(fn), device)
            if r:
                times[name].append(t)
    a, b = (statistics.median(times[k]) for k in fns)
    return {"fwd_bwd_s": {k: _summary(v) for k, v in times.items()}, "grouped_over_straightforward": b / a,
            "loss_abs_diff": (losses["straightforward"] - losses["grouped"]).abs().item(),
            "grad_max_rel_diff": rel, "pays": b < a}

def optimizer_foreach_experiment(model: AgentTree, method: MethodConfig, x: torch.Tensor, y: torch.Tensor,
                                 repeats: int, device: torch.device) -> dict[str, Any]:
    """torch AdamW step over every parameter: foreach=False (CPU default) vs foreach=True, same grads."""
    models = {fe: copy.deepcopy(model) for fe in (False, True)}
    opts = {}
    for fe, m in models.items():
        m.zero_grad(set_to_none=True)
        m(x, y)[1].backward()
        opts[fe] = torch.optim.AdamW(m.parameters(), lr=method.learning_rate, betas=method.betas, eps=method.eps,
                                     weight_decay=method.weight_decay, foreach=fe)
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(repeats + 1):
        for fe in ((False, True) if r % 2 == 0 else (True, False)):
            t = _timed(opts[fe].step, device)
            if r:
                times[fe].append(t)
    equal = all(torch.equal(a, b) for a, b in zip(models[False].parameters(), models[True].parameters()))
    a, b = statistics.median(times[False]), statistics.median(times[True])
    return {"step_s": {"foreach_false": _summary(times[False]), "foreach_true": _summary(times[True])},
            "foreach_over_default": b / a, "bit_equal": equal, "pays": b < a}
