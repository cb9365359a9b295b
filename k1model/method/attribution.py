"""Attribution: who caused the error (DESIGN.md §2.2), for every run of a model at once.

* Gradient score g_k: L2 norm of agent k's parameter gradients, for every agent of every run at
  once ([runs, agents]) with one fused `torch._foreach_norm` and a segment sum: on the device, no
  host sync per agent or parameter.
* Leave-one-out Δ_k = loss(tree with k bypassed) − loss(full tree), on the current batch, in eval
  mode, without grad. All N bypass passes are batched: bypassing k changes only k's subtree, so
  each agent j is re-run once on a stack of its alternative inputs (one per strict ancestor of j)
  instead of running N full forwards. Equal to the one-at-a-time definition
  (`loo_deltas_reference`) up to float rounding.

The hybrid score that combines both is in `scoring.py`.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import torch

from k1model.model import AgentTree


class GradScorer:
    """Gradient scores of every agent in every run: `scores()` -> [runs, agents], from one fused
    `torch._foreach_norm` over all agent weights and a segment sum (no host sync)."""

    def __init__(self, model: AgentTree):
        R, N = model.runs, len(model.agents)
        self.params: list[torch.nn.Parameter] = []
        owner: list[int] = []
        for k in range(N):
            for r in range(R):
                for p in model.agent_parameters(k, r):
                    self.params.append(p)
                    owner.append(r * N + k)
        self.shape = (R, N)
        self.owner = torch.tensor(owner, device=self.params[0].device)

    @torch.no_grad()
    def scores(self) -> torch.Tensor:
        """[runs, agents] L2 norm of every agent's gradient (zero where it has none)."""
        zero = self.owner.new_zeros((), dtype=self.params[0].dtype)  # no gradient (e.g. an inactive slot)
        grads = [p.grad if p.grad is not None else zero for p in self.params]
        norms = torch.stack(torch._foreach_norm(grads)).float()
        sq = torch.zeros(self.shape[0] * self.shape[1], device=norms.device).index_add_(0, self.owner, norms * norms)
        return sq.sqrt().view(self.shape)


@torch.no_grad()
def loo_deltas(model: AgentTree, idx: torch.Tensor, targets: torch.Tensor,
               chunk: int = 8, outs: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched LOO: (full-tree loss [runs], Δ [runs, agents]); for 2-D input (one run): (scalar, [agents]).

    For every agent j we keep `alt[j]`: its output under each bypass config k on the path root..j
    (stacked along dim 0, ancestors first, j itself last). A child c runs once on `alt[parent]`
    (configs folded into the batch), then appends its own bypass config (output = its unchanged
    input). Leaf mean under config k = full mean plus the change of the leaves inside k's subtree.

    `outs`: the agents' outputs of an unbypassed forward of the current weights on `idx` in
    eval-equivalent mode (dropout 0), e.g. kept from the training forward; saves re-running the tree.
    """
    single = idx.dim() == 2
    if single:
        idx, targets = idx.unsqueeze(0), targets.unsqueeze(0)
    was_training = model.training
    model.eval()
    try:
        topo = model.topology
        h0 = model.embed(idx)
        if outs is None:
            outs = model.run_tree(h0)
        elif len(outs) != len(topo):
            raise ValueError(f"outs has {len(outs)} agent outputs, the model has {len(topo)} agents")
        R, B, T, D = h0.shape
        leaves = topo.leaves
        paths = {leaf: list(reversed(topo.ancestors(leaf))) + [leaf] for leaf in leaves}
        path_index = torch.tensor([k for leaf in leaves for k in paths[leaf]], device=h0.device)  # one H2D copy
        offsets = dict(zip(leaves, itertools.accumulate((len(paths[leaf]) for leaf in leaves), initial=0)))
        delta_sum = torch.zeros(len(topo), R, B, T, D, device=h0.device, dtype=h0.dtype)
        # runs with a merge weight each lineage in the output mean (the others keep the plain mean,
        # computed exactly as before, and pick it with `where`)
        weighted = model._weighted
        if weighted is not None:
            w = torch.stack([s.lineage_weight for s in model.shared], 1).to(h0.dtype)  # [leaves, R]
            w_delta = torch.zeros_like(delta_sum)

        def add_leaf(leaf: int, leaf_alt: torch.Tensor) -> None:  # leaf changes under each config on its path
            index = path_index[offsets[leaf]:offsets[leaf] + len(paths[leaf])]
            change = leaf_alt - outs[leaf].unsqueeze(0)
            delta_sum.index_add_(0, index, change)
            if weighted is not None:
                w_delta.index_add_(0, index, change * w[leaves.index(leaf)].view(1, R, 1, 1, 1))

        alt: list[torch.Tensor | None] = [None] * len(topo)
        alt[0] = h0.unsqueeze(0)  # config "bypass root": root outputs its input
        if not topo.children[0]:
            add_leaf(0, alt[0])
        for j in range(1, len(topo)):
            parent = topo.parents[j]
            parent_alt = alt[parent]  # [C, R, B, T, D]
            C = parent_alt.shape[0]
            folded = parent_alt.transpose(0, 1).reshape(R, C * B, T, D)
            rerun = model.agent_forward(j, folded).view(R, C, B, T, D).transpose(0, 1)
            j_alt = torch.cat([rerun, outs[parent].unsqueeze(0)])
            if topo.children[j]:
                alt[j] = j_alt
            else:  # a leaf: fold it into the sums now, keep nothing (lower peak memory)
                add_leaf(j, j_alt)
            if j == topo.children[parent][-1]:
                alt[parent] = None  # every child of `parent` has run
        stacked = torch.stack([outs[i] for i in leaves])
        full_sum = stacked.sum(0)
        n = len(leaves)

        def tree_output(plain: torch.Tensor, weighted_out: torch.Tensor | None) -> torch.Tensor:
            if weighted is None:
                return plain
            return torch.where(weighted.view(-1, *(1,) * (plain.dim() - 1)), weighted_out, plain)

        full_w = (stacked * w.view(n, R, 1, 1, 1)).sum(0) if weighted is not None else None
        full_loss = model.run_losses(model.head(tree_output(full_sum / n, full_w)), targets)
        losses = []
        for start in range(0, len(topo), chunk):
            mean = (full_sum.unsqueeze(0) + delta_sum[start:start + chunk]) / n  # [c, R, B, T, D]
            if weighted is not None:
                mean = tree_output(mean.transpose(0, 1), (full_w.unsqueeze(0) + w_delta[start:start + chunk]
                                                          ).transpose(0, 1)).transpose(0, 1)
            c = mean.shape[0]
            logits = model.head(mean.transpose(0, 1).reshape(R, c * B, T, D))
            expanded = targets.unsqueeze(1).expand(R, c, B, T)
            ce = model.run_losses(logits.view(R * c, B, T, -1), expanded.reshape(R * c, B, T))
            losses.append(ce.view(R, c))
        deltas = torch.cat(losses, dim=1) - full_loss.unsqueeze(1)
        return (full_loss[0], deltas[0]) if single else (full_loss, deltas)
    finally:
        model.train(was_training)


@torch.no_grad()
def loo_deltas_reference(model: AgentTree, idx: torch.Tensor,
                         targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-at-a-time definition: N+1 explicit forwards with `bypass`. For tests and benchmarks."""
    was_training = model.training
    model.eval()
    try:
        _, full = model(idx, targets)
        deltas = [model(idx, targets, bypass=[k])[1] - full for k in range(len(model.agents))]
        return full, torch.stack(deltas, dim=-1)
    finally:
        model.train(was_training)
