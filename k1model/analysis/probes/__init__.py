"""Attribution probes on a finished run (`k1 attribute`, DESIGN.md §3 "Attribution stability").

Input: a run directory written by `k1 train` (metrics.json, steps.csv.gz, checkpoint.pt),
the params and the prepared data. Output: RUN_DIR/attribution.json (written atomically)
with a flat `scalars` mapping (metric -> float, or null where a metric is undefined for the
run) that `k1 aggregate` reads, and `details` for tables and figures.

Conventions (used by every probe)
---------------------------------
* **Blame.** Higher blame = "more likely the cause of the error".
  gradient blame = g_k (L2 norm of agent k's parameter gradients);
  LOO blame      = −Δ_k, with Δ_k = loss(k bypassed) − loss(full): removing a hurting agent
                   lowers the loss (Δ_k < 0), so it gets a high blame;
  hybrid blame   = s_k = g_k · (1 + relu(−Δ_k) / (mean_j |Δ_j| + ε))  (`attribution.hybrid_scores`).
* **The variant's scoring rule**: hybrid (with the LOO of the same batch) for variants with
  a LOO scorer (k1_full, flat_topk, no_trust), gradient otherwise (no_loo, dense, random_path).
  Probes that choose a path use the variant's rule, so every variant is measured by the
  attribution it would have used; probes compare *checkpoints*, never selection rules.
* **Drill-down on a checkpoint** uses `selection.drill_down` with every agent eligible (trust
  is a training-time state, not a property of the model).
* Gradients and LOO on a checkpoint are measured in eval mode (no dropout): deterministic.
* All randomness (resampled batches, fault noise, re-initialisation, permutations) derives
  from `analysis.rng_seed` and the run's seed, so a rerun writes the same numbers
  (only `timing_s` differs).

Scalars
-------
attr_grad_loo_spearman        mean over the logged LOO steps of Spearman ρ(g, −Δ) across agents
                              ("does the gradient blame the agents whose removal helps?").
                              null for variants that never computed LOO during training.
attr_window_rank_corr         the step log is cut into consecutive windows (`analysis.windows`
                              equal parts, or `analysis.window_steps` steps each); the selection
                              scores (score_<agent>) are averaged per window; mean Spearman ρ
                              between consecutive windows.
attr_resample_path_agreement  `analysis.resample_batches` (M) fresh batches of the last phase's
                              domain (train split, sampler seed from rng_seed and the run seed);
                              variant's scores + drill-down per batch; the probability that two
                              different batches choose the same full path,
                              Σ_p c_p (c_p − 1) / (M (M − 1)). Chance (uniform random path): 1/#leaves.
attr_resample_culprit_entropy Shannon entropy (bits) of the culprit distribution over the M batches
                              (0 = always the same culprit; log2(#leaves) = uniform).
attr_fault_*                  planted faults, see below.
attr_randomisation_change     cascading randomisation (Adebayo et al. 2018), see below.
attr_specialisation_nmi/_p    culprit × domain, see below.

Planted faults
--------------
For each agent k of the fault set (all agents; `analysis.fault_agents` caps the number for
big trees, stratified by level: `fault_agent_set`), agent k's residual output
projections (`attn.proj.weight`, `out.weight`) are damaged in place and restored afterwards:

    W <- W + a · RMS(W) · ε,   ε ~ N(0, 1) fixed per fault (numpy, seeded by rng_seed, run seed, k)

i.e. a random map is added to everything agent k writes into the residual stream of its
subtree. The amplitude a is calibrated per fault (forward passes only, a few iterations of
a ← a·sqrt(target/increase) inside a bracket) so that the loss on the fault batches rises by
`analysis.fault_loss_increase` nats (default 0.3, ±15%): every fault hurts equally, whatever
the agent's position and however much training moved its weights, so faults are comparable
across agents and variants. `analysis.fault_noise: a` fixes the amplitude instead (no
calibration). The amplitude and the realised `loss_increase` of every fault are in the details.
On `analysis.fault_batches` fixed validation batches of the last phase's domain, gradient,
LOO and hybrid blame are measured on the damaged model. Every (fault, batch) pair is a trial;
per fault the trial outcomes are averaged, then the scalars average over faults (every fault
counts once):

  attr_fault_top1_<m>          k has the highest blame of all agents (ties share the credit). Chance 1/N.
  attr_fault_auc_<m>           P(blame_k > blame_j) + ½ P(=) over undamaged agents j. Chance 0.5.
  attr_fault_top1_sibling_<m>  k has the highest blame among its siblings (same parent): a fair
                               comparison, since agents higher up have larger subtrees and so
                               larger gradients. Root faults are left out (no siblings).
                               Chance: mean 1/#siblings.
  attr_fault_path_hit          the drill-down on hybrid blame passes through k (root faults left
                               out: the root is on every path). Chance: the probability that a
                               uniformly random root-to-leaf walk passes k, averaged over faults.
for m in grad, loo, hybrid. Probes may compute LOO for every variant (it is a measurement on
the checkpoint), so the LOO and hybrid fault metrics are defined for all variants. The details
also give each rate on the *undamaged* model (`baseline_*`: how often k is named anyway),
the chance levels, and the path hit of a gradient-only drill-down.

Randomisation sanity check
--------------------------
Agents are re-initialised bottom-up and cumulatively with the model's own initialisation
(a fresh `AgentTree` from a fixed seed): stage 1 the leaves, stage 2 the leaves and the level
above, ..., last stage every agent (shared embedding/head stay trained). After every stage the
culprits (variant's scores + drill-down) on `analysis.randomisation_batches` fixed batches are
compared with the trained model's. `attr_randomisation_change` = fraction of batches whose
culprit changed at full randomisation (higher = the attribution depends on what was learned;
near 0 = it only tracks the tree's structure). The per-stage curve, the path change, the mean
1 − Spearman ρ of the score vectors and the change expected if culprits were drawn
independently from the two culprit distributions are in the details.

Domain specialisation
---------------------
From steps.csv.gz: culprit × training-phase domain contingency table. Drill-down variants and
random_path: the logged culprit (last agent of the error path), counting only steps whose path
reached a leaf (a path cut short because every child was in cooldown ends at an agent that
attribution did not choose; those steps are counted in the details); random_path is the
control, its culprits are random by construction. flat_topk has no path: its "culprit" is the
highest-scoring agent among those it updated (any level). dense has none (null).

    NMI = I(C; D) / ((H(C) + H(D)) / 2)         (arithmetic-mean normalisation, as sklearn's default)

null when only one domain was trained. p-value of a permutation test against a shuffled-domain
null: domain labels are permuted across steps (`analysis.permutations` times, fixed RNG),
p = (1 + #{NMI_perm ≥ NMI_obs}) / (1 + n_perm). Caveat: culprit choices are autocorrelated in
time (trust, drift) and domains come in blocks, so the i.i.d. null is anti-conservative; the
details also give a circular-shift null (the culprit sequence rotated against the domain
sequence by a random offset), which keeps both autocorrelations.

`analysis.*` keys read here (defaults in `DEFAULT_ANALYSIS`): rng_seed, probe_batch_size,
resample_batches, fault_agents, fault_batches, fault_loss_increase, fault_noise,
randomisation_batches, windows, window_steps, permutations.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from k1model.analysis.probes.faults import METHODS, _trial_stats, fault_agent_set, planted_faults, walk_probability
from k1model.analysis.probes.model_probes import (_SEED_TAGS, batch_attribution, live_view, randomisation_probe,
                                                  resample_probe)
from k1model.analysis.probes.steplog import (_agent_matrix, _top_selected, grad_loo_agreement, read_steps,
                                             specialisation, window_rank_correlation)
from k1model.analysis.stats import blame_stats, entropy_bits, nmi, nmi_permutation_test, path_agreement, spearman
from k1model.config import AnalysisConfig, Params, load_params
from k1model.errors import DataError
from k1model.io import json_safe, write_json
from k1model.method.attribution import GradScorer
from k1model.method.variants import get_variant

if TYPE_CHECKING:
    import pandas as pd

#: the defaults of every `analysis.*` key (the probes read rng_seed and the probe keys)
DEFAULT_ANALYSIS = AnalysisConfig()

SCALAR_NAMES = (
    "attr_grad_loo_spearman", "attr_window_rank_corr", "attr_resample_path_agreement",
    "attr_resample_culprit_entropy",
    *(f"attr_fault_top1_{m}" for m in METHODS), *(f"attr_fault_top1_sibling_{m}" for m in METHODS),
    *(f"attr_fault_auc_{m}" for m in METHODS), "attr_fault_path_hit",
    "attr_randomisation_change", "attr_specialisation_nmi", "attr_specialisation_p",
)



def probe_config(analysis: Mapping[str, Any] | None) -> AnalysisConfig:
    """The validated `analysis:` section (defaults filled in); ConfigError names the bad key."""
    return analysis if isinstance(analysis, AnalysisConfig) else AnalysisConfig.from_mapping(analysis)


def attribute_run(params: Mapping[str, Any], data_dir: str | Path, run_dir: str | Path,
                  device: str | None = None) -> dict[str, Any]:
    """All probes of one finished run; writes RUN_DIR/attribution.json and returns its content. The run folder
    is this process's meanwhile (`own_run_folder`), and the data must be the data the run was trained on."""
    from k1model.train.runfolder import own_run_folder

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist; run `k1 train ... --out {run_dir}` first")
    with own_run_folder(run_dir):
        return _probe_run(params, data_dir, run_dir, device)


def _probe_run(params: Mapping[str, Any], data_dir: str | Path, run_dir: Path, device: str | None) -> dict[str, Any]:
    """`attribute_run` in the run folder it owns."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    data_dir = Path(data_dir)
    params = load_params(params)
    cfg = params.analysis
    model, metrics, dev = _finished_run(params, run_dir, data_dir, device)
    steps = read_steps(run_dir / "steps.csv.gz")
    variant = get_variant(metrics["variant"])
    run_seed = int(metrics.get("seed", 0))
    seed = [int(cfg["rng_seed"]), int(metrics.get("init_seed", run_seed))]  # a run's own initialisation (issue 31)
    model.eval()
    timing: dict[str, float] = {}

    t0 = time.perf_counter()
    gl, win, spec = _step_log_probes(steps, model, variant, cfg, seed)
    timing["step_log"] = time.perf_counter() - t0

    domain, B, resample_batches, fixed = _probe_batches(params, data_dir, run_dir, metrics, seed, dev)
    t0 = time.perf_counter()
    res = resample_probe(model, resample_batches, variant.uses_loo, dev)
    timing["resample"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    scorer = GradScorer(model)
    clean = [batch_attribution(model, scorer, x, y) for x, y in fixed]
    faults = planted_faults(model, fixed[:cfg["fault_batches"]], cfg, seed, dev, clean=clean[:cfg["fault_batches"]])
    timing["faults"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rnd = randomisation_probe(model, fixed[:cfg["randomisation_batches"]], variant.uses_loo, seed, dev,
                              trained=clean[:cfg["randomisation_batches"]])
    timing["randomisation"] = time.perf_counter() - t0

    fs = faults["summary"]
    live, _ = live_view(model)
    scalars = _scalars(variant, gl, win, res, fs, rnd, spec)
    timing["total"] = time.perf_counter() - t_start
    timing["total_cpu"] = time.process_time() - cpu_start
    result = {
        "variant": variant.name, "seed": run_seed, "config_hash": metrics.get("config_hash"),
        "agents": [{"name": live.names[k], "level": live.levels[k], "parent": None if live.parents[k] < 0
                    else live.names[live.parents[k]]} for k in range(len(live))],  # the live tree
        "scalars": scalars,
        "settings": {**{k: cfg[k] for k in AnalysisConfig.probe_keys()}, "probe_batch_size": B,
                     "seq_len": params.model.max_seq_len, "probe_domain": domain, "device": str(dev),
                     "variant_scores": "hybrid" if variant.uses_loo else "grad",
                     "selection_during_training": variant.selector},
        "conventions": CONVENTIONS,
        "details": {
            "grad_loo": gl, "window_stability": win, "resample": res,
            "faults": faults["faults"], "fault_summary": fs,
            "randomisation": rnd, "specialisation": spec,
        },
        "timing_s": timing,
    }
    result = json_safe(result)
    write_json(run_dir / "attribution.json", result)
    return result


def _scalars(variant: Any, gl: Mapping[str, Any], win: Mapping[str, Any], res: Mapping[str, Any],
             fs: Mapping[str, Any], rnd: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The probes' numbers the analysis reports for every run (SCALAR_NAMES)."""
    return {
        "attr_grad_loo_spearman": gl["mean"] if variant.uses_loo and gl["n_loo_steps"] else None,
        "attr_window_rank_corr": win["mean"],
        "attr_resample_path_agreement": res["path_agreement"],
        "attr_resample_culprit_entropy": res["culprit_entropy_bits"],
        **{f"attr_fault_top1_{m}": fs[f"top1_{m}"] for m in METHODS},
        **{f"attr_fault_top1_sibling_{m}": fs[f"top1_sibling_{m}"] for m in METHODS},
        **{f"attr_fault_auc_{m}": fs[f"auc_{m}"] for m in METHODS},
        "attr_fault_path_hit": fs["path_hit_hybrid"],
        "attr_randomisation_change": rnd["change_at_full_randomisation"],
        "attr_specialisation_nmi": spec["nmi"] if spec.get("defined") else None,
        "attr_specialisation_p": spec["p"] if spec.get("defined") else None,
    }


#: how to read attribution.json's numbers (written into every file)
CONVENTIONS = {
    "blame": "grad: g_k; loo: -Delta_k (Delta_k = loss without k - loss with k); hybrid: "
             "g_k * (1 + relu(-Delta_k) / mean|Delta|). Higher = more blamed.",
    "drill_down": "selection.drill_down with every agent eligible, on the variant's scores",
    "fault": "W <- W + a * RMS(W) * N(0,1) on attn.proj.weight and out.weight of the damaged agent; a "
             "calibrated per fault to raise the loss by fault_loss_increase nats (or a = fault_noise)",
}


def _finished_run(params: Params, run_dir: Path, data_dir: Path,
                  device: str | None) -> tuple[Any, dict[str, Any], Any]:
    """The run's final model on the device, and its metrics; a run that did not finish, or that was trained on
    other data than `data_dir` holds, is refused."""
    from k1model.data.loading import check_data_section, read_manifest
    from k1model.train.checkpoint import load_run_model
    from k1model.train.runtime import resolve_device

    manifest, data_sha256 = read_manifest(data_dir)
    check_data_section(params.data, manifest, data_dir)
    dev = resolve_device(device or params.train.device)
    model, metrics = load_run_model(run_dir, params, device=str(dev))
    if metrics.get("status", "completed") != "completed":
        raise DataError(f"{run_dir / 'metrics.json'} has status {metrics.get('status')!r}: the run did not finish; "
                        "rerun `k1 train` for it")
    recorded = metrics.get("data_manifest_sha256")  # (runs trained before it was recorded have none)
    if recorded is not None and recorded != data_sha256:
        raise DataError(f"{run_dir} was trained on other data (its metrics.json records data manifest sha256 "
                        f"{recorded[:12]}..., {data_dir / 'manifest.json'} has {data_sha256[:12]}...): probing it on "
                        "this data would measure something else; pass the --data it was trained on")
    return model, metrics, dev


def _step_log_probes(steps: pd.DataFrame, model: Any, variant: Any, cfg: AnalysisConfig,
                     seed: list[int]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """What the step log says: gradient-LOO agreement, the ranks' stability over windows, specialisation."""
    topo = model.topology
    names = list(topo.names)
    # a leaf is an initial leaf or a slot (the chain below it); the step log has no numbers for an agent
    # while it is not in the live tree (NaN), which the step-log probes leave out
    leaves = [names[k] for k in range(len(names)) if k >= model.initial_agents or not topo.children[k]
              or min(topo.children[k]) >= model.initial_agents]
    gl = grad_loo_agreement(steps, names)
    win = window_rank_correlation(_agent_matrix(steps, "score_", names), cfg["windows"], cfg["window_steps"],
                                  phases=list(steps["phase"]) if "phase" in steps.columns else None)
    spec = specialisation(steps, names, variant.selector, cfg["permutations"], [*seed, _SEED_TAGS["perm"]],
                          leaves=leaves)
    return gl, win, spec


def _probe_batches(params: Params, data_dir: Path, run_dir: Path, metrics: Mapping[str, Any], seed: list[int],
                   dev: Any) -> tuple[str, int, list[Any], list[Any]]:
    """The checkpoint probes' data, from the run's last domain: (domain, batch size, training batches for the
    resampling probe, fixed validation batches on the device for the faults and the randomisation)."""
    from k1model.data.loading import load_split
    from k1model.data.sampling import BatchSampler, eval_batches

    cfg = params.analysis
    phases = metrics.get("phases") or metrics.get("domains") or []
    if not phases:
        raise DataError(f"{run_dir / 'metrics.json'} names no phases/domains; rerun `k1 train`")
    domain = str(phases[-1])
    T = params.model.max_seq_len
    B = cfg["probe_batch_size"] or params.train.batch_size
    sampler = BatchSampler(load_split(data_dir, domain, "train"), T, B,
                           seed=int(np.random.default_rng([*seed, _SEED_TAGS["resample"]]).integers(2**31 - 1)))
    resample_batches = [next(sampler) for _ in range(cfg["resample_batches"])]
    n_fixed = max(cfg["fault_batches"], cfg["randomisation_batches"])
    fixed = [(x.to(dev), y.to(dev)) for x, y in eval_batches(load_split(data_dir, domain, "valid"), T, B, n_fixed)]
    return domain, B, resample_batches, fixed
