"""Faults of the pipeline layer (issue 32): paths with spaces, deleted outputs, and DVC stages that declare
everything they write. Fast: one small data stage, otherwise dry runs."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from test_pipeline import ROOT, copy_workflow, needs_snakemake, output, snakemake

TINY = ("--config", "params_file=params/tiny.yaml")


def shell_commands(text: str) -> list[str]:
    """The shell commands a `snakemake -n -p` run prints, one per job."""
    found = [line.split("Shell command:", 1)[1].strip() for line in text.splitlines() if "Shell command:" in line]
    return [c for c in found if c != "None"]  # a local target rule has none


@needs_snakemake
def test_an_outdir_with_a_space_overwrites_nothing(tmp_path):
    """`outdir=X/p copy` once sent the log of `k1 prepare` to X/p (and `copy/...` became an argument)."""
    wd = copy_workflow(tmp_path / "wf")
    (tmp_path / "p").write_text("keep\n")
    outdir = tmp_path / "p copy"
    proc = snakemake(wd, "--cores", "1", *TINY, f"outdir={outdir}", "--", "data")
    assert proc.returncode == 0, output(proc)[-3000:]
    assert (tmp_path / "p").read_text() == "keep\n"
    assert (outdir / "data/prepared/manifest.json").is_file() and (outdir / "logs/prepare_data.log").is_file()
    # every rule's command keeps each path one argument (and a quote inside a path is no shell syntax)
    odd = tmp_path / "it's a $dir"
    proc = snakemake(wd, "-n", "-p", "--cores", "1", *TINY, f"outdir={odd}", f"data_root={odd}")
    text = output(proc)
    assert proc.returncode == 0, text[-3000:]
    commands = shell_commands(text)
    rules = {shlex.split(c)[1] for c in commands}
    assert {"prepare", "train", "attribute", "tune", "aggregate", "figures", "paper"} <= rules, rules
    for command in commands:
        words = shlex.split(command)
        paths = [w for w in words if str(odd) in w]
        assert paths and all(w.startswith(str(odd)) for w in paths), command
        assert not any(w in ("a", "$dir") or w.startswith(("$dir/", "s ")) for w in words), command


def fake_outputs(wd: Path, *args: str) -> list[str]:
    """Every file (and directory) the pipeline would write, created with dummy content; their paths."""
    listing = snakemake(wd, "--summary", "--cores", "1", *args)
    assert listing.returncode == 0, output(listing)[-3000:]
    written = [line.split("\t")[0] for line in listing.stdout.splitlines()[1:] if line.strip()]
    for name in written:
        path = wd / name
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
        elif name not in ("all", "runs", "analysis", "data", "paper"):  # a directory() output (tables/, figures/)
            path.mkdir(parents=True, exist_ok=True)
    return written


@needs_snakemake
def test_a_deleted_run_file_is_rebuilt(tmp_path):
    """Deleting a finished run's steps.csv.gz, evals.csv or checkpoint.pt plans its training job again (they are
    requested targets, not intermediate files that Snakemake may consider done without them)."""
    from k1model.config import load_params
    from k1model.study.plan import plan_runs

    wd = copy_workflow(tmp_path / "wf")
    fake_outputs(wd, *TINY)
    assert snakemake(wd, "--touch", "--cores", "1", *TINY).returncode == 0  # every output up to date
    proc = snakemake(wd, "-n", "--cores", "1", *TINY)
    assert "Nothing to be done" in output(proc), output(proc)[-3000:]
    runs = [r for r in plan_runs(load_params(wd / "params/tiny.yaml")) if r.part in ("runs", "sweep", "tuned")]
    deleted = [wd / "outputs/tiny/results" / run.path / name
               for run, name in zip(runs[::4], ("steps.csv.gz", "evals.csv", "checkpoint.pt"))]
    for path in deleted:
        path.unlink()
    proc = snakemake(wd, "-n", "--cores", "1", *TINY)
    text = output(proc)
    assert proc.returncode == 0 and "Nothing to be done" not in text, text[-3000:]
    for path in deleted:
        assert str(path.relative_to(wd)) in text, path  # an output of a planned job


DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PROFILES = sorted((ROOT / "params").glob("*.yaml"))


def stage_outs(stage: str) -> list[str]:
    return [next(iter(o)) if isinstance(o, dict) else o for o in DVC["stages"][stage].get("outs", [])] + \
        [next(iter(o)) if isinstance(o, dict) else o for o in DVC["stages"][stage].get("metrics", [])]


@needs_snakemake
def test_every_file_a_dvc_stage_writes_is_one_of_its_outs(tmp_path):
    """DVC deletes a stage's outs before rerunning it; a file the stage writes but does not declare (results/sweep,
    results/tuning, results/tuned) survives a params change and Snakemake (rerun by mtime) reuses it."""
    wd = copy_workflow(tmp_path / "wf")
    config = ("--config", "params_file=params/tiny.yaml", "outdir=.")
    fake_outputs(wd, *config)  # what the other stages wrote (the inputs of each)
    for stage in ("data", "runs", "analysis", "paper"):
        proc = snakemake(wd, "--summary", "--cores", "1", *config, f"stage={stage}", "--", stage)
        assert proc.returncode == 0, output(proc)[-3000:]
        written = [line.split("\t")[0] for line in proc.stdout.splitlines()[1:] if line.strip()]
        written = [w for w in written if w != stage]  # the target rule itself
        assert written, stage
        outs = stage_outs(stage)
        undeclared = [w for w in written if not any(w == o or w.startswith(o.rstrip("/") + "/") for o in outs)]
        assert not undeclared, f"dvc.yaml stage {stage} does not declare {undeclared[:5]}"


def test_dvc_stages_read_params_every_profile_has():
    """The runs and analysis stages track the sweep and tuning sections (a change reruns them); DVC refuses a
    stage whose params are missing from the file, so every profile has both sections (null: none)."""
    for stage in ("runs", "analysis"):
        declared = next(iter(DVC["stages"][stage]["params"][0].values()))
        assert {"sweep", "tuning"} <= set(declared), stage
    for profile in PROFILES:
        sections = yaml.safe_load(profile.read_text())
        for stage in ("data", "runs", "analysis"):
            for key in next(iter(DVC["stages"][stage]["params"][0].values())):
                node = sections
                for part in key.split("."):
                    assert isinstance(node, dict) and part in node, f"{profile.name} lacks {key} ({stage} stage)"
                    node = node[part]
