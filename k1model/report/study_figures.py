"""Figures of the study's other parts: sensitivity of each claim to each swept factor, and the
tuned comparison beside the as-specified one. Read only summary.json."""
from __future__ import annotations

import math
import textwrap
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from k1model.report.drawing import (PAGE_IN, COLUMN_IN, Estimate, figure_legend, forest_height, forest_panel,
                                    metric_title, new_figure, unit_label, variant_handles, variant_style)
from k1model.study.design import format_value

SENSITIVITY_METRICS = ("forgetting", "final_avg_bpb", "idle_step_fraction")


def _stat(cell: Mapping[str, Any], key: str) -> float:
    value = cell.get(key)
    return math.nan if value is None else float(value)


def sensitivity(sweep: Mapping[str, Any], confidence: float) -> Figure | None:
    """Per swept factor (rows) and metric (columns): each variant's mean and interval at each of the
    factor's settings (the base setting included). Numeric factors: lines along the value, with the
    interval as a band; categorical factors: points side by side, never joined."""
    factors = list(sweep["factors"])
    if not factors or sweep["design"] != "one_at_a_time":
        return None
    variants = list(sweep["variants"])
    fig = new_figure(PAGE_IN, 0.45 + 1.55 * len(factors) + 0.2)
    axes = fig.subplots(len(factors), len(SENSITIVITY_METRICS), squeeze=False)
    for i, factor in enumerate(factors):
        names = ["base"] + [p["name"] for p in sweep["points"] if p["factor"] == factor]
        values = [sweep["base"][factor]] + [p["overrides"][factor] for p in sweep["points"] if p["factor"] == factor]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        order = np.argsort(values) if numeric else np.arange(len(values))
        xs = np.asarray(values, float)[order] if numeric else np.arange(len(values), dtype=float)
        labels = [textwrap.fill(format_value(values[k]).replace("_", " "), 13) + ("\n(base)" if k == 0 else "")
                  for k in order]
        base_x = xs[list(order).index(0)]
        for j, metric in enumerate(SENSITIVITY_METRICS):
            ax = axes[i, j]
            measured = False
            for n, v in enumerate(variants):
                st = [sweep["cells"].get(names[k], {}).get(v, {}).get(metric, {}) for k in order]
                mean = np.array([_stat(s, "mean") for s in st])
                lo = np.array([_stat(s, "ci_low") for s in st])
                hi = np.array([_stat(s, "ci_high") for s in st])
                style = variant_style(v)
                measured |= bool(np.isfinite(mean).any())
                if numeric:
                    ax.plot(xs, mean, color=style.color, ls=style.linestyle, marker=style.marker, ms=3, lw=0.9)
                    ax.fill_between(xs, lo, hi, alpha=0.15, color=style.color, lw=0)
                else:
                    dx = 0.12 * (n - (len(variants) - 1) / 2)
                    err = np.vstack([np.nan_to_num(mean - lo), np.nan_to_num(hi - mean)])
                    ax.errorbar(xs + dx, mean, yerr=err, fmt=style.marker, color=style.color, ms=3.5, capsize=1.5,
                                elinewidth=0.8, mec="white", mew=0.3)
            if not measured:
                ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", fontsize=6.5,
                        color="0.4")
                ax.set_yticks([])
            if numeric and all(x > 0 for x in xs) and max(xs) / min(xs) > 20:
                ax.set_xscale("log")
            if numeric:
                ax.set_xticks(xs, labels)
                ax.axvline(base_x, color="0.6", lw=0.7, ls=":")
                ax.set_xlim(*_padded(xs, log=ax.get_xscale() == "log"))
            else:
                ax.set_xticks(xs, labels)
                ax.set_xlim(-0.5, len(xs) - 0.5)
                ax.grid(axis="x", visible=False)
            ax.minorticks_off()
            ax.set_xlabel(f"setting of {factor}")
            if i == 0:
                ax.set_title(metric_title(metric))
            ax.set_ylabel(unit_label(metric))
            if metric == "forgetting":
                lo_y, hi_y = ax.get_ylim()
                if lo_y < 0 < hi_y:
                    ax.axhline(0, color="0.5", lw=0.6, ls=":")
    figure_legend(fig, variant_handles(variants))
    return fig


def _padded(xs: np.ndarray, log: bool) -> tuple[float, float]:
    lo, hi = float(np.min(xs)), float(np.max(xs))
    if log:
        return lo / 1.3, hi * 1.3
    pad = 0.08 * (hi - lo) if hi > lo else 0.1 * max(abs(hi), 1.0)
    return lo - pad, hi + pad


def tuned_vs_specified(summary: Mapping[str, Any], variants: Sequence[str], confidence: float) -> Figure | None:
    """Every variant's forgetting and final bpb: as specified (the profile's settings) and tuned."""
    tuned = summary.get("tuned") or {}
    shown = [v for v in variants if v in tuned and isinstance(tuned[v], dict) and v in summary]
    if not shown:
        return None
    fig = new_figure(COLUMN_IN, forest_height(len(shown)) + 0.1)
    axes = fig.subplots(1, 2)
    for k, (ax, metric) in enumerate(zip(axes, ("forgetting", "final_avg_bpb"))):
        series = []
        for label, doc, offset, marker, color in (("as specified", summary, -0.13, "o", "0.35"),
                                                  ("tuned", tuned, 0.13, "D", "#0072B2")):
            values = {}
            for v in shown:
                st = (doc.get(v) or {}).get(metric) or {}
                values[v] = (_stat(st, "mean"), _stat(st, "ci_low"), _stat(st, "ci_high"))
            series.append(Estimate(label, values, marker=marker, color=color, offset=offset))
        forest_panel(ax, shown, series, None, xlabel=unit_label(metric), title=metric_title(metric, 1.3),
                     label_rows=k == 0, zero=metric == "forgetting", floor=0.0 if metric == "final_avg_bpb" else None)
    figure_legend(fig, [Line2D([], [], color=e.color, marker=e.marker, ms=4, lw=1.1, label=f"{e.label}, mean and "
                               f"{confidence:.0%} interval") for e in series], ncol=1)
    return fig
