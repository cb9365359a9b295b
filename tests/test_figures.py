"""The figures as printed: every figure of the tiny profile (and of a study with every variant in two
orders of four domains, where crowded labels show) is drawn from fake runs and checked through
matplotlib's own text extents: no two texts overlap, none is cut off by the figure's edge, every
figure is one column or the full page wide, every quantitative axis says its unit, every order is
drawn and named, a diverged run neither stretches an axis nor goes unmarked, and no band goes below
0 bpb. Plus the variant styles (distinct, stable, ready for variants added later), the overlap
checker itself, the x ± CI against y ± CI helper, and the report/DVC lists of figures."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from fake_runs import write_fake_study
from k1model.analysis.aggregate import aggregate
from k1model.report import drawing as D
from k1model.report import figures as F
from k1model.report.text_layout import layout_problems, placed_texts

ROOT = Path(__file__).resolve().parents[1]
DIVERGED_BPB = 12.0  # the spike of the fake diverged run's learning curves (fake_runs.write_fake_run)


def _wide_params(path: Path) -> Path:
    """params/forgetting.yaml's main comparison (11 variants, 2 orders of 4 domains) with 2 seeds and one
    reference: the crowded case, kept fast."""
    p = yaml.safe_load((ROOT / "params/forgetting.yaml").read_text())
    p["experiment"]["seeds"] = [0, 1]
    p["analysis"]["references"] = ["dense"]
    p.pop("sweep"), p.pop("tuning")
    path.write_text(yaml.safe_dump(p, sort_keys=False))
    return path


def _draw(params: Path, root: Path, diverged: tuple[str, int]) -> dict:
    """Fake runs of every planned run, `k1 aggregate`, then `k1 figures` with saving replaced by keeping
    the drawn figures (the layout is drawn either way; PNG/PDF encoding is what the test skips)."""
    results = write_fake_study(params, root / "results", diverged=diverged)
    aggregate(params, results, results)
    drawn: dict[str, Figure] = {}

    def keep(fig: Figure, figdir: Path, name: str) -> list[Path]:
        drawn[name] = fig
        return [figdir / f"{name}.png", figdir / f"{name}.pdf"]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F, "save_figure", keep)
        index = F.make_figures(params, results, root / "figures")
    return {"figures": drawn, "index": index, "params": params}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _draw(ROOT / "params/tiny.yaml", tmp_path_factory.mktemp("tiny"), diverged=("k1_full", 0))


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("wide")
    return _draw(_wide_params(root / "wide.yaml"), root, diverged=("random_path", 0))


STUDIES = ["tiny", pytest.param("wide", marks=pytest.mark.slow)]


def test_every_figure_of_the_tiny_profile_is_drawn(tiny):
    orders = ["prose-code", "code-prose"]
    expected = {"learning_curves", "seen_bpb", "stability_plasticity", "forgetting_updates", "forgetting", "sparsity",
                "update_frequency", "attribution_stability", "planted_faults", "responsibility_tree", "structure",
                "sensitivity", "tuned_vs_specified", "forgetting_domains", "decomposition"}
    expected |= {f"{kind}_{o}" for kind in ("r_matrices", "forgetting_matrices") for o in orders}
    assert set(tiny["figures"]) == expected
    assert set(tiny["index"]["figures"]) == expected
    for name, entry in tiny["index"]["figures"].items():  # every caption names what it draws
        assert entry["caption"] and "{" not in entry["caption"], name
    captions = {name: entry["caption"] for name, entry in tiny["index"]["figures"].items()}
    for kind in ("r_matrices", "forgetting_matrices"):  # a per-order figure names its order
        assert "prose → code" in captions[f"{kind}_prose-code"] and "code" not in captions[f"{kind}_prose-code"].split(
            "prose → code")[0]
        assert "code → prose" in captions[f"{kind}_code-prose"]


@pytest.mark.parametrize("study", STUDIES)
def test_no_text_overlaps_another_or_is_cut_off(study, request):
    built = request.getfixturevalue(study)
    with D.figure_style():  # (measured as drawn and printed)
        problems = {name: layout_problems(fig) for name, fig in built["figures"].items()}
    assert not {n: p for n, p in problems.items() if p}
    assert not [n for n in built["index"]["notes"] if "overlaps" in n or "cut off" in n]


@pytest.mark.parametrize("study", STUDIES)
def test_figures_are_drawn_at_their_printed_size(study, request):
    for name, fig in request.getfixturevalue(study)["figures"].items():
        width, height = fig.get_size_inches()
        assert width in (D.COLUMN_IN, D.PAGE_IN), (name, width)
        assert 1.0 <= height <= D.MAX_HEIGHT_IN, (name, height)
        sizes = {t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text"))
                 if t.get_text().strip() and t.get_visible()}
        assert min(sizes) >= 5.0, (name, min(sizes))  # legible when printed


def _numeric(texts: list[str]) -> bool:
    return any(re.fullmatch(r"[−\-+]?[\d.]+(e[−\-+]?\d+)?%?|\$.*\$", t.strip()) for t in texts if t.strip())


@pytest.mark.parametrize("study", STUDIES)
def test_every_quantitative_axis_names_its_unit(study, request):
    for name, fig in request.getfixturevalue(study)["figures"].items():
        for ax in fig.axes:
            if not ax.get_visible() or not ax.axison:
                continue
            for axis in (ax.xaxis, ax.yaxis):
                labels = [t.get_text() for t in axis.get_ticklabels() if t.get_visible()]
                if axis.get_visible() and _numeric(labels):
                    shared = [a for a in (ax.get_shared_x_axes() if axis is ax.xaxis else ax.get_shared_y_axes())
                              .get_siblings(ax)]
                    names = {(a.xaxis if axis is ax.xaxis else a.yaxis).get_label_text() for a in shared}
                    assert any(n.strip() for n in names), (name, ax.get_title(), axis.axis_name, labels[:3])


def test_every_order_is_drawn_and_named(tiny, wide):
    for built, orders in ((tiny, ["prose → code", "code → prose"]),
                          (wide, ["tales → code → science → wiki", "wiki → science → code → tales"])):
        curves = built["figures"]["learning_curves"]
        rows = [ax.get_ylabel() for ax in curves.axes if ax.get_ylabel()]
        for order in orders:
            assert any(order in r for r in rows), (order, rows)
            assert order in built["index"]["figures"]["learning_curves"]["caption"]
        titles = [ax.get_title() for ax in built["figures"]["seen_bpb"].axes]
        assert all(any(order in t for t in titles) for order in orders), titles


def test_a_diverged_run_neither_stretches_the_axis_nor_goes_unmarked(wide):
    curves = wide["figures"]["learning_curves"]
    top = curves.axes[0].get_ylim()[1]
    assert top < DIVERGED_BPB - 2, top  # the spike to 12 bpb is off the axis...
    marks = [c for ax in curves.axes for c in ax.collections if getattr(c, "get_paths", None)
             and c.get_offsets().size and np.isclose(np.asarray(c.get_offsets())[:, 1], top).all()]
    assert marks  # ...and marked on its edge
    bwt = next(ax for ax in wide["figures"]["forgetting"].axes if ax.get_title().startswith("BWT"))
    lo, hi = bwt.get_xlim()
    assert lo > -1.0, (lo, hi)  # the diverged run's BWT (about −2) does not set the axis
    assert any(t.get_text().startswith("−") for t in bwt.texts)  # its value is written at the edge


def test_no_band_goes_below_zero_bpb(tiny, wide):
    for built in (tiny, wide):
        for ax in built["figures"]["learning_curves"].axes:
            for band in (c for c in ax.collections if isinstance(c, PolyCollection)):
                for path in band.get_paths():
                    assert path.vertices[:, 1].min() >= 0.0


def test_each_variant_has_one_distinct_style_also_variants_added_later():
    from k1model.method.variants import VARIANTS

    names = sorted(VARIANTS) + ["throttled", "throttled_0.5"]
    styles = {v: D.variant_style(v) for v in names}
    looks = [(s.color, s.marker) for s in styles.values()]
    assert len(set(looks)) == len(looks), styles
    pinned = [s.color for v, s in D.VARIANT_STYLES.items()]
    assert len(set(pinned)) == len(pinned)  # the study's variants differ by colour, not only by marker
    assert D.variant_style("throttled") == D.variant_style("throttled")  # stable between figures
    assert styles["throttled"].color not in pinned
    assert D.variant_style("k1_full") == D.VARIANT_STYLES["k1_full"]
    assert D.palette(["dense"])["dense"] == D.palette(["k1_full", "joint", "dense"])["dense"]  # whatever is beside it


@D.figure_style()
def test_the_layout_check_sees_overlapping_and_cut_off_text():
    fig = D.new_figure(D.COLUMN_IN, 2.0)
    ax = fig.subplots()
    ax.set_xticks([0.0, 0.01], ["a long tick label", "another long one"])
    ax.set_title("a title far too long to fit in a one-column figure of three and a half inches", loc="left")
    problems = layout_problems(fig)
    assert any("overlaps" in p and "tick label" in p for p in problems), problems
    assert any("cut off" in p and "title" in p for p in problems), problems
    clean = D.new_figure(D.COLUMN_IN, 2.0)
    clean.subplots().set_xlabel("bpb")
    assert layout_problems(clean) == [] and placed_texts(clean)


@D.figure_style()
def test_xy_intervals_draws_one_line_per_method_through_its_settings():
    import pandas as pd

    table = pd.DataFrame({"method": ["dense"] * 3 + ["k1_full"] * 2,
                          "setting": ["lr 3e-4", "lr 1e-3", "lr 3e-3", "lr 3e-3", "lr 1e-2"],
                          "x": [3.1, 2.6, 2.5, 3.5, 3.6], "x_low": [3.0, 2.5, 2.4, 3.4, 3.5],
                          "x_high": [3.2, 2.7, 2.6, 3.6, 3.7], "y": [1.6, 2.3, 2.5, 1.6, 1.7],
                          "y_low": [1.4, 2.1, 2.3, 1.5, 1.5], "y_high": [1.8, 2.5, 2.7, 1.7, 1.9]})
    fig = D.new_figure(D.COLUMN_IN, 2.6)
    ax = fig.subplots()
    D.xy_intervals(ax, table)
    ax.set_xlabel("mean R[j][j] (bpb)")
    ax.set_ylabel("forgetting (bpb)")
    lines = {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
    assert set(lines) == {"dense", "k1_full"}
    assert list(lines["dense"].get_xdata()) == [3.1, 2.6, 2.5]  # in the table's order (along the knob)
    assert lines["dense"].get_color() == D.variant_style("dense").color
    assert sorted(t.get_text() for t in ax.texts) == sorted(table.setting)
    assert layout_problems(fig) == []


def test_the_report_and_dvc_list_the_figures_the_library_draws():
    rst = (ROOT / "workflow/report/figures.rst").read_text()
    for kind in F.CAPTIONS:
        assert f'"{kind}"' in rst, kind
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    default = "-".join(yaml.safe_load((ROOT / "params/default.yaml").read_text())["data"]["domains"])
    names = {Path(p).stem for p in dvc["plots"]}
    kinds = {n if n in F.CAPTIONS else n.removesuffix(f"_{default}") for n in names}
    assert kinds <= set(F.CAPTIONS), kinds - set(F.CAPTIONS)
    assert {"learning_curves", "r_matrices", "forgetting_matrices", "seen_bpb", "stability_plasticity",
            "forgetting_updates"} <= kinds


def test_outliers_are_judged_within_their_group_and_limits_keep_the_estimates():
    values = [0.50, 0.55, 0.60, 0.52, -3.88,    # random_path: one diverged run
              0.90, 0.95, 0.92, 0.93, 0.91,     # another variant, far from the first: not an outlier
              0.10, 0.12, 0.11, 0.13, 0.10]
    groups = ["random_path"] * 5 + ["k1_full"] * 5 + ["replay"] * 5
    assert list(np.flatnonzero(D.outliers(values, groups))) == [4]
    assert not D.outliers(values[:4] + values[5:], groups[:4] + groups[5:]).any()
    lo, hi = D.robust_limits(values, groups=groups)
    assert -0.1 < lo < 0.1 and 0.95 < hi < 1.1  # the diverged run does not set the axis
    lo, hi = D.robust_limits(values, groups=groups, keep=[-0.3])  # a mean to keep stays on it
    assert lo < -0.3
    # ... but a mean the diverged run dragged outside the rest of its row is marked, not kept
    assert D.kept_means(values, groups, [("random_path", -0.3), ("k1_full", 0.92), ("joint", 5.0)]) == [0.92, 5.0]
    assert not D.outliers([1.0] * 6).any() and D.robust_limits([1.0] * 6)[0] < 1.0 < D.robust_limits([1.0] * 6)[1]
    assert D.robust_limits([0.0, 0.5, 1.0], floor=0.0)[0] == 0.0  # padding never crosses the floor


def test_an_interval_reaches_the_axis_only_as_far_as_half_the_span_of_the_data():
    assert D.robust_limits([0.1, 0.2, 0.3], reach=[0.05, 0.35], pad=0.0) == pytest.approx((0.05, 0.35))
    lo, hi = D.robust_limits([0.1, 0.2, 0.3], reach=[-41.0, 35.0], pad=0.0)  # a t-interval at n = 2
    assert (lo, hi) == pytest.approx((0.0, 0.4))
