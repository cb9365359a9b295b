"""`model:` the architecture of the agent tree (DESIGN.md §2.1)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from k1model.config.checks import IntKey, Integer, ListOf, MapOf, Nullable, Number, Section, Text, setting

DEFAULT_ROLE_NAMES: dict[int, tuple[str, ...]] = {
    1: ("language", "logic", "pattern", "context"),
    2: ("basic", "advanced", "edge", "complex"),
}

_ROLE = ListOf(Text(r"[^/]+", "a non-empty name without '/'"), unique=True,
               what="a list of distinct non-empty names without '/'")


@dataclass(frozen=True)
class ModelConfig(Section):
    """Architecture of the agent tree (DESIGN.md §2.1)."""

    SECTION = "model"
    DESCRIPTION = "architecture of the agent tree (k1 train, k1 attribute)"

    vocab_size: int = setting(256, Integer(1), "vocabulary size (256 = UTF-8 bytes)")
    embed_dim: int = setting(64, Integer(1), "width of the residual stream")
    num_heads: int = setting(4, Integer(1), "attention heads per agent")
    hidden_dim: int = setting(128, Integer(1), "MLP width of every agent block")
    max_seq_len: int = setting(64, Integer(1), "context length (bytes); also the data window")
    branching: tuple[int, ...] = setting((4, 4), ListOf(Integer(1), min_len=1),
                                         "children per level: [4, 4] = 21 agents, [4, 3, 2] = 41 agents")
    dropout: float = setting(0.0, Number(0.0, 1.0, open_high=True), "dropout inside every agent block")
    role_names: Mapping[int, tuple[str, ...]] = setting(
        check=MapOf(IntKey(1), _ROLE, "a mapping level -> list of names", key_pattern="^[0-9]+$"),
        factory=lambda: dict(DEFAULT_ROLE_NAMES),
        doc="names of the agents per level, e.g. {1: [language, logic], 2: [basic, advanced]}; "
            "numbered names when a level has more agents than names")
    max_agents: int | None = setting(
        None, Nullable(Integer(1)),
        "agent slots allocated: the initial tree plus slots that k1_grow can activate, dealt equally to the "
        "initial leaves (a chain below each); null = the initial tree only. Inactive slots are never computed, "
        "updated or counted")

    def validate(self) -> None:
        if self.embed_dim % self.num_heads:
            raise self.invalid("embed_dim", f"a multiple of model.num_heads={self.num_heads} "
                                            "(the width must divide into heads)")
        if self.max_agents is not None:
            n, leaves = self.num_agents, self.num_leaves
            if self.max_agents < n:
                raise self.invalid("max_agents", f"at least the {n} agents of the initial tree (branching "
                                                 f"{list(self.branching)}), or null")
            if (self.max_agents - n) % leaves:
                allowed = ", ".join(str(n + k * leaves) for k in range(4))
                raise self.invalid("max_agents", f"{n} + a multiple of the {leaves} leaves ({allowed}, ...): the slots "
                                                 "beyond the initial tree are dealt equally to the leaves")

    @property
    def num_agents(self) -> int:
        """Agents of the initial tree (root included, slots not)."""
        total, width = 1, 1
        for b in self.branching:
            width *= b
            total += width
        return total

    @property
    def num_leaves(self) -> int:
        """Leaves of the initial tree."""
        return math.prod(self.branching)

    @property
    def slots_per_leaf(self) -> int:
        """Chain slots below every initial leaf (structural plasticity)."""
        return 0 if self.max_agents is None else (self.max_agents - self.num_agents) // self.num_leaves

    @property
    def num_slots(self) -> int:
        """Agents of the static topology: the initial tree and every slot."""
        return self.num_agents + self.num_leaves * self.slots_per_leaf

    @property
    def depth(self) -> int:
        """Number of agents on a full root-to-leaf path."""
        return len(self.branching) + 1
