"""Figures behind `k1 figures` (seaborn; PNG + PDF of each).

Statistics-based panels (points with CIs) read `RESULTS/summary.json` and
`RESULTS/tidy.csv`, so they show exactly the numbers of the tables; curves, R matrices
and trees come from the run directories (`evals.csv`, `metrics.json`, `steps.csv.gz`).
Figures are drawn on `matplotlib.figure.Figure` objects (no pyplot state, always the
headless Agg canvas) and saved without timestamps, so re-running gives identical files.

Besides the figures, `FIGDIR/figures.json` lists every figure with its caption and the
notes about panels that were skipped (e.g. attribution metrics absent); `k1 paper` uses it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # headless even when pyplot is imported later by seaborn
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from k1model.errors import DataError, K1Error
from k1model.analysis.intervals import t_interval
from k1model.io import read_output_table, rerun_hint, write_json
from k1model.analysis.metric_info import metric_info
from k1model.analysis.runs import read_run_file
from k1model.analysis.settings import AnalysisSettings as AnalysisConfig
from k1model.analysis.settings import load_analysis_config
from k1model.report.drawing import RC as _RC
from k1model.report.drawing import draw_tree as _draw_tree
from k1model.report.drawing import palette as _palette
from k1model.report.drawing import save_figure, tree_layout
from k1model.report.drawing import short_name as _short

__all__ = [
    "FORGETTING_METRICS",
    "SPARSITY_METRICS",
    "STABILITY_METRICS",
    "save_figure",
    "tree_layout",
    "load_evals",
    "learning_curves",
    "forgetting_heatmaps",
    "metric_points",
    "update_frequency_trees",
    "responsibility_tree",
    "make_figures",
]

FORGETTING_METRICS = ("final_avg_bpb", "forgetting", "bwt", "fwt")
SPARSITY_METRICS = ("sparsity_param_fraction", "sparsity_agent_fraction")
STABILITY_METRICS = ("attr_grad_loo_spearman", "attr_window_rank_corr", "attr_resample_path_agreement",
                     "attr_randomisation_change", "attr_specialisation_nmi")


# --------------------------------------------------------------------------- inputs


def main_runs(results: Path, cfg: AnalysisConfig) -> list[tuple[Any, Path]]:
    """(planned run, its directory) of the main comparison in the first domain order: curves and R
    matrices of different orders are not averaged together (their phases differ)."""
    from k1model.study.plan import part_runs

    first = "-".join(cfg.params.orders[0])
    return [(r, results / r.path) for r in part_runs(cfg.params, "runs") if r.order_name == first]


def _read_metrics(runs: list[tuple[Any, Path]]) -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    for run, d in runs:
        p = d / "metrics.json"
        if p.is_file():
            m = read_run_file(p)
            if m.get("status", "completed") == "completed":
                out[(run.variant, run.seed)] = m
    if not out:
        raise DataError(f"no completed runs (metrics.json) in {sorted({str(d.parent.parent) for _, d in runs})}")
    return out


def load_evals(runs: list[tuple[Any, Path]], notes: list[str]) -> pd.DataFrame:
    """All runs' evals.csv stacked with variant and seed columns (missing files noted)."""
    frames = []
    for run, d in runs:
        p = d / "evals.csv"
        if not p.is_file():
            notes.append(f"learning curves: no {p}")
            continue
        frames.append(read_output_table(p, rerun_hint(d)).assign(variant=run.variant, seed=run.seed))
    if not frames:
        return pd.DataFrame(columns=["step", "phase_index", "phase", "domain", "bpb", "end_of_phase", "variant", "seed"])
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- figures


def learning_curves(evals: pd.DataFrame, cfg: AnalysisConfig) -> Figure | None:
    """bpb per domain over training steps, mean ± CI band across seeds, phase boundaries dashed."""
    if evals.empty:
        return None
    domains = list(dict.fromkeys(evals["domain"]))
    fig = Figure(figsize=(3.6 * len(domains), 3.2), layout="constrained")
    axes = fig.subplots(1, len(domains), sharey=False, squeeze=False)[0]
    ends = (evals[evals.get("end_of_phase", 0) == 1].groupby("phase_index")["step"].max().sort_index()
            if "end_of_phase" in evals else pd.Series(dtype=float))
    phases = evals.drop_duplicates("phase_index").set_index("phase_index")["phase"].sort_index()
    pal = _palette(cfg.variants)
    for ax, dom in zip(axes, domains):
        sub = evals[evals.domain == dom]
        sns.lineplot(data=sub, x="step", y="bpb", hue="variant", hue_order=[v for v in cfg.variants if v in set(sub.variant)],
                     palette=pal, errorbar=lambda x: t_interval(x, cfg.confidence), ax=ax, legend=ax is axes[-1])
        starts = list(evals.groupby("phase_index")["step"].min().sort_index().to_numpy())
        for b in ends.to_numpy()[:-1]:
            ax.axvline(b, color="0.4", ls="--", lw=0.8)
        for i, x0 in enumerate(starts):
            if i < len(phases):
                ax.text(x0, 1.0, f" {phases.iloc[i]}", transform=ax.get_xaxis_transform(), fontsize=7,
                        va="bottom", ha="left", color="0.3")
        ax.set_title(f"held-out {dom}", pad=12)
        ax.set_ylabel("bpb (lower is better)")
    if axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig


def forgetting_heatmaps(run_metrics: Mapping[tuple[str, int], Mapping[str, Any]], cfg: AnalysisConfig,
                        notes: list[str]) -> Figure | None:
    """Mean R matrix per variant (rows: after phase i, columns: domain j), one shared colour scale."""
    mats, domains = {}, None
    for v in cfg.variants:
        Rs = [np.asarray(m["R"], float) for (vv, _), m in run_metrics.items() if vv == v and "R" in m]
        if not Rs:
            notes.append(f"forgetting heatmap: no R matrix for {v}")
            continue
        mats[v] = np.mean(Rs, axis=0)
        domains = domains or next(m.get("domains") for (vv, _), m in run_metrics.items() if vv == v)
    if not mats:
        return None
    T = next(iter(mats.values())).shape[1]
    domains = list(domains or [f"d{j}" for j in range(T)])
    vmin = min(float(np.nanmin(m)) for m in mats.values())
    vmax = max(float(np.nanmax(m)) for m in mats.values())
    fig = Figure(figsize=(2.9 * len(mats) + 0.8, 2.9), layout="constrained")
    axes = fig.subplots(1, len(mats), squeeze=False)[0]
    for k, (ax, (v, R)) in enumerate(zip(axes, mats.items())):
        sns.heatmap(R, ax=ax, annot=True, fmt=".2f", vmin=vmin, vmax=vmax, cmap="rocket_r", square=True,
                    cbar=k == len(mats) - 1, cbar_kws={"label": "bpb"}, annot_kws={"fontsize": 7},
                    xticklabels=domains, yticklabels=[f"after {d}" for d in domains[: R.shape[0]]])
        ax.set_title(v)
        ax.set_xlabel("evaluated on")
        if k:
            ax.set_yticklabels([])
    return fig


def metric_points(summary: Mapping[str, Any], tidy: pd.DataFrame, metrics: Sequence[str], cfg: AnalysisConfig,
                  notes: list[str], what: str) -> Figure | None:
    """One panel per metric: per-variant mean with its t-interval (from summary.json) and the seeds."""
    present = [m for m in metrics if any((summary.get(v, {}).get(m) or {}).get("n") for v in cfg.variants)]
    for m in metrics:
        if m not in present:
            notes.append(f"{what}: {m} absent or null in every run; panel skipped")
    if not present:
        return None
    pal = _palette(cfg.variants)
    ncols = min(4, len(present))
    nrows = math.ceil(len(present) / ncols)
    fig = Figure(figsize=(3.0 * ncols + 0.4, 2.7 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, m in zip(axes, present):
        info, _ = metric_info(m)
        sub = tidy[(tidy.metric == m) & tidy.value.notna()]
        order = list(cfg.variants)
        # seed dots with a fixed jitter (seaborn's stripplot jitter draws from the global RNG: not reproducible)
        jitter = np.random.default_rng(cfg.rng_seed)
        for i, v in enumerate(order):
            vals = sub.loc[sub.variant == v, "value"].to_numpy(float)
            ax.scatter(i + jitter.uniform(-0.12, 0.12, vals.size), vals, s=14, color=pal[v], alpha=0.6,
                       linewidths=0, zorder=3)
        ax.set_xticks(range(len(order)), order)
        for i, v in enumerate(order):
            s = (summary.get(v) or {}).get(m) or {}
            if not s.get("n"):
                ax.text(i, 0.5, "n/a", transform=ax.get_xaxis_transform(), ha="center", fontsize=7, color="0.4",
                        in_layout=False)
                continue
            mean, lo, hi = s["mean"], s.get("ci_low"), s.get("ci_high")
            yerr = None if lo is None else [[mean - lo], [hi - mean]]
            ax.errorbar([i], [mean], yerr=yerr, fmt="o", color="black", ms=5, capsize=4, lw=1.2, zorder=5)
        arrow = {"lower": "↓", "higher": "↑"}.get(info.direction, "")
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.ticklabel_format(axis="y", useOffset=False)
        ys = sub.value.to_numpy(float)
        if ys.size and np.ptp(ys) <= 1e-9 * max(1.0, float(np.abs(ys).max())):  # (near-)constant: no float-noise axis
            c = float(ys.mean())
            ax.set_ylim(c - 0.05 * max(abs(c), 0.02), c + 0.05 * max(abs(c), 0.02))
        ax.set_title(f"{m.removeprefix('attr_')} {arrow}", fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel(info.unit)
        ax.tick_params(axis="x", rotation=30)
        lo_y, hi_y = ax.get_ylim()
        if m in ("forgetting", "bwt", "fwt") and lo_y <= 0 <= hi_y:  # zero line only where it is in range
            ax.axhline(0, color="0.5", lw=0.8, ls=":")
    for ax in axes[len(present):]:
        ax.set_visible(False)
    fig.suptitle(f"{what}: mean and {cfg.confidence:.0%} t-interval across runs (dots: runs)", fontsize=9)
    return fig


def update_frequency_trees(run_metrics: Mapping[tuple[str, int], Mapping[str, Any]], cfg: AnalysisConfig,
                           notes: list[str]) -> Figure | None:
    """Per variant, the agent tree coloured by the fraction of steps each agent was updated (seed mean)."""
    panels = {}
    for v in cfg.variants:
        freqs: dict[str, list[float]] = {}
        union: dict[str, dict[str, Any]] = {}  # trees that changed differ between seeds: every agent any seed had
        rank = {"active": 0, "merged": 1, "pruned": 2, "inactive": 3}
        for (vv, _), m in run_metrics.items():
            if vv != v or "update_counts" not in m or not m.get("steps"):
                continue
            for a in m.get("agents") or []:
                if a["name"] not in union or rank.get(a.get("status"), 0) < rank.get(union[a["name"]].get("status"), 0):
                    union[a["name"]] = dict(a)
            for name, c in m["update_counts"].items():
                freqs.setdefault(name, []).append(float(c) / float(m["steps"]))
        agents = list(union.values())
        if not freqs or not agents:
            notes.append(f"update-frequency tree: no update_counts/agents for {v}")
            continue
        panels[v] = (agents, {n: float(np.mean(f)) for n, f in freqs.items()})
    if not panels:
        return None
    n_leaves = max(sum(1 for a in ag if not any(b.get("parent") == a["name"] for b in ag)) for ag, _ in panels.values())
    width = max(3.2, 0.45 * n_leaves + 0.8)
    ncols = min(3 if width < 5 else 2 if width < 9 else 1, len(panels))  # keep the figure ≤ ~16 in wide
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(width * ncols + 0.8, (3.4 if n_leaves > 8 else 2.9) * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    norm = Normalize(0.0, 1.0)
    cmap = sns.color_palette("viridis", as_cmap=True)
    sc = None
    for ax, (v, (agents, f)) in zip(axes, panels.items()):
        labels = {n: f"{_short(n)}\n{f.get(n, math.nan):.0%}" for n in f}
        sc = _draw_tree(ax, agents, f, norm, cmap, labels)
        ax.set_title(v)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.colorbar(sc, ax=list(axes[: len(panels)]), label="fraction of steps updated",
                 shrink=min(0.8, 0.2 + 1.2 / nrows), aspect=25)
    return fig


def responsibility_tree(run: Path, agents: Sequence[Mapping[str, Any]], notes: list[str]) -> tuple[Figure | None, str]:
    """The last step of one run: colour = gradient score, label = update % of that step, culprit ringed."""
    path = run / "steps.csv.gz"
    if not path.is_file():
        notes.append(f"responsibility tree: no {path}")
        return None, ""
    steps = read_output_table(path, rerun_hint(run), keep_default_na=False, na_values=[""])
    if steps.empty:
        notes.append(f"responsibility tree: {path} has no rows")
        return None, ""
    last = steps.iloc[-1]
    names = [a["name"] for a in agents]
    grads = {n: float(last[f"grad_{n}"]) for n in names if f"grad_{n}" in last.index}
    try:
        scales = json.loads(last["scales"]) if isinstance(last.get("scales"), str) else {}
    except json.JSONDecodeError:
        scales = {}
    culprit = last.get("culprit")
    culprit = culprit if isinstance(culprit, str) and culprit else None
    path_names = [p.strip() for p in str(last.get("path") or "").split(" > ") if p.strip()]
    finite = [g for g in grads.values() if math.isfinite(g)]
    norm = Normalize(min(finite) if finite else 0.0, max(finite) if finite else 1.0)
    labels = {n: f"{_short(n)}\n{100 * float(scales.get(n, 0.0)):.0f}%" for n in names}
    n_leaves = sum(1 for a in agents if not any(b.get("parent") == a["name"] for b in agents))
    fig = Figure(figsize=(max(4.5, 0.5 * n_leaves + 1.5), 3.4), layout="constrained")
    ax = fig.subplots()
    sc = _draw_tree(ax, agents, grads, norm, sns.color_palette("mako_r", as_cmap=True), labels,
                    highlight=path_names, culprit=culprit)
    fig.colorbar(sc, ax=ax, label="gradient score ‖g_k‖", shrink=0.8)
    step = int(last["step"]) if "step" in last.index else -1
    ax.set_title(f"step {step} ({last.get('domain', '')}): culprit {culprit or 'none'}; labels: update % this step",
                 fontsize=9)
    return fig, f"{run.parent.name}/{run.name} step {step}"


# --------------------------------------------------------------------------- the command

_CAPTIONS = {
    "learning_curves": "Held-out bpb per domain during training (mean and {ci} t-interval band across seeds); "
                       "dashed lines: phase boundaries.",
    "forgetting_heatmaps": "Mean R matrix per variant: bpb on each domain (columns) after each phase (rows).",
    "forgetting": "Final average bpb, forgetting, BWT and FWT per variant: mean with {ci} t-interval; dots are runs.",
    "sparsity": "Measured update sparsity per variant (fraction of agent parameters / agents changed per step).",
    "update_frequency": "Per-agent update frequency (fraction of steps with scale > 0), averaged over seeds.",
    "attribution_stability": "Attribution stability metrics per variant: mean with {ci} t-interval.",
    "planted_faults": "Planted-fault attribution accuracy per variant: mean with {ci} t-interval.",
    "responsibility_tree": "Responsibility tree at the last training step of {run}: colour = gradient score, "
                           "label = update scale, red ring = culprit, red edges = error path.",
    "sensitivity": "Sensitivity sweep: each metric against each factor's value, one factor at a time around the "
                   "profile's settings (mean and {ci} CI over the sweep seeds; dashed: dense).",
    "structure": "Structural plasticity (k1_grow, first domain order): agent weights of each run's live tree over "
                 "training (dashed: the fixed tree of k1_full), kept and rolled-back events per run, and one run's "
                 "final tree (green ring: grown, x: pruned, +: merged; colour and label: fraction of steps updated).",
    "tuned_vs_specified": "Forgetting and final bpb of every variant at the profile's settings and at its tuned "
                          "settings (mean and {ci} CI).",
    "forgetting_domains": "Forgetting of each domain (final − best earlier bpb) per domain order and variant "
                          "(mean and {ci} t-interval over seeds); dashed: the validity margin the reference "
                          "({run}, outlined) must reach for a forgetting claim to be testable.",
    "decomposition": "Where forgetting lives: bpb lost on earlier domains since their own phase (BWT), and what "
                     "putting back the shared weights or the agents of that phase end recovers (swap test; mean "
                     "and {ci} t-interval).",
}


def make_figures(params: str | Path | Mapping[str, Any], results: str | Path, out: str | Path) -> dict[str, Any]:
    """Draw every figure into `out`; returns {"files": [...], "figures": {name: ...}, "notes": [...]}."""
    cfg = load_analysis_config(params)
    results, out = Path(results), Path(out)
    runs = main_runs(results, cfg)
    for p in (results / "summary.json", results / "tidy.csv"):
        if not p.is_file():
            raise K1Error(f"{p} not found; run `k1 aggregate` first")
    summary = json.loads((results / "summary.json").read_text(encoding="utf-8"))
    tidy = pd.read_csv(results / "tidy.csv")
    run_metrics = _read_metrics(runs)
    notes: list[str] = []
    ci = f"{cfg.confidence:.0%}"
    figs: dict[str, tuple[Figure | None, str]] = {}
    with sns.axes_style("whitegrid"), matplotlib.rc_context(_RC):
        figs["learning_curves"] = (learning_curves(load_evals(runs, notes), cfg), "")
        figs["forgetting_heatmaps"] = (forgetting_heatmaps(run_metrics, cfg, notes), "")
        figs["forgetting"] = (metric_points(summary, tidy, FORGETTING_METRICS, cfg, notes, "forgetting"), "")
        figs["sparsity"] = (metric_points(summary, tidy, SPARSITY_METRICS, cfg, notes, "sparsity"), "")
        figs["update_frequency"] = (update_frequency_trees(run_metrics, cfg, notes), "")
        attr = sorted(set(tidy.metric[tidy.metric.str.startswith("attr_")]))
        stab = [m for m in STABILITY_METRICS if m in attr] + [
            m for m in attr if metric_info(m)[0].group == "attribution" and m not in STABILITY_METRICS
            and m != "attr_specialisation_p"]
        faults = [m for m in attr if metric_info(m)[0].group == "faults"]
        if not attr:
            notes.append("attribution: no attr_* metrics in tidy.csv (no attribution.json); attribution figures skipped")
        figs["attribution_stability"] = (metric_points(summary, tidy, stab, cfg, notes, "attribution stability")
                                         if stab else None, "")
        figs["planted_faults"] = (metric_points(summary, tidy, faults, cfg, notes, "planted faults")
                                  if faults else None, "")
        if attr and not faults:
            notes.append("planted faults: no attr_fault_* metrics; figure skipped")
        ref = "k1_full" if "k1_full" in cfg.variants else cfg.variants[0]
        key = (ref, cfg.seeds[0])
        dirs = {(r.variant, r.seed): d for r, d in runs}
        if key in run_metrics and run_metrics[key].get("agents"):
            figs["responsibility_tree"] = responsibility_tree(dirs[key], run_metrics[key]["agents"], notes)
        else:
            notes.append(f"responsibility tree: run {ref}/seed{cfg.seeds[0]} missing or without agents")
            figs["responsibility_tree"] = (None, "")
        from k1model.method.variants import VARIANTS
        from k1model.report.structure_figures import structure_figure
        from k1model.report.study_figures import sensitivity, tuned_vs_specified

        first_order = "-".join(cfg.params.orders[0])
        growing = [(v, s, first_order, m) for (v, s), m in sorted(run_metrics.items())
                   if "plasticity" in VARIANTS[v].plugins]
        fixed = [m["scalars"].get("active_agent_params") for (v, _), m in run_metrics.items() if v == "k1_full"]
        fixed = [f for f in fixed if f is not None]
        figs["structure"] = (structure_figure(growing, float(np.mean(fixed)) if fixed else None, notes), "")

        figs["sensitivity"] = (sensitivity(summary["sweep"], cfg.confidence) if "sweep" in summary else None, "")
        figs["tuned_vs_specified"] = (tuned_vs_specified(summary, cfg.variants, cfg.confidence), "")
        from k1model.report.forgetting_figures import decomposition_figure, forgetting_domains

        domains_csv = results / "tables" / "forgetting_domains.csv"
        validity = summary.get("validity") or {}
        figs["forgetting_domains"] = (forgetting_domains(pd.read_csv(domains_csv), cfg.variants, validity.get("margin"),
                                                         validity.get("reference"))
                                      if domains_csv.is_file() else None, validity.get("reference", ""))
        figs["decomposition"] = (decomposition_figure(summary, cfg.variants), "")
        files: list[Path] = []
        index: dict[str, Any] = {}
        out.mkdir(parents=True, exist_ok=True)
        for name, (fig, extra) in figs.items():
            if fig is None:
                continue
            written = save_figure(fig, out, name)
            files += written
            index[name] = {"png": f"{name}.png", "pdf": f"{name}.pdf",
                           "caption": _CAPTIONS[name].format(ci=ci, run=extra)}
    write_json(out / "figures.json", {"figures": index, "notes": notes})
    files.append(out / "figures.json")
    return {"files": [str(p) for p in files], "figures": index, "notes": notes}
