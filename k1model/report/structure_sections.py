"""The paper's section on structural plasticity (DESIGN.md §9): the rules and their settings, events
per run, the live tree's size, and the growing variant against the fixed tree. Every number comes
from summary.json through `Numbers`, or from the params."""
from __future__ import annotations

from typing import Any, Sequence

from k1model.report.claims import Numbers
from k1model.report.study_sections import strategy_texts

EVENT_METRICS = ("grow_events", "prune_events", "merge_events", "rolled_back_events")


def growing_variants(variants: Sequence[str]) -> list[str]:
    from k1model.config.registry import VARIANTS

    return [v for v in variants if v in VARIANTS and "plasticity" in VARIANTS[v].plugins]


def structure_section(nums: Numbers, params: Any, variants: Sequence[str], claims: dict[str, Any]) -> str:
    grow = growing_variants(variants)
    if not grow:
        return ""
    L = ["## Structural plasticity\n", " ".join(strategy_texts(params, grow, "structure")) + "\n"]
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
