"""Interpretability views of a step: who was blamed, who was updated, how the error flowed."""
from __future__ import annotations

from k1model.model import Topology
from k1model.train.step import StepRecord


def render_responsibility_tree(topo: Topology, record: StepRecord, *, ascii_only: bool = False) -> str:
    """Every agent of the (live) tree with its score and update %, the culprit marked, then the error path
    and a summary line.

        root (grad=0.304, score=0.304, update=5%)
        ├── root/language (grad=0.052, skip)
        ...
        Error path: root → root/logic → root/logic/edge
        Updated: 3/21 agents (14%) | Preserved: 18/21 (86%)
    """
    tee, last, pipe, blank, arrow = ("|-- ", "`-- ", "|   ", "    ", "->") if ascii_only else ("├── ", "└── ", "│   ", "    ", "→")
    culprit = record.culprit
    lines: list[str] = []

    def label(k: int) -> str:
        scale = record.scales[k]
        parts = [f"grad={record.grad_scores[k]:.3g}"]
        if record.scores[k] != record.grad_scores[k]:
            parts.append(f"score={record.scores[k]:.3g}")
        parts.append(f"update={scale * 100:.0f}%" if scale > 0 else "skip")
        if not record.eligible[k]:
            parts.append(f"cooldown t={record.trust[k]:.2f}")
        mark = "  <-- CULPRIT" if k == culprit else ""
        return f"{topo.names[k]} ({', '.join(parts)}){mark}"

    def walk(k: int, prefix: str, is_last: bool, is_root: bool) -> None:
        lines.append(label(k) if is_root else prefix + (last if is_last else tee) + label(k))
        kids = topo.children[k]
        child_prefix = "" if is_root else prefix + (blank if is_last else pipe)
        for i, c in enumerate(kids):
            walk(c, child_prefix, i == len(kids) - 1, False)

    walk(0, "", True, True)
    n = len(topo.active_agents)  # the live tree (a tree that grew or was pruned)
    updated = record.updated
    if record.path:
        lines.append("Error path: " + f" {arrow} ".join(topo.names[k] for k in record.path))
    lines.append(f"Updated: {updated}/{n} agents ({100 * updated / n:.0f}%) | "
                 f"Preserved: {n - updated}/{n} ({100 * (n - updated) / n:.0f}%)")
    return "\n".join(lines)


def gradient_flow(topo: Topology, record: StepRecord) -> dict[str, float]:
    """Gradient reaching each edge parent → child, measured as the child's gradient norm
    (the child's parameters see exactly the error that flowed through that edge)."""
    return {f"{topo.names[p]} → {topo.names[c]}": record.grad_scores[c]
            for c, p in enumerate(topo.parents) if p >= 0}
