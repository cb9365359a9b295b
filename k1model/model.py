"""The K-1 model: a tree of small transformer agents (DESIGN.md §2.1), in one file.

    tokens -> shared embedding (+ learned positions) -> agent tree -> final LayerNorm -> shared LM head

Every agent is a pre-LN causal transformer block. The root reads the embeddings, every
other agent reads its parent's output, and the tree's output is the mean of the leaves'
outputs. So an agent's gradient reflects its whole subtree, and "removing" an agent
(`bypass`) means output = input while its subtree still runs.

Agents are stored breadth-first in `self.agents`; index 0 is the root. Names are
path-like (`root`, `root/language`, `root/language/basic`, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from k1model.config.model import ModelConfig

_NUMBERED_PREFIX = {1: "manager", 2: "agent"}


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """One agent: pre-LN attention + MLP, both residual."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.embed_dim)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.embed_dim)
        self.fc = nn.Linear(cfg.embed_dim, cfg.hidden_dim)
        self.out = nn.Linear(cfg.hidden_dim, cfg.embed_dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.out(F.gelu(self.fc(self.ln2(x)))))


@dataclass(frozen=True)
class Topology:
    """Who is whose parent, in breadth-first order. Pure data, so selection needs no model."""

    names: tuple[str, ...]
    parents: tuple[int, ...]  # parents[0] == -1 (root)
    levels: tuple[int, ...]
    children: tuple[tuple[int, ...], ...]

    @property
    def leaves(self) -> tuple[int, ...]:
        return tuple(i for i, c in enumerate(self.children) if not c)

    @property
    def depth(self) -> int:
        return max(self.levels) + 1

    def __len__(self) -> int:
        return len(self.names)

    def ancestors(self, i: int) -> list[int]:
        """Strict ancestors of agent i, nearest first."""
        out = []
        while self.parents[i] >= 0:
            i = self.parents[i]
            out.append(i)
        return out

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no agent named {name!r}; agents: {', '.join(self.names)}") from None


def build_topology(branching: tuple[int, ...], role_names: dict[int, tuple[str, ...]]) -> Topology:
    names, parents, levels = ["root"], [-1], [0]
    frontier = [0]
    for level, width in enumerate(branching, start=1):
        roles = role_names.get(level, ())
        prefix = _NUMBERED_PREFIX.get(level, "sub")
        next_frontier = []
        for parent in frontier:
            for j in range(width):
                label = roles[j] if len(roles) >= width else f"{prefix}{j}"
                names.append(f"{names[parent]}/{label}")
                parents.append(parent)
                levels.append(level)
                next_frontier.append(len(names) - 1)
        frontier = next_frontier
    children = tuple(tuple(i for i, p in enumerate(parents) if p == k) for k in range(len(names)))
    return Topology(tuple(names), tuple(parents), tuple(levels), children)


class AgentTree(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.topology = build_topology(cfg.branching, dict(cfg.role_names))
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.pos_emb = nn.Embedding(cfg.max_seq_len, cfg.embed_dim)
        self.agents = nn.ModuleList(Block(cfg) for _ in self.topology.names)
        self.ln_f = nn.LayerNorm(cfg.embed_dim)
        self.head = nn.Linear(cfg.embed_dim, cfg.vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying (shared parameter, updated every step)
        self.apply(self._init_weights)
        for block in self.agents:  # GPT-2 style: residual projections scaled by depth
            for proj in (block.attn.proj, block.out):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.depth))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    # --- structure -------------------------------------------------------------------
    @property
    def agent_names(self) -> tuple[str, ...]:
        return self.topology.names

    def shared_parameters(self) -> list[nn.Parameter]:
        """Embedding (tied with the head), positions, final norm: updated every step in every variant."""
        return [*self.tok_emb.parameters(), *self.pos_emb.parameters(), *self.ln_f.parameters()]

    def agent_parameter_counts(self) -> list[int]:
        return [sum(p.numel() for p in a.parameters()) for a in self.agents]

    # --- computation -----------------------------------------------------------------
    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        if T > self.cfg.max_seq_len:
            raise ValueError(f"sequence length {T} exceeds max_seq_len={self.cfg.max_seq_len}")
        return self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))

    def run_tree(self, h: torch.Tensor, bypass: Iterable[int] = ()) -> list[torch.Tensor]:
        """Outputs of every agent (breadth-first). Bypassed agents pass their input through."""
        skip = set(bypass)
        outs: list[torch.Tensor] = []
        for i, block in enumerate(self.agents):
            x = h if i == 0 else outs[self.topology.parents[i]]
            outs.append(x if i in skip else block(x))
        return outs

    def readout(self, outs: list[torch.Tensor]) -> torch.Tensor:
        """Mean of the leaves -> final norm -> logits."""
        leaves = self.topology.leaves
        y = torch.stack([outs[i] for i in leaves]).mean(0) if len(leaves) > 1 else outs[leaves[0]]
        return self.head(self.ln_f(y))

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, bypass: Iterable[str | int] = ()
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, loss, _ = self.forward_with_outputs(idx, targets, bypass)
        return logits, loss

    def forward_with_outputs(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, bypass: Iterable[str | int] = ()
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """`forward`, plus every agent's output (breadth-first), e.g. for the LOO to reuse (same computation)."""
        skip = [self.topology.index(b) if isinstance(b, str) else int(b) for b in bypass]
        outs = self.run_tree(self.embed(idx), skip)
        logits = self.readout(outs)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss, outs

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int = 50, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample continuations (temperature 0 = greedy)."""
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
