"""Figures of the forgetting question: which domain is forgotten (per domain order), and which part of
the model carries the forgetting (the swap test of `train/decomposition.py`). Both read only what
`k1 aggregate` wrote (tables/forgetting_domains.csv, summary.json, tidy.csv)."""
from __future__ import annotations

import math
import textwrap
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from k1model.report.drawing import (PAGE_IN, Estimate, figure_legend, forest_height, forest_panel, mark_beyond, new_figure,
                                    order_handles, robust_limits, variant_handles, variant_style)

#: the decomposition figure's panels: (metric, title)
DECOMPOSITION_BARS = (("bwt", "lost since own phase (BWT)"),
                      ("forgetting_shared", "recovered by restoring the shared weights"),
                      ("forgetting_agents", "recovered by restoring the agents"))


def forgetting_domains(domains: pd.DataFrame, variants: Sequence[str], margin: float | None,
                       reference: str | None, orders: Sequence[str] = ()) -> Figure | None:
    """One row per domain order: every variant's forgetting of each domain (mean, interval), the
    validity margin, the reference outlined."""
    final = domains[domains.forgetting.notna()]
    if final.empty:
        return None
    present = list(dict.fromkeys(final.order))
    orders = [o for o in orders if o in present] + [o for o in present if o not in orders]
    variants = [v for v in variants if v in set(final.variant)]
    n_domains = final.groupby("order").domain.nunique().max()
    # two panels a row while a panel's bars fit half a page (every order a panel), else one per row
    ncols = min(2, len(orders)) if n_domains * len(variants) <= 12 else 1
    nrows = math.ceil(len(orders) / ncols)
    legend = 0.17 * math.ceil(len(variants) / 6)
    fig = new_figure(PAGE_IN, 0.5 + 1.9 * nrows + legend)
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    axes = list(grid.ravel())
    for ax in axes[len(orders):]:
        ax.set_visible(False)
    # (means and intervals only, no runs here) every mean, the intervals as far as half the means' span beyond
    limits = robust_limits([], keep=list(final.forgetting) + [0.0] + ([margin] if margin is not None else []),
                           reach=list(final.forgetting_ci_low) + list(final.forgetting_ci_high))
    width = 0.8 / max(len(variants), 1)
    for ax, order in zip(axes, orders):
        sub = final[final.order == order]
        names = list(dict.fromkeys(sub.sort_values("position").domain))
        for i, v in enumerate(variants):
            rows = sub[sub.variant == v].set_index("domain").reindex(names)
            st = variant_style(v)
            x = np.arange(len(names)) + (i - (len(variants) - 1) / 2) * width
            mean = rows.forgetting.to_numpy(float)
            lo = np.maximum(rows.forgetting_ci_low.to_numpy(float), limits[0])
            hi = np.minimum(rows.forgetting_ci_high.to_numpy(float), limits[1])
            ax.vlines(x, lo, hi, color=st.color, lw=0.8)
            for end, cut, mk in ((limits[0], rows.forgetting_ci_low.to_numpy(float) < limits[0], "v"),
                                 (limits[1], rows.forgetting_ci_high.to_numpy(float) > limits[1], "^")):
                if cut.any():  # (an empty unclipped line has an infinite extent: the layout would collapse)
                    ax.plot(x[cut], np.full(cut.sum(), end), linestyle="none", marker=mk, color=st.color, ms=3,
                            clip_on=False)
            inside = (mean >= limits[0]) & (mean <= limits[1])
            ax.plot(x[inside], mean[inside], linestyle="none", marker=st.marker, color=st.color,
                    ms=5.5 if v == reference else 3.6, mec="white", mew=0.3)
            mark_beyond(ax, x, mean, limits, color=st.color)
        ax.axhline(0.0, color="black", linewidth=0.5)
        if margin is not None:
            ax.axhline(margin, color="0.4", linestyle="--", linewidth=0.7)
        for b in np.arange(len(names) - 1) + 0.5:
            ax.axvline(b, color="0.85", lw=0.5)
        ax.set_xticks(np.arange(len(names)), [f"{n}\n(phase {k + 1})" for k, n in enumerate(names)])
        ax.set_xlim(-0.5, len(names) - 0.5)
        ax.grid(axis="x", visible=False)
        ax.set_ylim(*limits)
        ax.set_title(f"domain order {order.replace('-', ' → ')}", fontsize=7)
        if axes.index(ax) % ncols == 0:
            ax.set_ylabel("forgetting (bpb)\nfinal − best earlier")
    handles = variant_handles(variants, lines=False)
    if margin is not None:
        handles.append(Line2D([], [], color="0.4", ls="--", lw=0.7, label=f"validity margin ({reference})"))
    figure_legend(fig, handles, ncol=6)
    return fig


def decomposition_figure(summary: Mapping[str, Any], tidy: pd.DataFrame, variants: Sequence[str],
                         orders: Sequence[str], confidence: float) -> Figure | None:
    """Per variant (rows): the bpb lost on earlier domains, and what restoring the shared weights or the
    agents recovers, each with its interval and the runs; absolute bpb, never shares of the loss."""
    shown = [v for v in variants if ((summary.get(v) or {}).get("forgetting_shared") or {}).get("n")]
    if not shown:
        return None
    fig = new_figure(PAGE_IN, forest_height(len(shown)))
    axes = fig.subplots(1, len(DECOMPOSITION_BARS), sharey=False)
    main = tidy[(tidy.get("part", "as_specified") == "as_specified") & tidy.value.notna()]
    for k, (ax, (metric, title)) in enumerate(zip(axes, DECOMPOSITION_BARS)):
        runs = main[(main.metric == metric) & main.variant.isin(shown)].rename(columns={"variant": "row"})
        est = {}
        for v in shown:
            s = (summary.get(v) or {}).get(metric) or {}
            est[v] = (float(s.get("mean", math.nan)), _num(s.get("ci_low")), _num(s.get("ci_high")))
        forest_panel(ax, shown, [Estimate("mean", est)], runs[["row", "value", "order"]], orders=orders,
                     xlabel="bpb (mean over earlier domains)", title=textwrap.fill(title, 26), label_rows=k == 0,
                     zero=True)
    figure_legend(fig, [Line2D([], [], color="black", marker="o", ms=4, lw=1.1,
                               label=f"mean, {confidence:.0%} interval")] + order_handles(orders))
    return fig


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)
