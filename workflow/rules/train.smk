# Stage 2: training. The library plans the runs (the main comparison, and the sweep, tuning and
# tuned runs when the params define them) and groups them into jobs of at most
# train.runs_per_job runs that train together in one process (`k1 train --group`): one rule per
# job, with every file of its runs as outputs. Tuned jobs wait for the tuning choice (`k1 tune`).
# Then the attribution probes of the main comparison's runs, a few runs per job
# (analysis.runs_per_attribution_job). Both read the model/method/train sections (fingerprinted as
# a param) and the prepared data (an input). Profiles set the training jobs' resources and threads
# under the name `train` (`set-resources: train:`) and the attribution jobs' under `attribute`,
# which every generated rule of that kind takes.
# A training job's output goes to its log and, through `tee`, to the terminal Snakemake runs in:
# `k1 train --group` prints a progress line every 5 % of its steps ("[g03: k1_full +5 runs] step
# 120/400 (30%) phase 1, 41s elapsed, ~95s left"), so a job of several minutes is never silent.


for _group, _runs in TRAIN_GROUPS.items():
    _tuned = _runs[0].part == "tuned"

    rule:
        name:
            f"train_{_group}"
        input:
            manifest=f"{PREPARED}/manifest.json",
            choice=[CHOICE] if _tuned else [],
            # a tuned run whose chosen settings are the profile's own is its main-comparison run: it is
            # copied (k1 train checks the config hash), so tuned jobs wait for those runs
            twins=[f"{RESULTS}/{twin_path(r)}/metrics.json" for r in _runs] if _tuned else [],
        output:
            metrics=[f"{RESULTS}/{r.path}/metrics.json" for r in _runs],
            steps=[f"{RESULTS}/{r.path}/steps.csv.gz" for r in _runs],
            evals=[f"{RESULTS}/{r.path}/evals.csv" for r in _runs],
            checkpoint=[f"{RESULTS}/{r.path}/checkpoint.pt" for r in _runs],
        log:
            f"{LOGS}/train/{_group}.log",
        benchmark:
            f"{LOGS}/benchmarks/train/{_group}.tsv"
        params:
            file=PARAMS_FILE,
            run_cfg=fingerprint("model", "method", "train") + group_fingerprint(_runs),
            group=_group,
            # the results root, from the first output: RESULTS/<path of the run>/metrics.json
            root=lambda wildcards, output, depth=len(Path(_runs[0].path).parts): Path(
                output.metrics[0]
            ).parents[depth],
            choices=lambda wildcards, input: ["--choices", input.choice[0]] if input.choice else [],
            data=lambda wildcards, input: Path(input.manifest).parent,
        # the profile's `set-threads: train:` and `set-resources: train:` (common.smk, profile_resources)
        threads: profile_threads("train", 1)
        resources:
            **profile_resources("train", gpu=GPUS_PER_RUN),
        conda:
            "../envs/k1.yaml"
        shell:
            "k1 train --params {params.file:q} --data {params.data:q} --runs-root {params.root:q}"
            " --group {params.group:q} {params.choices:q} --threads {threads} 2>&1 | tee {log:q}"


rule tune:
    """Every variant's settings, chosen on the validation split of the tuning runs."""
    input:
        metrics=run_files("metrics.json", "tuning"),
    output:
        choice=CHOICE,
    log:
        f"{LOGS}/tune.log",
    params:
        file=PARAMS_FILE,
        tuning_cfg=fingerprint("tuning", "experiment"),
        root=lambda wildcards, output: Path(output.choice).parents[1],
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 tune --params {params.file:q} --results {params.root:q} --out {output.choice:q} > {log:q} 2>&1"


for _group, _runs in ATTRIBUTION_GROUPS.items():

    rule:
        """Attribution probes of some of the main comparison's runs (one process: the imports are paid once)."""
        name:
            f"attribute_{_group}"
        input:
            manifest=f"{PREPARED}/manifest.json",
            metrics=[f"{RESULTS}/{r.path}/metrics.json" for r in _runs],
            checkpoint=[f"{RESULTS}/{r.path}/checkpoint.pt" for r in _runs],
        output:
            attribution=[f"{RESULTS}/{r.path}/attribution.json" for r in _runs],
        log:
            f"{LOGS}/attribute/{_group}.log",
        benchmark:
            f"{LOGS}/benchmarks/attribute/{_group}.tsv"
        params:
            file=PARAMS_FILE,
            probe_cfg=fingerprint(*PROBE_KEYS),
            group=_group,
            data=lambda wildcards, input: Path(input.manifest).parent,
            # the results root, from the first output: RESULTS/<path of the run>/attribution.json
            root=lambda wildcards, output, depth=len(Path(_runs[0].path).parts): Path(
                output.attribution[0]
            ).parents[depth],
        # the profile's `set-threads: attribute:` and `set-resources: attribute:` (common.smk)
        threads: profile_threads("attribute", 1)
        resources:
            **profile_resources("attribute", gpu=GPUS_PER_RUN),
        conda:
            "../envs/k1.yaml"
        shell:
            "k1 attribute --params {params.file:q} --data {params.data:q} --runs-root {params.root:q}"
            " --group {params.group:q} --threads {threads} > {log:q} 2>&1"


rule runs:
    """Target: every file of every planned run (all parts), and the attribution of the main comparison's runs.
    Every file is requested, not only metrics.json: Snakemake rebuilds a missing requested file, while a missing
    file that is only another job's input counts as done when that job's outputs are."""
    localrule: True
    input:
        [f for part in PARTS for name in RUN_FILES for f in run_files(name, part)],
        run_files("attribution.json"),
