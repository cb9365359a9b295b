"""The Snakemake pipeline (Snakefile, workflow/, params/): lint, start-up validation of the
params file, and an end-to-end run on params/tiny.yaml in a temporary copy of the workflow.

Snakemake is found as `python -m snakemake` (same environment as the tests) or on PATH;
the tests skip cleanly when it is not installed (`pip install -e .[pipeline]`).
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _snakemake_command() -> list[str] | None:
    if importlib.util.find_spec("snakemake") is not None:
        return [sys.executable, "-m", "snakemake"]
    exe = shutil.which("snakemake")
    return [exe] if exe else None


SNAKEMAKE = _snakemake_command()
needs_snakemake = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed (pip install -e .[pipeline])")
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/params.schema.yaml").read_text())
PROFILES = sorted(p.stem for p in (ROOT / "params").glob("*.yaml"))


def copy_workflow(dest: Path) -> Path:
    """Snakefile, workflow/ and params/ in a fresh directory (outputs land there, not in the repo)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "Snakefile", dest / "Snakefile")
    shutil.copytree(ROOT / "workflow", dest / "workflow")
    shutil.copytree(ROOT / "params", dest / "params")
    return dest


def snakemake(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("K1_DATA_ROOT", None)
    env.setdefault("MPLBACKEND", "Agg")
    cmd = [*SNAKEMAKE, "--snakefile", str(workdir / "Snakefile"), "--directory", str(workdir), *args]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run: rule -> number of jobs."""
    counts: dict[str, int] = {}
    block = text.split("Job stats:", 1)[1] if "Job stats:" in text else ""
    for line in block.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) == "total":
            break  # the table is printed twice; read the first one
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + int(m.group(2))
    return counts


def job_runs(text: str) -> dict[str, set[str]]:
    """rule -> the runs (or tuned variants) of its jobs in a dry run's listing (their wildcards)."""
    jobs: dict[str, set[str]] = {}
    for block in text.split("\nrule ")[1:]:
        found = re.search(r"^\s+wildcards: \w+=(\S+)", block, flags=re.M)
        jobs.setdefault(block.split(":", 1)[0], set()).update([found.group(1)] if found else [])
    return jobs


def planned(profile: Path):
    """The library's run plan of a params file (what the pipeline builds its DAG from)."""
    from k1model.config import load_params
    from k1model.study.plan import plan_runs

    return plan_runs(load_params(profile))


def expected_jobs(profile: Path) -> dict[str, int]:
    """Every job a full run of a profile makes, from the library's plan: one per run, one attribution per
    run of the main comparison, one tuning choice per tuned variant (and one file of them all)."""
    plan = planned(profile)
    counts = {"prepare_data": 1, "floors": 1, "train": len(plan), "attribute": sum(r.part == "runs" for r in plan),
              "aggregate": 1, "figures": 1, "paper": 1, "all": 1}
    tuned = {r.variant for r in plan if r.part == "tuning"}
    if tuned:
        counts.update(tune=len(tuned), tune_all=1)
    return counts


# ------------------------------------------------------------------------------ schema


def _props(*path: str) -> dict:
    node = SCHEMA
    for key in path:
        node = node["properties"][key]
    if "oneOf" in node:  # nullable sub-objects: the object alternative
        node = next(alt for alt in node["oneOf"] if alt.get("type") == "object")
    return node["properties"]


def _plain(value):
    from k1model.config.checks import plain

    return plain(value)


def test_schema_file_is_generated_from_the_library():
    """One source of truth: the committed schema is exactly what `k1 schema` generates."""
    from k1model.config import schema_yaml

    assert (ROOT / "workflow/schemas/params.schema.yaml").read_text() == schema_yaml(), (
        "workflow/schemas/params.schema.yaml is stale: run `k1 schema --out workflow/schemas/params.schema.yaml`")


def test_schema_allows_exactly_the_keys_the_library_accepts():
    import dataclasses

    from k1model import config
    from k1model.method.variants import VARIANTS

    def fields(cls, drop=()):  # every setting, the registered ones (strategies' method keys) included
        return {k: f for k, f in cls.settings() if k not in drop}

    sections = {
        "model": fields(config.ModelConfig),
        "method": fields(config.MethodConfig, drop=("variant",)),  # the variant comes from experiment.variants
        "train": fields(config.TrainConfig),
        "data": fields(config.DataConfig),
        "analysis": fields(config.AnalysisConfig),
        "experiment": fields(config.ExperimentConfig),
    }
    for section, lib in sections.items():
        schema = _props(section)
        assert set(schema) == set(lib), section
        for key, f in lib.items():  # schema defaults are the library's
            if "default" in schema[key] and f.default is not dataclasses.MISSING:
                assert schema[key]["default"] == _plain(f.default), f"{section}.{key}"
    assert set(_props("data", "local")) == set(config.LocalConfig.field_names())
    assert set(_props("data", "synthetic")) == set(config.SyntheticConfig.field_names())
    hub = SCHEMA["properties"]["data"]["properties"]["hub"]["additionalProperties"]
    assert set(hub["properties"]) == set(config.HubSource.field_names())
    variant_enum = SCHEMA["properties"]["experiment"]["properties"]["variants"]["items"]["enum"]
    assert variant_enum == list(VARIANTS)
    assert set(_props("analysis")["primary_test"]["enum"]) == set(config.TEST_NAMES)
    assert set(_props("analysis")["holm_family"]["enum"]) == set(config.HOLM_FAMILIES)


@pytest.mark.parametrize("profile", PROFILES)
def test_params_files_are_accepted_by_the_library(profile):
    from k1model import config

    params = config.load_params(ROOT / "params" / f"{profile}.yaml")
    for variant in params.experiment.variants:
        config.method_config(params.method, variant)


# ------------------------------------------------------------------------------ structure


@needs_snakemake
@pytest.mark.parametrize("profile", ["default", "study"])
def test_lint_is_clean(tmp_path, profile):
    wd = copy_workflow(tmp_path / "wf")
    proc = snakemake(wd, "--lint", "--config", f"params_file=params/{profile}.yaml")
    text = output(proc)
    assert proc.returncode == 0, text
    assert "Lints for" not in text, text


@needs_snakemake
def test_dry_run_lists_every_job_of_the_default_profile(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    proc = snakemake(wd, "-n", "--cores", "2")
    assert proc.returncode == 0, output(proc)
    counts = job_counts(output(proc))
    assert counts == expected_jobs(ROOT / "params/default.yaml"), counts
    assert "results/runs/" in output(proc) and "outputs/" not in output(proc)  # the default profile: results/


@needs_snakemake
def test_the_study_profile_plans_its_jobs_below_outputs_study(tmp_path):
    """params/study.yaml: a job per run, every part, its outputs apart from the default's."""
    wd = copy_workflow(tmp_path / "wf")
    proc = snakemake(wd, "-n", "--cores", "2", "--resources", "gpu=1", "--config", "params_file=params/study.yaml")
    assert proc.returncode == 0, output(proc)
    counts = job_counts(output(proc))
    assert counts == expected_jobs(ROOT / "params/study.yaml"), counts
    assert counts["train"] >= 300 and counts["tune"] == 11
    assert "outputs/study/results/runs/" in output(proc) and " results/runs/" not in output(proc)
    proc = snakemake(wd, "-n", "--cores", "2", "--config", "params_file=params/study.yaml", "outdir=elsewhere")
    assert proc.returncode == 0 and "elsewhere/results/tuned/" in output(proc)


@needs_snakemake
@pytest.mark.parametrize("profile", ["default", "paper", "pilot_baselines"])
def test_every_params_profile_is_valid(tmp_path, profile):
    wd = copy_workflow(tmp_path / "wf")
    proc = snakemake(wd, "-n", "--cores", "2", "--config", f"params_file=params/{profile}.yaml")
    assert proc.returncode == 0, output(proc)


def dry_run_jobs(text: str) -> dict[str, list[dict]]:
    """rule -> its jobs in a dry run's listing: each job's resources (name -> value as printed) and threads
    (the `--threads N` of its shell command, which is `{threads}`)."""
    jobs: dict[str, list[dict]] = {}
    for block in text.split("\nrule ")[1:]:
        rule = block.split(":", 1)[0]
        res = re.search(r"^\s+resources: (.*)$", block, flags=re.M)
        resources = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        threads = re.search(r"--threads (\d+)", block)
        jobs.setdefault(rule, []).append({"resources": resources, "threads": int(threads.group(1)) if threads else None})
    return jobs


@needs_snakemake
def test_the_slurm_profile_gives_training_and_attribution_jobs_their_resources_and_threads(tmp_path):
    """The one training rule takes the profile's `set-resources: train:` and `set-threads: train:` as Snakemake
    documents (issue 28: no private API): the paper profile's training jobs go to the GPU partition for 720
    minutes with 32 GB and 4 threads, not to the CPU defaults. `--cores 8`: a dry run caps threads at --cores (1
    by default); on the cluster nothing caps them."""
    wd = copy_workflow(tmp_path / "wf")
    profile = yaml.safe_load((wd / "workflow/profiles/slurm/config.yaml").read_text())
    proc = snakemake(wd, "-n", "--cores", "8", "--profile", str(wd / "workflow/profiles/slurm"),
                     "--config", "params_file=params/paper.yaml", f"data_root={tmp_path / 'corpora'}")
    text = output(proc)
    assert proc.returncode == 0, text
    jobs = dry_run_jobs(text)
    training, attribution = jobs["train"], jobs["attribute"]
    plan = planned(ROOT / "params/paper.yaml")
    assert len(training) == len(plan) > 1 and len(attribution) == sum(r.part == "runs" for r in plan)
    for kind, found in (("train", training), ("attribute", attribution)):
        want = profile["set-resources"][kind]
        assert len({str(j) for j in found}) == 1, f"{kind} jobs differ"  # every job of the kind alike
        job = found[0]
        assert job["resources"]["slurm_partition"] == want["slurm_partition"] == "gpu", (kind, job)
        assert int(job["resources"]["runtime"]) == want["runtime"], (kind, job)
        assert int(job["resources"]["mem_mb"]) == want["mem_mb"], (kind, job)
        assert job["resources"]["gpu"] == "1", (kind, job)  # train.device: cuda
        assert job["threads"] == profile["set-threads"][kind] == 4, (kind, job)
    assert int(training[0]["resources"]["runtime"]) == 720
    assert int(training[0]["resources"]["cpus_per_task"]) == profile["set-resources"]["train"]["cpus_per_task"]
    other = jobs["prepare_data"][0]["resources"]  # the rest keep the profile's defaults
    assert other["slurm_partition"] == profile["default-resources"]["slurm_partition"] == "cpu"
    assert int(other["runtime"]) == profile["default-resources"]["runtime"]


@needs_snakemake
def test_tiny_runs_on_cpu_without_gpu_resource(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    proc = snakemake(wd, "-n", "-p", "--cores", "2", "--config", "params_file=params/tiny.yaml")
    text = output(proc)
    assert proc.returncode == 0, text
    assert "gpu=1" not in text
    assert re.search(r"k1 train --params '?params/tiny.yaml'? ", text), text  # quoted by :q where it needs it


BAD_PARAMS = [
    # (what, edit of the parsed tiny params, text the error must contain)
    ("unknown variant", lambda p: p["experiment"].update(variants=["k1_full", "k2_turbo"]), "k2_turbo"),
    ("negative steps", lambda p: p["train"].update(steps_per_phase=-5), "train.steps_per_phase"),
    ("unknown key", lambda p: p["method"].update(learning_rat=0.1), "method.learning_rat"),
    ("missing section", lambda p: p.pop("model"), "model"),
    # bad study designs (issue 12): named at start-up, before any job
    ("sweep factor unknown key", lambda p: p["sweep"]["factors"].update(trust_increse=[0.1]), "trust_increse"),
    ("sweep value invalid", lambda p: p["sweep"]["factors"].update(trust_decay=[1.5]),
     "sweep point trust_decay~1.5: method.trust_decay=1.5"),
    ("sweep duplicate points", lambda p: p["sweep"]["factors"].update(trust_increase=[0.3, 0.3]), "duplicate points"),
    ("tuning seed is an evaluation seed", lambda p: p["tuning"].update(seeds=[1]), "also evaluation seeds"),
    ("order not a permutation", lambda p: p["experiment"].update(orders=[["prose"]]), "not a permutation"),
]


@needs_snakemake
@pytest.mark.parametrize("what,edit,expected", BAD_PARAMS, ids=[b[0] for b in BAD_PARAMS])
def test_bad_params_fail_at_start_up_naming_the_key(tmp_path, what, edit, expected):
    wd = copy_workflow(tmp_path / "wf")
    params = yaml.safe_load((wd / "params/tiny.yaml").read_text())
    edit(params)
    (wd / "params/bad.yaml").write_text(yaml.safe_dump(params))
    proc = snakemake(wd, "-n", "--cores", "1", "--config", "params_file=params/bad.yaml")
    text = output(proc)
    assert proc.returncode != 0, text
    assert expected in text, text
    assert "params/bad.yaml" in text, text
    assert not (wd / "data").exists() and not (wd / "results").exists() and not (wd / "outputs").exists()


@needs_snakemake
def test_config_overrides_other_than_pipeline_keys_are_refused(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    proc = snakemake(wd, "-n", "--cores", "1", "--config", "train={'steps_per_phase': 3}")
    assert proc.returncode != 0
    assert "params_file" in output(proc)


# ------------------------------------------------------------------------------ end to end
# One test (not a module fixture shared by several tests): under pytest-xdist a shared
# fixture would run the pipeline once per worker.


@needs_snakemake
@pytest.mark.slow
def test_end_to_end_tiny_pipeline(tmp_path):
    """params/tiny.yaml has every part of a study: 2 orders, a sweep, tuning and the tuned runs."""
    wd = copy_workflow(tmp_path / "wf")
    params = yaml.safe_load((wd / "params/tiny.yaml").read_text())
    plan = planned(wd / "params/tiny.yaml")
    assert {r.part for r in plan} == {"runs", "sweep", "tuning", "tuned"}, "tiny.yaml must exercise every part"
    config = ("--config", "params_file=params/tiny.yaml")
    out = wd / "outputs" / "tiny"  # a profile other than the default writes below outputs/<name>

    proc = snakemake(wd, "--cores", "2", *config, timeout=1800)  # 39 jobs: a busy 2-core machine needs time
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted((out / "logs").rglob("*.log")))
        pytest.fail(output(proc)[-6000:] + logs)

    # every output of the pipeline exists
    assert (out / "data/prepared/manifest.json").is_file()
    for domain in params["data"]["domains"]:
        for split in ("train", "valid", "test"):
            assert (out / f"data/prepared/{domain}/{split}.bin").stat().st_size > 0
    for run in plan:
        names = ["metrics.json", "steps.csv.gz", "evals.csv", "checkpoint.pt"]
        names += ["attribution.json"] if run.part == "runs" else []
        for name in names:
            assert (out / "results" / run.path / name).is_file(), f"{run.path}/{name}"
    for run in plan:  # every job logs (a run's job is named by its path)
        assert (out / "logs/train" / f"{run.path}.log").is_file(), run.path
        assert (out / "logs/attribute" / f"{run.path}.log").is_file() == (run.part == "runs"), run.path
    # each run was trained in its own domain order and with its own settings
    for run in plan:
        metrics = json.loads((out / "results" / run.path / "metrics.json").read_text())
        assert metrics["phases"] == list(run.order), run.path
        for key, value in run.overrides:
            assert metrics["method"][key] == value, (run.path, key)
    chosen = json.loads((out / "results/tuning/chosen.json").read_text())
    for run in plan:
        if run.part == "tuned":
            metrics = json.loads((out / "results" / run.path / "metrics.json").read_text())
            for key, value in chosen["variants"][run.variant]["overrides"].items():
                assert metrics["method"][key] == value, (run.path, key)
    assert len(list((out / "logs/train").rglob("*.log"))) == len(plan)
    assert (out / "results/tidy.csv").stat().st_size > 0
    assert set(pd.read_csv(out / "results/tidy.csv")["part"]) == {"as_specified", "sweep", "tuned"}
    assert (out / "results/summary.json").stat().st_size > 0
    for table in ("summary", "tuned", "orders", "sweep"):
        assert (out / f"results/tables/{table}.md").is_file(), table
    for figure in ("forgetting", "sensitivity", "tuned_vs_specified"):
        assert (out / f"results/figures/{figure}.png").is_file(), figure
    paper = (out / "paper/paper.md").read_text()
    for heading in ("## Tuned comparison", "## Domain orders", "## Sensitivity"):
        assert heading in paper, heading
    assert (out / "paper/numbers.json").stat().st_size > 0
    for rule in ("prepare_data", "tune_all", "aggregate", "figures", "paper"):
        assert (out / f"logs/{rule}.log").is_file()
    assert (out / "logs/tune/dense.log").is_file() and (out / "results/tuning/dense/chosen.json").is_file()

    # a second run has nothing to do
    proc = snakemake(wd, "-n", "--cores", "2", *config)
    assert proc.returncode == 0 and "Nothing to be done" in output(proc), output(proc)

    # the report builds from the finished run
    proc = snakemake(wd, "--cores", "1", *config, "--report", "report.zip")
    assert proc.returncode == 0, output(proc)
    assert (wd / "report.zip").stat().st_size > 0

    # editing a training param reruns training and everything after it, not data prep;
    # editing a statistics param reruns only the analysis and the paper
    everything = expected_jobs(wd / "params/tiny.yaml")
    original = (wd / "params/tiny.yaml").read_text()
    for section, key, expected in (
        ("train", "steps_per_phase", {k: v for k, v in everything.items() if k not in ("prepare_data", "floors")}),
        ("analysis", "bootstrap_resamples", {"aggregate": 1, "figures": 1, "paper": 1, "all": 1}),
    ):
        edited = yaml.safe_load(original)
        edited[section][key] += 1
        (wd / "params/tiny.yaml").write_text(yaml.safe_dump(edited))
        proc = snakemake(wd, "-n", "--cores", "2", *config)
        (wd / "params/tiny.yaml").write_text(original)
        assert proc.returncode == 0, output(proc)
        assert job_counts(output(proc)) == expected, (section, key, job_counts(output(proc)))

    # issue 28: adding a variant or a seed trains only the new runs (and attributes, tunes and analyses what
    # they add); every existing run's job stays as it was, wherever the new runs fall in the plan
    analysis = {"aggregate": 1, "figures": 1, "paper": 1, "all": 1}
    before = {r.path for r in plan}
    for what, edit in (("a variant", lambda p: p["experiment"]["variants"].insert(0, "ewc")),
                       ("a seed", lambda p: p["experiment"]["seeds"].insert(0, 3)),
                       ("a tuned variant", lambda p: p["tuning"]["variants"].insert(0, "k1_grow"))):
        edited = yaml.safe_load(original)
        edit(edited)
        (wd / "params/tiny.yaml").write_text(yaml.safe_dump(edited))
        proc = snakemake(wd, "-n", "--cores", "2", *config)
        new = {r.path: r for r in planned(wd / "params/tiny.yaml") if r.path not in before}
        (wd / "params/tiny.yaml").write_text(original)
        assert proc.returncode == 0, output(proc)
        tuned = {r.variant for r in new.values() if r.part == "tuning"}
        want = {"train": len(new), **analysis}
        want.update({"attribute": sum(r.part == "runs" for r in new.values())} if any(r.part == "runs" for r in new.values()) else {})
        want.update({"tune": len(tuned), "tune_all": 1} if tuned else {})
        assert job_counts(output(proc)) == want, (what, job_counts(output(proc)))
        jobs = job_runs(output(proc))
        assert jobs["train"] == set(new) and jobs.get("tune", set()) == tuned, what
