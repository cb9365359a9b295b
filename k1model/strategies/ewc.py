"""Online EWC (Schwarz et al. 2018; Kirkpatrick et al. 2017) as a plugin: variant `ewc`.

After each phase (except the last, whose penalty would never be used) the plugin estimates a
diagonal Fisher F_new on that phase's training data, then

    F <- gamma · F + F_new,      theta* <- theta            (method.ewc_gamma)

and from then on adds to the run's loss, before backward,

    (lambda / 2) · sum_i F_i · (theta_i - theta*_i)^2         (method.ewc_lambda)

over every trained parameter of the run (shared weights and every agent).

Fisher estimator: the *empirical Fisher* from per-sequence gradients, F_new = mean_s g_s ⊙ g_s,
where g_s is the gradient of sequence s's mean next-byte cross-entropy (its own targets, not
labels sampled from the model), over `method.fisher_batches` batches of `train.batch_size`
windows drawn from the phase's training split with the plugin's own generator (so the training
data stream is untouched). Per-sequence gradients come from `torch.func` (vmap of grad over the
sequences of a batch), in eval mode, with the attention written out (`math` kernel, which vmap
batches natively; the same function as training's kernel up to rounding). EWC results are known to swing by orders of magnitude with
lambda and the estimator (van de Ven 2025), which is why the study sweeps lambda.

With lambda = 0 the penalty is exactly zero and `ewc` equals `dense` bit for bit. F and theta*
are the plugin's state, saved in the run's checkpoint.

This module is the strategy's declaration (plain data: its settings, variant, paper description and
claim); the plugin that computes it is `ewc_plugin.EWC`, imported only when a run trains with it.
"""
from __future__ import annotations

from k1model.config.checks import Integer, Number, setting
from k1model.config.registry import Strategy
from k1model.method.variants import Variant

STRATEGY = Strategy(
    name="ewc",
    plugin="k1model.strategies.ewc_plugin:EWC",
    settings={
        "ewc_lambda": setting(10.0, Number(0.0), "EWC penalty strength lambda (0 = off; default: the pilot of "
                              "params/pilot_baselines.yaml on the validation split; results swing by orders of "
                              "magnitude with it, so the study tunes it)"),
        "ewc_gamma": setting(1.0, Number(0.0, 1.0, open_low=True),
                             "online EWC decay of the old Fisher after each phase: F <- gamma F + F_new"),
        "fisher_batches": setting(4, Integer(1), "training batches of a phase for its empirical Fisher"),
    },
    variants=(Variant("ewc", "all", "gradient", False, ("ewc",),
                      "dense updates + online EWC penalty (empirical Fisher)"),),
    paper=("`ewc` is online EWC (Schwarz et al. 2018): after each phase a diagonal Fisher F_new is estimated as "
           "the **empirical Fisher from per-sequence gradients** (the mean over {method.fisher_batches} training "
           "batches of the phase of the squared gradient of each sequence's mean cross-entropy, computed with "
           "torch.func), then F ← {method.ewc_gamma:g}·F + F_new, θ* ← θ, and the loss gains (λ/2)·Σ F·(θ − θ*)² "
           "with λ = {method.ewc_lambda:g}; EWC is known to swing by orders of magnitude with λ and the estimator, "
           "which the tuned comparison and the sweep address"),
    claims=({"name": "less_forgetting_than_ewc", "metric": "forgetting", "variant": "k1_full", "reference": "ewc",
             "statement": "K-1 forgets less than online EWC"},),
)
