"""The stability-plasticity frontier figure (DESIGN.md §12): every method along each of its knobs.

Drawn from summary.json's `frontier.table` (one row per method x setting with the means and intervals of
plasticity, forgetting and final average bpb, `analysis/frontier_stats.py`). Left: forgetting against
plasticity; right: final average bpb against plasticity. One line per method and knob, through the base
setting (the main comparison, a larger marker) in the knob's order; every point with its intervals in both
directions. Each method's frontier (its settings no other beats on both axes of the left panel) is the
thick grey line under it.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
from matplotlib.figure import Figure

from k1model.report.drawing import PAGE_IN, figure_legend, new_figure, variant_handles, variant_style, xy_intervals

#: a knob's short name on a point's label
SHORT = {"learning_rate": "lr", "trust_increase": "trust+", "ewc_lambda": "λ", "replay_fraction": "replay",
         "shared_update": "shared", "throttle_share": "share"}
#: how shared_update's settings read on a label
SETTING_LABELS = {"with_agents": "with agents", "frozen_after_first_phase": "frozen", "every_step": "every step"}


def _label(knob: Any, value: Any) -> str:
    if knob is None or (isinstance(knob, float) and pd.isna(knob)):
        return ""
    text = SETTING_LABELS.get(str(value), f"{value:g}" if isinstance(value, float) else str(value))
    return f"{SHORT.get(str(knob), str(knob))} {text}"


def _knob_order(value: Any) -> tuple[int, Any]:
    return (0, value) if isinstance(value, (int, float)) else (1, str(value))


def frontier_table(frontier: Mapping[str, Any], y: str) -> pd.DataFrame:
    """xy_intervals' table for one panel: a row per (method, knob curve, setting); the base point is repeated on
    every curve of its method, numeric knobs sorted by value, the base placed at the profile's own value."""
    table = pd.DataFrame(frontier.get("table") or [])
    if table.empty:
        return table
    rows = []
    for variant, sub in table.groupby("variant", sort=False):
        base = sub[sub.point == "base"]
        knobs = [k for k in dict.fromkeys(sub.knob) if isinstance(k, str)]
        for knob in knobs or [None]:
            curve = sub[sub.knob == knob] if knob else sub.iloc[0:0]
            own = (frontier.get("base_values") or {}).get(variant, {}).get(knob) if knob else None
            points = [(own, r) for _, r in base.iterrows()] + [(r["value"], r) for _, r in curve.iterrows()]
            if knob and all(isinstance(v, (int, float)) for v, _ in points if v is not None):
                points.sort(key=lambda vr: _knob_order(vr[0]) if vr[0] is not None else (0, float("inf")))
            for value, r in points:
                rows.append({"method": variant, "curve": f"{variant}/{knob}", "setting": "" if r["point"] == "base"
                             else _label(knob, value), "base": r["point"] == "base",
                             "x": r["plasticity_mean"], "x_low": r["plasticity_ci_low"],
                             "x_high": r["plasticity_ci_high"], "y": r[f"{y}_mean"], "y_low": r[f"{y}_ci_low"],
                             "y_high": r[f"{y}_ci_high"], "on_frontier": bool(r.get("on_forgetting_frontier"))})
    return pd.DataFrame(rows)


def frontier_figure(frontier: Mapping[str, Any] | None) -> Figure | None:
    """The two panels: forgetting and final average bpb against plasticity, one line per method and knob."""
    if not frontier or not frontier.get("table"):
        return None
    methods = list(dict.fromkeys(r["variant"] for r in frontier["table"]))
    fig = new_figure(PAGE_IN, 3.6)
    left, right = fig.subplots(1, 2, sharex=True)
    for ax, y, label in ((left, "forgetting", "forgetting (bpb; lower is better)"),
                         (right, "final_avg_bpb", "final average bpb (lower is better)")):
        table = frontier_table(frontier, y)
        if y == "forgetting":  # each method's frontier: its settings not beaten on both axes, joined by x
            for method, sub in table[table.on_frontier].drop_duplicates(["method", "x", "y"]).groupby("method"):
                sub = sub.sort_values("x")
                ax.plot(sub.x, sub.y, color="0.75", lw=3.2, solid_capstyle="round", zorder=1)
        for method, sub in table[table.base].drop_duplicates("method").groupby("method", sort=False):
            st = variant_style(str(method))
            ax.plot(sub.x, sub.y, marker=st.marker, color=st.color, ms=7.5, mec="black", mew=0.6, ls="none",
                    zorder=5)
        placed: list[Any] = []
        for curve, sub in table.groupby("curve", sort=False):
            xy_intervals(ax, sub.reset_index(drop=True), placed=placed)
        ax.set_xlabel("plasticity: mean R[j][j], bpb right after\neach domain's own phase (lower: learns more)")
        ax.set_ylabel(label)
    left.set_title("stability against plasticity")
    right.set_title("final performance against plasticity")
    figure_legend(fig, variant_handles(methods), ncol=len(methods))
    return fig
