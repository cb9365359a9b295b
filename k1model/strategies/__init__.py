"""The strategies that extend the training loop through plugin hooks: EWC (`ewc.py`), experience replay
(`replay.py`), the joint-training reference (`joint.py`) and structural plasticity (`plasticity.py`,
variant k1_grow).

Each strategy is two modules: its declaration (`<name>.py`: `STRATEGY`, plain data: settings with their
checks and docs, variants, checks of a params file, paper text, claims; no torch) and its plugin
(`<name>_plugin.py`: the hooks, imported only when a run trains with it). Importing them registers
nothing: the registry (`k1model.config.registry`) loads the declarations listed below on its first lookup,
in this order (the order of the settings in the schema, of the variants and of the claims), and then
those of installed packages (entry points of the group `k1model.strategies`). Adding a built-in strategy
is its two modules and one line below (docs/architecture.md, "How to add a strategy").
"""

#: the built-in declarations ("module:attribute"), registered in this order on the registry's first lookup
BUILTIN = (
    "k1model.method.variants:CORE_VARIANTS",
    "k1model.strategies.ewc:STRATEGY",
    "k1model.strategies.replay:STRATEGY",
    "k1model.strategies.joint:STRATEGY",
    "k1model.strategies.plasticity:STRATEGY",
)
