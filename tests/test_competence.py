"""The competence check (k1model/analysis/competence.py) and `k1 floors` (DESIGN.md §12)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from k1model.analysis.competence import competence_check, own_phase_bpb
from k1model.analysis.runs import RunRecord
from k1model.cli import main


def _record(variant: str, seed: int, R, order: str = "a-b") -> RunRecord:
    return RunRecord(variant, seed, None, "completed", {"R": R, "domains": order.split("-")}, None, order)


FLOORS = {"domains": {"a": {"test": {"trigram": 2.5, "bigram": 3.5}}, "b": {"test": {"trigram": 3.0, "bigram": 4.0}}}}


def _runs(diag_a: list[float], diag_b: list[float]) -> list[RunRecord]:
    return [_record("dense", s, [[a, 9.0], [a + 1.0, b]]) for s, (a, b) in enumerate(zip(diag_a, diag_b))]


def test_own_phase_bpb_reads_the_diagonal_in_each_runs_order():
    recs = [_record("dense", 0, [[1.0, 9.0], [1.5, 2.0]]), _record("dense", 1, [[3.0, 9.0], [3.5, 4.0]], "b-a"),
            _record("k1_full", 0, [[7.0, 9.0], [7.5, 8.0]])]
    assert own_phase_bpb(recs, "dense") == {"a": [1.0, 4.0], "b": [2.0, 3.0]}


def test_a_profile_is_competent_only_when_every_domain_reaches_the_floor():
    ok = competence_check(_runs([2.30, 2.32, 2.31], [2.80, 2.82, 2.79]), FLOORS, reference="dense",
                          floor="trigram", confidence=0.95)
    assert ok["competent"] is True and ok["short_of_floor"] == []
    assert ok["domains"]["a"]["floor_bpb"] == 2.5 and ok["domains"]["a"]["n"] == 3
    # domain b's mean is below the floor, but its interval reaches above it: not competent
    short = competence_check(_runs([2.30, 2.32, 2.31], [2.5, 3.2, 2.9]), FLOORS, reference="dense",
                             floor="trigram", confidence=0.95)
    assert short["domains"]["b"]["mean"] < 3.0 < short["domains"]["b"]["ci_high"]
    assert short["competent"] is False and short["short_of_floor"] == ["b"]
    # a synthetic non-competent profile: a near-unigram model everywhere
    flat = competence_check(_runs([4.4, 4.5, 4.45], [4.6, 4.7, 4.65]), FLOORS, reference="dense",
                            floor="bigram", confidence=0.95)
    assert flat["competent"] is False and flat["short_of_floor"] == ["a", "b"]


def test_missing_floors_or_runs_are_never_competent():
    doc = competence_check(_runs([2.3, 2.3], [2.8, 2.8]), {"domains": {"a": FLOORS["domains"]["a"]}},
                           reference="dense", floor="trigram", confidence=0.95)
    assert doc["competent"] is False and doc["missing_floors"] == ["b"]
    assert competence_check([], FLOORS, reference="dense", floor="trigram", confidence=0.95)["competent"] is False


def test_k1_floors_writes_every_domain_and_order(tmp_path, capsys):
    from fake_runs import write_params

    params = write_params(tmp_path / "params.yaml")
    params.write_text(params.read_text().replace("max_bytes: 600000", "max_bytes: 60000"))  # a fast test
    data = tmp_path / "data"
    assert main(["prepare", "--params", str(params), "--out", str(data)]) == 0
    out = tmp_path / "floors.json"
    assert main(["floors", "--params", str(params), "--data", str(data), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    manifest = json.loads((data / "manifest.json").read_text())
    assert set(doc["domains"]) == set(manifest["domains"])
    for d in doc["domains"].values():
        assert list(d["test"]) == ["unigram", "bigram", "trigram", "4-gram", "5-gram"]
        assert all(np.isfinite(v) and 0 < v < 8.1 for v in d["test"].values())
    again = tmp_path / "again.json"
    main(["floors", "--params", str(params), "--data", str(data), "--out", str(again)])
    assert again.read_bytes() == out.read_bytes()  # deterministic
    assert "trigram" in capsys.readouterr().out


def test_a_floor_above_the_fitted_orders_is_refused(tmp_path):
    from fake_runs import write_params
    from k1model.config import load_params
    from k1model.errors import ConfigError

    import k1model.strategies  # noqa: F401
    params = write_params(tmp_path / "params.yaml")
    text = params.read_text().replace("analysis:\n", "analysis:\n  competence_floor: 5-gram\n  floor_orders: 3\n", 1)
    params.write_text(text)
    with pytest.raises(ConfigError, match="analysis.competence_floor"):
        load_params(params)


@pytest.mark.parametrize("trigram, competent", [(3.0, True), (2.0, False)])
def test_aggregate_checks_competence_and_gates_every_claim(tmp_path, trigram, competent):
    """Synthetic runs learn every domain to ~2.6 bpb: competent against a 3.0 floor; against a 2.0 floor the
    profile is not competent and every declared claim reads so (not just the forgetting claims)."""
    from fake_runs import DOMAINS, write_fake_runs, write_params
    from k1model.analysis.aggregate import aggregate, read_summary

    write_fake_runs(tmp_path / "results" / "runs", steps_per_phase=10, eval_interval=5, attribution=False)
    params = write_params(tmp_path / "params.yaml", primary_test="ttest_paired")
    floors = {"format": "k1-floors/1", "domains": {d: {"test": {"trigram": trigram}} for d in DOMAINS}}
    (tmp_path / "floors.json").write_text(json.dumps(floors))
    aggregate(params, tmp_path / "results", floors=tmp_path / "floors.json")
    summary = read_summary(tmp_path / "results")
    assert summary["competence"]["checked"] is True and summary["competence"]["competent"] is competent
    statuses = {e["status"] for e in summary["claims"].values()}
    if competent:
        assert "not competent" not in statuses
    else:
        assert statuses <= {"not competent", "not measured"} and "not competent" in statuses
        # the verdict is withheld, not the evidence: the claims are still tested, in the Holm family, and each
        # keeps the status it would have had
        withheld = [e for e in summary["claims"].values() if e["status"] == "not competent"]
        assert all(e.get("verdict_if_competent") in ("supported", "contradicted", "equivalent", "inconclusive",
                                                      "measured") for e in withheld)
        tested = [e for e in withheld if e["verdict_if_competent"] != "measured"]
        assert tested and summary["claim_family"]["size"] == len(tested)
        assert all(e["p_holm"] >= e["p"] for e in tested)


def test_without_floors_the_check_is_not_made_and_says_why(tmp_path):
    from fake_runs import write_fake_runs, write_params
    from k1model.analysis.aggregate import aggregate, read_summary

    write_fake_runs(tmp_path / "results" / "runs", steps_per_phase=10, eval_interval=5, attribution=False)
    params = write_params(tmp_path / "params.yaml", primary_test="ttest_paired")
    aggregate(params, tmp_path / "results")
    doc = read_summary(tmp_path / "results")["competence"]
    assert doc["checked"] is False and "k1 floors" in doc["reason"]
