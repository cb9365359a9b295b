# Shared set-up of the K-1 pipeline: which params file is used, its validation, the
# fingerprints that drive Snakemake's `params` rerun trigger, and the lists of targets. No
# rules here (rules live in the other .smk files); no science anywhere.
#
# The params keys are defined once, in the library (k1model.config); the pipeline asks it to
# validate the file (clear one-line errors naming the key), which keys the probes read, the run
# plan and what each run depends on. The JSON schema is generated from the same classes (`k1
# schema` writes it to workflow/schemas/params.schema.yaml, for editors; the pipeline builds it in
# memory, so an installed strategy's keys are part of it).
import hashlib
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# --------------------------------------------------------------------------------------
# Which params file?  The `k1` commands read the params file themselves (the library owns
# the meaning of every key), so Snakemake must use exactly that file too:
#   snakemake ...                                     -> params/default.yaml
#   snakemake --config params_file=params/tiny.yaml   -> that file
#   snakemake --configfile params/paper.yaml          -> that file
# Pipeline-only settings (never written in a params file) are given with --config:
#   params_file=FILE   the params file (see above)
#   data_root=DIR      root folder for `data.source: local` (else $K1_DATA_ROOT / data.local.root)
#   stage=NAME         only the rules of one stage (data, runs, analysis, paper): what dvc.yaml runs,
#                      so a stage never re-runs another stage's rules; their outputs are inputs
#   outdir=DIR         where data/prepared, results/, paper/ and logs/ go. Default: the repository
#                      root for params/default.yaml (what dvc.yaml versions), outputs/<name> for any
#                      other params file (params/study.yaml -> outputs/study), so a profile never
#                      overwrites another's outputs
# --------------------------------------------------------------------------------------
PIPELINE_KEYS = ("params_file", "data_root", "stage", "outdir")
STAGES = ("data", "runs", "analysis", "paper")
DEFAULT_PARAMS_FILE = "params/default.yaml"


def _relative(path):
    """A path relative to the working directory when it lies below it (stable params/logs)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _pick_params_file():
    cli = dict(workflow.config_settings.config or {})
    extra = sorted(set(cli) - set(PIPELINE_KEYS))
    if extra:
        raise WorkflowError(
            f"--config {extra[0]}=...: only {', '.join(PIPELINE_KEYS)} may be set with --config. "
            "The k1 commands read the params file itself, so edit a params file (copy "
            f"{DEFAULT_PARAMS_FILE}) and select it with --config params_file=FILE."
        )
    if cli.get("params_file"):
        return _relative(cli["params_file"])
    files = list(workflow.overwrite_configfiles or [])
    if len(files) > 1:
        raise WorkflowError(
            "give one params file: --configfile FILE (or --config params_file=FILE), not "
            + ", ".join(map(str, files))
        )
    if files:
        return _relative(files[0])
    return DEFAULT_PARAMS_FILE


def _load_params(path):
    """The params file as the k1 commands read it (the library's YAML reader: a duplicate key is an error)."""
    from k1model.config import read_params_file
    from k1model.errors import ConfigError

    if not Path(path).is_file():
        raise WorkflowError(f"params file not found: {path} (set it with --config params_file=FILE)")
    try:
        return read_params_file(path, required=())
    except ConfigError as err:
        raise WorkflowError(f"invalid params file {path}: {err}") from None


def _dotted(path_items):
    out = ""
    for item in path_items:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else str(item))
    return out


def _check_schema(params, schema, path):
    """The first violation of the JSON schema, as one line naming the key."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(params))
    if error is None:
        return
    where = _dotted(error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(error.schema.get("properties", {}))
        keys = ", ".join(f"{where}.{k}" if error.absolute_path else k for k in unknown)
        raise WorkflowError(f"invalid params file {path}: unknown key {keys}; allowed keys here: {allowed}")
    raise WorkflowError(f"invalid params file {path}: {where}: {error.message}")


def _validate_params(params, path, stage):
    """Validate at start-up, before any job: the library's checks (one clear line naming the key), then the
    JSON schema the library generates, which must agree. Returns the validated `Params` (None in the data
    stage) and the validated sections as plain mappings (defaults filled in). The data stage (`stage=data`, what dvc.yaml's data stage runs) reads only `data`
    and `model`: only those are checked, so neither the registry of strategies nor any training code is
    imported, and the data stage depends only on what data preparation imports."""
    from k1model.config import DataConfig, ModelConfig
    from k1model.config.checks import plain
    from k1model.errors import ConfigError

    validated = None
    try:
        if stage == "data":
            from k1model.config import load_data_sections

            sections = dict(zip(("data", "model"), load_data_sections(path)))
        else:
            from k1model.config import load_params  # the registry finds the variants and strategies itself

            validated = load_params(path)
            sections = {name: getattr(validated, name) for name in type(validated).field_names()}
    except ConfigError as err:
        raise WorkflowError(f"invalid params file {path}: {err}") from None
    if stage == "data":
        schema = {"type": "object", "properties": {"data": DataConfig.schema(), "model": ModelConfig.schema()}}
        _check_schema({k: params.get(k) for k in ("data", "model") if k in params}, schema, path)
    else:
        from k1model.config import params_schema

        _check_schema(params, params_schema(), path)
    return validated, {name: plain(section) for name, section in sections.items()}


PARAMS_FILE = _pick_params_file()
PARAMS = _load_params(PARAMS_FILE)
STAGE = (workflow.config_settings.config or {}).get("stage")
if STAGE is not None and STAGE not in STAGES:
    raise WorkflowError(f"--config stage={STAGE}: unknown stage; allowed: {', '.join(STAGES)}")
VALIDATED_PARAMS, VALIDATED = _validate_params(PARAMS, PARAMS_FILE, STAGE)
# From here on `config` is exactly the (validated) params file that every k1 call reads.
config.clear()
config.update(PARAMS)
DATA_ROOT = (workflow.config_settings.config or {}).get("data_root")


def in_stage(name):
    """Whether the rules of stage `name` are part of this invocation (all of them without stage=)."""
    return STAGE is None or STAGE == name

DOMAINS = list(VALIDATED["data"]["domains"])
DEVICE = str(config["train"].get("device", "cpu"))
# One GPU per training/attribution job when the params ask for CUDA ("auto" may use one).
GPUS_PER_RUN = 1 if (DEVICE == "auto" or DEVICE.startswith("cuda")) else 0

# Rules call the `k1` console script. Make sure the one installed beside the Python that
# runs Snakemake is found, also when the virtual environment is not activated.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ.update(PATH=os.pathsep.join([_BIN, os.environ.get("PATH", "")]))


def fingerprint(*keys):
    """Short stable hash of some validated params sections or dotted keys ("data", "model.max_seq_len"),
    defaults included. Used as a `params` entry of a rule, so that editing a section reruns exactly the
    rules that read it (rerun trigger `params`) and nothing upstream; the whole params file is
    deliberately not a rule input."""
    picked = {}
    for key in keys:
        value = VALIDATED
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        picked[key] = value
    blob = json.dumps(picked, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# analysis.* keys read by `k1 attribute` (asked from the library); the other analysis keys
# (bootstrap, tests) only concern `k1 aggregate` and must not rerun the probes.
from k1model.config import AnalysisConfig

PROBE_KEYS = [f"analysis.{key}" for key in AnalysisConfig.probe_keys()]


def resolved_data_root():
    """What `k1 prepare` will use as the root for local corpora ('' when not local)."""
    if config["data"].get("source") != "local":
        return ""
    root = DATA_ROOT or os.environ.get("K1_DATA_ROOT") or (config["data"].get("local") or {}).get("root")
    return str(root or "")


def data_root_arg():
    """`--data-root DIR` as a list of arguments (quoted one by one with `:q`), or none."""
    return ["--data-root", DATA_ROOT] if DATA_ROOT else []


# ------------------------------------------------------------------ file layout (targets)
def _outdir():
    given = (workflow.config_settings.config or {}).get("outdir")
    if given is not None:
        return _relative(given)
    same = Path(PARAMS_FILE).resolve() == Path(DEFAULT_PARAMS_FILE).resolve()
    return "." if same else f"outputs/{Path(PARAMS_FILE).stem}"


def _under(root, *parts):
    return Path(root, *parts).as_posix()  # Path drops a leading "." (the repository root)


OUTDIR = _outdir()
PREPARED = _under(OUTDIR, "data", "prepared")
RESULTS = _under(OUTDIR, "results")
PAPER = _under(OUTDIR, "paper")
LOGS = _under(OUTDIR, "logs")


def prepared_files():
    return [f"{PREPARED}/manifest.json"] + [
        f"{PREPARED}/{domain}/{split}.bin" for domain in DOMAINS for split in ("train", "valid", "test")
    ]


# The run plan comes from the library (the same function `k1 train --run` uses): one job per run, named by
# the run's path and fingerprinted by the run's own identity (what its numbers depend on), so adding a
# variant, a seed or a strategy to a profile reruns no existing run. The data stage plans nothing.
if STAGE == "data":
    PLAN, RUN_FINGERPRINTS, TUNING_FINGERPRINTS = [], {}, {}
else:
    from k1model.study.plan import (choice_path, plan_runs, run_fingerprint, tuned_variants_of, tuning_fingerprint,
                                    twin_path)

    PLAN = plan_runs(VALIDATED_PARAMS)
    RUN_FINGERPRINTS = {r.path: run_fingerprint(VALIDATED_PARAMS, r) for r in PLAN}
    TUNING_FINGERPRINTS = {v: tuning_fingerprint(VALIDATED_PARAMS, v) for v in tuned_variants_of(VALIDATED_PARAMS)}
PLANNED = {r.path: r for r in PLAN}
# what a run's path looks like: <part>/.../seed<k> (a sweep grid's or a tuning candidate's point may hold a "/")
RUN_PATH = r"(" + "|".join(sorted({r.part for r in PLAN}) or ["runs"]) + r")/.+/seed\d+"
PARTS = sorted({r.part for r in PLAN})
CHOICE = f"{RESULTS}/tuning/chosen.json"


#: what `k1 train` leaves in a finished run's folder (metrics.json last)
RUN_FILES = ("metrics.json", "steps.csv.gz", "evals.csv", "checkpoint.pt")


def run_files(name, part="runs"):
    """A file of every planned run of one part (runs, sweep, tuning, tuned)."""
    return [f"{RESULTS}/{r.path}/{name}" for r in PLAN if r.part == part]


def planned_run(wildcards):
    """The planned run a job's wildcard names (a path the plan does not have is an error, not a new run)."""
    if wildcards.run not in PLANNED:
        raise WorkflowError(f"{wildcards.run} is not a run of {PARAMS_FILE}")
    return PLANNED[wildcards.run]


def train_inputs(wildcards):
    """A tuned run waits for its variant's tuning choice and for its twin (the main-comparison run it equals
    when the choice is the profile's own settings: then it is copied, k1 train checks the config hash)."""
    run = planned_run(wildcards)
    if run.part != "tuned":
        return {}
    return {"choice": f"{RESULTS}/{choice_path(run.variant)}", "twin": f"{RESULTS}/{twin_path(run)}/metrics.json"}
