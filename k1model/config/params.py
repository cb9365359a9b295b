"""A whole params file (`params/*.yaml`): its sections, loading, hashing and the generated schema."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

import k1model.config.registry as registry
from k1model.config.analysis import AnalysisConfig
from k1model.config.checks import Nested, Section, setting
from k1model.config.data import DataConfig
from k1model.config.experiment import ExperimentConfig, OrderDraw, SweepConfig, TuningConfig, init_seed
from k1model.config.frontier import FrontierConfig
from k1model.config.method import MethodConfig
from k1model.config.model import ModelConfig
from k1model.config.train import TrainConfig
from k1model.errors import ConfigError

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class Params(Section):
    """Every section of a params file, validated."""

    SECTION = ""
    DESCRIPTION = ("Schema of params/*.yaml, generated from the k1model.config dataclasses by `k1 schema`; "
                   "checked by the Snakefile at start-up (snakemake.utils.validate). Do not edit by hand.")

    data: DataConfig = setting(check=Nested(DataConfig, nullable=False), factory=DataConfig, doc=DataConfig.DESCRIPTION)
    model: ModelConfig = setting(check=Nested(ModelConfig, nullable=False), factory=ModelConfig, doc=ModelConfig.DESCRIPTION)
    method: MethodConfig = setting(check=Nested(MethodConfig, nullable=False), factory=MethodConfig, doc=MethodConfig.DESCRIPTION)
    train: TrainConfig = setting(check=Nested(TrainConfig, nullable=False), factory=TrainConfig, doc=TrainConfig.DESCRIPTION)
    experiment: ExperimentConfig = setting(check=Nested(ExperimentConfig, nullable=False), factory=ExperimentConfig,
                                           doc=ExperimentConfig.DESCRIPTION)
    analysis: AnalysisConfig = setting(check=Nested(AnalysisConfig, nullable=False), factory=AnalysisConfig,
                                       doc=AnalysisConfig.DESCRIPTION)
    sweep: SweepConfig = setting(check=Nested(SweepConfig), factory=SweepConfig, doc=SweepConfig.DESCRIPTION)
    tuning: TuningConfig = setting(check=Nested(TuningConfig), factory=TuningConfig, doc=TuningConfig.DESCRIPTION)
    frontier: FrontierConfig = setting(check=Nested(FrontierConfig), factory=FrontierConfig,
                                       doc=FrontierConfig.DESCRIPTION)

    @classmethod
    def prepare(cls, values: dict[str, Any]) -> dict[str, Any]:
        method = values.get("method")
        if isinstance(method, Mapping) and not isinstance(method, Section) and "variant" in method:
            raise ConfigError("method.variant must not be set in a params file: each run's variant comes from "
                              "--variant (and experiment.variants); remove the key")
        return values

    # --- the study design, checked before any run -------------------------------------------------------
    @property
    def orders(self) -> list[tuple[str, ...]]:
        """The domain orders of the main comparison (the first one is the default for sweep and tuning); drawn
        orders (`{draw: k, seed: s}`) are resolved here, the same every time."""
        chosen = self.experiment.orders
        if isinstance(chosen, OrderDraw):
            return chosen.orders(tuple(self.data.domains))
        return [tuple(o) for o in chosen] if chosen else [tuple(self.data.domains)]

    def init_seed_of(self, seed: int, order: Sequence[str]) -> int | None:
        """The init seed of the run (seed, order) under experiment.init_seed (None: the seed itself)."""
        return init_seed(seed, order, self.experiment.init_seed)

    def check_orders(self) -> None:
        """Every domain order (main, sweep, tuning) is a permutation of data.domains."""
        listed = self.experiment.orders if not isinstance(self.experiment.orders, OrderDraw) else self.orders
        named = [("experiment.orders", o) for o in (listed or ())]
        named += [(f"{s}.order", getattr(self, s).order) for s in ("sweep", "tuning") if getattr(self, s).order]
        for key, order in named:
            problem = _order_problem(order, list(self.data.domains))
            if problem:
                raise ConfigError(f"{key}: {problem}; every order must list each domain exactly once")

    def check_design(self) -> None:
        """Sweep points and tuning candidates: known keys, valid values, no duplicates, disjoint seeds."""
        from k1model.config.design import check_tuning, sweep_points

        if self.sweep.active:
            if not self.sweep.seeds:
                raise ConfigError("sweep.seeds is empty; give the sweep its own seeds, e.g. [100, 101, 102]")
            sweep_points(self)
        if self.tuning.active:
            if not self.tuning.seeds:
                raise ConfigError("tuning.seeds is empty; give tuning its own seeds, disjoint from experiment.seeds")
            shared = sorted(set(self.tuning.seeds) & set(self.experiment.seeds))
            if shared:
                raise ConfigError(f"tuning.seeds {shared} are also evaluation seeds (experiment.seeds); choices must "
                                  "be made on seeds the evaluation never uses: pick other tuning seeds")
            check_tuning(self)
        if self.frontier.active:
            from k1model.config.design import frontier_points

            frontier_points(self)

    def run_variants(self) -> list[str]:
        """Every variant the params run: the main comparison's, the sweep's and the tuned ones."""
        names = list(self.experiment.variants)
        names += list(self.sweep.variants) if self.sweep.active else []
        names += list(self.tuning.variants or ()) if self.tuning.active else []
        names += list(self.frontier.knobs) if self.frontier.active else []
        return list(dict.fromkeys(names))

    def validate(self) -> None:
        self.data.check_windows(self.model.max_seq_len)
        self.check_orders()
        self.check_design()
        for check in registry.params_checks():  # the strategies' checks (replay's buffer, k1_grow's slots, ...)
            check(self)
        unknown = [v for v in self.analysis.references if v not in self.experiment.variants]
        if unknown and len(unknown) == len(self.analysis.references):
            raise ConfigError(f"analysis.references {list(self.analysis.references)}: none is in experiment.variants "
                              f"{list(self.experiment.variants)}; no comparison could be made")


SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Params))
REQUIRED_SECTIONS: tuple[str, ...] = tuple(s for s in SECTIONS if s not in ("sweep", "tuning", "frontier"))


def _order_problem(order: Any, domains: list[str]) -> str | None:
    if sorted(order) != sorted(domains):
        return f"{list(order)} is not a permutation of data.domains {domains}"
    return None


def parse_yaml(path: Path) -> Any:
    """A YAML file's content, read by ruamel.yaml (YAML 1.2, as DVC reads params files), which refuses a key
    given twice in one mapping: PyYAML would silently keep the last one. Errors are one ConfigError line."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"params file {path} is not UTF-8 text (byte {err.start})") from None
    try:
        return YAML(typ="safe", pure=True).load(text)
    except DuplicateKeyError as err:
        key = re.search(r'duplicate key "([^"]*)"', str(err.problem))
        first = err.context_mark.line + 1 if err.context_mark else "?"
        raise ConfigError(f"params file {path}: key {key.group(1) if key else '?'!r} is given twice in the mapping "
                          f"that starts at line {first} (again at line {err.problem_mark.line + 1}); a repeated key "
                          "would silently replace the first: keep one") from None
    except MarkedYAMLError as err:
        where = f" at line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1}" if err.problem_mark else ""
        raise ConfigError(f"params file {path} is not valid YAML: {err.problem or err.context}{where}") from None
    except YAMLError as err:
        raise ConfigError(f"params file {path} is not valid YAML: {' '.join(str(err).split())}") from None


def read_params_file(path: str | Path, required: Sequence[str] = REQUIRED_SECTIONS) -> dict[str, Any]:
    """The YAML mapping of a params file, with its sections checked for presence (not yet validated)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}; pass an existing YAML such as params/default.yaml")
    raw = parse_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"params file {path} must hold a mapping with sections {', '.join(REQUIRED_SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown params section(s) {unknown} in {path}; allowed: {', '.join(SECTIONS)}")
    missing = [s for s in required if s not in raw]
    if missing:
        raise ConfigError(f"params file {path} lacks section(s) {missing}")
    return raw


def load_params(source: str | Path | Mapping[str, Any] | Params,
                required: Sequence[str] = REQUIRED_SECTIONS) -> Params:
    """A validated `Params` from a YAML file, a parsed mapping or a `Params` (returned as is).
    Missing sections (allowed only when not in `required`) take their defaults."""
    if isinstance(source, Params):
        return source
    if isinstance(source, Mapping):
        missing = [s for s in required if s not in source]
        if missing:
            raise ConfigError(f"params lack section(s) {missing}")
        return Params.from_mapping(source)
    raw = read_params_file(source, required)
    try:
        return Params.from_mapping(raw)
    except ConfigError as err:
        raise ConfigError(f"params file {source}: {err}") from None


def load_data_sections(source: str | Path) -> tuple[DataConfig, ModelConfig]:
    """The sections data preparation reads (`data`, and `model` for its window length), validated without
    the others: preparing data needs neither the registries nor any training code."""
    raw = read_params_file(source, required=("data",))
    try:
        data, model = DataConfig.from_mapping(raw["data"]), ModelConfig.from_mapping(raw.get("model"))
        data.check_windows(model.max_seq_len)
    except ConfigError as err:
        raise ConfigError(f"params file {source}: {err}") from None
    return data, model


def params_schema() -> dict[str, Any]:
    """The JSON schema of a params file (what `workflow/schemas/params.schema.yaml` holds)."""
    body = Params.schema()
    body.pop("description", None)
    return {"$schema": SCHEMA_URI, "title": "K-1 params file", "description": Params.DESCRIPTION,
            "required": list(REQUIRED_SECTIONS), **body}


def schema_yaml() -> str:
    """The JSON schema as the YAML file `k1 schema` writes, with its header."""
    header = ("# GENERATED by `k1 schema --out workflow/schemas/params.schema.yaml` from the k1model.config\n"
              "# dataclasses (the one definition of every params key). Do not edit by hand: tests fail when\n"
              "# this file and the library disagree.\n")
    return header + yaml.safe_dump(params_schema(), sort_keys=False, width=110, allow_unicode=True)


def config_hash(*parts: Any) -> str:
    """Stable short hash of config objects/dicts: a run directory belongs to exactly one hash."""

    def plain(obj: Any) -> Any:
        if isinstance(obj, Section):  # every setting as a key, the registered ones (strategies') included
            return plain(obj.to_dict())
        if dataclasses.is_dataclass(obj):
            return {k: plain(v) for k, v in dataclasses.asdict(obj).items()}
        if isinstance(obj, Mapping):
            return {str(k): plain(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
        if isinstance(obj, (list, tuple)):
            return [plain(v) for v in obj]
        return obj

    blob = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
