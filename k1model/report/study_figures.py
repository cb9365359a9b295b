"""Figures of the study's other parts: sensitivity of each claim to each swept factor, and the
tuned comparison beside the as-specified one. Read only summary.json."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from k1model.report.drawing import palette as _palette
from k1model.study.design import format_value

SENSITIVITY_METRICS = ("forgetting", "final_avg_bpb", "idle_step_fraction")


def sensitivity(sweep: Mapping[str, Any], confidence: float) -> Figure | None:
    """Per swept factor (rows) and metric (columns): each variant's mean and CI band against the
    factor's value (the base value at the base point); `dense` drawn as the reference."""
    factors = list(sweep["factors"])
    if not factors or sweep["design"] != "one_at_a_time":
        return None
    variants = list(sweep["variants"])
    pal = _palette(variants)
    fig = Figure(figsize=(3.3 * len(SENSITIVITY_METRICS), 2.5 * len(factors)), layout="constrained")
    axes = fig.subplots(len(factors), len(SENSITIVITY_METRICS), squeeze=False)
    for i, factor in enumerate(factors):
        names = ["base"] + [p["name"] for p in sweep["points"] if p["factor"] == factor]
        values = [sweep["base"][factor]] + [p["overrides"][factor] for p in sweep["points"] if p["factor"] == factor]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        order = np.argsort(values) if numeric else np.arange(len(values))
        xs = np.asarray(values, float)[order] if numeric else np.arange(len(values))
        labels = [format_value(values[k]) for k in order]
        for j, metric in enumerate(SENSITIVITY_METRICS):
            ax = axes[i, j]
            for v in variants:
                st = [sweep["cells"].get(names[k], {}).get(v, {}).get(metric, {}) for k in order]
                mean = np.array([s.get("mean") if s.get("mean") is not None else np.nan for s in st], float)
                lo = np.array([s.get("ci_low") if s.get("ci_low") is not None else np.nan for s in st], float)
                hi = np.array([s.get("ci_high") if s.get("ci_high") is not None else np.nan for s in st], float)
                style = dict(color="0.3", ls="--") if v == "dense" else dict(color=pal[v])
                ax.plot(xs, mean, marker="o", ms=3, label=v, **style)
                ax.fill_between(xs, lo, hi, alpha=0.2, color=style["color"], lw=0)
            if numeric and all(x > 0 for x in xs) and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
            if not numeric:
                ax.set_xticks(xs, labels)
            ax.set_title(f"{metric} vs {factor}", fontsize=8)
            ax.axvline(xs[list(order).index(0)], color="0.7", lw=0.8, ls=":")  # the base setting
            if i == 0 and j == len(SENSITIVITY_METRICS) - 1:
                ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"Sensitivity (one factor at a time; mean and {confidence:.0%} CI over sweep seeds; "
                 "dotted: base setting; dashed: dense)", fontsize=9)
    return fig


def tuned_vs_specified(summary: Mapping[str, Any], variants: Sequence[str], confidence: float) -> Figure | None:
    """Every variant's forgetting and final bpb: as specified (the profile's settings) and tuned."""
    tuned = summary.get("tuned") or {}
    shown = [v for v in variants if v in tuned and isinstance(tuned[v], dict) and v in summary]
    if not shown:
        return None
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("forgetting", "final_avg_bpb")):
        for k, (label, doc, dx, color) in enumerate((("as specified", summary, -0.15, "0.4"),
                                                     ("tuned", tuned, 0.15, "tab:blue"))):
            for i, v in enumerate(shown):
                st = (doc.get(v) or {}).get(metric) or {}
                if st.get("mean") is None:
                    continue
                err = None if st.get("ci_low") is None else [[st["mean"] - st["ci_low"]], [st["ci_high"] - st["mean"]]]
                ax.errorbar([i + dx], [st["mean"]], yerr=err, fmt="o", color=color, ms=4, capsize=3,
                            label=label if i == 0 else None)
        ax.set_xticks(range(len(shown)), shown, rotation=35, fontsize=7)
        ax.set_title(f"{metric} (lower is better)", fontsize=9)
        if metric == "forgetting" and math.isfinite(0.0):
            ax.axhline(0, color="0.7", lw=0.8, ls=":")
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(f"As specified vs tuned (mean and {confidence:.0%} t-interval)", fontsize=9)
    return fig
