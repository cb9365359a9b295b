"""`k1 figures` and `k1 paper` on fake runs: files are produced, the paper quotes summary.json exactly."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from fake_runs import write_fake_runs, write_manifest, write_params
from k1model.report import paper as P
from k1model.analysis import claim_tests as CT
from k1model.analysis.aggregate import read_summary
from k1model.cli import main
from k1model.errors import K1Error
from k1model.analysis.aggregate import aggregate
from k1model.analysis.settings import load_analysis_config
from k1model.analysis.tables import fmt_num, fmt_p

FIGURES = ("learning_curves", "r_matrices_prose-code-science", "forgetting_matrices_prose-code-science", "seen_bpb",
           "stability_plasticity", "forgetting_updates", "forgetting", "sparsity", "update_frequency",
           "attribution_stability", "planted_faults", "responsibility_tree", "forgetting_domains", "decomposition")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("k1")
    write_fake_runs(root / "results" / "runs", steps_per_phase=10, eval_interval=5)
    params = write_params(root / "params.yaml")
    write_manifest(root / "data")
    aggregate(params, root / "results", root / "results")
    argv = ["figures", "--params", str(params),
            "--results", str(root / "results"), "--out", str(root / "results" / "figures")]
    assert main(argv) == 0
    argv = ["paper", "--params", str(params), "--results", str(root / "results"), "--data", str(root / "data"),
            "--out", str(root / "paper")]
    assert main(argv) == 0
    return {"root": root, "params": params, "results": root / "results", "paper": root / "paper"}


def test_figures_are_written(built):
    figdir = built["results"] / "figures"
    for name in FIGURES:
        png, pdf = figdir / f"{name}.png", figdir / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert pdf.read_bytes()[:5] == b"%PDF-", name
    index = json.loads((figdir / "figures.json").read_text())
    assert set(index["figures"]) == set(FIGURES) and index["notes"] == []


def test_figures_skip_absent_attribution_with_a_note(tmp_path, monkeypatch):
    from k1model.report import figures as plots

    monkeypatch.setattr(plots, "save_figure", lambda fig, figdir, name: [figdir / f"{name}.png"])  # no drawing: fast
    write_fake_runs(tmp_path / "res" / "runs", variants=("k1_full", "dense"), seeds=(0, 1), steps_per_phase=6,
                    eval_interval=3, attribution=False)
    params = write_params(tmp_path / "p.yaml", variants=("k1_full", "dense"), seeds=(0, 1))
    aggregate(params, tmp_path / "res", tmp_path / "res")
    res = plots.make_figures(params, tmp_path / "res", tmp_path / "fig")
    assert "planted_faults" not in res["figures"] and "attribution_stability" not in res["figures"]
    assert "update_frequency" in res["figures"] and "responsibility_tree" in res["figures"]
    assert any("attribution" in n and "skipped" in n for n in res["notes"])


def _at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def test_paper_numbers_equal_summary(built):
    """Every number the paper quotes is in summary.json (the committed file), at the path numbers.json names."""
    summary = read_summary(built["results"])
    numbers = json.loads((built["paper"] / "numbers.json").read_text())["numbers"]
    text = (built["paper"] / "paper.md").read_text()
    assert len(numbers) >= 10
    for key, entry in numbers.items():
        value = _at(summary, entry["source"])
        assert entry["value"] == value, key
        fmt = fmt_p if key.endswith(("_p", "_p_holm", "_min_p")) else fmt_num
        assert entry["text"] == fmt(value), key
        assert entry["text"] in text, key
    # the headline claim is quoted from summary.json, its Holm family the declared claims
    assert "claims.less_forgetting.p_holm" in numbers and "claim_family.size" in numbers
    assert not any(k.startswith("comparisons.") for k in numbers)
    assert f"k1_full {fmt_num(summary['k1_full']['forgetting']['mean'])}" in text


def test_paper_sections_and_negative_results(built):
    text = (built["paper"] / "paper.md").read_text()
    for section in ("## Abstract", "## Method", "## Experimental setup", "## Results", "## Limitations",
                    "## Reproducibility"):
        assert section in text
    # 3 seeds: nothing can be significant under Wilcoxon, and the paper says so
    assert "no significant difference" in text and "smallest attainable Wilcoxon p is 0.25" in text
    assert "could have detected a difference of" in text  # every inconclusive claim states its MDE
    assert "### Does the benchmark forget?" in text and "### Where forgetting lives" in text
    assert "the LOO never changed a selection" in text
    assert "*Table 2: Forgetting per domain and domain order" in text
    assert "significantly lower" not in text
    assert "../results/figures/r_matrices_prose-code-science.png" in text
    assert re.search(r"the R matrices \(bpb on domain j after phase i\): Figure (\d+) \(order prose → code → science\)",
                     text)  # the text points to the figures, numbered as listed
    number = int(re.search(r"R matrices \(bpb on domain j after phase i\): Figure (\d+)", text).group(1))
    assert f"*Figure {number}: Mean R matrix per variant, domain order prose → code → science" in text
    assert "*Table 1: Language modelling and forgetting" in text
    assert "`analysis.bootstrap_resamples` | 400" in text  # hyperparameters from the params file
    prose_sha = hashlib.sha256(b"prose/train").hexdigest()[:12]
    assert "| prose | embedded text for prose | 540,000 | 30,000 | 30,000 |" in text and prose_sha in text  # manifest


def test_paper_is_deterministic(built, tmp_path):
    P.render_paper(built["params"], built["results"], built["root"] / "data", tmp_path / "again")
    # same relative layout is not needed for numbers.json; paper links are relative, so compare numbers
    assert (tmp_path / "again" / "numbers.json").read_bytes() == (built["paper"] / "numbers.json").read_bytes()
    P.render_paper(built["params"], built["results"], built["root"] / "data", tmp_path / "again2")
    assert (tmp_path / "again" / "paper.md").read_bytes() == (tmp_path / "again2" / "paper.md").read_bytes()


def test_paper_needs_its_inputs(built, tmp_path):
    with pytest.raises(K1Error, match="manifest.json"):
        P.render_paper(built["params"], built["results"], tmp_path / "nodata", tmp_path / "out")


def _summary(mean_a, mean_b, p_holm, n=10, direction="lower", tost=None, ref_forgets=None, reference="dense"):
    """A summary.json with one claim entry (analysis/claim_tests.py) whose status `decide` derives from the numbers."""
    ci = lambda m: {"mean": m, "ci_low": m - 0.01, "ci_high": m + 0.01, "n": n}  # noqa: E731
    entry = {"claim": "less_forgetting", "variant": "k1_full", "reference": reference, "metric": "forgetting",
             "direction": direction, "kind": "test", "unit": "run", "n_units": n, "test": "wilcoxon",
             "mean_diff": mean_a - mean_b, "diff_ci_low": mean_a - mean_b - 0.05, "diff_ci_high": mean_a - mean_b + 0.05,
             "p": p_holm, "p_holm": p_holm, "family_size": 4, "wilcoxon_min_p": 2.0 ** (1 - n),
             "wilcoxon_min_p_holm": min(1.0, 4 * 2.0 ** (1 - n)), "mde": 0.123, "units_for_margin": 37.0,
             "equivalence_margin": 0.05, "equivalence_testable": tost is not None, "equivalence_power": 0.9 if tost
             else 0.2, "margin_for_power": 0.04 if tost else 0.09, "planned_units": n, "tost_p_holm": tost,
             "status": None, "reason": ""}
    out = {"n_seeds": n, "metrics": {"forgetting": {"direction": direction, "unit": "bpb"}},
           "k1_full": {"forgetting": ci(mean_a)}, "dense": {"forgetting": ci(mean_b)},
           "claims": {"less_forgetting": entry}}
    if ref_forgets is not None:  # the validity check (analysis/validity.py) of dense's forgetting
        mean = 0.3 if ref_forgets else -0.1
        out["validity"] = {"reference": "dense", "margin": 0.2, "confidence": 0.95, "measured": True,
                           "forgets": ref_forgets, "average": {"n": n, "mean": mean, "ci_low": mean - 0.05,
                                                               "ci_high": mean + 0.05, "forgets": ref_forgets}}
    gate = CT.untestable(P.CLAIMS[0], CT.Part("as_specified", None, ["k1_full", "dense"], out.get("validity"),
                                              "per_order", (n, 1), None))
    entry.update(gate or {"status": CT.decide({**entry, "p_holm": p_holm}, 0.05) if p_holm is not None
                          else "inconclusive"})
    return out


@pytest.mark.parametrize("mean_a, mean_b, p, tost, status, phrase", [
    (0.1, 0.3, 0.004, None, "supported", "significantly lower forgetting"),
    (0.3, 0.1, 0.004, None, "contradicted", "which contradicts"),
    (0.1, 0.3, 0.2, None, "inconclusive", "could have detected a difference of 0.123 bpb"),
    (0.1, 0.3, 0.2, None, "inconclusive", "about 37 initialisations would detect a difference of the declared ±0.05"),
    (0.1, 0.3, 0.2, None, "inconclusive", "no equivalence test at this n"),
    (0.1, 0.3, 0.2, 0.5, "inconclusive", "equivalence within ±0.05 bpb was not shown either"),
    (0.1, 0.12, 0.2, 0.01, "equivalent", "equivalent on forgetting within the declared margin of ±0.05"),
    (0.1, 0.3, None, None, "inconclusive", "test was undefined"),
])
def test_claim_sentences_follow_the_numbers(built, mean_a, mean_b, p, tost, status, phrase):
    cfg = load_analysis_config(built["params"])
    claim = P.CLAIMS[0]
    nums = P.Numbers(_summary(mean_a, mean_b, p, tost=tost))
    got, short, sentence = P._claim_sentence(nums, claim, cfg)
    assert got == status and phrase in sentence, sentence
    assert fmt_num(mean_a) in short
    assert "overlap" not in sentence  # overlap of intervals is never read as evidence
    assert "runs would detect" not in sentence  # no power against the observed difference


@pytest.mark.parametrize("p", [0.004, 0.2])
def test_a_forgetting_claim_is_untestable_where_the_reference_does_not_forget(built, p):
    """Whatever the comparison says (here: K-1 forgets significantly more), a benchmark whose reference
    does not forget cannot test a forgetting claim: the verdict is 'untestable', never 'contradicted'."""
    cfg = load_analysis_config(built["params"])
    claim = P.CLAIMS[0]
    status, short, sentence = P._claim_sentence(P.Numbers(_summary(0.3, 0.1, p, ref_forgets=False)), claim, cfg)
    assert status == "untestable" and "cannot be tested on this benchmark" in sentence and "-0.1" in sentence
    status, _, _ = P._claim_sentence(P.Numbers(_summary(0.3, 0.1, 0.004, ref_forgets=True)), claim, cfg)
    assert status == "contradicted"  # the same numbers on a benchmark that forgets are a test
    bpb = next(c for c in P.CLAIMS if c.metric == "final_avg_bpb")  # not a forgetting claim: the gate lets it by
    part = CT.Part("as_specified", None, ["k1_full", "dense"], {"measured": True, "forgets": False}, "per_order",
                   (3, 1), None)
    assert CT.untestable(bpb, part) is None and CT.untestable(claim, part)["status"] == "untestable"


@pytest.mark.parametrize("p, mean, status", [(0.001, 0.7, "supported"), (0.001, 0.03, "contradicted"),
                                             (0.3, 0.4, "inconclusive")])
def test_claim_against_chance(built, p, mean, status):
    cfg = load_analysis_config(built["params"])
    claim = next(c for c in P.CLAIMS if c.reference == "chance")
    entry = {"claim": claim.name, "variant": "k1_full", "reference": "chance", "metric": claim.metric,
             "direction": "higher", "kind": "test", "unit": "run", "n_units": 10, "test": "ttest_paired",
             "chance": 1 / 7, "mean_variant": mean, "mean_reference": 1 / 7, "mean_diff": mean - 1 / 7,
             "diff_ci_low": mean - 1 / 7 - 0.05, "diff_ci_high": mean - 1 / 7 + 0.05, "p": p, "p_holm": p,
             "family_size": 4, "mde": 0.1, "equivalence_margin": None}
    entry["status"] = CT.decide(entry, 0.05)
    s = {"k1_full": {claim.metric: {"mean": mean, "ci_low": mean - 0.05, "ci_high": mean + 0.05, "n": 10}},
         "claims": {claim.name: entry}}
    got, _, sentence = P._claim_sentence(P.Numbers(s), claim, cfg)
    assert got == status and "chance" in sentence


def test_a_claim_not_measured_names_the_list_its_variant_is_missing_from():
    """Issue 28: a tuned claim whose variant was run but not tuned says it is missing from the tuned variants,
    not from experiment.variants (where it is)."""
    claim = next(c for c in P.CLAIMS if c.reference == "dense")
    tuned = CT.Part("tuned", None, ["dense"], None, "per_order", (3, 1), None)
    assert CT.not_measured(claim, tuned)["reason"] == f"{claim.variant} is not in the tuned variants (tuning.variants)"
    main = CT.Part("as_specified", None, ["dense"], None, "per_order", (3, 1), None)
    assert CT.not_measured(claim, main)["reason"] == f"{claim.variant} is not in experiment.variants"


def test_claim_not_measured(built):
    cfg = load_analysis_config(built["params"])
    s = _summary(0.1, 0.3, 0.01)
    s["claims"]["less_forgetting"].update(status="not measured", reason="`forgetting` was not measured for dense")
    status, _, sentence = P._claim_sentence(P.Numbers(s), P.CLAIMS[0], cfg)
    assert status == "not measured" and "dense" in sentence
    status, _, sentence = P._claim_sentence(P.Numbers({}), P.CLAIMS[0], cfg)  # no entry at all
    assert status == "not measured" and "rerun `k1 aggregate`" in sentence


@pytest.mark.parametrize("train_bytes,verdict", [(200_000, "at most about one"), (20_000, "more than one")])
def test_budget_paragraph_reports_epochs_and_the_whole_held_out_split(train_bytes, verdict):
    """The paper's budget follows the manifest: epochs per phase, the overfitting caveat only when a
    phase exceeds an epoch, and the R matrices on every byte of the held-out split (not the curve batches)."""
    from k1model.config import load_params
    from k1model.report.study_sections import budget_paragraph

    params = load_params("params/default.yaml")
    manifest = {"domains": {d: {"splits": {"train": {"bytes": train_bytes}, "test": {"bytes": 12_345}}}
                            for d in params.data.domains}}
    text = budget_paragraph(params, manifest)
    tokens = params.train.steps_per_phase * params.train.batch_size * params.model.max_seq_len
    assert f"{params.data.domains[0]} {tokens / train_bytes:.2f}" in text
    assert verdict in text
    assert "every byte of each domain's held-out split" in text and "12,345" in text
