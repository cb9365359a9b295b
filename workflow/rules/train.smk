# Stage 2: training. The library plans the runs (variants x seeds) and groups them into jobs of at
# most train.runs_per_job runs that train together in one process (`k1 train --group`); one rule
# per job, with every file of its runs as outputs. Then one attribution job per run. Both read the
# model/method/train sections (fingerprinted as a param) and the prepared data (an input).


for _group, _runs in TRAIN_GROUPS.items():

    rule:
        name:
            f"train_{_group}"
        input:
            manifest=f"{PREPARED}/manifest.json",
        output:
            metrics=[f"{RUNS}/{r.path}/metrics.json" for r in _runs],
            steps=[f"{RUNS}/{r.path}/steps.csv.gz" for r in _runs],
            evals=[f"{RUNS}/{r.path}/evals.csv" for r in _runs],
            checkpoint=[f"{RUNS}/{r.path}/checkpoint.pt" for r in _runs],
        log:
            f"logs/train/{_group}.log",
        benchmark:
            f"logs/benchmarks/train/{_group}.tsv"
        params:
            file=PARAMS_FILE,
            run_cfg=fingerprint("model", "method", "train"),
            group=_group,
            # the runs root, from the first output: RUNS/<path of the run>/metrics.json
            runs_root=lambda wildcards, output, depth=len(Path(_runs[0].path).parts): Path(
                output.metrics[0]
            ).parents[depth],
            data=lambda wildcards, input: Path(input.manifest).parent,
        threads: 1
        resources:
            gpu=GPUS_PER_RUN,
        conda:
            "../envs/k1.yaml"
        shell:
            "k1 train --params {params.file} --data {params.data} --runs-root {params.runs_root} --group {params.group}"
            " --threads {threads} > {log} 2>&1"


rule attribute:
    input:
        manifest=f"{PREPARED}/manifest.json",
        metrics=f"{RUN_DIR}/metrics.json",
        checkpoint=f"{RUN_DIR}/checkpoint.pt",
    output:
        attribution=f"{RUN_DIR}/attribution.json",
    log:
        "logs/attribute/{variant}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/attribute/{variant}/seed{seed}.tsv"
    params:
        file=PARAMS_FILE,
        probe_cfg=fingerprint(*PROBE_KEYS),
        data=lambda wildcards, input: Path(input.manifest).parent,
        run=lambda wildcards, input: Path(input.metrics).parent,
    threads: 1
    resources:
        gpu=GPUS_PER_RUN,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 attribute --params {params.file} --data {params.data} --run {params.run}"
        " --threads {threads} > {log} 2>&1"


rule runs:
    """Target: every run of experiment.variants x experiment.seeds, with its attribution."""
    localrule: True
    input:
        run_files("metrics.json"),
        run_files("attribution.json"),
