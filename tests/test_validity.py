"""The benchmark-validity check (k1model/analysis/validity.py, DESIGN.md §11): a forgetting claim is
'untestable' where the reference does not forget, and the per-domain forgetting tables."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import fake_runs
from fake_runs import write_fake_runs, write_manifest, write_params
from k1model.analysis.aggregate import aggregate, load_summary
from k1model.analysis.runs import RunRecord
from k1model.analysis.validity import benchmark_forgets, domain_summary, phase_table
from k1model.report.paper import render_paper


def _record(variant: str, seed: int, R, order: str = "a-b-c") -> RunRecord:
    return RunRecord(variant, seed, None, "completed", {"R": R, "domains": order.split("-")}, None, order)


def test_phase_table_by_hand():
    R = [[1.0, 5.0, 5.0], [1.4, 2.0, 5.0], [1.2, 2.5, 3.0]]
    t = phase_table([_record("dense", 0, R)])
    assert list(zip(t.domain, t.after_phase, t.increase.round(6))) == [
        ("a", 0, 0.0), ("a", 1, 0.4), ("a", 2, 0.2), ("b", 1, 0.0), ("b", 2, 0.5)]
    final = t[t.forgetting.notna()]
    # Chaudhry forgetting: final − best earlier (a: 1.2 − 1.0; b: 2.5 − 2.0)
    assert final.forgetting.round(6).tolist() == [0.2, 0.5]


def test_benchmark_forgets_needs_the_margin_and_an_interval_above_zero():
    rng = np.random.default_rng(0)
    records = []
    for seed in range(5):
        lost = 0.3 + rng.normal(0, 0.02)
        records.append(_record("dense", seed, [[1.0, 5.0], [1.0 + lost, 2.0]], order="a-b"))
    phases = phase_table(records)
    avg = phases.loc[phases.forgetting.notna(), "forgetting"].to_numpy()
    assert benchmark_forgets(phases, avg, "dense", 0.2, 0.95)["forgets"] is True
    check = benchmark_forgets(phases, avg, "dense", 0.5, 0.95)  # margin above what dense forgets
    assert check["forgets"] is False and check["domains"]["a-b"]["a"]["forgets"] is False
    noisy = np.array([0.9, -0.5, 0.6])  # mean above the margin, interval includes 0
    assert benchmark_forgets(phases, noisy, "dense", 0.2, 0.95)["forgets"] is False


@pytest.mark.parametrize("dense_forgets", [True, False])
def test_claims_are_untestable_where_the_reference_does_not_forget(tmp_path, monkeypatch, dense_forgets):
    """Synthetic R matrices: with dense forgetting 0.18 bpb per later phase the forgetting claims are
    decided; with dense improving on earlier domains instead they are all 'untestable'."""
    if not dense_forgets:
        monkeypatch.setitem(fake_runs.EFFECTS, "dense", (-0.05, 1.0))
    write_fake_runs(tmp_path / "results" / "runs", steps_per_phase=10, eval_interval=5, attribution=False)
    params = write_params(tmp_path / "params.yaml", forgetting_margin=0.1, primary_test="ttest_paired")
    write_manifest(tmp_path / "data")
    aggregate(params, tmp_path / "results")
    summary = load_summary(tmp_path / "results")
    assert summary["validity"]["forgets"] is dense_forgets
    (tmp_path / "results" / "figures").mkdir()
    claims = render_paper(params, tmp_path / "results", tmp_path / "data", tmp_path / "paper")["claims"]
    forgetting = [c for c in claims.values() if c["metric"] == "forgetting" and c["status"] != "not measured"]
    assert forgetting and all((c["status"] == "untestable") != dense_forgets for c in forgetting)
    assert claims["lm_quality"]["status"] != "untestable"  # a bpb claim never needs the check
    text = (tmp_path / "paper" / "paper.md").read_text()
    assert ("**it does not**" in text) != dense_forgets
    table = pd.read_csv(tmp_path / "results" / "tables" / "forgetting_domains.csv")
    assert set(table.variant) == {"k1_full", "dense", "random_path"} and set(table.domain) == {"prose", "code"}


def test_domain_summary_intervals():
    records = [_record("dense", s, [[1.0, 5.0], [1.0 + x, 2.0]], order="a-b") for s, x in enumerate([0.2, 0.4, 0.3])]
    d = domain_summary(phase_table(records), 0.95)
    last = d[d.after_phase == 1].iloc[0]
    assert last.n == 3 and last.increase == pytest.approx(0.3) and last.forgetting == pytest.approx(0.3)
    assert last.forgetting_ci_low < 0.3 < last.forgetting_ci_high
    json.dumps(d.to_dict(orient="records"))
