"""Statistics with known answers, and `k1 aggregate` on fake runs."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fake_runs import ORDER, run_path, write_fake_runs, write_params
from k1model.analysis import stats as S
from k1model.analysis.aggregate import aggregate, load_summary
from k1model.analysis.metric_info import metric_info
from k1model.analysis.settings import load_analysis_config
from k1model.cli import main
from k1model.errors import ConfigError, DataError, K1Error

# --------------------------------------------------------------------------- pure functions


def test_holm_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 15))
        p[rng.integers(len(p))] = p[0]  # ties
        np.testing.assert_allclose(S.holm(p), multipletests(p, method="holm")[1])


def test_holm_leaves_nan_out_of_the_family():
    p = np.array([0.01, np.nan, 0.04])
    out = S.holm(p)
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])


def test_hedges_g_unpaired_by_hand():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0, 6.0]
    sp = math.sqrt((3 * (5 / 3) + 4 * 2.5) / 7)  # pooled SD from ddof-1 variances 5/3 and 2.5
    j = 1 - 3 / (4 * 9 - 9)
    assert S.hedges_g(x, y) == pytest.approx(j * (2.5 - 4.0) / sp)
    assert S.hedges_g(x, y) == pytest.approx(-0.910840, abs=1e-6)
    assert math.isnan(S.hedges_g([1.0, 1.0], [1.0, 1.0]))  # zero SD: undefined, not inf


def test_hedges_g_paired_by_hand():
    x, y = [1.0, 2.0, 4.0], [0.0, 0.0, 0.0]
    d_z = (7 / 3) / math.sqrt(7 / 3)  # mean / sd of the differences
    assert S.hedges_g_paired(x, y) == pytest.approx((1 - 3 / 7) * d_z)
    assert math.isnan(S.hedges_g_paired([1.0, 2.0], [0.0, 0.0]))


def test_probability_of_improvement_is_direction_aware():
    x, y = [1.0, 2.0], [2.0, 3.0]  # pairs: 1<2, 1<3, 2=2, 2<3
    assert S.probability_of_improvement(x, y, "lower") == pytest.approx(3.5 / 4)
    assert S.probability_of_improvement(x, y, "higher") == pytest.approx(0.5 / 4)


def test_iqm_like_rliable():
    assert S.iqm(np.arange(1.0, 9.0), axis=None) == pytest.approx(4.5)  # mean of 3..6


def test_wilcoxon_small_n_and_all_zero():
    res = S.wilcoxon_test(np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.5, 3.5]))
    assert res["p"] == pytest.approx(0.25) and res["min_p"] == pytest.approx(0.25)
    assert "smallest attainable p" in res["note"]
    zero = S.wilcoxon_test(np.ones(4), np.ones(4))
    assert zero["p"] == 1.0 and "zero" in zero["note"]


def test_wilcoxon_with_ties_equals_scipy():
    """The vectorised exact test with tied differences gives scipy's own p-values (scipy runs the same
    sign-flip enumeration with a Python-level statistic, 50x slower)."""
    from scipy import stats

    rng = np.random.default_rng(3)
    for n in (4, 7, 10):
        for _ in range(3):
            x, y = np.round(rng.normal(size=n), 1), np.round(rng.normal(size=n), 1)
            y[0] = x[0]  # a zero difference, dropped
            ours, theirs = S.wilcoxon_test(x, y), stats.wilcoxon(x, y, zero_method="wilcox")
            assert ours["p"] == pytest.approx(theirs.pvalue, abs=1e-12)
            assert ours["stat"] == pytest.approx(theirs.statistic)


def test_bootstrap_is_stratified():
    rng = np.random.default_rng(0)
    dist = S.stratified_bootstrap([np.zeros(3), np.ones(5)], lambda a, b: b.mean(axis=1) - a.mean(axis=1), rng, 50)
    np.testing.assert_array_equal(dist, np.ones(50))  # strata never mix


def test_describe_handles_one_and_zero_values():
    rng = np.random.default_rng(0)
    one = S.describe(np.array([2.0, np.nan]), rng, 100, 0.95)
    assert one["n"] == 1 and one["mean"] == 2.0 and math.isnan(one["ci_low"])
    assert S.describe(np.array([np.nan]), rng, 100, 0.95)["n"] == 0


def test_metric_info_defaults_unknown_to_lower():
    assert metric_info("attr_fault_top1_grad")[0].direction == "higher"
    assert metric_info("attr_fault_top1_newmethod") == (metric_info("attr_fault_top1_x")[0], True)
    info, known = metric_info("something_new")
    assert info.direction == "lower" and not known


# --------------------------------------------------------------------------- aggregate on fake runs


@pytest.fixture()
def runs(tmp_path: Path) -> tuple[Path, Path]:
    write_fake_runs(tmp_path / "results" / "runs", steps_per_phase=10, eval_interval=5)
    return write_params(tmp_path / "params.yaml"), tmp_path / "results" / "runs"


def _strict_json(path: Path) -> dict:
    def bad(c: str) -> None:
        raise AssertionError(f"non-JSON constant {c} in {path}")

    return json.loads(path.read_text(), parse_constant=bad)


def test_aggregate_writes_every_table_and_a_clean_summary(runs, tmp_path):
    params, runs_dir = runs
    out = tmp_path / "results"
    res = aggregate(params, runs_dir.parent, out)
    for name in ("summary", "comparisons", "comparisons_key", "forgetting", "lm", "sparsity", "attribution", "faults",
                 "cost"):
        for ext in ("csv", "md", "tex"):
            assert (out / "tables" / f"{name}.{ext}").stat().st_size > 0, name
    tidy = pd.read_csv(out / "tidy.csv")
    assert list(tidy.columns) == ["part", "point", "variant", "order", "seed", "metric", "value"]
    assert set(tidy.variant) == {"k1_full", "dense", "random_path"} and set(tidy.seed) == {0, 1, 2}

    summary = _strict_json(out / "summary.json")
    assert summary["n_seeds"] == 3 and summary["failed_runs"] == []
    # summary numbers are the tidy table's numbers
    x = tidy[(tidy.variant == "dense") & (tidy.metric == "forgetting")].value
    assert summary["dense"]["forgetting"]["mean"] == pytest.approx(x.mean())
    assert summary["dense"]["forgetting"]["median"] == pytest.approx(x.median())
    assert summary["dense"]["forgetting"]["ci_low"] <= x.mean() <= summary["dense"]["forgetting"]["ci_high"]
    # the planted story: dense forgets more than k1_full
    assert summary["k1_full"]["forgetting"]["mean"] < summary["dense"]["forgetting"]["mean"]
    assert "comparisons" not in summary  # kept small for `dvc metrics show`; comparisons.json holds them
    comp = load_summary(out)["comparisons"]["dense"]["k1_full"]["forgetting"]
    assert comp["mean_diff"] < 0 and comp["poi"] == 1.0 and comp["n_pairs"] == 3
    assert comp["wilcoxon_p"] == pytest.approx(0.25) and comp["wilcoxon_min_p"] == pytest.approx(0.25)
    assert comp["wilcoxon_p_holm"] >= comp["wilcoxon_p"]
    # null attribution scalars (dense has no LOO): n = 0, mean null, and said so in the notes
    assert summary["dense"]["attr_fault_top1_hybrid"]["n"] == 0
    assert summary["dense"]["attr_fault_top1_hybrid"]["mean"] is None
    assert any("attr_fault_top1_hybrid" in n and "dense" in n for n in summary["notes"])
    assert re.search(r"attr_fault_top1_hybrid[^\n]* undefined", (out / "tables" / "faults.md").read_text())
    # default holm family: one reference × one metric × one test
    c = pd.read_csv(out / "tables" / "comparisons.csv")
    for _, fam in c[c.reference == "k1_full"].groupby("metric"):
        np.testing.assert_allclose(fam.welch_p_holm.dropna(), S.holm(fam.welch_p.dropna().to_numpy()))
    assert str(out / "summary.json") in res["written"]
    tex = (out / "tables" / "forgetting.tex").read_text()
    assert r"\toprule" in tex and r"k1\_full" in tex


def test_holm_family_per_metric(runs, tmp_path):
    _, runs_dir = runs
    params = write_params(tmp_path / "p.yaml", holm_family="reference_metric")
    aggregate(params, runs_dir.parent, tmp_path / "res")
    c = pd.read_csv(tmp_path / "res" / "tables" / "comparisons.csv")
    fam = c[(c.reference == "k1_full") & (c.metric == "forgetting")]
    assert len(fam) == 2 and (fam.holm_family_size == 2).all()
    strict = write_params(tmp_path / "q.yaml", holm_family="reference")
    aggregate(strict, runs_dir.parent, tmp_path / "strict")
    strict_c = pd.read_csv(tmp_path / "strict" / "tables" / "comparisons.csv")
    strict_fam = strict_c[strict_c.reference == "k1_full"]
    np.testing.assert_allclose(strict_fam.welch_p_holm.dropna(), S.holm(strict_fam.welch_p.dropna().to_numpy()))
    np.testing.assert_allclose(fam.ttest_paired_p_holm, S.holm(fam.ttest_paired_p.to_numpy()))
    np.testing.assert_allclose(fam.wilcoxon_min_p_holm, 0.5)  # 2 tests × 0.25


def test_aggregate_is_deterministic(runs, tmp_path):
    params, runs_dir = runs
    aggregate(params, runs_dir.parent, tmp_path / "a")
    aggregate(params, runs_dir.parent, tmp_path / "b")
    for f in ("summary.json", "tidy.csv", "tables/comparisons.csv", "tables/summary.md"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_missing_runs_are_all_named(runs, tmp_path):
    params, runs_dir = runs
    shutil.rmtree(run_path(runs_dir, "dense", 1))
    (run_path(runs_dir, "random_path", 2) / "metrics.json").unlink()
    with pytest.raises(K1Error) as err:
        aggregate(params, runs_dir.parent, tmp_path / "results")
    msg = str(err.value)
    assert "2 of 9 runs are missing" in msg
    assert str(run_path(runs_dir, "dense", 1) / "metrics.json") in msg
    assert str(run_path(runs_dir, "random_path", 2) / "metrics.json") in msg
    assert not (tmp_path / "results" / "summary.json").exists()


def test_fewer_than_two_initialisations_is_an_error(runs, tmp_path):
    _, runs_dir = runs
    params = write_params(tmp_path / "one.yaml", seeds=[0])
    with pytest.raises(K1Error, match=r"1 initialisation\(s\) per variant; across-run statistics need at least 2"):
        aggregate(params, runs_dir.parent, tmp_path / "results")


def test_drawn_orders_are_not_blocks_so_one_seed_per_order_is_a_design():
    """Listed orders are blocks (df = n - orders); drawn orders are a sample of the permutations, not blocks, so
    4 orders x 1 seed keep 3 degrees of freedom (with blocks they would keep none)."""
    from k1model.analysis.stats import paired_difference
    from k1model.analysis.units import orders_are_blocks, planned_units
    from k1model.config import load_params

    base = {"data": {"source": "synthetic", "domains": ["a", "b", "c"]}, "experiment": {"seeds": [0]}}
    drawn = load_params({**base, "experiment": {"seeds": [0], "orders": {"draw": 4, "seed": 1}}}, required=())
    listed = load_params({**base, "experiment": {"seeds": [0], "orders": [list(o) for o in drawn.orders]}}, required=())
    assert not orders_are_blocks(drawn) and orders_are_blocks(listed)
    assert planned_units(1, 4, "per_order", blocked=False) == (4, 1)
    assert planned_units(1, 4, "per_order", blocked=True) == (4, 4)
    d, orders = np.array([0.3, 0.5, 0.1, 0.4]), ["o1", "o2", "o3", "o4"]
    assert paired_difference(d, orders)["diff_df"] != paired_difference(d, orders)["diff_df"]  # NaN: no df left
    free = paired_difference(d, None)
    assert free["diff_df"] == 3 and free["p"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)


def test_failed_runs_fail_unless_allowed_and_are_listed(runs, tmp_path):
    params, runs_dir = runs
    mpath = run_path(runs_dir, "dense", 2) / "metrics.json"
    m = json.loads(mpath.read_text())
    m.update(status="failed", error="non-finite loss")
    mpath.write_text(json.dumps(m))
    with pytest.raises(K1Error, match="did not complete") as err:
        aggregate(params, runs_dir.parent, tmp_path / "r1")
    assert str(run_path(runs_dir, "dense", 2)) in str(err.value) and "allow_failed" in str(err.value)

    allowed = write_params(tmp_path / "allow.yaml", allow_failed=True)
    summary = aggregate(allowed, runs_dir.parent, tmp_path / "r2")
    assert summary["failed_runs"] == [{"variant": "dense", "seed": 2, "order": ORDER, "status": "failed",
                                       "path": str(run_path(runs_dir, "dense", 2)), "error": "non-finite loss"}]
    assert summary["dense"]["forgetting"]["n"] == 2
    assert summary["comparisons"]["k1_full"]["dense"]["forgetting"]["n_pairs"] == 2
    assert "dense/seed2 (failed)" in (tmp_path / "r2" / "tables" / "summary.md").read_text()


def test_crashed_run_with_failure_json_is_a_failed_run(runs, tmp_path):
    params, runs_dir = runs
    d = run_path(runs_dir, "k1_full", 1)
    (d / "metrics.json").unlink()
    (d / "failure.json").write_text(json.dumps({"status": "failed", "step": 7, "message": "non-finite loss nan"}))
    with pytest.raises(K1Error, match="did not complete") as err:
        aggregate(params, runs_dir.parent, tmp_path / "r1")
    assert "missing" not in str(err.value) and "non-finite loss nan" in str(err.value)
    summary = aggregate(write_params(tmp_path / "allow.yaml", allow_failed=True), runs_dir.parent, tmp_path / "r2")
    assert [(f["variant"], f["seed"]) for f in summary["failed_runs"]] == [("k1_full", 1)]


def test_bad_inputs_give_clear_errors(runs, tmp_path):
    params, runs_dir = runs
    m = run_path(runs_dir, "k1_full", 0) / "metrics.json"
    doc = json.loads(m.read_text())
    doc["scalars"]["forgetting"] = "lots"
    m.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="scalars.forgetting"):
        aggregate(params, runs_dir.parent, tmp_path / "r")
    bad = tmp_path / "bad.yaml"
    bad.write_text(params.read_text().replace("rng_seed: 0", "rng_sed: 0"))
    with pytest.raises(ConfigError, match="analysis.rng_seed"):
        load_analysis_config(bad)


def test_cli_aggregate(runs, tmp_path, capsys):
    params, runs_dir = runs
    assert main(["aggregate", "--params", str(params), "--results", str(runs_dir.parent), "--out", str(tmp_path / "res")]) == 0
    assert "summary.json" in capsys.readouterr().out
    shutil.rmtree(run_path(runs_dir, "k1_full", 0))
    assert main(["aggregate", "--params", str(params), "--results", str(runs_dir.parent), "--out", str(tmp_path / "res")]) == 2
    assert "k1_full/seed0" in capsys.readouterr().err


def test_unknown_analysis_key_is_rejected(tmp_path):
    params = write_params(tmp_path / "p.yaml", bootstrap_resample=10)
    with pytest.raises(ConfigError, match="analysis.bootstrap_resample"):
        load_analysis_config(params)
