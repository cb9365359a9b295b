# K-1 pipeline (DESIGN.md §5): data -> runs (variant x seed) -> attribution -> analysis
# -> figures -> paper. Thin: every rule is one call of the library's `k1` command.
#
#   snakemake --cores all --resources gpu=1                        # default CPU profile -> results/, paper/
#   snakemake --cores all --resources gpu=1 --config params_file=params/study.yaml   # -> outputs/study/
#   snakemake --profile workflow/profiles/slurm --config params_file=params/paper.yaml  # -> outputs/paper/
#
# See docs/pipeline.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params/default.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


# `--config stage=NAME` (what dvc.yaml runs) includes only that stage's rules.
if in_stage("data"):

    include: "workflow/rules/data.smk"


if in_stage("runs"):

    include: "workflow/rules/train.smk"


if in_stage("analysis"):

    include: "workflow/rules/analysis.smk"


if in_stage("paper"):

    include: "workflow/rules/paper.smk"


if STAGE is None:

    rule all:
        """Default target: every run, the tables, figures and the paper."""
        default_target: True
        localrule: True
        input:
            rules.runs.input,
            rules.analysis.input,
            rules.paper.output,
