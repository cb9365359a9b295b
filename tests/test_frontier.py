"""Stability-plasticity frontiers (k1model/analysis/frontier.py): the Pareto set, interpolation, the gap at a
method's plasticity with its interval, and dominance."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from k1model.analysis.frontier import PointStats, dominance, frontier_gap, frontier_table, interpolate, pareto


def point(name: str, x: float, y: float, n: int = 3) -> PointStats:
    return PointStats(name, n, x, y, np.eye(2) * 1e-4)


def test_pareto_keeps_the_settings_nothing_beats_on_both_axes():
    pts = [point("a", 2.0, 3.0), point("b", 2.5, 2.0), point("c", 3.0, 2.5), point("d", 3.5, 1.0), point("e", 2.0, 3.5)]
    assert [p.name for p in pareto(pts)] == ["a", "b", "d"]  # c is beaten by b, e by a


def test_interpolation_is_linear_between_frontier_points_and_never_extrapolates():
    front = pareto([point("a", 2.0, 3.0), point("b", 3.0, 1.0)])
    assert interpolate(front, 2.25) == pytest.approx(2.5)
    assert interpolate(front, 2.0) == pytest.approx(3.0)
    assert interpolate(front, 1.9) is None and interpolate(front, 3.1) is None


def test_gap_by_hand_and_its_delta_method_variance():
    a = PointStats("a", 4, 2.0, 3.0, np.array([[0.01, 0.0], [0.0, 0.04]]))
    b = PointStats("b", 4, 3.0, 1.0, np.array([[0.01, 0.0], [0.0, 0.04]]))
    m = PointStats("m", 9, 2.5, 1.5, np.array([[0.0, 0.0], [0.0, 0.09]]))
    g = frontier_gap([a, b], m, 0.95)
    assert g["gap"] == pytest.approx(2.0 - 1.5)  # halfway: y_ref = 2.0
    slope, lam = -2.0, 0.5
    var = ((-slope * (1 - lam)) ** 2 * 0.01 + (1 - lam) ** 2 * 0.04) * 2 + 0.09  # a, b, then the method
    assert g["se"] == pytest.approx(np.sqrt(var))
    assert g["ci_low"] < g["gap"] < g["ci_high"] and g["between"] == ["a", "b"]
    assert frontier_gap([a, b], PointStats("m", 9, 3.5, 1.0, m.cov), 0.95)["status"] == "outside"


def _frontier_runs(rng, gap: float, n_ref: int = 3, n_method: int = 12, sd: float = 0.05) -> pd.DataFrame:
    """A reference frontier y = 4 - x at four settings and a method at x = 2.5 that forgets `gap` less."""
    rows = []
    for i, x in enumerate([2.0, 2.4, 2.8, 3.2]):
        for s in range(n_ref):
            xs = x + rng.normal(0, sd)
            rows.append(("dense", f"lr{i}", "learning_rate", i, s, xs, 4 - xs + rng.normal(0, sd), 3.0))
    for s in range(n_method):
        xs = 2.5 + rng.normal(0, sd)
        rows.append(("k1_full", "base", None, None, s, xs, 4 - xs - gap + rng.normal(0, sd), 3.0))
    return pd.DataFrame(rows, columns=["variant", "point", "knob", "value", "seed", "plasticity", "forgetting",
                                       "final_avg_bpb"])


def test_the_gap_interval_keeps_its_coverage_at_three_runs_per_setting():
    rng = np.random.default_rng(1)
    hits, n = 0, 400
    for _ in range(n):
        cells = _frontier_runs(rng, gap=0.1)
        ref = [PointStats.of(p, g.plasticity, g.forgetting) for p, g in cells[cells.variant == "dense"].groupby("point")]
        m = cells[cells.variant == "k1_full"]
        g = frontier_gap(ref, PointStats.of("base", m.plasticity, m.forgetting), 0.95)
        if g["status"] == "ok":
            hits += g["ci_low"] <= 0.1 <= g["ci_high"]
    assert 0.92 <= hits / n <= 0.985  # nominal 0.95 (the Pareto set is read off noisy means: a small bias)


@pytest.mark.parametrize("gap, verdict", [(0.3, "dominates"), (-0.3, "dominated"), (0.0, "neither")])
def test_dominance_verdicts(gap, verdict):
    cells = _frontier_runs(np.random.default_rng(0), gap=gap, sd=0.02)
    doc = dominance(cells, "k1_full", "dense", "forgetting", 0.95)
    assert doc["verdict"] == verdict and doc["compared"] == 1


def test_frontier_table_marks_the_frontier():
    cells = _frontier_runs(np.random.default_rng(0), gap=0.0, sd=0.001)
    table = frontier_table(cells, 0.95)
    assert list(table.columns[:5]) == ["variant", "point", "knob", "value", "n"]
    assert table.set_index(["variant", "point"]).loc[("dense", "lr0"), "n"] == 3
    assert table.on_forgetting_frontier.all()  # y = 4 - x: every setting is on its method's frontier
