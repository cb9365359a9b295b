"""Joint training on a mixture of all domains as a plugin: variant `joint`, the upper reference.

Not a sequence: every step trains on all domains at once, with the same steps, batch size and
dense updates as `dense`. Window b of step t comes from domain (t · batch_size + b) mod D (the
run's D domains in order), so every batch holds equal shares of every domain and every domain
gets the same number of windows overall; each domain's windows are drawn uniformly from its
training split by the plugin's own generator (seeded from the run's seed and the domain's index).
The protocol still evaluates at the phase boundaries, so `joint`'s R rows are taken at the same
step counts as the sequential runs'; its "forgetting" is then the change between those
checkpoints of a model that never stopped seeing every domain.

This module is the strategy's declaration (plain data); its plugin is `joint_plugin.Joint`, imported only
when a run trains with it.
"""
from __future__ import annotations

from k1model.config.registry import Strategy
from k1model.method.variants import Variant

STRATEGY = Strategy(
    name="joint",
    plugin="k1model.strategies.joint_plugin:Joint",
    variants=(Variant("joint", "all", "gradient", False, ("joint",),
                      "upper reference: dense updates on a mixture of all domains (no sequence)"),),
    paper=("`joint` trains on an equal mixture of all domains in every batch (no sequence): the upper reference; its "
           "R rows are taken at the same step counts, so its 'forgetting' is not forgetting of a sequence"),
)
