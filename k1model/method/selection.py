"""Which agents to update, and by how much (DESIGN.md §2.3-2.4).

Pure functions of the topology, the scores and the eligibility mask, so they are easy
to test and identical for every variant. Scores and masks are host-side (numpy): the
drill-down is a sequence of small decisions, one host sync per step is the price.

`SELECTORS` maps a name to a selector: `(topology, scores, eligible, method, rng) -> (path, scales)`,
where `path` is the error path (root ... culprit; empty for selectors without one) and `scales`
the per-agent update scales (0 = untouched).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from k1model.config import MethodConfig
from k1model.topology import Topology

Selection = tuple[list[int], np.ndarray]
Selector = Callable[[Topology, np.ndarray, np.ndarray, MethodConfig, np.random.Generator], Selection]


def drill_down(topo: Topology, scores: np.ndarray, eligible: np.ndarray) -> list[int]:
    """Start at the root; move to the highest-scoring eligible child; stop at a leaf or
    when every child is in cooldown. Ties go to the first child (breadth-first order)."""
    path = [0]
    while topo.children[path[-1]]:
        candidates = [c for c in topo.children[path[-1]] if eligible[c]]
        if not candidates:
            break
        path.append(max(candidates, key=lambda c: (scores[c], -c)))
    return path


def random_path(topo: Topology, eligible: np.ndarray, rng: np.random.Generator) -> list[int]:
    """Same walk as `drill_down`, but each step picks a uniformly random eligible child."""
    path = [0]
    while topo.children[path[-1]]:
        candidates = [c for c in topo.children[path[-1]] if eligible[c]]
        if not candidates:
            break
        path.append(int(candidates[rng.integers(len(candidates))]))
    return path


def path_scales(path: list[int], scores: np.ndarray, eligible: np.ndarray, method: MethodConfig,
                num_agents: int) -> np.ndarray:
    """Culprit (last on the path) 1.0, its parent 0.15, further ancestors 0.05 (`path_scales`,
    last value repeats); agents in cooldown get 0. `scale_mode: gradient` instead scales each
    path agent by its score relative to the highest score on the path."""
    scales = np.zeros(num_agents)
    top = max(float(scores[k]) for k in path)
    for distance, k in enumerate(reversed(path)):
        if not eligible[k]:
            continue
        if method.scale_mode == "gradient":
            scales[k] = float(scores[k]) / top if top > 0 else 0.0
        else:
            scales[k] = method.path_scale(distance)
    return scales


def top_k(scores: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """Scale 1 for the k highest-scoring eligible agents (ties to the lower index)."""
    order = sorted((i for i in range(len(scores)) if eligible[i]), key=lambda i: (-scores[i], i))
    scales = np.zeros(len(scores))
    scales[order[:k]] = 1.0
    return scales


# --- the registry ---------------------------------------------------------------------------
def select_drilldown(topo: Topology, scores: np.ndarray, eligible: np.ndarray, method: MethodConfig,
                     rng: np.random.Generator) -> Selection:
    """K-1: the drill-down path on the scores, proportional scales along it."""
    path = drill_down(topo, scores, eligible)
    return path, path_scales(path, scores, eligible, method, len(topo))


def select_random_path(topo: Topology, scores: np.ndarray, eligible: np.ndarray, method: MethodConfig,
                       rng: np.random.Generator) -> Selection:
    """Control: a uniformly random eligible walk, the same proportional scales."""
    path = random_path(topo, eligible, rng)
    return path, path_scales(path, scores, eligible, method, len(topo))


def select_topk(topo: Topology, scores: np.ndarray, eligible: np.ndarray, method: MethodConfig,
                rng: np.random.Generator) -> Selection:
    """No hierarchy: the K best eligible agents at scale 1 (K = method.top_k, default the tree depth)."""
    return [], top_k(scores, eligible, method.top_k or topo.depth)


def select_all(topo: Topology, scores: np.ndarray, eligible: np.ndarray, method: MethodConfig,
               rng: np.random.Generator) -> Selection:
    """Dense: every agent at scale 1."""
    return [], np.ones(len(topo))


def select_throttled(topo: Topology, scores: np.ndarray, eligible: np.ndarray, method: MethodConfig,
                     rng: np.random.Generator) -> Selection:
    """Control: dense, but the agents are updated only on a random share of steps (`throttle_share`, one
    Bernoulli draw per step from the run's own selection generator): K-1's rate of agent updates without its
    choice of agents. At share 1.0 no step is skipped, so the run is `dense` bit for bit."""
    if method.throttle_share >= 1.0 or rng.random() < method.throttle_share:
        return [], np.ones(len(topo))
    return [], np.zeros(len(topo))


SELECTORS: dict[str, Selector] = {
    "drilldown": select_drilldown,
    "topk": select_topk,
    "all": select_all,
    "random_path": select_random_path,
    "throttled": select_throttled,
}


#: method keys each selector reads
SELECTOR_KEYS: dict[str, tuple[str, ...]] = {
    "drilldown": ("path_scales", "scale_mode"),
    "random_path": ("path_scales", "scale_mode"),
    "topk": ("top_k",),
    "all": (),
    "throttled": ("throttle_share",),
}


def get_selector(name: str) -> Selector:
    """The registered selector `name` (a ValueError naming the registered ones otherwise)."""
    try:
        return SELECTORS[name]
    except KeyError:
        raise ValueError(f"unknown selector {name!r}; registered: {', '.join(SELECTORS)}") from None
