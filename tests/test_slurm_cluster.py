"""The pipeline through a real SLURM cluster (issue 29), not a dry run: params/tiny.yaml sent through the
shipped profile workflow/profiles/slurm by the executor plugin to sbatch, on the one-node cluster of
`scripts/slurm_cluster.sh up` (real munged, slurmctld, slurmd; no accounting database).

Marked `cluster`; skipped, with the reason, where there is no sbatch or no controller answers
(`K1_REQUIRE_SLURM=1`, set by .ci/run after it starts the cluster, turns the skip into a failure).
The profile is used as shipped, with an overlay the test derives from it (never a hand-kept copy): each
job's CPUs and memory fitted to the node (`fitted`), training asking for one GPU (the run stays on CPU),
and the plugin's log and status-check settings for a test. What it proves: every job went through sbatch
(the plugin's log and the cluster's job completion log name the same job ids), each job was given its
rule's partition, CPUs, memory and time limit by SLURM, only the training jobs were allocated a GPU, and
the results equal a local run's (`k1 compare` says SAME). What it cannot: several nodes, a shared file
system between them, a site's accounting, QOS and limits (docs/pipeline.md, "Running on a cluster").
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from k1model.cli import main as k1
from test_pipeline import ROOT, copy_workflow, expected_jobs, needs_snakemake, output, snakemake

PROFILE = ROOT / "workflow/profiles/slurm/config.yaml"
GPU_RULE = "train"  # the overlay's small GPU profile: training asks for gpu=1, nothing else does


def _cluster_missing() -> str | None:
    """Why the cluster tests cannot run here (None when a controller answers)."""
    if shutil.which("sbatch") is None:
        return "no sbatch: SLURM is not installed (scripts/slurm_cluster.sh up sets up a one-node cluster)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return "no SLURM controller answers (scontrol ping): start one with scripts/slurm_cluster.sh up"
    return None


@pytest.fixture
def cluster() -> dict[str, str]:
    """The running cluster's configuration (`scontrol show config`), or a skip saying why there is none."""
    missing = _cluster_missing()
    if missing:
        if os.environ.get("K1_REQUIRE_SLURM") == "1":
            pytest.fail(f"K1_REQUIRE_SLURM=1 but {missing}")
        pytest.skip(missing)
    text = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"^(\w+)\s+=\s+(.*?)\s*$", text, flags=re.M))


# ------------------------------------------------------------------ the overlay


def node_size(partition: str) -> tuple[int, int]:
    """CPUs and memory (MB) of the smallest node of a partition, as SLURM has it."""
    proc = subprocess.run(["sinfo", "-h", "-N", "-p", partition, "-o", "%c %m"], capture_output=True, text=True)
    sizes = [tuple(map(int, line.split())) for line in proc.stdout.split("\n") if line.strip()]
    if proc.returncode != 0 or not sizes:
        pytest.fail(f"partition {partition!r} of {PROFILE.relative_to(ROOT)} is not on this cluster "
                    f"(sinfo: {proc.stderr.strip() or 'no nodes'}); scripts/slurm_cluster.sh sets up `cpu` and `gpu`")
    return min(c for c, _ in sizes), min(m for _, m in sizes)


def fitted(resources: dict, defaults: dict) -> dict:
    """A profile entry fitted to its partition's node: CPUs at most half the node's (two jobs side by side,
    as in a local run: a job spends much of its time starting Python on one core), memory at most the
    node's share for those CPUs. Keys the entry does not set stay unset (they come from the defaults)."""
    merged = {**defaults, **resources}
    cpus, memory = node_size(merged["slurm_partition"])
    out = dict(resources)
    asked = min(int(merged.get("cpus_per_task", 1)), max(1, cpus // 2))
    if "cpus_per_task" in out:
        out["cpus_per_task"] = asked
    if "mem_mb" in out:
        out["mem_mb"] = min(int(out["mem_mb"]), memory * asked // cpus)
    return out


def local_overlay(profile: dict) -> dict:
    """The overlay for this cluster, derived from the shipped profile: sizes fitted to the node, training
    asking for one GPU, threads no more than the CPUs given, and the plugin's settings for a test."""
    defaults = fitted(profile["default-resources"], {})
    per_rule = {rule: fitted(res, profile["default-resources"]) for rule, res in profile.get("set-resources", {}).items()}
    per_rule.setdefault(GPU_RULE, {})["gpu"] = 1
    threads = {rule: min(int(n), int({**defaults, **per_rule.get(rule, {})}["cpus_per_task"]))
               for rule, n in profile.get("set-threads", {}).items()}
    return {
        "default-resources": defaults,
        "set-resources": per_rule,
        "set-threads": threads,
        "slurm-keep-successful-logs": True,         # the plugin's per-job logs stay for the test to read
        "slurm-init-seconds-before-status-checks": 2,  # the plugin waits 40 s before it first asks
    }


def expected(overlay: dict, rule: str) -> dict:
    """What a job of `rule` asks SLURM for under the profile and overlay."""
    return {**overlay["default-resources"], **overlay["set-resources"].get(rule, {})}


# ------------------------------------------------------------------ the cluster's records


def rule_kind(rule: str) -> str:
    """`train` for every training rule (train, or the generated train_g0, train_t1, ...), `attribute`
    likewise, else the rule's own name: the name a profile's set-resources uses."""
    if re.fullmatch(r"train(_[gstu]\d+)?", rule):
        return "train"
    if re.fullmatch(r"attribute(_g\d+_\d+)?", rule):
        return "attribute"
    return rule


def fields(line: str) -> dict[str, str]:
    """`Key=Value Key=Value ...` (one `scontrol -o` or job completion line); the first of a repeated key."""
    out: dict[str, str] = {}
    for key, value in re.findall(r"(\S+?)=(\S*)", line):
        out.setdefault(key, value)
    return out


class JobRecorder(threading.Thread):
    """`scontrol show job -d -o` every second while the pipeline runs: each job's last record by id (the
    controller keeps finished jobs for MinJobAge seconds), with the GRES SLURM allocated to it."""

    def __init__(self):
        super().__init__(daemon=True)
        self.jobs: dict[str, dict[str, str]] = {}
        self.done = threading.Event()

    def poll(self):
        proc = subprocess.run(["scontrol", "show", "job", "-d", "-o"], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            record = fields(line)
            if "JobId" in record:
                self.jobs[record["JobId"]] = record

    def run(self):
        while not self.done.wait(1.0):
            self.poll()

    def stop(self):
        self.done.set()
        self.join()
        self.poll()


def mebibytes(value: str) -> int:
    """A SLURM memory amount (`24105M`, `31.25G`) in MB."""
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?)", value).groups()
    return round(float(number) * {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[unit])


def submissions(text: str) -> dict[str, str]:
    """The plugin's log: SLURM job id -> the rule it runs."""
    found = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_([A-Za-z0-9_]+)/", text)
    return dict(found)


# ------------------------------------------------------------------ the test


@needs_snakemake
@pytest.mark.cluster
@pytest.mark.slow
def test_the_tiny_profile_runs_through_slurm_as_the_profile_asks_and_equals_a_local_run(tmp_path, cluster, capsys):
    assert cluster.get("JobCompType") == "jobcomp/filetxt", (
        "the cluster keeps no job completion log (JobCompType=jobcomp/filetxt, as scripts/slurm_cluster.sh sets): "
        "the test checks every job against it")
    jobcomp = Path(cluster["JobCompLoc"])
    profile = yaml.safe_load(PROFILE.read_text())
    overlay = local_overlay(profile)
    (tmp_path / "overlay").mkdir()
    (tmp_path / "overlay/config.yaml").write_text(yaml.safe_dump(overlay))
    profiles = ("--profile", "workflow/profiles/slurm", "--profile", str(tmp_path / "overlay"))
    config = ("--config", "params_file=params/tiny.yaml")

    wd = copy_workflow(tmp_path / "slurm")
    recorder = JobRecorder()
    recorder.start()
    started = time.monotonic()
    try:
        proc = snakemake(wd, *profiles, *config, timeout=2400)
    finally:
        recorder.stop()
    slurm_wall = time.monotonic() - started
    text = output(proc)
    assert proc.returncode == 0, text[-8000:]

    # every job of the DAG went through sbatch; only the target rule `all` ran locally
    run_id = re.search(r"SLURM run ID: (\S+)", text).group(1)
    submitted = submissions(text)
    kinds = {job: rule_kind(rule) for job, rule in submitted.items()}
    want = {k: v for k, v in expected_jobs(wd / "params/tiny.yaml").items() if k != "all"}
    counted = {kind: list(kinds.values()).count(kind) for kind in set(kinds.values())}
    assert counted == want, f"jobs submitted through sbatch per rule {counted}, the DAG's {want}"
    assert set(re.findall(r"^localrule (\w+):", text, flags=re.M)) == {"all"}
    for job, rule in submitted.items():
        assert list((wd / ".snakemake/slurm_logs" / f"rule_{rule}").rglob(f"{job}.log")), f"no plugin log of job {job}"

    # the cluster's own records: the job completion log names exactly these jobs, all completed
    completed = {r["JobId"]: r for r in map(fields, jobcomp.read_text().splitlines()) if r.get("Name") == run_id}
    assert set(completed) == set(submitted), (sorted(completed), sorted(submitted))
    got = {}
    for job in submitted:
        done, live = completed[job], recorder.jobs.get(job)
        assert live is not None, f"job {job} ({submitted[job]}) never seen by scontrol while the pipeline ran"
        tres = dict(kv.split("=", 1) for kv in done["Tres"].split(","))
        got[job] = {"state": done["JobState"], "slurm_partition": done["Partition"], "cpus_per_task": int(live["CPUs/Task"]),
                    "mem_mb": mebibytes(tres["mem"]), "runtime": int(done["TimeLimit"]), "gres": live["JOB_GRES"]}
    with capsys.disabled():  # in CI's log: the job ids and what SLURM gave each job
        print(f"\nSLURM run {run_id}: {len(submitted)} jobs in {slurm_wall:.0f} s (ids from the plugin's log; "
              f"state, partition, memory, minutes from {jobcomp}; CPUs per task, GRES from scontrol)")
        print("  job  rule             state      partition  cpus  mem_mb  minutes  gres")
        for job in sorted(submitted, key=int):
            g = got[job]
            print(f"  {job:>4} {submitted[job]:<16} {g['state']:<10} {g['slurm_partition']:<10} "
                  f"{g['cpus_per_task']:>4} {g['mem_mb']:>7} {g['runtime']:>8}  {g['gres']}")
    for job, g in got.items():  # each job was given what the profile (with the overlay) asks for its rule
        asked = expected(overlay, kinds[job])
        assert g["state"] == "COMPLETED", (job, submitted[job], g)
        for key in ("slurm_partition", "cpus_per_task", "mem_mb", "runtime"):
            assert g[key] == asked[key], f"job {job} ({submitted[job]}): {key} {g[key]}, the profile asks {asked[key]}"
        assert g["gres"] == ("gpu:1" if asked.get("gpu") else "(null)"), f"job {job} ({submitted[job]}): GRES {g['gres']}"
    # by SLURM's records alone: the training jobs ran apart from the other jobs, in their own partition with
    # a longer time limit (the profile's set-resources: train:, not its defaults), and only they got a GPU
    train = [completed[j] for j in submitted if kinds[j] == "train"]
    other = [completed[j] for j in submitted if kinds[j] not in ("train", "attribute")]
    assert {r["Partition"] for r in train}.isdisjoint(r["Partition"] for r in other), (
        f"training jobs ran in the partition of the other jobs ({train[0]['Partition']}): "
        f"does {PROFILE.relative_to(ROOT)} still give them their own (set-resources: train:)?")
    assert min(int(r["TimeLimit"]) for r in train) > max(int(r["TimeLimit"]) for r in other), (
        f"training jobs got a time limit of {train[0]['TimeLimit']} minutes, no longer than the other jobs': "
        f"does {PROFILE.relative_to(ROOT)} still give them their own (set-resources: train:)?")
    assert {kinds[j] for j in submitted if got[j]["gres"] != "(null)"} == {"train"}

    # the same results as a local run of the same profiles (same threads per job), number for number
    local = copy_workflow(tmp_path / "local")
    started = time.monotonic()
    proc = snakemake(local, *profiles, *config, "--executor", "local", "--cores", str(os.cpu_count() or 1), timeout=1800)
    assert proc.returncode == 0, output(proc)[-8000:]
    capsys.readouterr()
    status = k1(["compare", str(wd / "outputs/tiny/results"), str(local / "outputs/tiny/results")])
    verdict = capsys.readouterr().out
    with capsys.disabled():
        print(f"local run: {time.monotonic() - started:.0f} s; k1 compare SLURM local: {verdict.strip().splitlines()[-1]}")
    assert status == 0 and verdict.strip().endswith("SAME"), verdict[-6000:]
