# Stage 2: one training run per variant x seed. Reads the model/method/train sections
# (fingerprinted as a param) and the prepared data (an input, so new data reruns it).


rule train:
    input:
        manifest=f"{PREPARED}/manifest.json",
    output:
        metrics=f"{RUN_DIR}/metrics.json",
        steps=f"{RUN_DIR}/steps.csv.gz",
        evals=f"{RUN_DIR}/evals.csv",
        checkpoint=f"{RUN_DIR}/checkpoint.pt",
    log:
        "logs/train/{variant}/seed{seed}.log",
    benchmark:
        "logs/benchmarks/train/{variant}/seed{seed}.tsv"
    params:
        file=PARAMS_FILE,
        run_cfg=fingerprint("model", "method", "train"),
        data=lambda wildcards, input: Path(input.manifest).parent,
        out=lambda wildcards, output: Path(output.metrics).parent,
    threads: 1
    resources:
        gpu=GPUS_PER_RUN,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 train --params {params.file} --data {params.data} --variant {wildcards.variant}"
        " --seed {wildcards.seed} --out {params.out} --threads {threads} > {log} 2>&1"


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
