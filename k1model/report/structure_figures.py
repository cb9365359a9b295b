"""The structural-plasticity figure (DESIGN.md §9): how big the live tree of every growing run was over
training, which events each run had, and one run's final tree with its grown, pruned and merged
agents. Reads the runs' metrics.json (`structure_sizes`, `structure_events`, `agents`)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from k1model.report.drawing import draw_tree, short_name

EVENT_KINDS = ("grow", "prune", "merge")


def structure_figure(runs: Sequence[tuple[str, int, str, Mapping[str, Any]]], reference_params: float | None,
                     notes: list[str]) -> Figure | None:
    """`runs`: (variant, seed, order, metrics) of every growing run. `reference_params`: the agent weights
    of the tree that does not change (k1_full's), drawn as a dashed line."""
    import seaborn as sns

    if not runs:  # no variant with structural plasticity: nothing to draw
        return None
    runs = [r for r in runs if r[3].get("structure_sizes")]
    if not runs:
        notes.append("structure: no growing run has structure_sizes in its metrics.json; figure skipped")
        return None
    fig = Figure(figsize=(13.0, 3.6), layout="constrained")
    ax_size, ax_events, ax_tree = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.3, 1.0, 1.5]})
    pal = sns.color_palette("colorblind", len(runs))
    for colour, (variant, seed, order, m) in zip(pal, runs):
        sizes = m["structure_sizes"]
        steps = [s["step"] for s in sizes] + [m["steps"]]
        params = [s["active_agent_params"] for s in sizes]
        ax_size.step(steps, params + params[-1:], where="post", color=colour, lw=1.2, alpha=0.8,
                     label=f"{variant} s{seed} {order}")
    if reference_params is not None:
        ax_size.axhline(reference_params, color="0.3", ls="--", lw=1.0, label="fixed tree (k1_full)")
    ax_size.set_xlabel("step")
    ax_size.set_ylabel("agent weights of the live tree")
    ax_size.set_title("tree size over training", fontsize=9)
    if len(runs) <= 8:
        ax_size.legend(fontsize=6, frameon=False)
    labels = [f"s{seed}\n{order}" if len({r[2] for r in runs}) > 1 else f"s{seed}" for _, seed, order, _ in runs]
    bottom = np.zeros(len(runs))
    for kind, colour in zip(EVENT_KINDS + ("rolled back",), sns.color_palette("Set2", 4)):
        counts = np.array([sum(1 for e in m.get("structure_events", [])
                               if (e["kind"] == kind and e["kept"]) or (kind == "rolled back" and not e["kept"]))
                           for *_, m in runs], dtype=float)
        ax_events.bar(range(len(runs)), counts, bottom=bottom, color=colour, label=kind)
        bottom += counts
    ax_events.set_xticks(range(len(runs)), labels, fontsize=6.5)
    ax_events.set_ylabel("events per run")
    ax_events.set_title("structural events (kept, and rolled back)", fontsize=9)
    ax_events.legend(fontsize=6.5, frameon=False)
    variant, seed, order, m = runs[0]
    counts = m.get("update_counts", {})
    freq = {name: c / max(1, m.get("steps", 1)) for name, c in counts.items()}
    tree_labels = {a["name"]: f"{short_name(a['name'])}\n{freq.get(a['name'], 0.0):.0%}" for a in m["agents"]}
    draw_tree(ax_tree, m["agents"], freq, Normalize(0.0, 1.0), sns.color_palette("viridis", as_cmap=True),
               tree_labels)
    kinds = Counter(e["kind"] for e in m.get("structure_events", []) if e["kept"])
    ax_tree.set_title(f"final tree of {variant} s{seed} ({order}): " +
                      ", ".join(f"{kinds[k]} {k}" for k in EVENT_KINDS) + "; label: update %", fontsize=8)
    return fig
