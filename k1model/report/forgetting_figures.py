"""Figures of the forgetting question: which domain is forgotten (per domain order), and which part of
the model carries the forgetting (the swap test of `train/decomposition.py`). Both read only what
`k1 aggregate` wrote (tables/forgetting_domains.csv, summary.json)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from k1model.report.drawing import palette

#: the decomposition figure's bars: (metric, label)
DECOMPOSITION_BARS = (("bwt", "lost since own phase (BWT)"), ("forgetting_shared", "carried by shared weights"),
                      ("forgetting_agents", "carried by agents"))


def forgetting_domains(domains: pd.DataFrame, variants: Sequence[str], margin: float | None,
                       reference: str | None) -> Figure | None:
    """Per domain order: every variant's forgetting of each domain (mean, t-interval), the validity margin."""
    final = domains[domains.forgetting.notna()]
    if final.empty:
        return None
    orders = list(dict.fromkeys(final.order))
    variants = [v for v in variants if v in set(final.variant)]
    pal = palette(variants)
    fig = Figure(figsize=(max(5.0, 3.2 * len(orders)) + 1.5, 3.4))
    axes = fig.subplots(1, len(orders), squeeze=False, sharey=True)[0]
    width = 0.8 / max(len(variants), 1)
    for ax, order in zip(axes, orders):
        sub = final[final.order == order]
        names = list(dict.fromkeys(sub.sort_values("position").domain))
        for i, v in enumerate(variants):
            rows = sub[sub.variant == v].set_index("domain").reindex(names)
            x = np.arange(len(names)) + (i - (len(variants) - 1) / 2) * width
            mean = rows.forgetting.to_numpy(float)
            err = np.vstack([mean - rows.forgetting_ci_low.to_numpy(float), rows.forgetting_ci_high.to_numpy(float) - mean])
            ax.bar(x, mean, width, color=pal[v], label=v, edgecolor="black" if v == reference else "none",
                   linewidth=0.8)
            ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="none", ecolor="black", elinewidth=0.6, capsize=1.5)
        ax.axhline(0.0, color="black", linewidth=0.6)
        if margin is not None:
            ax.axhline(margin, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks(np.arange(len(names)), [f"{n}\n(phase {k + 1})" for k, n in enumerate(names)])
        ax.set_title(order)
    axes[0].set_ylabel("forgetting (bpb; final − best earlier)")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def decomposition_figure(summary: Mapping[str, Any], variants: Sequence[str]) -> Figure | None:
    """Per variant: the bpb lost on earlier domains and what the shared weights and the agents each carry."""
    shown = [v for v in variants if (summary.get(v) or {}).get("forgetting_shared", {}).get("n")]
    if not shown:
        return None
    fig = Figure(figsize=(max(5.0, 0.75 * len(shown) + 2.5), 3.4))
    ax = fig.subplots()
    width = 0.8 / len(DECOMPOSITION_BARS)
    colours = ("0.55", "#d55e00", "#0072b2")
    for i, ((metric, label), colour) in enumerate(zip(DECOMPOSITION_BARS, colours)):
        st = [summary[v].get(metric) or {} for v in shown]
        mean = np.array([s.get("mean", np.nan) for s in st], float)
        lo = np.array([np.nan if s.get("ci_low") is None else s["ci_low"] for s in st], float)
        hi = np.array([np.nan if s.get("ci_high") is None else s["ci_high"] for s in st], float)
        x = np.arange(len(shown)) + (i - 1) * width
        ax.bar(x, mean, width, color=colour, label=label)
        ax.errorbar(x, mean, yerr=np.nan_to_num(np.vstack([mean - lo, hi - mean])), fmt="none", ecolor="black",
                    elinewidth=0.6, capsize=1.5)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(np.arange(len(shown)), shown, rotation=30, ha="right")
    ax.set_ylabel("bpb, mean over earlier domains")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig
