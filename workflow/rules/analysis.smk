# Stage 3: across-run analysis. `k1 aggregate` builds the tidy table, statistics and
# tables from every run named by experiment.variants x seeds; `k1 figures` draws them.


rule floors:
    """Reference floors: held-out bpb of smoothed byte n-gram models of every domain (the competence check's)."""
    input:
        manifest=f"{PREPARED}/manifest.json",
    output:
        floors=f"{RESULTS}/floors.json",
    log:
        f"{LOGS}/floors.log",
    params:
        file=PARAMS_FILE,
        floors_cfg=fingerprint("analysis.floor_orders"),
        data=lambda wildcards, input: Path(input.manifest).parent,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 floors --params {params.file:q} --data {params.data:q} --out {output.floors:q} > {log:q} 2>&1"


rule aggregate:
    input:
        floors=f"{RESULTS}/floors.json",
        metrics=[f for part in PARTS if part != "tuning" for f in run_files("metrics.json", part)],
        attribution=run_files("attribution.json"),
        choice=[CHOICE] if "tuning" in PARTS else [],
    output:
        tidy=report(f"{RESULTS}/tidy.csv", category="Tables", caption="../report/tidy.rst"),
        summary=f"{RESULTS}/summary.json",
        comparisons=f"{RESULTS}/comparisons.json",
        metrics=f"{RESULTS}/metrics.json",
        tables=report(
            directory(f"{RESULTS}/tables"),
            patterns=["{name}.csv"],
            category="Tables",
            caption="../report/tables.rst",
        ),
    log:
        f"{LOGS}/aggregate.log",
    params:
        file=PARAMS_FILE,
        analysis_cfg=fingerprint("experiment", "analysis", "sweep", "tuning", "frontier"),
        results=lambda wildcards, output: Path(output.summary).parent,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 aggregate --params {params.file:q} --results {params.results:q} --floors {input.floors:q} > {log:q} 2>&1"


rule figures:
    input:
        tidy=f"{RESULTS}/tidy.csv",
        summary=f"{RESULTS}/summary.json",
        evals=run_files("evals.csv"),
        steps=run_files("steps.csv.gz"),
    output:
        figures=report(
            directory(f"{RESULTS}/figures"),
            patterns=["{name}.png"],
            category="Figures",
            caption="../report/figures.rst",
        ),
    log:
        f"{LOGS}/figures.log",
    params:
        file=PARAMS_FILE,
        figure_cfg=fingerprint("experiment", "analysis", "sweep", "tuning", "frontier"),
        results=lambda wildcards, input: Path(input.summary).parent,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 figures --params {params.file:q} --results {params.results:q} --out {output.figures:q} > {log:q} 2>&1"


rule analysis:
    """Target: tables, summary and figures (`snakemake analysis`)."""
    localrule: True
    input:
        rules.aggregate.output,
        rules.figures.output,
