# Stage 1: data. Reads only the `data:` section of the params file, and model.max_seq_len
# (every split must hold one window). Their fingerprint is a rule param, so editing
# anything else (method/train/analysis/...) does not rerun data preparation.


rule prepare_data:
    output:
        manifest=f"{PREPARED}/manifest.json",
        splits=[f for f in prepared_files() if not f.endswith("manifest.json")],
    log:
        f"{LOGS}/prepare_data.log",
    params:
        file=PARAMS_FILE,
        data_cfg=fingerprint("data", "model.max_seq_len"),
        data_root=resolved_data_root(),
        data_root_arg=data_root_arg(),
        out=lambda wildcards, output: Path(output.manifest).parent,
    conda:
        "../envs/k1.yaml"
    shell:
        "k1 prepare --params {params.file:q} --out {params.out:q} {params.data_root_arg:q} > {log:q} 2>&1"


rule data:
    """Target: the prepared data of every domain (`snakemake data`)."""
    localrule: True
    input:
        rules.prepare_data.output,
