"""Every params key, defined once: a frozen, validated dataclass per params section.

    params = load_params("params/default.yaml")     # Params: data, model, method, train, experiment, analysis
    params.method.learning_rate, params["method"]["learning_rate"]   # the same value

Owners read their section from here (the data layer `params.data`, the trainer `params.method`, ...);
the JSON schema of the pipeline is generated from these classes (`k1 schema`). No torch import, and
nothing above the config layer: names and keys others add (variants, strategies' settings) are read
from the registry of `k1model.config.registry`, which loads the declarations on its first lookup.
"""
from k1model.config.analysis import HOLM_FAMILIES, TEST_NAMES, AnalysisConfig
from k1model.config.checks import InvalidValue, Section
from k1model.config.data import DataConfig, HubSource, LocalConfig, SyntheticConfig, data_config
from k1model.config.experiment import MAX_SEED, ExperimentConfig
from k1model.config.method import MethodConfig
from k1model.config.model import DEFAULT_ROLE_NAMES, ModelConfig
from k1model.config.params import (REQUIRED_SECTIONS, Params, config_hash, load_data_sections, load_params,
                                   params_schema, read_params_file, schema_yaml)
from k1model.config.train import TrainConfig

__all__ = ["AnalysisConfig", "DEFAULT_ROLE_NAMES", "DataConfig", "ExperimentConfig", "HOLM_FAMILIES", "HubSource",
           "InvalidValue", "LocalConfig", "MAX_SEED", "MethodConfig", "ModelConfig", "Params", "REQUIRED_SECTIONS", "Section",
           "SyntheticConfig", "TEST_NAMES", "TrainConfig", "config_hash", "data_config", "load_data_sections",
           "load_params", "model_config", "method_config", "train_config", "params_schema", "read_params_file",
           "schema_yaml"]


def model_config(values) -> ModelConfig:
    """A validated `ModelConfig` from a mapping (returned as is when already one)."""
    return values if isinstance(values, ModelConfig) else ModelConfig.from_mapping(values)


def method_config(values, variant: str | None = None) -> MethodConfig:
    """The method section with the run's variant (a params file may not set `method.variant`; the API may)."""
    import dataclasses

    if isinstance(values, MethodConfig):
        return values if variant is None else dataclasses.replace(values, variant=variant)
    values = dict(values or {})
    variant = values.pop("variant", None) if variant is None else variant
    base = MethodConfig.from_mapping(values)
    return base if variant is None else dataclasses.replace(base, variant=variant)


def train_config(values) -> TrainConfig:
    """A validated `TrainConfig` from a mapping (returned as is when already one)."""
    return values if isinstance(values, TrainConfig) else TrainConfig.from_mapping(values)
