"""`k1 figures` and `k1 paper` on fake runs: files are produced, the paper quotes summary.json exactly."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fake_runs import write_fake_runs, write_manifest, write_params
from k1model.report import paper as P
from k1model.analysis.aggregate import load_summary
from k1model.cli import main
from k1model.errors import K1Error
from k1model.analysis.aggregate import aggregate
from k1model.analysis.settings import load_analysis_config
from k1model.report.tables import fmt_num, fmt_p

FIGURES = ("learning_curves", "forgetting_heatmaps", "forgetting", "sparsity", "update_frequency",
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
    summary = load_summary(built["results"])
    numbers = json.loads((built["paper"] / "numbers.json").read_text())["numbers"]
    text = (built["paper"] / "paper.md").read_text()
    assert len(numbers) >= 10
    for key, entry in numbers.items():
        value = _at(summary, entry["source"])
        assert entry["value"] == value, key
        fmt = fmt_p if key.endswith(("_p", "_p_holm", "_min_p")) else fmt_num
        assert entry["text"] == fmt(value), key
        assert entry["text"] in text, key
    # the headline comparison is quoted from summary.json
    assert "comparisons.k1_full.dense.forgetting.wilcoxon_p_holm" in numbers
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
    assert "../results/figures/forgetting_heatmaps.png" in text
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


def _summary(mean_a, mean_b, p_holm, n=10, direction="lower", tost=None, ref_forgets=None):
    ci = lambda m: {"mean": m, "ci_low": m - 0.01, "ci_high": m + 0.01, "n": n}  # noqa: E731
    out = {
        "n_seeds": n, "metrics": {"forgetting": {"direction": direction, "unit": "bpb"}},
        "k1_full": {"forgetting": ci(mean_a)}, "dense": {"forgetting": ci(mean_b)},
        "comparisons": {"k1_full": {"dense": {"forgetting": {
            "mean_diff": mean_b - mean_a, "diff_ci_low": mean_b - mean_a - 0.05, "diff_ci_high": mean_b - mean_a + 0.05,
            "n_pairs": n, "wilcoxon_p_holm": p_holm, "ttest_paired_p_holm": p_holm, "wilcoxon_min_p": 2.0 ** (1 - n),
            "mde": 0.123, "runs_needed": 37.0, "equivalence_margin": 0.05, "tost_p_holm": tost}}}},
    }
    if ref_forgets is not None:  # the validity check (analysis/validity.py) of dense's forgetting
        mean = 0.3 if ref_forgets else -0.1
        out["validity"] = {"reference": "dense", "margin": 0.2, "confidence": 0.95, "measured": True,
                           "forgets": ref_forgets, "average": {"n": n, "mean": mean, "ci_low": mean - 0.05,
                                                               "ci_high": mean + 0.05, "forgets": ref_forgets}}
    return out


@pytest.mark.parametrize("mean_a, mean_b, p, tost, status, phrase", [
    (0.1, 0.3, 0.004, None, "supported", "significantly lower forgetting"),
    (0.3, 0.1, 0.004, None, "contradicted", "which contradicts"),
    (0.1, 0.3, 0.2, 0.5, "inconclusive", "could have detected a difference of 0.123 bpb"),
    (0.1, 0.3, 0.2, 0.5, "inconclusive", "about 37 paired runs would detect"),
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
    bpb = next(c for c in P.CLAIMS if c.metric == "final_avg_bpb")  # not a forgetting claim: unaffected
    s = _summary(0.3, 0.1, 0.004, ref_forgets=False)
    s["metrics"]["final_avg_bpb"] = s["metrics"]["forgetting"]
    for v in ("k1_full", "dense"):
        s[v]["final_avg_bpb"] = s[v]["forgetting"]
    s["comparisons"]["k1_full"]["dense"]["final_avg_bpb"] = s["comparisons"]["k1_full"]["dense"]["forgetting"]
    assert P._claim_sentence(P.Numbers(s), bpb, cfg)[0] == "contradicted"


@pytest.mark.parametrize("lo, hi, status", [(0.5, 0.9, "supported"), (0.01, 0.05, "contradicted"),
                                             (0.05, 0.9, "inconclusive")])
def test_claim_against_chance(built, lo, hi, status):
    cfg = load_analysis_config(built["params"])
    claim = next(c for c in P.CLAIMS if c.reference == "chance")
    s = {"k1_full": {claim.metric: {"mean": (lo + hi) / 2, "ci_low": lo, "ci_high": hi, "n": 10}}}
    got, _, sentence = P._claim_sentence(P.Numbers(s), claim, cfg, chance=1 / 7)
    assert got == status and "chance" in sentence


def test_claim_not_measured(built):
    cfg = load_analysis_config(built["params"])
    s = _summary(0.1, 0.3, 0.01)
    s["dense"]["forgetting"]["n"] = 0
    status, _, sentence = P._claim_sentence(P.Numbers(s), P.CLAIMS[0], cfg)
    assert status == "not measured" and "dense" in sentence


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
