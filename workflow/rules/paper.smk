# Stage 4: the manuscript, rendered from results/ only (plus the data manifest).


rule paper:
    input:
        manifest=f"{PREPARED}/manifest.json",
        tidy=f"{RESULTS}/tidy.csv",
        summary=f"{RESULTS}/summary.json",
        comparisons=f"{RESULTS}/comparisons.json",
        metrics=f"{RESULTS}/metrics.json",
        tables=f"{RESULTS}/tables",
        figures=f"{RESULTS}/figures",
    output:
        paper=report(f"{PAPER}/paper.md", category="Paper", caption="../report/paper.rst"),
        numbers=f"{PAPER}/numbers.json",
    log:
        f"{LOGS}/paper.log",
    params:
        file=PARAMS_FILE,
        paper_cfg=fingerprint("data", "model", "method", "train", "experiment", "analysis", "sweep", "tuning"),
        data=lambda wildcards, input: Path(input.manifest).parent,
        results=lambda wildcards, input: Path(input.summary).parent,
        out=lambda wildcards, output: Path(output.paper).parent,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 paper --params {params.file:q} --results {params.results:q} --data {params.data:q}"
        " --out {params.out:q} > {log:q} 2>&1"
