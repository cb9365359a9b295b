"""Who is whose parent: the agent tree as pure data (DESIGN.md §2.1, §9), so selection needs no model.

The *static* topology is fixed for the life of a model: the initial tree (breadth-first, index 0
is the root) followed by the pre-allocated agent slots of structural plasticity (`k1_grow`). The
slots beyond the initial agents are dealt equally to the initial leaves; each leaf's share is a
chain below it (`root/language/basic/g1`, `.../basic/g1/g2`, ...), appended level by level in leaf
order. Static shapes let runs whose trees grow differently share one process.

A run's *live* tree is the static one seen through its slot states (`ACTIVE`, `INACTIVE` never yet
activated, `PRUNED`, `MERGED`): every non-active agent passes its input through, so the live
parent of an active agent is its nearest active static ancestor, and an inactive slot below a leaf
changes nothing. `live_topology` builds the tree that selection walks and the reports draw.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_NUMBERED_PREFIX = {1: "manager", 2: "agent"}

# slot states (int8 in a run's state): what each agent of the static topology is in that run
ACTIVE, INACTIVE, PRUNED, MERGED = 0, 1, 2, 3
STATE_NAMES = ("active", "inactive", "pruned", "merged")


@dataclass(frozen=True)
class Topology:
    """Parents, levels and children in breadth-first order. `active` (None = every agent) marks
    the agents of a live tree; `children` and `leaves` then hold active agents only."""

    names: tuple[str, ...]
    parents: tuple[int, ...]  # parents[0] == -1 (root); -1 also for agents outside a live tree
    levels: tuple[int, ...]
    children: tuple[tuple[int, ...], ...]
    active: tuple[bool, ...] | None = None

    @property
    def leaves(self) -> tuple[int, ...]:
        """The active agents without children."""
        return tuple(i for i, c in enumerate(self.children) if not c and self.is_active(i))

    @property
    def depth(self) -> int:
        """Levels of the active tree."""
        return max(level for i, level in enumerate(self.levels) if self.is_active(i)) + 1

    def is_active(self, i: int) -> bool:
        """Agent i is part of the live tree."""
        return self.active is None or self.active[i]

    @property
    def active_agents(self) -> tuple[int, ...]:
        """Indices of the active agents."""
        return tuple(i for i in range(len(self.names)) if self.is_active(i))

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
        """The index of the agent called `name` (a KeyError naming the agents otherwise)."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no agent named {name!r}; agents: {', '.join(self.names)}") from None


def _children(parents: list[int] | tuple[int, ...], keep: list[bool] | None = None) -> tuple[tuple[int, ...], ...]:
    n = len(parents)
    return tuple(tuple(i for i, p in enumerate(parents) if p == k and (keep is None or keep[i])) for k in range(n))


def build_topology(branching: tuple[int, ...], role_names: dict[int, tuple[str, ...]],
                   slots_per_leaf: int = 0) -> Topology:
    """The static topology: the initial tree, then `slots_per_leaf` chain slots below every leaf."""
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
    chain_ends = list(frontier)  # the initial leaves
    for c in range(1, slots_per_leaf + 1):
        for j, parent in enumerate(chain_ends):
            names.append(f"{names[parent]}/g{c}")
            parents.append(parent)
            levels.append(levels[parent] + 1)
            chain_ends[j] = len(names) - 1
    return Topology(tuple(names), tuple(parents), tuple(levels), _children(parents))


def live_topology(static: Topology, states: np.ndarray) -> Topology:
    """The live tree of a run: active agents, each under its nearest active static ancestor."""
    active = [int(s) == ACTIVE for s in states]
    if all(active):
        return static
    parents = []
    for i in range(len(static)):
        p = static.parents[i]
        while p >= 0 and not active[p]:
            p = static.parents[p]
        parents.append(p if active[i] else -1)
    return Topology(static.names, tuple(parents), static.levels, _children(parents, active), tuple(active))


def lineages(static: Topology, initial_agents: int) -> list[list[int]]:
    """Per initial leaf (in index order): the leaf and its chain of slots, top down."""
    out = []
    for leaf in (i for i in range(initial_agents) if not any(c < initial_agents for c in static.children[i])):
        chain = [leaf]
        while static.children[chain[-1]]:
            chain.append(static.children[chain[-1]][0])
        out.append(chain)
    return out


def compact(live: Topology) -> tuple[Topology, list[int]]:
    """The live tree renumbered 0..m-1 over its active agents (levels = depth in the live tree), and
    each compact index's agent in the static topology. The live tree of a run that never changed is
    returned as it is. What the attribution probes walk: they never see an agent that is not there."""
    keep = list(live.active_agents)
    if live.active is None:
        return live, keep
    pos = {k: i for i, k in enumerate(keep)}
    parents = tuple(pos[live.parents[k]] if live.parents[k] >= 0 else -1 for k in keep)
    levels: list[int] = []
    for p in parents:
        levels.append(0 if p < 0 else levels[p] + 1)
    return Topology(tuple(live.names[k] for k in keep), parents, tuple(levels), _children(parents)), keep
