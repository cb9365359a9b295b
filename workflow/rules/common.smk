# Shared set-up of the K-1 pipeline: which params file is used, its validation, the
# per-stage fingerprints that drive Snakemake's `params` rerun trigger, and the lists of
# targets. No rules here (rules live in the other .smk files); no science anywhere.
#
# The params keys are defined once, in the library (k1model.config); the pipeline asks it to
# validate the file (clear one-line errors naming the key) and which keys the probes read.
# workflow/schemas/params.schema.yaml is generated from the same classes (`k1 schema`).
import hashlib
import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

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
SCHEMA = "../schemas/params.schema.yaml"


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


def _validate_params(params, path, stage):
    """Validate at start-up, before any job: the library's checks (one clear line naming the key),
    then the generated JSON schema (snakemake.utils.validate), which must agree. The data stage
    (`stage=data`, what dvc.yaml's data stage runs) reads only `data` and `model`: the library checks
    those sections, the schema the whole file, and nothing of the training code is imported, so the
    data stage depends only on what data preparation imports."""
    import jsonschema
    from k1model.errors import ConfigError

    if stage == "data":
        from k1model.config import load_data_sections as load_params
    else:
        from k1model.config import load_params  # the registry finds the variants and strategies itself

    try:
        load_params(path)
    except ConfigError as err:
        raise WorkflowError(f"invalid params file {path}: {err}") from None
    try:
        validate(params, SCHEMA)
    except WorkflowError as err:
        cause = err.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        where = _dotted(cause.absolute_path) or "(top level)"
        if cause.validator == "additionalProperties":
            unknown = sorted(set(cause.instance) - set(cause.schema.get("properties", {})))
            allowed = ", ".join(cause.schema.get("properties", {}))
            keys = ", ".join(f"{where}.{k}" if cause.absolute_path else k for k in unknown)
            raise WorkflowError(
                f"invalid params file {path}: unknown key {keys}; allowed keys here: {allowed}"
            ) from None
        raise WorkflowError(f"invalid params file {path}: {where}: {cause.message}") from None


PARAMS_FILE = _pick_params_file()
PARAMS = _load_params(PARAMS_FILE)
STAGE = (workflow.config_settings.config or {}).get("stage")
if STAGE is not None and STAGE not in STAGES:
    raise WorkflowError(f"--config stage={STAGE}: unknown stage; allowed: {', '.join(STAGES)}")
_validate_params(PARAMS, PARAMS_FILE, STAGE)
# From here on `config` is exactly the (validated) params file that every k1 call reads.
config.clear()
config.update(PARAMS)
DATA_ROOT = (workflow.config_settings.config or {}).get("data_root")


def in_stage(name):
    """Whether the rules of stage `name` are part of this invocation (all of them without stage=)."""
    return STAGE is None or STAGE == name

VARIANTS = list(config["experiment"]["variants"])
SEEDS = [int(s) for s in config["experiment"]["seeds"]]
DOMAINS = list(config["data"]["domains"])
DEVICE = str(config["train"].get("device", "cpu"))
# One GPU per training/attribution job when the params ask for CUDA ("auto" may use one).
GPUS_PER_RUN = 1 if (DEVICE == "auto" or DEVICE.startswith("cuda")) else 0

# Rules call the `k1` console script. Make sure the one installed beside the Python that
# runs Snakemake is found, also when the virtual environment is not activated.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ.update(PATH=os.pathsep.join([_BIN, os.environ.get("PATH", "")]))


def fingerprint(*keys):
    """Short stable hash of some params sections or dotted keys ("data", "model.max_seq_len").
    Used as a `params` entry of a rule, so that editing a section reruns exactly the rules
    that read it (rerun trigger `params`) and nothing upstream; the whole params file is
    deliberately not a rule input."""
    picked = {}
    for key in keys:
        value = config
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


# The run plan and its jobs come from the library (the same function `k1 train --group` uses); the
# data stage has no runs and does not plan them.
if STAGE == "data":
    PLAN, TRAIN_GROUPS, ATTRIBUTION_GROUPS = [], {}, {}
else:
    from k1model.config import load_params as _load_validated
    from k1model.study.plan import attribution_groups, job_groups, plan_runs, twin_path

    _VALIDATED = _load_validated(PARAMS_FILE)
    PLAN = plan_runs(_VALIDATED)
    TRAIN_GROUPS = job_groups(PLAN)
    ATTRIBUTION_GROUPS = attribution_groups(_VALIDATED)
PARTS = sorted({r.part for r in PLAN})
CHOICE = f"{RESULTS}/tuning/chosen.json"


def _profile_value(resource):
    """A profile's set-resources/set-threads entry as a rule's value: a number or string as written; an
    expression (e.g. `2*attempt*8000`) stays the function Snakemake evaluates per job."""
    import ast

    if not hasattr(resource, "is_evaluable"):  # a plain value (settings given through the API)
        return resource
    if not resource.is_evaluable():
        return resource.value
    try:
        return ast.literal_eval(resource.raw) if isinstance(resource.raw, str) else int(resource.raw)
    except (ValueError, TypeError, SyntaxError):
        return resource._evaluator  # what Snakemake itself evaluates for a set-resources expression


def profile_resources(name, **defaults):
    """The resources a profile sets for rules named `name` (`set-resources: train:`) over `defaults`.
    Snakemake applies set-resources and set-threads by exact rule name, and the training rules are
    generated (train_g0, train_t1, ...): they take the entry of `train`, so a profile addresses every
    training job by that one name (an entry for one generated rule still overrides it)."""
    given = workflow.resource_settings.overwrite_resources.get(name) or {}
    return {**defaults, **{key: _profile_value(r) for key, r in given.items()}}


def profile_threads(name, default):
    """The threads a profile sets for rules named `name` (`set-threads: train: 4`), else `default`."""
    given = workflow.resource_settings.overwrite_threads.get(name)
    return default if given is None else _profile_value(given)


def group_fingerprint(runs):
    """What a training job trains (its runs' paths and settings): with the params fingerprint, a
    job reruns when its runs or their settings change, not when other jobs' do."""
    blob = json.dumps([[r.path, list(map(list, r.overrides))] for r in runs], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: what `k1 train` leaves in a finished run's folder (metrics.json last)
RUN_FILES = ("metrics.json", "steps.csv.gz", "evals.csv", "checkpoint.pt")


def run_files(name, part="runs"):
    """A file of every planned run of one part (runs, sweep, tuning, tuned)."""
    return [f"{RESULTS}/{r.path}/{name}" for r in PLAN if r.part == part]
