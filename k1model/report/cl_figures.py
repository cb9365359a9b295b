"""The continual-learning figures a reader of such a paper expects, for every domain order:
learning curves, the R matrices and their forgetting view, the average bpb over the domains seen
so far after each phase, the stability–plasticity scatter and forgetting against the number of
agent updates.

Inputs: the runs' `evals.csv` and `metrics.json` (R matrices, update counts), the tidy table
(per-run scalars) and `tables/forgetting_phases.csv` (what `k1 aggregate` wrote). Orders are
never averaged together (their phases differ): each is its own row, panel or figure, named.
Intervals are the analysis' own (`analysis.stats.describe`: the interval the tables give a mean),
intersected with bpb ≥ 0 where the quantity is a bpb.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from k1model.analysis.stats import describe
from k1model.report.drawing import (COLUMN_IN, PAGE_IN, figure_legend, fmt_value, kept_means, mark_beyond, new_figure,
                                    robust_limits, variant_handles, variant_style, xy_intervals)

RunKey = tuple[str, str, int]  # (variant, order, seed)


def order_label(order: str) -> str:
    """"tales → code → science" from the order's name "tales-code-science"."""
    return order.replace("-", " → ")


def _interval(values: Any, confidence: float) -> tuple[float, float, float]:
    d = describe(np.asarray(values, float), confidence=confidence)
    return float(d["mean"]), float(d["ci_low"]), float(d["ci_high"])


def _fits(text: str, width_pt: float, size_pt: float) -> bool:
    return len(text) * 0.6 * size_pt <= width_pt


def learning_curves(evals: pd.DataFrame, variants: Sequence[str], orders: Sequence[str], confidence: float,
                    floors: Mapping[str, Any] | None = None, floor: str = "trigram") -> Figure | None:
    """Rows: domain orders; columns: held-out domains. Mean bpb across seeds with its interval band,
    phase boundaries dashed, the phase trained written above each stretch; `floors` (`k1 floors`' document):
    each domain's `floor` n-gram bpb (test split) as a dotted reference line."""
    if evals.empty:
        return None
    orders = [o for o in orders if o in set(evals.order)]
    domains = list(dict.fromkeys(orders[0].split("-")))
    shown = [v for v in variants if v in set(evals.variant)]
    fig = new_figure(PAGE_IN, 0.55 + 1.5 * len(orders) + 0.18 * math.ceil(len(shown) / 6))
    axes = fig.subplots(len(orders), len(domains), sharex=True, sharey=True, squeeze=False)
    levels = [((floors or {}).get("domains", {}).get(d, {}).get("test") or {}).get(floor) for d in domains]
    limits = robust_limits(evals.bpb, groups=evals[["variant", "order", "domain", "step"]], floor=0.0,
                           keep=[x for x in levels if x is not None])  # every domain's floor line in view
    band_alpha = 0.13 if len(shown) <= 4 else 0.07  # many overlapping bands: lighter, or they turn to mud
    panel_pt = 72.0 * (PAGE_IN - 0.6) / len(domains)
    for r, order in enumerate(orders):
        sub_order = evals[evals.order == order]
        starts = sub_order.groupby("phase_index")["step"].min().sort_index()
        ends = sub_order[sub_order.end_of_phase == 1].groupby("phase_index")["step"].max().sort_index()
        phases = sub_order.drop_duplicates("phase_index").set_index("phase_index")["phase"].sort_index()
        step0 = float(starts.iloc[0]) - (float(starts.iloc[1]) - float(ends.iloc[0]) if len(starts) > 1 else 0.0)
        for c, domain in enumerate(domains):
            ax = axes[r, c]
            sub = sub_order[sub_order.domain == domain]
            for v in shown:
                rows = sub[sub.variant == v]
                if rows.empty:
                    continue
                stats = [(step, *_interval(g.bpb, confidence)) for step, g in rows.groupby("step")]
                step, mean, lo, hi = (np.array(col, float) for col in zip(*stats))
                st = variant_style(v)
                ax.fill_between(step, np.maximum(lo, 0.0), hi, color=st.color, alpha=band_alpha, lw=0)
                ax.plot(step, mean, color=st.color, ls=st.linestyle, marker=st.marker, ms=2.2, lw=0.9)
                mark_beyond(ax, step, mean, limits, color=st.color, label=False)
            for b in ends.to_numpy()[:-1]:
                ax.axvline(b, color="0.45", ls="--", lw=0.6)
            level = ((floors or {}).get("domains", {}).get(domain, {}).get("test") or {}).get(floor)
            if level is not None:
                ax.axhline(level, color="0.2", ls=":", lw=0.8, zorder=1)
            bounds = [step0] + list(ends.to_numpy(float))
            width_pt = panel_pt / max(len(phases), 1)
            for k, name in enumerate(phases):
                mid = 0.5 * (bounds[k] + bounds[k + 1]) if k + 1 < len(bounds) else float(starts.iloc[k])
                ax.text(mid, 0.985, name if _fits(name, width_pt, 5.5) else str(k + 1), ha="center", va="top",
                        fontsize=5.5, color="0.3", transform=ax.get_xaxis_transform())
            if r == 0:
                ax.set_title(f"held-out {domain}")
            if c == 0:
                ax.set_ylabel(f"{order_label(order)}\nbpb", fontsize=6.5)
            if r == len(orders) - 1:
                ax.set_xlabel("training step")
    axes[0, 0].set_ylim(*limits)
    axes[0, 0].set_xlim(step0, float(evals.step.max()))
    handles = variant_handles(shown)
    if floors and floors.get("domains"):
        handles.append(Line2D([], [], color="0.2", ls=":", lw=0.8, label=f"{floor} floor (held-out)"))
    figure_legend(fig, handles, ncol=6)
    return fig


def r_matrix_figure(mats: Mapping[str, np.ndarray], domains: Sequence[str], order: str, *, diverging: bool
                    ) -> Figure:
    """A grid of T × T matrices, one per variant, rows = after phase i, columns = domain j (training order).
    `diverging`: values are changes (R − diagonal), coloured around 0; else bpb."""
    import seaborn as sns
    from matplotlib.colors import Normalize, TwoSlopeNorm

    T = len(domains)
    ncols = min(4, len(mats))
    nrows = math.ceil(len(mats) / ncols)
    width = COLUMN_IN if ncols * T <= 6 else PAGE_IN
    panel = (width - 1.4) / ncols  # square cells: the figure is as tall as the panels are wide (no fixed aspect,
    fig = new_figure(width, 0.35 + nrows * (panel + 0.2) + (0.55 if T >= 4 else 0.35))  # which the layout can't fit)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    values = np.concatenate([m[np.isfinite(m)] for m in mats.values()])
    lo, hi = robust_limits(values, pad=0.0)  # the colours of the typical cells; an outlier saturates
    if diverging:
        bound = max(abs(lo), abs(hi), 1e-6)
        norm: Any = TwoSlopeNorm(0.0, -bound, bound)
        cmap = sns.color_palette("vlag", as_cmap=True)
    else:
        norm, cmap = Normalize(lo, hi if hi > lo else lo + 1e-6), sns.color_palette("rocket_r", as_cmap=True)
    image = None
    size = 6 if T <= 3 else 5.5
    for k, (ax, (variant, R)) in enumerate(zip(axes.ravel(), mats.items())):
        image = ax.imshow(np.ma.masked_invalid(R), cmap=cmap, norm=norm, aspect="auto")
        for i in range(R.shape[0]):
            for j in range(R.shape[1]):
                if np.isfinite(R[i, j]):
                    dark = norm(R[i, j]) > 0.62 if not diverging else abs(norm(R[i, j]) - 0.5) > 0.3
                    ax.text(j, i, fmt_value(R[i, j], "+.2f" if diverging else ".2f"), ha="center", va="center",
                            fontsize=size, color="white" if dark else "black")
        ax.set_title(variant, fontsize=7)
        first_col, last_row = k % ncols == 0, k // ncols == nrows - 1 or k + ncols >= len(mats)
        ax.set_xticks(range(T), list(domains) if last_row else [""] * T, rotation=90 if T >= 4 else 0)
        ax.set_yticks(range(T), [f"after {d}" for d in domains] if first_col else [""] * T)
        ax.tick_params(length=0)
        ax.grid(False)
        if last_row:
            ax.set_xlabel("evaluated on")
    for ax in axes.ravel()[len(mats):]:
        ax.set_visible(False)
    label = "Δ bpb since own phase" if diverging else "held-out bpb"
    below, above = bool((values < norm.vmin).any()), bool((values > norm.vmax).any())  # saturated cells
    extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get((below, above), "neither")
    fig.colorbar(image, ax=axes.ravel().tolist(), label=label, shrink=0.8 if nrows > 1 else 1.0, aspect=30,
                 extend=extend)
    fig.suptitle(f"domain order {order_label(order)}", fontsize=7.5)
    return fig


def mean_r_matrices(run_metrics: Mapping[RunKey, Mapping[str, Any]], variants: Sequence[str], order: str,
                    notes: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Mean R over the seeds of one order, per variant (runs without R noted)."""
    mats = {}
    domains: list[str] = order.split("-")
    for v in variants:
        Rs = [np.asarray(m["R"], float) for (vv, o, _), m in run_metrics.items() if vv == v and o == order and "R" in m]
        if Rs:
            mats[v] = np.mean(Rs, axis=0)
        elif any(vv == v and o == order for vv, o, _ in run_metrics):
            notes.append(f"R matrices: no R matrix in the runs of {v}, order {order}")
    return mats, domains


def forgetting_matrices(phases: pd.DataFrame, variants: Sequence[str], order: str) -> Figure | None:
    """R[i][j] − R[j][j] (i ≥ j) per variant, mean over the runs of one order (tables/forgetting_phases.csv)."""
    sub = phases[phases.order == order]
    if sub.empty:
        return None
    domains = order.split("-")  # the last domain has no rows (nothing came after it)
    T = len(domains)
    mats = {}
    for v in (v for v in variants if v in set(sub.variant)):
        M = np.full((T, T), np.nan)
        for row in sub[sub.variant == v].itertuples():
            if int(row.after_phase) > int(row.position):
                M[int(row.after_phase), int(row.position)] = float(row.increase)
        mats[v] = M
    return r_matrix_figure(mats, domains, order, diverging=True) if mats else None


def seen_bpb(run_metrics: Mapping[RunKey, Mapping[str, Any]], variants: Sequence[str], orders: Sequence[str],
             confidence: float) -> Figure | None:
    """After each phase i: mean over the domains seen so far (j ≤ i) of R[i][j]; per order, mean and interval
    over the seeds, one line per variant."""
    rows = []
    for (v, o, s), m in run_metrics.items():
        if "R" not in m:
            continue
        R = np.asarray(m["R"], float)
        rows += [{"variant": v, "order": o, "seed": s, "phase": i, "bpb": float(np.mean(R[i, : i + 1]))}
                 for i in range(R.shape[0])]
    if not rows:
        return None
    table = pd.DataFrame(rows)
    orders = [o for o in orders if o in set(table.order)]
    shown = [v for v in variants if v in set(table.variant)]
    ncols = min(len(orders), 4)
    nrows = math.ceil(len(orders) / ncols)
    width = COLUMN_IN if ncols == 1 else PAGE_IN
    fig = new_figure(width, 0.55 + 1.9 * nrows + 0.17 * math.ceil(len(shown) / (3 if ncols == 1 else 6)))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    limits = robust_limits(table.bpb, groups=table[["variant", "order", "phase"]], floor=0.0)
    for k, (ax, order) in enumerate(zip(axes.ravel(), orders)):
        names = order.split("-")
        sub = table[table.order == order]
        for n, v in enumerate(shown):
            st = variant_style(v)
            stats = [(p, *_interval(g.bpb, confidence)) for p, g in sub[sub.variant == v].groupby("phase")]
            if not stats:
                continue
            phase, mean, lo, hi = (np.array(col, float) for col in zip(*stats))
            x = phase + 1 + 0.035 * (n - (len(shown) - 1) / 2)
            err = np.vstack([mean - np.maximum(np.nan_to_num(lo, nan=mean), 0.0), np.nan_to_num(hi, nan=mean) - mean])
            ax.errorbar(x, mean, yerr=err, color=st.color, ls=st.linestyle, marker=st.marker, ms=3, lw=0.8,
                        elinewidth=0.6, capsize=1.2, mec="white", mew=0.3)
            mark_beyond(ax, x, mean, limits, color=st.color, label=False)
        ax.set_xticks(range(1, len(names) + 1), [f"{i + 1}\n{d}" for i, d in enumerate(names)])
        ax.set_xlim(0.6, len(names) + 0.4)
        ax.set_title(order_label(order), fontsize=7)
        ax.set_xlabel("after phase (domain trained)")
        if k % ncols == 0:
            ax.set_ylabel("mean bpb over the domains seen")
    for ax in axes.ravel()[len(orders):]:
        ax.set_visible(False)
    axes[0, 0].set_ylim(*limits)
    figure_legend(fig, variant_handles(shown), ncol=3 if ncols == 1 else 6)
    return fig


def plasticity_per_run(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per main-comparison run: `plasticity` = mean_j R[j][j] (bpb right after each domain's own phase;
    lower = learns more), from the tidy table alone: mean_j R[j][j] = final_avg_bpb − (T − 1)/T · BWT,
    because BWT = mean_{j<T} (R[T][j] − R[j][j]) and final_avg_bpb = mean_j R[T][j]. Columns: variant,
    order, seed, plasticity, forgetting, final_avg_bpb."""
    main = tidy[(tidy.get("part", "as_specified") == "as_specified")
                & tidy.metric.isin(["final_avg_bpb", "bwt", "forgetting"])]
    wide = main.pivot_table(index=["variant", "order", "seed"], columns="metric", values="value").reset_index()
    if wide.empty or not {"final_avg_bpb", "bwt", "forgetting"} <= set(wide.columns):
        return pd.DataFrame(columns=["variant", "order", "seed", "plasticity", "forgetting", "final_avg_bpb"])
    T = wide.order.str.count("-") + 1
    wide["plasticity"] = wide.final_avg_bpb - (T - 1) / T * wide.bwt
    return wide[["variant", "order", "seed", "plasticity", "forgetting", "final_avg_bpb"]]


def _xy_table(runs: pd.DataFrame, x: str, y: str, variants: Sequence[str], confidence: float) -> pd.DataFrame:
    rows = []
    for v in variants:
        sub = runs[runs.variant == v].dropna(subset=[x, y])
        if sub.empty:
            continue
        mx, lx, hx = _interval(sub[x], confidence)
        my, ly, hy = _interval(sub[y], confidence)
        rows.append({"method": v, "setting": v, "x": mx, "x_low": lx, "x_high": hx, "y": my, "y_low": ly, "y_high": hy})
    return pd.DataFrame(rows)


def _scatter_panel(ax: Any, runs: pd.DataFrame, x: str, y: str, variants: Sequence[str], confidence: float,
                   *, log_x: bool = False, x_floor: float | None = 0.0) -> None:
    """Runs as small faint markers, each variant's mean ± interval in x and y as a cross."""
    if log_x:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # 100, 200, 500, 1,000, ...
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    table = _xy_table(runs, x, y, variants, confidence)
    keep_x = kept_means(runs[x], runs.variant, list(zip(table.get("method", []), table.get("x", []))))
    keep_y = kept_means(runs[y], runs.variant, list(zip(table.get("method", []), table.get("y", []))))
    xlim = None if log_x else robust_limits(runs[x], groups=runs.variant, keep=keep_x, floor=x_floor)
    ylim = robust_limits(runs[y], groups=runs.variant, keep=keep_y)
    means = table.set_index("method") if not table.empty else pd.DataFrame(columns=["x", "y"])
    for v in variants:
        sub = runs[runs.variant == v]
        st = variant_style(v)
        inside = (sub[y] >= ylim[0]) & (sub[y] <= ylim[1])
        if xlim is not None:
            inside &= (sub[x] >= xlim[0]) & (sub[x] <= xlim[1])
        ax.scatter(sub[x][inside], sub[y][inside], marker=st.marker, s=7, color=st.color, alpha=0.35, linewidths=0,
                   zorder=2)
        # runs (and a mean one of them dragged) beyond an axis: marked on its edge, one label per side
        xs = np.append(sub[x].to_numpy(float), means.x.get(v, np.nan))
        ys = np.append(sub[y].to_numpy(float), means.y.get(v, np.nan))
        mark_beyond(ax, xs if xlim is None else np.clip(xs, *xlim), ys, ylim, color=st.color)
        if xlim is not None:  # (a run beyond both axes is marked once, on the y axis' edge)
            on_y = (ys >= ylim[0]) & (ys <= ylim[1])
            mark_beyond(ax, ys[on_y], xs[on_y], xlim, axis="x", color=st.color)
    if not table.empty:
        xy_intervals(ax, table, label_points=False)
    ax.set_ylim(*ylim)
    if xlim is not None:
        ax.set_xlim(*xlim)
    if ylim[0] < 0 < ylim[1]:
        ax.axhline(0, color="0.45", lw=0.6, ls=":", zorder=1)


def stability_plasticity(tidy: pd.DataFrame, variants: Sequence[str], confidence: float) -> Figure | None:
    """Forgetting against plasticity (mean R[j][j]) and against final average bpb: runs and variant means."""
    runs = plasticity_per_run(tidy)
    if runs.empty:
        return None
    shown = [v for v in variants if v in set(runs.variant)]
    fig = new_figure(PAGE_IN, 2.75 + 0.17 * math.ceil(len(shown) / 6))
    left, right = fig.subplots(1, 2, sharey=True)
    _scatter_panel(left, runs, "plasticity", "forgetting", shown, confidence)
    left.set_xlabel("plasticity: mean R[j][j], bpb right after each\ndomain's own phase (lower: learns more)")
    left.set_ylabel("forgetting (bpb; lower is better)")
    _scatter_panel(right, runs, "final_avg_bpb", "forgetting", shown, confidence)
    right.set_xlabel("final average bpb (lower is better)")
    for ax, title in ((left, "stability against plasticity"), (right, "stability against final performance")):
        ax.set_title(title)
    figure_legend(fig, variant_handles(shown, lines=False), ncol=6)
    return fig


def forgetting_vs_updates(run_metrics: Mapping[RunKey, Mapping[str, Any]], variants: Sequence[str],
                          confidence: float) -> Figure | None:
    """Forgetting of every run against its number of agent updates (Σ over agents of the steps it was
    updated, from metrics.json `update_counts`), log scale; variant means with intervals."""
    rows = [{"variant": v, "order": o, "seed": s, "updates": float(sum(m["update_counts"].values())),
             "forgetting": (m.get("scalars") or {}).get("forgetting")}
            for (v, o, s), m in run_metrics.items() if m.get("update_counts")]
    runs = pd.DataFrame(rows).dropna(subset=["forgetting"]) if rows else pd.DataFrame()
    if runs.empty or (runs.updates <= 0).all():
        return None
    runs = runs[runs.updates > 0]
    log = runs.updates.max() / runs.updates.min() > 8  # a log axis only where the counts span an order of magnitude
    shown = [v for v in variants if v in set(runs.variant)]
    fig = new_figure(COLUMN_IN, 2.6 + 0.17 * math.ceil(len(shown) / 3))
    ax = fig.subplots()
    _scatter_panel(ax, runs, "updates", "forgetting", shown, confidence, log_x=log)
    ax.set_xlabel(f"agent updates per run{' (log scale)' if log else ''}\nΣ over agents of the steps it was updated")
    ax.set_ylabel("forgetting (bpb; lower is better)")
    figure_legend(fig, variant_handles(shown, lines=False), ncol=3)
    return fig


__all__ = ["learning_curves", "r_matrix_figure", "mean_r_matrices", "forgetting_matrices", "seen_bpb",
           "plasticity_per_run", "stability_plasticity", "forgetting_vs_updates", "order_label"]
