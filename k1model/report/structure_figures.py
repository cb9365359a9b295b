"""The structural-plasticity figure (DESIGN.md §9): how big the live tree of every growing run was over
training, which events each run had, and one run's final tree with its grown, pruned and merged
agents. Reads the runs' metrics.json (`structure_sizes`, `structure_events`, `agents`), every order."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from k1model.report.drawing import PAGE_IN, draw_tree, new_figure, short_name

EVENT_KINDS = ("grow", "prune", "merge")
#: one colour per domain order for the run lines (Okabe–Ito), and one per event kind
ORDER_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
EVENT_COLOURS = {"grow": "#117733", "prune": "#CC6677", "merge": "#88CCEE", "rolled back": "#BBBBBB"}


def structure_figure(runs: Sequence[tuple[str, int, str, Mapping[str, Any]]], reference_params: float | None,
                     orders: Sequence[str], notes: list[str]) -> tuple[Figure | None, str]:
    """`runs`: (variant, seed, order, metrics) of every growing run. `reference_params`: the agent weights
    of the tree that does not change (k1_full's), drawn as a dashed line. Returns the figure and the run
    whose final tree is drawn."""
    import seaborn as sns

    if not runs:  # no variant with structural plasticity: nothing to draw
        return None, ""
    runs = [r for r in runs if r[3].get("structure_sizes")]
    if not runs:
        notes.append("structure: no growing run has structure_sizes in its metrics.json; figure skipped")
        return None, ""
    orders = [o for o in orders if o in {r[2] for r in runs}] or sorted({r[2] for r in runs})
    several_variants = len({r[0] for r in runs}) > 1
    fig = new_figure(PAGE_IN, 4.6)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.05])
    ax_size, ax_events = top.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1.0]})
    for variant, seed, order, m in runs:
        colour = ORDER_COLOURS[orders.index(order) % len(ORDER_COLOURS)]
        sizes = m["structure_sizes"]
        steps = [s["step"] for s in sizes] + [m["steps"]]
        params = [s["active_agent_params"] for s in sizes]
        ax_size.step(steps, np.asarray(params + params[-1:], float) / 1e3, where="post", color=colour, lw=0.8,
                     alpha=0.75)
    handles = [Line2D([], [], color=ORDER_COLOURS[k % len(ORDER_COLOURS)], lw=0.8, label=o.replace("-", " → "))
               for k, o in enumerate(orders)]
    if reference_params is not None:
        ax_size.axhline(reference_params / 1e3, color="0.3", ls="--", lw=0.8)
        handles.append(Line2D([], [], color="0.3", ls="--", lw=0.8, label="fixed tree (k1_full)"))
    ax_size.set_xlabel("training step")
    ax_size.set_ylabel("agent weights of the live tree\n(thousands)")
    ax_size.set_title("tree size over training, one line per run")
    ax_size.legend(handles=handles, fontsize=5.5, frameon=False, loc="best", title="domain order",
                   title_fontsize=5.5)
    labels = [f"{'' if not several_variants else short_name(variant) + ' '}s{seed}"
              + (f" o{orders.index(order) + 1}" if len(orders) > 1 else "") for variant, seed, order, _ in runs]
    bottom_counts = np.zeros(len(runs))
    for kind in EVENT_KINDS + ("rolled back",):
        counts = np.array([sum(1 for e in m.get("structure_events", [])
                               if (e["kind"] == kind and e["kept"]) or (kind == "rolled back" and not e["kept"]))
                           for *_, m in runs], dtype=float)
        ax_events.bar(range(len(runs)), counts, bottom=bottom_counts, color=EVENT_COLOURS[kind], label=kind, width=0.7)
        bottom_counts += counts
    ax_events.set_xticks(range(len(runs)), labels, rotation=90 if len(runs) > 8 else 0, fontsize=5.5)
    ax_events.set_xlabel("run (seed" + (", order o1 = first" if len(orders) > 1 else "") + ")")
    ax_events.set_ylabel("structural events per run")
    ax_events.yaxis.get_major_locator().set_params(integer=True)
    ax_events.set_title("events kept, and rolled back")
    ax_events.legend(fontsize=5.5, frameon=False, ncol=2, loc="upper right")
    ax_events.set_ylim(0, max(1.0, float(bottom_counts.max())) * 1.35)
    variant, seed, order, m = runs[0]
    counts = m.get("update_counts", {})
    freq = {name: c / max(1, m.get("steps", 1)) for name, c in counts.items()}
    tree_labels = {a["name"]: f"{short_name(a['name'])}\n{freq.get(a['name'], 0.0):.0%}" for a in m["agents"]}
    ax_tree = bottom.subplots()
    sc = draw_tree(ax_tree, m["agents"], freq, Normalize(0.0, 1.0), sns.color_palette("viridis", as_cmap=True),
                   tree_labels)
    bottom.colorbar(sc, ax=ax_tree, label="fraction of steps updated", shrink=0.8, aspect=25)
    run = f"{variant} seed {seed}, domain order {order.replace('-', ' → ')}"
    ax_tree.set_title(f"final tree of {variant} seed {seed}, order {order.replace('-', ' → ')}")
    return fig, run
