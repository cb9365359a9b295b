"""The strategies that extend the training loop through plugin hooks, one module each: EWC
(`ewc.py`), experience replay (`replay.py`), the joint-training reference (`joint.py`) and structural
plasticity (`plasticity.py`, variant k1_grow).
Importing this package registers their plugins (`k1model.train.plugins.PLUGINS`); their variants
are listed in `k1model.method.variants`, their settings in `k1model.config.MethodConfig`."""
from k1model.strategies import ewc, joint, plasticity, replay  # noqa: F401  (registration)
