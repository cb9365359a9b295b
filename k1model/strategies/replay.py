"""Experience replay as a plugin: variants `replay` (dense updates) and `k1_replay` (K-1's selection).

A reservoir buffer (Vitter's algorithm R) holds up to `method.replay_buffer` training windows
(seq_len + 1 bytes each) out of every window the run has trained on so far: window number n
(0-based) enters an empty slot while the buffer is not full, else replaces slot j with
j ~ uniform{0..n} when j < capacity, so every window seen has the same chance to be in the buffer.

Each step, k = round(method.replay_fraction · batch_size) rows of the batch are replaced by k
distinct windows drawn uniformly from the buffer (the last k rows; the batch size stays the same,
so the comparison with `dense` is compute-matched). Replay starts once the buffer holds k windows.
Then the batch's fresh windows (the ones it actually trains on) are offered to the reservoir. So
the buffer only ever holds windows of steps already taken: replay never reads a domain before
its phase. The plugin samples with its own generator; the training data stream is untouched, and
with replay_fraction = 0 `replay` equals `dense` bit for bit. The buffer is the plugin's state,
saved in the run's checkpoint.

This module is the strategy's declaration (plain data: its settings and their check, its variants, its
paper description and its claims); its plugin is `replay_plugin.Replay`, imported only when a run trains
with it.
"""
from __future__ import annotations

from typing import Any

from k1model.config.checks import Integer, Number, setting
from k1model.config.registry import Strategy
from k1model.errors import ConfigError
from k1model.method.variants import Variant


def check_buffer(params: Any) -> None:
    """The buffer holds at least one batch's replay share."""
    m, batch = params.method, params.train.batch_size
    share = round(m.replay_fraction * batch)
    if m.replay_buffer < share:
        raise ConfigError(f"method.replay_buffer={m.replay_buffer} is smaller than one batch's replay share "
                          f"(round(method.replay_fraction {m.replay_fraction} x train.batch_size "
                          f"{batch}) = {share} windows); raise method.replay_buffer")


STRATEGY = Strategy(
    name="replay",
    plugin="k1model.strategies.replay_plugin:Replay",
    settings={
        "replay_buffer": setting(1000, Integer(1), "reservoir capacity in training windows"),
        "replay_fraction": setting(0.5, Number(0.0, 1.0, open_high=True),
                                   "share of every batch drawn from the buffer (batch size unchanged; default: the "
                                   "pilot of params/pilot_baselines.yaml)"),
    },
    variants=(Variant("replay", "all", "gradient", False, ("replay",),
                      "dense updates + experience replay from a reservoir buffer (compute-matched batches)"),
              Variant("k1_replay", "drilldown", "hybrid", True, ("replay",), "k1_full's selection + the same replay")),
    checks=(check_buffer,),
    paper=("`replay` and `k1_replay` keep a reservoir buffer (Vitter's algorithm R) of up to {method.replay_buffer} "
           "training windows seen so far and replace a share of {method.replay_fraction:g} of every batch with "
           "buffered windows (the batch size is unchanged, so the comparison is compute-matched; a domain is never "
           "replayed before its phase)"),
    claims=({"name": "less_forgetting_than_replay", "metric": "forgetting", "variant": "k1_full",
             "reference": "replay", "statement": "K-1 forgets less than experience replay"},
            {"name": "replay_with_k1", "metric": "forgetting", "variant": "k1_replay", "reference": "replay",
             "statement": "K-1's selection on top of replay forgets less than replay alone"}),
)
