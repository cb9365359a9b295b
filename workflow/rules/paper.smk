# Stage 4: the manuscript, rendered from results/ only (plus the data manifest).


rule paper:
    input:
        manifest=f"{PREPARED}/manifest.json",
        tidy="results/tidy.csv",
        summary="results/summary.json",
        comparisons="results/comparisons.json",
        metrics="results/metrics.json",
        tables="results/tables",
        figures="results/figures",
    output:
        paper=report("paper/paper.md", category="Paper", caption="../report/paper.rst"),
        numbers="paper/numbers.json",
    log:
        "logs/paper.log",
    params:
        file=PARAMS_FILE,
        paper_cfg=fingerprint("data", "model", "method", "train", "experiment", "analysis", "sweep", "tuning"),
        data=lambda wildcards, input: Path(input.manifest).parent,
        results=lambda wildcards, input: Path(input.summary).parent,
        out=lambda wildcards, output: Path(output.paper).parent,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 paper --params {params.file} --results {params.results} --data {params.data}"
        " --out {params.out} > {log} 2>&1"
