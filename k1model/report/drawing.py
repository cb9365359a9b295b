"""Drawing primitives shared by every figure module (`figures.py`, `structure_figures.py`,
`study_figures.py`): the style, byte-stable saving, the variant palette and the agent tree.

Figures are drawn on `matplotlib.figure.Figure` objects (no pyplot state, the headless Agg canvas).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # headless even when pyplot is imported later by seaborn
import numpy as np
import seaborn as sns
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from k1model.io import atomic_path

#: the style of every figure (with seaborn's whitegrid); svg.hashsalt and no dates keep outputs byte-stable
RC = {"figure.dpi": 100, "savefig.dpi": 150, "axes.titlesize": 10, "axes.labelsize": 9,
      "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "svg.hashsalt": "k1",
      "pdf.fonttype": 42}


def save_figure(fig: Figure, figdir: Path, name: str) -> list[Path]:
    """Write name.png and name.pdf atomically, with no creation dates (byte-stable outputs)."""
    out = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None,
                                                           "Creator": None})):
        path = figdir / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, metadata=meta)
        out.append(path)
    return out


def palette(variants: Sequence[str]) -> dict[str, Any]:
    """One colour per variant (colourblind-safe), in the order given."""
    return dict(zip(variants, sns.color_palette("colorblind", len(variants))))


def tree_layout(agents: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, float]]:
    """(x, y) per agent: leaves evenly spaced left to right, parents centred over children, y = −level."""
    children: dict[str, list[str]] = {a["name"]: [] for a in agents}
    level = {a["name"]: int(a["level"]) for a in agents}
    roots = []
    for a in agents:
        if a.get("parent") is None:
            roots.append(a["name"])
        else:
            children[a["parent"]].append(a["name"])
    pos: dict[str, tuple[float, float]] = {}
    next_x = [0.0]

    def place(n: str) -> float:
        if not children[n]:
            x = next_x[0]
            next_x[0] += 1.0
        else:
            x = float(np.mean([place(c) for c in children[n]]))
        pos[n] = (x, -float(level[n]))
        return x

    for r in roots:
        place(r)
    return pos


def short_name(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def draw_tree(ax: Any, agents: Sequence[Mapping[str, Any]], values: Mapping[str, float], norm: Normalize,
               cmap: Any, labels: Mapping[str, str], highlight: Sequence[str] = (), culprit: str | None = None) -> Any:
    agents = [a for a in agents if a.get("status") != "inactive"]  # unused agent slots are not drawn
    pos = tree_layout(agents)
    hl = set(highlight)
    status = {a["name"]: a.get("status", "active") for a in agents}
    for a in agents:
        if a.get("parent") is not None:
            (x0, y0), (x1, y1) = pos[a["parent"]], pos[a["name"]]
            on_path = a["name"] in hl and a["parent"] in hl
            gone = status[a["name"]] != "active"
            ax.plot([x0, x1], [y0, y1], color="crimson" if on_path else "0.6", lw=2.5 if on_path else 1.0, zorder=1,
                    ls=":" if gone else "-")
    names = [a["name"] for a in agents]
    xs = [pos[n][0] for n in names]
    ys = [pos[n][1] for n in names]
    vals = [values.get(n, math.nan) for n in names]
    sc = ax.scatter(xs, ys, c=vals, cmap=cmap, norm=norm, s=260, edgecolors="0.2", linewidths=0.8, zorder=2,
                    plotnonfinite=True)
    draw_structure_marks(ax, agents, pos)
    if culprit is not None and culprit in pos:
        ax.scatter([pos[culprit][0]], [pos[culprit][1]], s=520, facecolors="none", edgecolors="crimson",
                   linewidths=2.5, zorder=3)
    n_leaves = max(1, sum(1 for n in names if pos[n][1] == min(ys)))
    rotate = n_leaves > 8
    for n in names:
        x, y = pos[n]
        is_leaf = y == min(ys)
        ax.text(x, y - 0.22, labels.get(n, short_name(n)), ha="center", va="top", fontsize=6.5 if rotate else 7.5,
                rotation=90 if (rotate and is_leaf) else 0, zorder=4,
                bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(min(ys) - (1.3 if rotate else 0.8), 0.5)
    ax.axis("off")
    return sc


def draw_structure_marks(ax: Any, agents: Sequence[Mapping[str, Any]], pos: Mapping[str, tuple[float, float]]) -> None:
    """Structural plasticity on a tree: grown agents ringed green, pruned crossed, merged marked."""
    marks = {"grown": ([a for a in agents if a.get("slot")], {"s": 420, "facecolors": "none", "edgecolors": "seagreen",
                                                            "linewidths": 2.0}),
             "pruned": ([a for a in agents if a.get("status") == "pruned"], {"s": 200, "marker": "x", "c": "0.25"}),
             "merged": ([a for a in agents if a.get("status") == "merged"], {"s": 200, "marker": "+", "c": "0.25"})}
    shown = False
    for label, (members, style) in marks.items():
        if members:
            ax.scatter([pos[a["name"]][0] for a in members], [pos[a["name"]][1] for a in members], zorder=3,
                       label=label, **style)
            shown = True
    if shown:
        ax.legend(loc="lower right", fontsize=6.5, frameon=False, handletextpad=0.2, borderaxespad=0.0)

