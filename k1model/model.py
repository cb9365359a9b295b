"""The K-1 model: a tree of small transformer agents (DESIGN.md §2.1), in one file (how its runs and kernels
execute, loop or batched, which attention kernel: `execution.py`).

    tokens -> shared embedding (+ learned positions) -> agent tree -> final LayerNorm -> shared LM head

Every agent is a pre-LN causal transformer block. The root reads the embeddings, every other
agent reads its parent's output, and the tree's output is the mean of the leaves' outputs. So an
agent's gradient reflects its whole subtree, and "removing" an agent (`bypass`) means
output = input while its subtree still runs.

Runs. The model holds `runs` independent copies of every weight along a leading run dimension,
so runs that share a topology (variants x seeds of a profile) train in one process with batched
matmuls (DESIGN.md §10). Inputs are [runs, batch, time] and losses come out per run; nothing ever
mixes two runs. A single run is runs=1, and 2-D inputs [batch, time] are accepted for it.

Storage. Agent k of run r is one plain `Block` (nanoGPT's block) with its own weight tensors;
`Agent` holds an agent's copies, one per run, and `Shared` the shared weights of each run. So
"agent k of run r" is a fixed group of tensors: the sparse optimiser (`method/updates.py`)
updates exactly the groups it is given, and every other group and its optimiser state stay
bit-for-bit unchanged. A run's initial weights depend only on its seed (`init_run`), never on
which other runs share the process.

Agents are stored breadth-first in `self.agents`; index 0 is the root. Names are path-like
(`root`, `root/language`, `root/language/basic`, ...).
"""
from __future__ import annotations

import math
from typing import Collection, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from k1model.config.model import ModelConfig
from k1model.execution import (RUN_BATCHING, Kernels, LeafMean, kernels_for, layer_norm, linear, lineage_sum, per_run,
                                self_attention, split_runs, stack_runs)
from k1model.topology import ACTIVE, INACTIVE, MERGED, Topology, build_topology, live_topology

__all__ = ["AgentTree", "Topology", "build_topology"]


# --------------------------------------------------------------------------- weights
class Block(nn.Module):
    """One agent of one run: pre-LN causal self-attention + MLP, both residual."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, H = cfg.embed_dim, cfg.hidden_dim
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc, self.out = nn.Linear(D, H), nn.Linear(H, D)
        self.num_heads = cfg.num_heads
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, kernels: Kernels) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D], by the model's kernels (`eager` below, or the native block: the same
        function in one autograd node with a hand-written backward)."""
        return kernels.block(self, x, mask)

    def tensors(self) -> list[torch.Tensor]:
        """The block's weights in BLOCK_TENSORS order (read through _modules/_parameters: nn.Module's __getattr__
        costs ~1 us a name)."""
        mods = self._modules
        return [mods[m]._parameters[p] for m, p in _BLOCK_SLOTS]

    def eager(self, x: torch.Tensor, mask: torch.Tensor, attention: str) -> torch.Tensor:
        """The block op by op, with torch's attention kernel `attention`."""
        drop = self.dropout if self.training else 0.0
        y = self_attention(self.qkv(self.ln1(x)), self.num_heads, mask, attention, drop)
        x = x + F.dropout(self.proj(y), drop, self.training)
        return x + F.dropout(self.out(F.gelu(self.fc(self.ln2(x)))), drop, self.training)


#: the order in which a block's tensors are initialised (and stacked by the batched path)
BLOCK_TENSORS = ("ln1.weight", "ln1.bias", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias",
                 "ln2.weight", "ln2.bias", "fc.weight", "fc.bias", "out.weight", "out.bias")
_BLOCK_SLOTS = tuple(tuple(name.split(".")) for name in BLOCK_TENSORS)
_RESIDUAL = ("proj.weight", "out.weight")  # GPT-2: residual projections scaled down by depth


class Agent(nn.Module):
    """One agent of the tree: its `Block` in every run (`copies[r]`)."""

    def __init__(self, cfg: ModelConfig, runs: int):
        super().__init__()
        self.copies = nn.ModuleList(Block(cfg) for _ in range(runs))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, kernels: Kernels, batched: bool,
                passthrough: tuple[torch.Tensor, tuple[bool, ...]] | None = None) -> torch.Tensor:
        """x [R, B, T, D] -> [R, B, T, D]. `passthrough` (mask [R], the same as a tuple): runs in which
        this agent is not active; their output is their input, exactly (a slot, a pruned agent)."""
        if not batched:
            xs = split_runs(x)
            skip = passthrough[1] if passthrough is not None else (False,) * len(xs)
            return per_run(lambda r: xs[r] if skip[r] else self.copies[r](xs[r], mask, kernels), len(xs))
        if passthrough is not None:
            y = self.forward(x, mask, kernels, batched)
            return torch.where(passthrough[0].view(-1, 1, 1, 1), x, y)
        w = {name: torch.stack([c.get_parameter(name) for c in self.copies]) for name in BLOCK_TENSORS}
        block = self.copies[0]
        R, B, T, D = x.shape
        H = block.num_heads
        drop = block.dropout if self.training else 0.0
        qkv = linear(layer_norm(x, w["ln1.weight"], w["ln1.bias"]), w["qkv.weight"], w["qkv.bias"])
        y = self_attention(qkv.view(R * B, T, 3 * D), H, mask, kernels.attention, drop).view(R, B, T, D)
        x = x + F.dropout(linear(y, w["proj.weight"], w["proj.bias"]), drop, self.training)
        h = F.gelu(linear(layer_norm(x, w["ln2.weight"], w["ln2.bias"]), w["fc.weight"], w["fc.bias"]))
        return x + F.dropout(linear(h, w["out.weight"], w["out.bias"]), drop, self.training)


class Shared(nn.Module):
    """The shared weights of one run: token embedding (tied with the LM head), positions, final norm.
    Updated every step in every variant."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.pos_emb = nn.Embedding(cfg.max_seq_len, cfg.embed_dim)
        self.ln_f = nn.LayerNorm(cfg.embed_dim)
        if cfg.slots_per_leaf:  # structural plasticity: the run's slot states and leaf weights (checkpointed)
            states = torch.full((cfg.num_slots,), INACTIVE, dtype=torch.int8)
            states[:cfg.num_agents] = ACTIVE
            self.register_buffer("slot_state", states)
            self.register_buffer("lineage_weight", torch.full((cfg.num_leaves,), 1.0 / cfg.num_leaves))


# --------------------------------------------------------------------------- the tree
class AgentTree(nn.Module):
    """`runs` copies of the tree; run r is initialised from `seeds[r]` (default: seeds drawn from
    torch's global generator, so `torch.manual_seed(s); AgentTree(cfg)` is reproducible)."""

    def __init__(self, cfg: ModelConfig, runs: int = 1, attention: str = "masked",
                 seeds: Sequence[int] | None = None, run_batching: str = "loop"):
        super().__init__()
        if run_batching not in RUN_BATCHING:
            raise ValueError(f"run_batching={run_batching!r}; allowed: {', '.join(RUN_BATCHING)}")
        self.kernels = kernels_for(attention, cfg)  # the execution layer's choice; the model never asks which
        self.cfg = cfg
        self.runs = runs
        self.attention = attention
        self.batched = run_batching == "batched"
        self.topology = build_topology(cfg.branching, dict(cfg.role_names), cfg.slots_per_leaf)
        self.initial_agents = cfg.num_agents
        self.shared = nn.ModuleList(Shared(cfg) for _ in range(runs))
        self.agents = nn.ModuleList(Agent(cfg, runs) for _ in self.topology.names)
        T = cfg.max_seq_len
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1), persistent=False)
        if seeds is None:
            seeds = torch.randint(0, 2**62, (runs,)).tolist()
        if len(seeds) != runs:
            raise ValueError(f"{len(seeds)} seeds for {runs} runs")
        for r, seed in enumerate(seeds):
            self.init_run(r, seed)
        self._refresh_structure()
        self.register_load_state_dict_post_hook(lambda module, _keys: module._refresh_structure())

    @torch.no_grad()
    def init_run(self, r: int, seed: int) -> None:
        """Run r's weights from `seed` alone: normal(0.02) matrices and embeddings, residual
        projections scaled by depth (GPT-2), zero biases, unit norms."""
        g = torch.Generator().manual_seed(int(seed))

        def normal(t: torch.Tensor, std: float) -> None:
            t.copy_(torch.randn(t.shape, generator=g).mul_(std))

        shared = self.shared[r]
        normal(shared.tok_emb.weight, 0.02)
        normal(shared.pos_emb.weight, 0.02)
        shared.ln_f.weight.fill_(1.0)
        shared.ln_f.bias.zero_()
        residual = 0.02 / math.sqrt(2 * self.cfg.depth)
        for agent in self.agents:
            block = agent.copies[r]
            for name in BLOCK_TENSORS:
                t = block.get_parameter(name)
                if name.startswith("ln") and name.endswith("weight"):
                    t.fill_(1.0)
                elif name.endswith("bias"):
                    t.zero_()
                else:
                    normal(t, residual if name in _RESIDUAL else 0.02)
        for agent in self.agents[self.initial_agents:]:  # slots: zero residual projections, so activating
            for name in _RESIDUAL:                        # one leaves the tree's output exactly unchanged
                agent.copies[r].get_parameter(name).zero_()

    # --- structure -------------------------------------------------------------------
    @property
    def agent_names(self) -> tuple[str, ...]:
        """Every agent's name, breadth-first (slots included)."""
        return self.topology.names

    def agent_parameters(self, k: int, r: int = 0) -> list[nn.Parameter]:
        """The weights of agent k in run r."""
        return list(self.agents[k].copies[r].parameters())

    def shared_parameters(self, r: int | None = None) -> list[nn.Parameter]:
        """The shared weights of run r (of every run when r is None)."""
        runs = range(self.runs) if r is None else [r]
        return [p for i in runs for p in self.shared[i].parameters()]

    def run_groups(self, r: int) -> list[list[nn.Parameter]]:
        """Run r's weights by update unit: [shared, agent 0, agent 1, ...]."""
        return [self.shared_parameters(r)] + [self.agent_parameters(k, r) for k in range(len(self.agents))]

    def agent_parameter_counts(self) -> list[int]:
        """Weights per agent (of one run)."""
        return [sum(p.numel() for p in self.agent_parameters(k)) for k in range(len(self.agents))]

    def run_parameters(self, r: int) -> dict[str, nn.Parameter]:
        """Run r's live weights under the names of a one-run model (the keys of `run_state`)."""
        return {_run_key(k, r): p for k, p in self.named_parameters() if _run_key(k, r) is not None}

    def run_state(self, r: int) -> dict[str, torch.Tensor]:
        """Run r's weights as the state dict of a one-run model (what a run's checkpoint holds)."""
        out = {}
        for key, value in self.state_dict().items():
            local = _run_key(key, r)
            if local is not None:
                out[local] = value.detach().clone()
        return out

    @torch.no_grad()
    def load_run_state(self, r: int, state: dict[str, torch.Tensor]) -> None:
        """Put a one-run state dict (from `run_state`) into run r."""
        own = {_run_key(k, r): v for k, v in self.state_dict().items() if _run_key(k, r) is not None}
        if set(state) != set(own):
            raise KeyError(f"state has {len(state)} tensors that do not match the model's {len(own)} "
                           f"(e.g. {sorted(set(state) ^ set(own))[:3]})")
        for k, v in state.items():
            if v.shape != own[k].shape:
                raise ValueError(f"{k}: state shape {tuple(v.shape)} does not fit {tuple(own[k].shape)}")
            own[k].copy_(v)
        self._refresh_structure()

    # --- structural plasticity: per-run slot states (DESIGN.md §9) ----------------------
    @property
    def has_slots(self) -> bool:
        """The model holds agent slots beyond the initial tree (structural plasticity)."""
        return len(self.agents) > self.initial_agents

    def slot_states(self, r: int) -> np.ndarray:
        """Run r's state of every agent of the static topology (topology.ACTIVE, INACTIVE, ...)."""
        return self._states[r].copy()

    def active_mask(self, r: int) -> np.ndarray:
        """Run r's active agents (a boolean per agent of the static topology)."""
        return self._states[r] == ACTIVE

    def active_index(self, r: int) -> torch.Tensor:
        """Indices of run r's active agents, on the device."""
        return self._active_index[r]

    def lineage_weights(self, r: int) -> np.ndarray:
        """Run r's weight of each initial leaf's lineage in the output mean (1/leaves until a merge)."""
        if not self.has_slots:
            n = len(self.topology.leaves)
            return np.full(n, 1.0 / n)
        return self.shared[r].lineage_weight.detach().cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def set_structure(self, r: int, states: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Set run r's slot states (and lineage weights); what the plasticity plugin changes."""
        if not self.has_slots:
            raise ValueError("this model has no agent slots (model.max_agents is null)")
        shared = self.shared[r]
        shared.slot_state.copy_(torch.as_tensor(np.asarray(states), dtype=torch.int8))
        if weights is not None:
            shared.lineage_weight.copy_(torch.as_tensor(np.asarray(weights), dtype=shared.lineage_weight.dtype))
        self._refresh_structure()

    def run_topology(self, r: int) -> Topology:
        """Run r's live tree: what selection walks and the reports draw."""
        return self._live[r]

    def _refresh_structure(self) -> None:
        """Host-side views of the slot states: which agents pass through in which runs."""
        N, R = len(self.agents), self.runs
        if not self.has_slots:
            self._states = np.full((R, N), ACTIVE, dtype=np.int8)
            self._passthrough = [None] * N
            self._live = [self.topology] * R
            self._weighted, self._weighted_host = None, np.zeros(R, dtype=bool)
            self._active_index = [torch.arange(N, device=self.mask.device)] * R
            return
        self._states = np.stack([s.slot_state.detach().cpu().numpy() for s in self.shared]).astype(np.int8)
        self._live = [live_topology(self.topology, self._states[r]) for r in range(R)]
        device = self.mask.device
        self._active_index = [torch.from_numpy(np.flatnonzero(self._states[r] == ACTIVE)).to(device) for r in range(R)]
        self._passthrough = []
        for i in range(N):
            skip = tuple(bool(s != ACTIVE) for s in self._states[:, i])
            # batched: an agent no run computes is skipped outright. loop: every run's output is its own
            # tensor (computed, or its input's slice), so a run's autograd graph, and with it the order
            # in which gradients are summed, is the same whatever the other runs' trees are
            self._passthrough.append(None if not any(skip) else True if all(skip) and self.batched
                                     else (torch.tensor(skip, device=device), skip))
        self._weighted_host = (self._states == MERGED).any(1)  # runs whose output mean is weighted
        self._weighted = torch.tensor(self._weighted_host, device=device) if self._weighted_host.any() else None

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._refresh_structure()  # device moves: the masks follow the buffers
        return out

    def agent_forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Agent i on x [R, B, T, D]; runs in which it is not active pass x through unchanged."""
        skip = self._passthrough[i]
        if skip is True:
            return x
        return self.agents[i](x, self.mask, self.kernels, self.batched, skip)

    def active_parameter_count(self, r: int = 0) -> int:
        """Agent weights of run r's active agents."""
        counts = self.agent_parameter_counts()
        return int(sum(c for c, a in zip(counts, self.active_mask(r)) if a))

    # --- computation -----------------------------------------------------------------
    def _stacked(self, name: str) -> torch.Tensor:
        return torch.stack([s.get_parameter(name) for s in self.shared])

    def _check_length(self, idx: torch.Tensor) -> None:
        if idx.shape[-1] > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {idx.shape[-1]} exceeds max_seq_len={self.cfg.max_seq_len}")

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """idx [R, B, T] -> [R, B, T, D]."""
        R, _, T = idx.shape
        self._check_length(idx)
        if not self.batched:
            ids = split_runs(idx)
            return per_run(lambda r: self._embed_run(r, ids[r]), R)
        tok = self._stacked("tok_emb.weight")
        V, D = tok.shape[1:]
        offsets = (torch.arange(R, device=idx.device) * V).view(R, 1, 1)
        return F.embedding(idx + offsets, tok.reshape(R * V, D)) + self._stacked("pos_emb.weight")[:, None, :T, :]

    def run_tree(self, h: torch.Tensor, bypass: Iterable[int] = ()) -> list[torch.Tensor]:
        """Outputs of every agent (breadth-first). Bypassed agents pass their input through."""
        skip = set(bypass)
        outs: list[torch.Tensor] = []
        for i in range(len(self.agents)):
            x = h if i == 0 else outs[self.topology.parents[i]]
            outs.append(x if i in skip else self.agent_forward(i, x))
        return outs

    def leaf_mean(self, outs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The tree's output: the mean of the leaves' outputs (leaves in lineage order; a slot that is
        not active passes its parent's output on). Runs with a merge weight each lineage instead."""
        leaves = self.topology.leaves
        if len(leaves) == 1:
            return outs[leaves[0]]
        if self._weighted is None:
            return LeafMean.apply(*[outs[i] for i in leaves])
        stacked = torch.stack([outs[i] for i in leaves])
        mean = stacked.mean(0)
        weighted = lineage_sum(stacked, torch.stack([s.lineage_weight for s in self.shared], 1))  # [leaves, R]
        return torch.where(self._weighted.view(-1, *(1,) * (mean.dim() - 1)), weighted, mean)

    def head(self, y: torch.Tensor) -> torch.Tensor:
        """Final norm and the tied LM head: y [R, ..., D] -> logits [R, ..., V]."""
        if not self.batched:
            ys = split_runs(y)
            return per_run(lambda r: self._head_run(r, ys[r]), len(ys))
        z = layer_norm(y, self._stacked("ln_f.weight"), self._stacked("ln_f.bias"))
        shape = z.shape
        logits = torch.bmm(z.reshape(shape[0], -1, shape[-1]), self._stacked("tok_emb.weight").transpose(1, 2))
        return logits.view(*shape[:-1], -1)

    def token_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of every token: logits [R, ..., V], targets [R, ...] -> [R, n] (0 where a target
        is -100, i.e. not scored)."""
        return self.kernels.token_losses(logits, targets)

    def run_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per run over the scored tokens: logits [R, ..., V], targets [R, ...] -> [R]."""
        return self.kernels.run_losses(logits, targets, self.batched)

    # --- one run at a time (loop batching): the same ops on run r's slices, without stacking between them -------
    def _embed_run(self, r: int, ids: torch.Tensor) -> torch.Tensor:
        return self.shared[r].tok_emb(ids) + self.shared[r].pos_emb.weight[:ids.shape[-1]]

    def _head_run(self, r: int, y: torch.Tensor) -> torch.Tensor:
        shared = self.shared[r]
        return F.linear(self.kernels.final_norm(shared.ln_f, y), shared.tok_emb.weight)

    def _leaf_mean_run(self, r: int, leaves: Sequence[torch.Tensor]) -> torch.Tensor:
        """`leaf_mean` for run r alone, on its leaves' outputs [B, T, D]."""
        if len(leaves) == 1:
            return leaves[0]
        if not self._weighted_host[r]:
            return LeafMean.apply(*leaves)
        return lineage_sum(torch.stack(list(leaves)), self.shared[r].lineage_weight)

    def _tree_run(self, r: int, h: torch.Tensor, skip: Collection[int]) -> list[torch.Tensor]:
        """Run r's agents' outputs [B, T, D] (breadth-first), as `run_tree` computes them for that run."""
        outs: list[torch.Tensor] = []
        parents, mask, kernels = self.topology.parents, self.mask, self.kernels
        for i, agent in enumerate(self.agents):
            x = h if i == 0 else outs[parents[i]]
            passthrough = self._passthrough[i]
            if i in skip or (passthrough is not None and passthrough[1][r]):
                outs.append(x)
            else:  # (the input as the stacked path's split handed it: Kernels.block_input)
                outs.append(agent.copies[r](kernels.block_input(x), mask, kernels))
        return outs

    def _loop_pass(self, idx: torch.Tensor, skip: Collection[int]) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
        """Every run through the whole tree in turn, loop batching: (outputs [run][agent] [B, T, D], logits [run]
        [B, T, V]). Why: stacking every agent's output over the runs and splitting it again for the next agent
        copied [R, B, T, D] twice per agent and step (forward, and its gradient in the backward): the forward's
        stacks alone took 0.62 ms of a 26 ms run-step with 17 runs, and a run's next agent then read its input
        from memory the other runs had pushed out of cache (benchmarks/README.md). Each op is the one the stacked
        path runs on the same run's slice, so the numbers are the same bits (tests/test_multirun.py)."""
        self._check_length(idx)
        ids = split_runs(idx)
        leaves = self.topology.leaves
        outs, logits = [], []
        for r in range(self.runs):
            tree = self._tree_run(r, self._embed_run(r, ids[r]), skip)
            logits.append(self._head_run(r, self._leaf_mean_run(r, [tree[i] for i in leaves])))
            outs.append(tree)
        return outs, logits

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, bypass: Iterable[str | int] = ()
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, loss, _ = self.forward_with_outputs(idx, targets, bypass, keep_outputs=False)
        return logits, loss

    def forward_with_outputs(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                             bypass: Iterable[str | int] = (), keep_logits: bool = True, keep_outputs: bool = True
                             ) -> tuple[torch.Tensor | None, torch.Tensor | None, list[torch.Tensor] | None]:
        """Logits, loss per run ([R]; a scalar for 2-D input) and every agent's output ([R, B, T, D] each).

        `idx` is [R, B, T], or [B, T] for a one-run model (then logits are [B, T, V] and the outputs
        keep their run dimension of 1). keep_logits / keep_outputs False: None in their place, and with
        loop batching they are never stacked over the runs (what a training step that needs only the losses
        saves)."""
        single = idx.dim() == 2
        if single:
            if self.runs != 1:
                raise ValueError(f"2-D input needs a one-run model; this one has {self.runs} runs")
            idx = idx.unsqueeze(0)
            targets = None if targets is None else targets.unsqueeze(0)
        skip = {self.topology.index(b) if isinstance(b, str) else int(b) for b in bypass}
        if self.batched:
            outs = self.run_tree(self.embed(idx), skip)
            logits = self.head(self.leaf_mean(outs))
            loss = None if targets is None else self.run_losses(logits, targets)
            logits, outs = (logits if keep_logits else None), (outs if keep_outputs else None)
        else:
            run_outs, run_logits = self._loop_pass(idx, skip)
            loss = None if targets is None else self.kernels.run_losses_of_runs(run_logits, targets)
            logits = stack_runs(run_logits) if keep_logits else None
            outs = [stack_runs([o[i] for o in run_outs]) for i in range(len(self.agents))] if keep_outputs else None
        if single:
            logits, loss = (None if logits is None else logits[0]), (None if loss is None else loss[0])
        return logits, loss, outs

    def token_losses_of(self, idx: torch.Tensor, targets: torch.Tensor, bypass: Iterable[str | int] = ()
                        ) -> torch.Tensor:
        """`token_losses(self(idx, bypass=bypass)[0], targets)` ([R, n]); under loop batching from the per-run
        logits (the native cross-entropy never stacks them over the runs)."""
        if self.batched:
            return self.token_losses(self(idx, bypass=bypass)[0], targets)
        skip = {self.topology.index(b) if isinstance(b, str) else int(b) for b in bypass}
        return self.kernels.token_losses_of_runs(self._loop_pass(idx, skip)[1], targets)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int = 50, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample continuations of [B, T] prompts with a one-run model (temperature 0 = greedy)."""
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.cfg.max_seq_len:])
            logits = logits[:, -1, :]
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                probs = F.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator)
            idx = torch.cat([idx, nxt], dim=1)
        return idx


def _run_key(key: str, r: int) -> str | None:
    """A state-dict key of run r in the key space of a one-run model (None for other runs' keys)."""
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("shared", "copies") and parts[i + 1].isdigit():
            return ".".join([*parts[:i + 1], "0", *parts[i + 2:]]) if int(parts[i + 1]) == r else None
    return key
