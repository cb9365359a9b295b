# Stage 2: training. The library plans the runs (the main comparison, and the sweep, tuning and
# tuned runs when the params define them); each run is one job of the one `train` rule, named by
# its path (`k1 train --run runs/<order>/<variant>/seed<k>`). A job's params are the run's own
# identity (common.smk, RUN_FINGERPRINTS), so adding a variant, a seed or a strategy to a profile
# trains only the new runs. Each tuned variant's settings are chosen by its own `tune` job, which
# its tuned runs wait for; `tune_all` writes every variant's choice for the analysis. Then the
# attribution probes of the main comparison's runs, one job per run. Profiles set the jobs'
# resources and threads by rule name, as Snakemake documents: `set-resources: train:`,
# `set-threads: attribute:`.
# A training job's output goes to its log and, through `tee`, to the terminal Snakemake runs in:
# `k1 train` prints a progress line every 5 % of its steps ("[runs/.../k1_full/seed0: k1_full s0]
# step 120/600 (20%) phase 0, 4s elapsed, ~16s left"), so a job is never silent.


wildcard_constraints:
    run=RUN_PATH,  # a planned run's path: <part>/.../seed<k> (common.smk)
    variant=r"[A-Za-z0-9_]+",


rule train:
    """One run of the plan: its metrics, step log, learning curves and checkpoint."""
    input:
        unpack(train_inputs),
        manifest=f"{PREPARED}/manifest.json",
    output:
        metrics=f"{RESULTS}/{{run}}/metrics.json",
        steps=f"{RESULTS}/{{run}}/steps.csv.gz",
        evals=f"{RESULTS}/{{run}}/evals.csv",
        checkpoint=f"{RESULTS}/{{run}}/checkpoint.pt",
    log:
        f"{LOGS}/train/{{run}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train/{{run}}.tsv"
    params:
        file=PARAMS_FILE,
        run_identity=lambda wildcards: RUN_FINGERPRINTS[planned_run(wildcards).path],
        # the results root, from the output: RESULTS/<the run's path>/metrics.json
        root=lambda wildcards, output: Path(output.metrics).parents[len(Path(wildcards.run).parts)],
        choices=lambda wildcards, input: ["--choices", input.choice] if "choice" in input.keys() else [],
        data=lambda wildcards, input: Path(input.manifest).parent,
    threads: 1
    resources:
        gpu=GPUS_PER_RUN,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 train --params {params.file:q} --data {params.data:q} --runs-root {params.root:q} --run {wildcards.run:q}"
        " {params.choices:q} --threads {threads} 2>&1 | tee {log:q}"


rule tune:
    """One variant's settings, chosen on the validation split of its tuning runs."""
    input:
        metrics=lambda wildcards: [f"{RESULTS}/{r.path}/metrics.json" for r in PLAN
                                   if r.part == "tuning" and r.variant == wildcards.variant],
    output:
        choice=f"{RESULTS}/tuning/{{variant}}/chosen.json",
    log:
        f"{LOGS}/tune/{{variant}}.log",
    params:
        file=PARAMS_FILE,
        tuning_identity=lambda wildcards: TUNING_FINGERPRINTS[wildcards.variant],
        root=lambda wildcards, output: Path(output.choice).parents[2],  # RESULTS/tuning/<variant>/chosen.json
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 tune --params {params.file:q} --results {params.root:q} --variant {wildcards.variant:q}"
        " --out {output.choice:q} > {log:q} 2>&1"


rule tune_all:
    """Every tuned variant's choice in one file (what the analysis reads)."""
    input:
        metrics=run_files("metrics.json", "tuning"),
    output:
        choice=CHOICE,
    log:
        f"{LOGS}/tune_all.log",
    params:
        file=PARAMS_FILE,
        tuning_identity=sorted(TUNING_FINGERPRINTS.items()),
        root=lambda wildcards, output: Path(output.choice).parents[1],  # RESULTS/tuning/chosen.json
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 tune --params {params.file:q} --results {params.root:q} --out {output.choice:q} > {log:q} 2>&1"


rule attribute:
    """Attribution probes of one of the main comparison's runs."""
    input:
        manifest=f"{PREPARED}/manifest.json",
        metrics=f"{RESULTS}/{{run}}/metrics.json",
        checkpoint=f"{RESULTS}/{{run}}/checkpoint.pt",
    output:
        attribution=f"{RESULTS}/{{run}}/attribution.json",
    log:
        f"{LOGS}/attribute/{{run}}.log",
    benchmark:
        f"{LOGS}/benchmarks/attribute/{{run}}.tsv"
    params:
        file=PARAMS_FILE,
        probe_cfg=fingerprint(*PROBE_KEYS),
        run_identity=lambda wildcards: RUN_FINGERPRINTS[planned_run(wildcards).path],
        data=lambda wildcards, input: Path(input.manifest).parent,
        run=lambda wildcards, output: Path(output.attribution).parent,
    threads: 1
    resources:
        gpu=GPUS_PER_RUN,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 attribute --params {params.file:q} --data {params.data:q} --run {params.run:q} --threads {threads}"
        " > {log:q} 2>&1"


rule runs:
    """Target: every file of every planned run (all parts), and the attribution of the main comparison's runs.
    Every file is requested, not only metrics.json: Snakemake rebuilds a missing requested file, while a missing
    file that is only another job's input counts as done when that job's outputs are."""
    localrule: True
    input:
        [f for part in PARTS for name in RUN_FILES for f in run_files(name, part)],
        run_files("attribution.json"),
