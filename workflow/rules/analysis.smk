# Stage 3: across-run analysis. `k1 aggregate` builds the tidy table, statistics and
# tables from every run named by experiment.variants x seeds; `k1 figures` draws them.


rule aggregate:
    input:
        metrics=run_files("metrics.json"),
        attribution=run_files("attribution.json"),
    output:
        tidy=report("results/tidy.csv", category="Tables", caption="../report/tidy.rst"),
        summary="results/summary.json",
        comparisons="results/comparisons.json",
        tables=report(
            directory("results/tables"),
            patterns=["{name}.csv"],
            category="Tables",
            caption="../report/tables.rst",
        ),
    log:
        "logs/aggregate.log",
    params:
        file=PARAMS_FILE,
        analysis_cfg=fingerprint("experiment", "analysis"),
        runs=lambda wildcards, input: Path(input.metrics[0]).parents[2],
        out=lambda wildcards, output: Path(output.summary).parent,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 aggregate --params {params.file} --runs {params.runs} --out {params.out} > {log} 2>&1"


rule figures:
    input:
        tidy="results/tidy.csv",
        summary="results/summary.json",
        evals=run_files("evals.csv"),
        steps=run_files("steps.csv.gz"),
    output:
        figures=report(
            directory("results/figures"),
            patterns=["{name}.png"],
            category="Figures",
            caption="../report/figures.rst",
        ),
    log:
        "logs/figures.log",
    params:
        file=PARAMS_FILE,
        figure_cfg=fingerprint("experiment", "analysis"),
        runs=lambda wildcards, input: Path(input.evals[0]).parents[2],
        results=lambda wildcards, input: Path(input.summary).parent,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 figures --params {params.file} --runs {params.runs} --results {params.results}"
        " --out {output.figures} > {log} 2>&1"


rule analysis:
    """Target: tables, summary and figures (`snakemake analysis`)."""
    localrule: True
    input:
        rules.aggregate.output,
        rules.figures.output,
