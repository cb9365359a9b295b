"""The paper's section on structural plasticity (DESIGN.md §9): the rules and their settings, events
per run, the live tree's size, and the growing variant against the fixed tree. Every number comes
from summary.json through `Numbers`, or from the params."""
from __future__ import annotations

from typing import Any, Sequence

from k1model.report.claims import Numbers

EVENT_METRICS = ("grow_events", "prune_events", "merge_events", "rolled_back_events")


def growing_variants(variants: Sequence[str]) -> list[str]:
    from k1model.method.variants import VARIANTS

    return [v for v in variants if v in VARIANTS and "plasticity" in VARIANTS[v].plugins]


def structure_section(nums: Numbers, params: Any, variants: Sequence[str], claims: dict[str, Any]) -> str:
    grow = growing_variants(variants)
    if not grow:
        return ""
    m, model = params.method, params.model
    L = ["## Structural plasticity\n",
         f"`k1_grow` is `k1_full` with a tree that changes itself. The model holds {model.max_agents} agent slots "
         f"({model.num_agents} initial agents and a chain of {model.slots_per_leaf} slot(s) below every leaf); a slot "
         "that is not active passes its input through and is never computed, scored, selected, updated or counted. "
         f"**Grow:** a live leaf blamed (the drill-down end on the step's scores, ignoring the cooldown) on at least "
         f"{m.grow_share:g} of the last {m.grow_window} steps gains a child whose residual projections are zero, so "
         "the tree's output is unchanged (checked on a fixed probe batch to 1e-6). **Prune:** an agent whose |LOO Δ| "
         f"stayed below {m.prune_threshold:g} nats for {m.prune_rounds} consecutive LOO rounds is bypassed for good. "
         f"**Merge:** two sibling leaves whose contributions on the probe batch had a cosine similarity above "
         f"{m.merge_similarity:g} for {m.merge_rounds} rounds become one (the survivor takes over the other's weight "
         f"in the output mean). A prune or merge that raises the probe loss by more than {m.structure_tolerance:g} "
         "nats is rolled back exactly from a snapshot.\n"]
    rows = []
    for v in grow:
        rows.append([v] + [nums.ci(v, e) for e in EVENT_METRICS] + [nums.ci(v, "active_agents"),
                                                                     nums.ci(v, "active_agent_params")])
    if "k1_full" in variants:
        rows.append(["k1_full", "—", "—", "—", "—", nums.ci("k1_full", "active_agents"),
                     nums.ci("k1_full", "active_agent_params")])
    head = ["variant", "grows", "prunes", "merges", "rolled back", "agents at the end", "agent weights at the end"]
    L.append("Events per run and the live tree at the end (mean [CI] over seeds and orders):\n")
    L.append("| " + " | ".join(head) + " |\n|" + "|".join(":---" for _ in head) + "|")
    L += ["| " + " | ".join(r) + " |" for r in rows]
    L.append("")
    for v in grow:
        if "k1_full" not in variants:
            break
        size, fixed = nums.get(v, "active_agent_params", "mean"), nums.get("k1_full", "active_agent_params", "mean")
        if size is not None and fixed:
            ratio = size / fixed
            L.append(f"At the end, {v}'s live tree had {ratio:.2f}× the agent weights of the fixed tree, so "
                     + ("the comparison below is at (about) equal size." if abs(ratio - 1) <= 0.05 else
                        "the comparison below is **not** at equal size: part of any difference may be capacity "
                        "(the growth over training is in the structure figure).") + "\n")
    for name in ("grow_forgets_less", "grow_lm_quality"):
        if name in claims:
            L.append(f"- **{name}.** {claims[name]['sentence']}")
    L.append("")
    return "\n".join(L) + "\n"
