"""The strategies that extend the training loop through plugin hooks, one module each: EWC
(`ewc.py`), experience replay (`replay.py`), the joint-training reference (`joint.py`) and structural
plasticity (`plasticity.py`, variant k1_grow).

Each module is the whole strategy: its plugin and one `register_strategy(...)` that declares its
settings (with their checks and docs), its variants, its checks of a params file, its paper text
and its claims (`k1model.config.registry`). Importing this package registers the core variants
(`k1model.method.variants`) and every strategy, in this order (the order of the settings in the
schema, of the variants and of the claims); adding a strategy is its module and one name below.
"""
from k1model.method import variants  # noqa: F401  (registers the core variants first)
from k1model.strategies import ewc, replay, joint, plasticity  # noqa: F401  (registration, in this order)
