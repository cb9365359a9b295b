"""Drawing primitives shared by every figure module (`figures.py`, `cl_figures.py`, `forgetting_figures.py`,
`structure_figures.py`, `study_figures.py`): the printed sizes and style, one look per variant, axis
limits set by the data with the outliers marked, the variant legend, the horizontal interval plot
("forest") of per-variant statistics, the x ± CI against y ± CI plot, byte-stable saving and the agent tree.

**Printed sizes.** Every figure is drawn at the size it is printed, so its fonts are the printed
fonts: one column `COLUMN_IN` = 3.5 in or the full text width `PAGE_IN` = 7.0 in wide (two-column
journal layouts), at most `MAX_HEIGHT_IN` tall, 6.5–8 pt text (`RC`), saved at 300 dpi.

**One look per variant.** `variant_style(v)` is the only place a variant's colour, marker and line
style come from, so a variant looks the same in every figure whatever else is drawn beside it. The
core variants are pinned in `VARIANT_STYLES` (Paul Tol's colour-blind-safe "muted" scheme plus black
and grey, with a marker and a line style per family: K-1 solid, ablations dashed, baselines
dash-dotted, the joint upper reference dotted, so no two are told apart by colour alone). A variant added
later (a registered strategy, a control such as `throttled`) gets a style from `EXTRA_STYLES`
(Okabe–Ito colours × markers, dotted) picked by a hash of its name, collisions resolved in name order
over the registry: stable between figures and runs, distinct from every other variant. Pin it in
`VARIANT_STYLES` when it becomes part of the study.

Figures are drawn on `matplotlib.figure.Figure` objects (no pyplot state, the headless Agg canvas).
"""
from __future__ import annotations

import math
import textwrap
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # headless even when pyplot is imported later by seaborn
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from k1model.io import atomic_path

#: printed widths (inches): one column, and the full text width of a two-column page
COLUMN_IN = 3.5
PAGE_IN = 7.0
#: the tallest a figure may be (a page's text height less its caption)
MAX_HEIGHT_IN = 9.0
#: PNG resolution (print quality); the PDF is vector
PNG_DPI = 300

#: the style of every figure (with seaborn's whitegrid), in points at the printed size; svg.hashsalt
#: and no dates keep outputs byte-stable
RC = {"figure.dpi": 100, "savefig.dpi": PNG_DPI, "font.size": 7, "axes.titlesize": 8, "axes.labelsize": 7.5,
      "xtick.labelsize": 6.5, "ytick.labelsize": 6.5, "legend.fontsize": 6.5, "legend.title_fontsize": 7,
      "figure.titlesize": 8, "lines.linewidth": 1.1, "lines.markersize": 4, "axes.linewidth": 0.6,
      "grid.linewidth": 0.4, "xtick.major.size": 2.5, "ytick.major.size": 2.5, "xtick.major.pad": 2,
      "ytick.major.pad": 2, "axes.titlepad": 4, "axes.labelpad": 2, "legend.handlelength": 2.4,
      "svg.hashsalt": "k1", "pdf.fonttype": 42}


@contextmanager
def figure_style() -> Iterator[None]:
    """The style every figure is drawn *and measured* in (seaborn's whitegrid and `RC`): ticks are made at
    draw time from the current settings, so a figure checked outside it is not the figure printed."""
    import seaborn as sns

    with sns.axes_style("whitegrid"), matplotlib.rc_context(RC):
        yield


@dataclass(frozen=True)
class Style:
    """How one variant is drawn: colour, marker, line style."""

    color: str
    marker: str
    linestyle: str

    def line(self) -> dict[str, Any]:
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle}


_SOLID, _DASHED, _DASHDOT, _DOTTED = "-", (0, (4, 1.5)), (0, (5, 1.5, 1, 1.5)), (0, (1, 1.2))
#: the core variants (Tol "muted" + black + grey); families share a line style, never a colour
VARIANT_STYLES: dict[str, Style] = {
    "k1_full": Style("#332288", "o", _SOLID),       # indigo
    "k1_grow": Style("#117733", "D", _SOLID),       # green
    "k1_replay": Style("#88CCEE", "s", _SOLID),     # cyan
    "flat_topk": Style("#DDCC77", "P", _DASHED),    # sand
    "no_trust": Style("#CC6677", "<", _DASHED),     # rose
    "no_loo": Style("#AA4499", ">", _DASHED),       # purple
    "random_path": Style("#999933", "X", _DASHED),  # olive
    "dense": Style("#000000", "h", _DASHDOT),       # black: the reference
    "ewc": Style("#882255", "v", _DASHDOT),         # wine
    "replay": Style("#44AA99", "^", _DASHDOT),      # teal
    "joint": Style("#777777", "*", _DOTTED),        # grey: the upper reference
}
#: styles of variants not pinned above (Okabe–Ito colours × markers the pinned ones do not use)
EXTRA_STYLES: tuple[Style, ...] = tuple(Style(c, m, _DOTTED) for m in ("p", "d", "H", "8")
                                        for c in ("#E69F00", "#0072B2", "#D55E00", "#56B4E9", "#009E73",
                                                  "#CC79A7"))


def variant_style(variant: str) -> Style:
    """The variant's style: pinned, or a stable pick from `EXTRA_STYLES` (module docstring)."""
    if variant in VARIANT_STYLES:
        return VARIANT_STYLES[variant]
    from k1model.method.variants import VARIANTS

    names = sorted({n for n in VARIANTS if n not in VARIANT_STYLES} | {variant})
    if len(names) > len(EXTRA_STYLES):
        raise ValueError(f"{len(names)} variants without a pinned style, {len(EXTRA_STYLES)} extra styles: pin some in "
                         "k1model/report/drawing.py, VARIANT_STYLES")
    taken: dict[int, str] = {}
    for name in names:
        k = zlib.crc32(name.encode("utf-8")) % len(EXTRA_STYLES)
        while k in taken:
            k = (k + 1) % len(EXTRA_STYLES)
        taken[k] = name
        if name == variant:
            return EXTRA_STYLES[k]
    raise AssertionError("unreachable")


def palette(variants: Sequence[str]) -> dict[str, str]:
    """variant → colour (`variant_style`)."""
    return {v: variant_style(v).color for v in variants}


#: one marker per domain order (runs drawn as dots), in the params' order
ORDER_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*")


def new_figure(width: float, height: float) -> Figure:
    """A figure of the printed width (`COLUMN_IN` or `PAGE_IN`), at most `MAX_HEIGHT_IN` tall."""
    if width not in (COLUMN_IN, PAGE_IN):
        raise ValueError(f"a figure is printed {COLUMN_IN} or {PAGE_IN} in wide, not {width}")
    return Figure(figsize=(width, min(float(height), MAX_HEIGHT_IN)), layout="constrained")


def save_figure(fig: Figure, figdir: Path, name: str) -> list[Path]:
    """Write name.png and name.pdf atomically, with no creation dates (byte-stable outputs)."""
    out = []
    for ext, meta in (("png", {"Software": None}), ("pdf", {"CreationDate": None, "Producer": None,
                                                           "Creator": None})):
        path = figdir / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, metadata=meta, dpi=PNG_DPI)
        out.append(path)
    return out


# --------------------------------------------------------------------------- limits set by the data


def outliers(values: Any, groups: Any = None, k: float = 8.0) -> np.ndarray:
    """Which values lie far from the rest of their group (`groups`: a label per value, or a DataFrame of
    labels; e.g. the runs of one variant): more than k = 8 robust standard deviations from their group's
    median, the scale read off the residuals pooled over the groups. Differences between groups are never
    outliers; a run that diverged is. Constant data have none."""
    v = np.asarray(values, dtype=float).ravel()
    finite = np.isfinite(v)
    if finite.sum() < 3:
        return np.zeros(v.size, bool)
    if groups is None:
        keys: list[np.ndarray] = [np.zeros(v.size)]
    elif isinstance(groups, pd.DataFrame):  # several columns: one group per combination
        keys = [groups[c].to_numpy() for c in groups.columns]
    else:
        keys = [np.asarray(groups).ravel()]
    median = pd.Series(v).groupby(keys).transform("median").to_numpy(float)
    ok = finite & np.isfinite(median)
    if not ok.any():
        return np.zeros(v.size, bool)
    r = np.where(ok, np.abs(v - median), 0.0)
    # the scale: a normal one from the 50th, 75th and 90th percentiles of |residual|, the largest (the MAD
    # alone is 0 when most values tie: fractions of 7 agents, groups of two runs); a few outliers move none
    scale = max(float(np.quantile(r[ok], q)) / z for q, z in ((0.5, 0.6745), (0.75, 1.1503), (0.9, 1.6449)))
    if scale <= 1e-12 * max(1.0, float(np.abs(v[finite]).max())):
        return np.zeros(v.size, bool)
    return ok & (r > k * scale)


def kept_means(values: Any, groups: Any, means: Sequence[tuple[Any, float]]) -> list[float]:
    """The means an axis must hold: those within the range of their own group's values once the
    outliers are set aside (a mean an outlying run dragged outside it is marked instead), and those
    of groups without values."""
    v = np.asarray(values, dtype=float).ravel()
    g = np.asarray(groups).ravel()
    core = np.isfinite(v) & ~outliers(v, g) if v.size else np.zeros(0, bool)
    keep = []
    for group, mean in means:
        own = v[core & (g == group)] if v.size else v
        if own.size == 0 or own.min() <= mean <= own.max():
            keep.append(mean)
    return keep


def robust_limits(values: Any, *, groups: Any = None, keep: Any = (), reach: Any = (), floor: float | None = None,
                  pad: float = 0.06) -> tuple[float, float]:
    """Axis limits that hold every value but the `outliers` (judged within `groups`), every value of
    `keep` (the estimates drawn), and the values of `reach` (interval ends) as far as half the span of
    the rest beyond it: a diverged run or a very wide interval cannot stretch the axis; what lies beyond is
    marked by `mark_beyond` or cut. `floor`: the quantity's lower bound (0 for bpb), never crossed by
    the padding."""
    v = np.asarray(values, dtype=float).ravel()
    kept = np.asarray(keep, dtype=float).ravel()
    core = np.concatenate([v[np.isfinite(v) & ~outliers(v, groups)], kept[np.isfinite(kept)]])
    ends = np.asarray(reach, dtype=float).ravel()
    ends = ends[np.isfinite(ends)]
    if core.size == 0:
        core = ends
    if core.size == 0:
        return (0.0, 1.0) if floor is None else (floor, floor + 1.0)
    lo, hi = float(core.min()), float(core.max())
    if ends.size:
        reach_by = 0.5 * max(hi - lo, 1e-9 * max(1.0, abs(hi)))
        lo, hi = max(min(lo, float(ends.min())), lo - reach_by), min(max(hi, float(ends.max())), hi + reach_by)
    if hi - lo <= 1e-9 * max(1.0, abs(hi)):  # (near-)constant: no axis of float noise
        half = 0.05 * max(abs(hi), 0.02)
        lo, hi = lo - half, hi + half
    margin = pad * (hi - lo)
    lo, hi = lo - margin, hi + margin
    if floor is not None:
        lo = max(lo, floor)
    return lo, hi


def fmt_value(x: float, spec: str = ".3g") -> str:
    """A number as printed in a figure (a true minus sign)."""
    return format(x, spec).replace("-", "−")


def mark_beyond(ax: Any, positions: Any, values: Any, limits: tuple[float, float], *, axis: str = "y",
                color: str = "0.2", label: bool = True, markers: bool = True) -> int:
    """Values beyond `limits` drawn as a triangle on the axis edge pointing outwards (with the most
    extreme value, and how many there are, written beside it when `label`); returns how many were beyond."""
    pos, val = np.asarray(positions, float).ravel(), np.asarray(values, float).ravel()
    lo, hi = limits
    count = 0
    for side, mask in (("low", val < lo), ("high", val > hi)):
        if not mask.any():
            continue
        count += int(mask.sum())
        edge = lo if side == "low" else hi
        xs, ys = (pos[mask], np.full(mask.sum(), edge)) if axis == "y" else (np.full(mask.sum(), edge), pos[mask])
        marker = {("y", "low"): "v", ("y", "high"): "^", ("x", "low"): "<", ("x", "high"): ">"}[(axis, side)]
        if markers:
            ax.scatter(xs, ys, marker=marker, s=22, color=color, edgecolors="white", linewidths=0.4, zorder=6,
                       clip_on=False)
        if label:
            extreme = val[mask].min() if side == "low" else val[mask].max()
            text = fmt_value(extreme) + (f" ({mask.sum()})" if mask.sum() > 1 else "")
            at = float(pos[mask][np.argmin(val[mask]) if side == "low" else np.argmax(val[mask])])
            if axis == "y":
                ax.annotate(text, (at, edge), xytext=(3, -3 if side == "high" else 3), textcoords="offset points",
                            fontsize=5.5, color=color, va="top" if side == "high" else "bottom", ha="left",
                            annotation_clip=False, in_layout=False, zorder=7)
            else:
                ax.annotate(text, (edge, at), xytext=(-3 if side == "high" else 3, 0), textcoords="offset points",
                            fontsize=5.5, color=color, va="center", ha="right" if side == "high" else "left",
                            annotation_clip=False, in_layout=False, zorder=7, bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none",
                                                         "alpha": 0.8})
    return count


def variant_handles(variants: Sequence[str], *, lines: bool = True) -> list[Line2D]:
    """Legend handles of the variants (their line, marker and colour)."""
    return [Line2D([], [], label=v, markersize=4, **(variant_style(v).line() if lines else
                                                      {**variant_style(v).line(), "linestyle": "none"}))
            for v in variants]


def legend_columns(width_in: float, handles: Sequence[Any], ncol: int | None = None) -> int:
    """How many columns of `handles` fit a figure `width_in` inches wide (at most `ncol`)."""
    size = float(matplotlib.rcParams["legend.fontsize"])
    widest = max((len(h.get_label()) * 0.55 * size + 3.2 * size for h in handles), default=1.0) / 72.0  # inches
    fits = max(1, int((width_in - 0.2) / widest))
    return max(1, min(len(handles), fits, ncol or fits))


def legend_rows_height(width_in: float, handles: Sequence[Any]) -> float:
    """The height (inches) a figure legend's rows beyond the first take: what a figure adds for a long legend."""
    rows = math.ceil(len(handles) / legend_columns(width_in, handles)) if handles else 1
    return 0.16 * max(0, rows - 1)


def figure_legend(fig: Figure, handles: Sequence[Any], *, title: str | None = None, ncol: int | None = None) -> Any:
    """One legend for the whole figure, below the panels (constrained layout makes room for it)."""
    ncol = legend_columns(fig.get_size_inches()[0], handles, ncol)
    return fig.legend(handles=list(handles), loc="outside lower center", ncol=ncol, frameon=False, title=title,
                      columnspacing=1.2, handletextpad=0.5)


# --------------------------------------------------------------------------- statistics as intervals


#: metric names as panel titles (the others: the name without attr_, underscores as spaces)
DISPLAY_NAMES = {"final_avg_bpb": "final average bpb", "bwt": "BWT (backward transfer)", "fwt": "FWT (forward transfer)",
                 "sparsity_param_fraction": "parameters changed per step", "sparsity_agent_fraction": "agents changed per step",
                 "idle_step_fraction": "idle steps"}


def metric_title(metric: str, width_in: float = PAGE_IN) -> str:
    """The metric's name for a panel `width_in` inches wide (8 pt titles, wrapped)."""
    chars = max(10, int(width_in * 72.0 / (0.58 * 8.0)))
    return textwrap.fill(DISPLAY_NAMES.get(metric) or metric.removeprefix("attr_").replace("_", " "), chars)


def unit_label(metric: str) -> str:
    """The metric's unit and which way is better, e.g. "bpb (lower is better)"."""
    from k1model.analysis.metric_info import metric_info

    info, _ = metric_info(metric)
    better = {"lower": "lower is better", "higher": "higher is better"}.get(info.direction, "")
    unit = info.unit or "value"
    return f"{unit} ({better})" if better else unit


#: the height of one row (variant) of a forest panel, inches
FOREST_ROW_IN = 0.21


def forest_height(n_rows: int, n_panel_rows: int = 1) -> float:
    """The height of a figure of `n_panel_rows` rows of forest panels with `n_rows` variants each (+ legend)."""
    return n_panel_rows * (0.62 + FOREST_ROW_IN * n_rows) + 0.42


class Estimate(NamedTuple):
    """A series of per-row estimates with intervals: {row: (value, low, high)}; None colours by row."""

    label: str | None
    values: Mapping[str, tuple[float, float, float]]
    marker: str = "o"
    color: str | None = "black"
    offset: float = -0.18


def forest_panel(ax: Any, rows: Sequence[str], estimates: Sequence[Estimate], runs: pd.DataFrame | None, *,
                 orders: Sequence[str] = (), xlabel: str, title: str, label_rows: bool, zero: bool = False,
                 floor: float | None = None) -> None:
    """Rows (variants) top to bottom; per row each estimate with its interval and, below it, the runs
    (`runs`: row, value, order) as dots, one line per domain order (marker per order). x limits from
    the data; runs, estimates and whiskers beyond them marked on the edge. Rows are `FOREST_ROW_IN` tall."""
    index = {r: i for i, r in enumerate(rows)}
    runs = runs[runs["row"].isin(index)] if runs is not None else None
    # the axis holds the runs but their outliers (within each row), the means an outlier did not drag away
    # from the rest of their row, and the intervals as far as half the span of those beyond
    values = runs["value"] if runs is not None else []
    means = [(row, v[0]) for e in estimates for row, v in e.values.items() if row in index]
    keep = kept_means(values, runs["row"] if runs is not None else [], means)
    ends = [b for e in estimates for row, v in e.values.items() if row in index for b in v[1:]]
    limits = robust_limits(values, groups=runs["row"] if runs is not None else None, keep=keep, reach=ends,
                           floor=floor)
    lines = list(orders) or [None]
    at = np.linspace(0.08, 0.36, len(lines)) if len(lines) > 1 else np.array([0.2])  # a line of runs per order
    if runs is not None and not runs.empty:
        for k, order in enumerate(lines):
            sub = runs if order is None else runs[runs["order"] == order]
            y = sub["row"].map(index).to_numpy(float) + at[k]
            x = sub["value"].to_numpy(float)
            inside = (x >= limits[0]) & (x <= limits[1])
            ax.scatter(x[inside], y[inside], s=7, marker=ORDER_MARKERS[k % len(ORDER_MARKERS)], linewidths=0.3,
                       c=[variant_style(r).color for r in sub["row"][inside]], edgecolors="white", alpha=0.8,
                       zorder=3)
            mark_beyond(ax, y, x, limits, axis="x", color="0.3", label=False)
        for row, sub in runs.groupby("row", sort=False):  # one label per row and side: the most extreme run
            mark_beyond(ax, np.full(len(sub), index[row] + 0.22), sub["value"], limits, axis="x",
                        color=variant_style(str(row)).color, markers=False)
    for e in estimates:
        for row, (value, low, high) in e.values.items():
            if row not in index:
                continue
            y = index[row] + e.offset
            color = e.color or variant_style(row).color
            if not np.isfinite(value):
                ax.text(np.mean(limits), index[row], "n/a", ha="center", va="center", fontsize=6, color="0.4")
                continue
            if np.isfinite(low) and np.isfinite(high):
                lo, hi = max(low, limits[0]), min(high, limits[1])
                ax.plot([lo, hi], [y, y], color=color, lw=1.1, solid_capstyle="butt", zorder=4)
                for end, beyond, mk in ((lo, low < limits[0], "<"), (hi, high > limits[1], ">")):
                    if beyond:
                        ax.plot([end], [y], marker=mk, color=color, ms=3.5, zorder=4, clip_on=False)
            if limits[0] <= value <= limits[1]:
                ax.plot([value], [y], marker=e.marker, color=color, ms=4, mec="white", mew=0.4, zorder=5,
                        linestyle="none")
            else:
                mark_beyond(ax, [y], [value], limits, axis="x", color=color)
    ax.set_xlim(*limits)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))  # narrow panels: few, short labels
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_yticks(range(len(rows)), list(rows) if label_rows else [""] * len(rows))
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="y", visible=False)
    if zero and limits[0] < 0 < limits[1]:
        ax.axvline(0, color="0.45", lw=0.6, ls=":", zorder=1)
    ax.set_xlabel(xlabel)
    ax.set_title(title)


def order_handles(orders: Sequence[str]) -> list[Line2D]:
    """Legend handles of the run dots: one marker per domain order."""
    return [Line2D([], [], marker=ORDER_MARKERS[k % len(ORDER_MARKERS)], linestyle="none", color="0.35", ms=3.5,
                   label=f"runs, order {o.replace('-', ' → ')}") for k, o in enumerate(orders)]


def xy_intervals(ax: Any, points: pd.DataFrame, *, method: str = "method", setting: str | None = "setting",
                 x: str = "x", y: str = "y", connect: bool = True, label_points: bool = True,
                 placed: list[Any] | None = None) -> None:
    """x ± CI against y ± CI: per method (a variant: its `variant_style`) one line through its points in
    the table's row order (e.g. along a knob), each point with its x and y intervals, labelled by its
    setting. `points`: one row per (method, setting) with columns `method`, `setting`, `x`, `x_low`,
    `x_high`, `y`, `y_low`, `y_high` (the names configurable; missing or NaN bounds: no whisker).

    The plasticity–forgetting frontier (issue 30) is `xy_intervals(ax, table)` with x = mean R[j][j],
    y = forgetting (or final average bpb) and one row per knob value, on an axes of a figure from
    `new_figure` (legend: `figure_legend(fig, variant_handles(methods))`); the stability–plasticity
    figure (`cl_figures.stability_plasticity`) calls it with one setting per method. Set the axis limits
    (if not the automatic ones) before calling: labels are placed beside their point, on the first of
    six sides where they overlap no label already placed, once the figure's layout is drawn (`placed`: the
    boxes of labels placed by earlier calls on the same figure, extended here; an empty setting gets no label)."""
    for name, sub in points.groupby(method, sort=False):
        st = variant_style(str(name))
        xs, ys = sub[x].to_numpy(float), sub[y].to_numpy(float)

        def half(col: str, centre: np.ndarray) -> np.ndarray:
            b = sub[col].to_numpy(float) if col in sub else np.full(centre.size, np.nan)
            return np.where(np.isfinite(b), np.abs(centre - b), 0.0)

        xerr = np.vstack([half(f"{x}_low", xs), half(f"{x}_high", xs)])
        yerr = np.vstack([half(f"{y}_low", ys), half(f"{y}_high", ys)])
        ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="none", ecolor=st.color, elinewidth=0.7, capsize=1.5,
                    alpha=0.85, zorder=3)
        ax.plot(xs, ys, color=st.color, marker=st.marker, linestyle=st.linestyle if connect and len(xs) > 1 else "none",
                ms=4.5, mec="white", mew=0.4, zorder=4, label=str(name))
    if not (label_points and setting and setting in points):
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = ax.get_figure(root=True)
    if not hasattr(fig.canvas, "get_renderer"):
        FigureCanvasAgg(fig)
    ax.autoscale_view()
    fig.draw_without_rendering()  # the layout the labels are placed in
    renderer = fig.canvas.get_renderer()
    placed = [] if placed is None else placed
    pt = fig.dpi / 72.0  # display pixels per point
    marks = [ax.transData.transform((float(r[x]), float(r[y]))) for _, r in points.iterrows()]
    marks = [Bbox.from_extents(cx - 4.5 * pt, cy - 4.5 * pt, cx + 4.5 * pt, cy + 4.5 * pt) for cx, cy in marks]
    for i, (_, row) in enumerate(points.iterrows()):
        px, py, text = float(row[x]), float(row[y]), str(row[setting])
        if not text:
            continue
        colour = variant_style(str(row[method])).color
        others = placed + [m for k, m in enumerate(marks) if k != i]  # other labels and the other points' markers
        for dx, dy in ((5, 3), (5, -9), (-5, 3), (-5, -9), (0, 8), (0, -12)):
            t = ax.annotate(text, (px, py), xytext=(dx, dy), textcoords="offset points", fontsize=5.5, color=colour,
                            ha="left" if dx > 0 else "right" if dx < 0 else "center")
            box = t.get_window_extent(renderer)
            if not any(box.padded(1.0 * pt).overlaps(b) for b in others):
                break
            t.remove()
        else:  # no free side: the first one (the label matters more than the overlap, which the figure test reports)
            t = ax.annotate(text, (px, py), xytext=(4, 3), textcoords="offset points", fontsize=5.5, color=colour)
            box = t.get_window_extent(renderer)
        placed.append(box)


# --------------------------------------------------------------------------- agent trees


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
              cmap: Any, labels: Mapping[str, str], highlight: Sequence[str] = (), culprit: str | None = None,
              marks_legend: bool = True, depth: int | None = None) -> Any:
    """The agent tree: nodes coloured by `values`, labelled below, the error path (`highlight`) in red.
    `depth`: the deepest level of the trees drawn beside it (one vertical scale for all of them)."""
    agents = [a for a in agents if a.get("status") != "inactive"]  # unused agent slots are not drawn
    pos = tree_layout(agents)
    hl = set(highlight)
    status = {a["name"]: a.get("status", "active") for a in agents}
    for a in agents:
        if a.get("parent") is not None:
            (x0, y0), (x1, y1) = pos[a["parent"]], pos[a["name"]]
            on_path = a["name"] in hl and a["parent"] in hl
            gone = status[a["name"]] != "active"
            ax.plot([x0, x1], [y0, y1], color="crimson" if on_path else "0.6", lw=2.0 if on_path else 0.8, zorder=1,
                    ls=":" if gone else "-")
    names = [a["name"] for a in agents]
    xs = [pos[n][0] for n in names]
    ys = [pos[n][1] for n in names]
    vals = [values.get(n, math.nan) for n in names]
    n_leaves = max(1, sum(1 for n in names if pos[n][1] == min(ys)))
    size = 90 if n_leaves <= 8 else 55
    sc = ax.scatter(xs, ys, c=vals, cmap=cmap, norm=norm, s=size, edgecolors="0.2", linewidths=0.5, zorder=2,
                    plotnonfinite=True)
    draw_structure_marks(ax, agents, pos, size, legend=marks_legend)
    if culprit is not None and culprit in pos:
        ax.scatter([pos[culprit][0]], [pos[culprit][1]], s=2.2 * size, facecolors="none", edgecolors="crimson",
                   linewidths=1.6, zorder=3)
    rotate = n_leaves > 8
    for n in names:
        x, y = pos[n]
        is_leaf = y == min(ys)
        ax.text(x, y - 0.2, labels.get(n, short_name(n)), ha="center", va="top", fontsize=5 if rotate else 5.5,
                rotation=90 if (rotate and is_leaf) else 0, zorder=4, linespacing=1.0,
                bbox={"boxstyle": "round,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(min(ys), -float(depth if depth is not None else 0)) - (1.5 if rotate else 0.95), 0.35)
    ax.axis("off")
    return sc


def draw_structure_marks(ax: Any, agents: Sequence[Mapping[str, Any]], pos: Mapping[str, tuple[float, float]],
                         size: float = 90, legend: bool = True) -> None:
    """Structural plasticity on a tree: grown agents ringed green, pruned crossed, merged marked."""
    marks = {"grown": ([a for a in agents if a.get("slot")], {"s": 2.0 * size, "facecolors": "none",
                                                            "edgecolors": "seagreen", "linewidths": 1.4}),
             "pruned": ([a for a in agents if a.get("status") == "pruned"], {"s": size, "marker": "x", "c": "0.25"}),
             "merged": ([a for a in agents if a.get("status") == "merged"], {"s": size, "marker": "+", "c": "0.25"})}
    shown = False
    for label, (members, style) in marks.items():
        if members:
            ax.scatter([pos[a["name"]][0] for a in members], [pos[a["name"]][1] for a in members], zorder=3,
                       label=label, **style)
            shown = True
    if shown and legend:
        ax.legend(loc="upper right", fontsize=5.5, frameon=False, handletextpad=0.2, borderaxespad=0.0,
                  markerscale=0.6)
