"""K-1: a tree of transformer agents trained with hierarchical error attribution and sparse,
trust-gated, proportional updates. See DESIGN.md and docs/architecture.md."""
from k1model.api import K1Model, create_k1_model
from k1model.config import MethodConfig, ModelConfig, TrainConfig
from k1model.trainer import K1Trainer, StepRecord
from k1model.tree import AgentTree
from k1model.variants import VARIANTS, Variant

__all__ = ["AgentTree", "K1Model", "K1Trainer", "MethodConfig", "ModelConfig", "StepRecord", "TrainConfig",
           "VARIANTS", "Variant", "create_k1_model"]
__version__ = "0.1.0"
