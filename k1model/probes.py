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
  `use_loo` (k1_full, flat_topk, no_trust), gradient otherwise (no_loo, dense, random_path).
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

import argparse
import copy
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from k1model.attribution import GradScorer, hybrid_scores, loo_deltas
from k1model.errors import ConfigError, DataError
from k1model.io import write_json
from k1model.selection import drill_down
from k1model.tree import AgentTree, Topology
from k1model.variants import get_variant

__all__ = [
    "DEFAULT_ANALYSIS",
    "METHODS",
    "SCALAR_NAMES",
    "probe_config",
    "average_ranks",
    "spearman",
    "blame_stats",
    "path_agreement",
    "entropy_bits",
    "nmi",
    "nmi_permutation_test",
    "grad_loo_agreement",
    "window_rank_correlation",
    "specialisation",
    "batch_attribution",
    "resample_probe",
    "planted_faults",
    "calibrate_fault",
    "fault_agent_set",
    "walk_probability",
    "randomisation_probe",
    "read_steps",
    "attribute_run",
    "cli_attribute",
]

#: defaults of the `analysis.*` keys that `k1 attribute` reads (the params may override any)
DEFAULT_ANALYSIS: dict[str, Any] = {
    "rng_seed": 0,
    "probe_batch_size": None,  # null = train.batch_size
    "resample_batches": 12,
    "fault_agents": None,  # null = every agent; an integer caps the fault set (stratified by level)
    "fault_batches": 2,
    "fault_loss_increase": 0.3,  # nats: every fault is calibrated to raise the loss on the fault batches this much
    "fault_noise": None,  # a number = fixed noise amplitude (in units of the weight's RMS), no calibration
    "randomisation_batches": 4,
    "windows": 10,
    "window_steps": None,  # null = `windows` equal parts; an integer = windows of that many steps
    "permutations": 1000,
}

METHODS = ("grad", "loo", "hybrid")
SCALAR_NAMES = (
    "attr_grad_loo_spearman", "attr_window_rank_corr", "attr_resample_path_agreement",
    "attr_resample_culprit_entropy",
    *(f"attr_fault_top1_{m}" for m in METHODS), *(f"attr_fault_top1_sibling_{m}" for m in METHODS),
    *(f"attr_fault_auc_{m}" for m in METHODS), "attr_fault_path_hit",
    "attr_randomisation_change", "attr_specialisation_nmi", "attr_specialisation_p",
)
_SEED_TAGS = {"resample": 0x5253, "fault": 0x4641, "reinit": 0x5249, "perm": 0x5045}


# ------------------------------------------------------------------------------ config


def probe_config(analysis: Mapping[str, Any] | None) -> dict[str, Any]:
    """`DEFAULT_ANALYSIS` updated with the params' analysis section, validated (ConfigError names the key).
    Keys of other consumers of `analysis` (bootstrap_resamples, ...) are ignored here."""
    cfg = dict(DEFAULT_ANALYSIS)
    cfg.update({k: v for k, v in dict(analysis or {}).items() if k in DEFAULT_ANALYSIS})

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def need(key: str, ok: bool, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"invalid value for 'analysis.{key}': {cfg[key]!r}; allowed: {allowed}")

    need("rng_seed", is_int(cfg["rng_seed"]) and cfg["rng_seed"] >= 0, "an integer >= 0")
    for key in ("resample_batches", "fault_batches", "randomisation_batches", "permutations"):
        need(key, is_int(cfg[key]) and cfg[key] >= 1, "an integer >= 1")
    need("resample_batches", cfg["resample_batches"] >= 2, "an integer >= 2 (agreement needs pairs)")
    need("windows", is_int(cfg["windows"]) and cfg["windows"] >= 2, "an integer >= 2")
    for key in ("probe_batch_size", "fault_agents", "window_steps"):
        need(key, cfg[key] is None or (is_int(cfg[key]) and cfg[key] >= 1), "null or an integer >= 1")
    for key in ("fault_loss_increase", "fault_noise"):
        v = cfg[key]
        need(key, v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0),
             "null or a finite number > 0")
    if cfg["fault_loss_increase"] is None and cfg["fault_noise"] is None:
        raise ConfigError("analysis.fault_loss_increase and analysis.fault_noise are both null: no fault to plant; "
                          "set one of them (fault_loss_increase calibrates the damage, fault_noise fixes it)")
    return cfg


# ------------------------------------------------------------------- pure statistics


def average_ranks(a: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties get their average rank (scipy.stats.rankdata's default, without importing scipy.stats)."""
    _, inverse, counts = np.unique(np.asarray(a, dtype=np.float64), return_inverse=True, return_counts=True)
    end = np.cumsum(counts)
    return ((end - counts + 1 + end) / 2.0)[inverse.ravel()]


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman ρ (average ranks for ties) over the pairs where both are finite; NaN if undefined
    (fewer than 2 pairs or a constant side)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(np.corrcoef(average_ranks(a), average_ranks(b))[0, 1])


def blame_stats(blame: Sequence[float], k: int, among: Iterable[int] | None = None) -> dict[str, float] | None:
    """How agent k ranks by blame against `among` (default: every other agent; k itself is ignored there).

    top1: 1 if k's blame is strictly the highest, 1/(1+t) if it ties with t others at the top, else 0.
    auc:  P(blame_k > blame_j) + ½ P(blame_k = blame_j) over the others j.
    rank: mid-rank of k among k and the others (1 = most blamed).
    None when there is no other agent to compare with."""
    blame = np.asarray(blame, dtype=np.float64)
    others = [j for j in (range(len(blame)) if among is None else among) if j != k]
    if not others:
        return None
    b, o = blame[k], blame[others]
    greater, ties, less = int((o > b).sum()), int((o == b).sum()), int((o < b).sum())
    return {"top1": (1.0 / (1 + ties)) if greater == 0 else 0.0,
            "auc": (less + 0.5 * ties) / len(others),
            "rank": 1.0 + greater + 0.5 * ties}


def path_agreement(paths: Sequence[Sequence[int]]) -> float:
    """Probability that two different draws chose the same full path: Σ c(c−1) / (M(M−1))."""
    m = len(paths)
    if m < 2:
        return math.nan
    counts = Counter(tuple(p) for p in paths)
    return float(sum(c * (c - 1) for c in counts.values()) / (m * (m - 1)))


def entropy_bits(labels: Iterable[Any]) -> float:
    """Shannon entropy (bits) of the empirical distribution of `labels`."""
    counts = np.array(list(Counter(labels).values()), dtype=np.float64)
    if counts.sum() == 0:
        return math.nan
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() + 0.0)


def _entropy_nats(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def _mutual_info(table: np.ndarray) -> np.ndarray:
    """I(rows; cols) in nats of one table [r, c] or a stack [n, r, c] of tables with equal totals."""
    t = np.asarray(table, dtype=np.float64)
    n = t.sum(axis=(-2, -1), keepdims=True)
    p = t / n
    pr, pc = p.sum(-1, keepdims=True), p.sum(-2, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / (pr * pc)), 0.0)
    return np.maximum(terms.sum(axis=(-2, -1)), 0.0)


def nmi(table: Sequence[Sequence[float]]) -> float:
    """Normalised mutual information of a contingency table: I(R; C) / ((H(R) + H(C)) / 2).

    Arithmetic-mean normalisation (sklearn's default). 1 = each row label determines the column
    label and vice versa; 0 = independent. 0 when exactly one side is constant; NaN when both are
    (or the table is empty)."""
    t = np.asarray(table, dtype=np.float64)
    total = t.sum()
    if total <= 0:
        return math.nan
    hr, hc = _entropy_nats(t.sum(1) / total), _entropy_nats(t.sum(0) / total)
    denom = 0.5 * (hr + hc)
    if denom <= 0:
        return math.nan
    return float(min(1.0, _mutual_info(t) / denom))


def _tables(rows: np.ndarray, cols_stack: np.ndarray, n_rows: int, n_cols: int) -> np.ndarray:
    """Contingency tables of `rows` against each row of `cols_stack` [n, len] -> [n, n_rows, n_cols]."""
    n = cols_stack.shape[0]
    idx = (np.arange(n)[:, None] * (n_rows * n_cols) + rows[None, :] * n_cols + cols_stack).ravel()
    return np.bincount(idx, minlength=n * n_rows * n_cols).reshape(n, n_rows, n_cols)


def nmi_permutation_test(rows: Sequence[int], cols: Sequence[int], n_permutations: int, seed: Any,
                         null: str = "shuffle", chunk: int = 200) -> dict[str, Any]:
    """NMI of two label sequences and a Monte-Carlo p-value, p = (1 + #{NMI_null ≥ NMI_obs}) / (1 + n).

    null="shuffle": `cols` permuted across positions (i.i.d. null). null="circular": `rows` rotated
    against `cols` by a uniform offset in 1..len−1 (keeps the autocorrelation of both sequences).
    The marginals are the same under both nulls, so only I changes. Fixed RNG: `seed`."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    if rows.shape != cols.shape or rows.ndim != 1:
        raise ValueError("rows and cols must be 1-D label sequences of equal length")
    if null not in ("shuffle", "circular"):
        raise ValueError(f"null must be 'shuffle' or 'circular', got {null!r}")
    _, rows = np.unique(rows, return_inverse=True)
    _, cols = np.unique(cols, return_inverse=True)
    nr, nc, m = int(rows.max(initial=-1)) + 1, int(cols.max(initial=-1)) + 1, len(rows)
    observed = nmi(_tables(rows, cols[None, :], nr, nc)[0]) if m else math.nan
    out: dict[str, Any] = {"nmi": observed, "p": math.nan, "n_permutations": int(n_permutations), "null": null,
                           "null_mean": math.nan, "null_q95": math.nan}
    if not math.isfinite(observed) or m < 2:
        return out
    rng = np.random.default_rng(seed)
    hr = _entropy_nats(np.bincount(rows) / m)
    hc = _entropy_nats(np.bincount(cols) / m)
    denom = 0.5 * (hr + hc)
    null_vals = []
    for start in range(0, n_permutations, chunk):
        n = min(chunk, n_permutations - start)
        if null == "shuffle":
            perm_cols = rng.permuted(np.broadcast_to(cols, (n, m)), axis=1)
            tables = _tables(rows, perm_cols, nr, nc)
        else:
            shifts = rng.integers(1, m, size=n)
            rolled = rows[(np.arange(m)[None, :] + shifts[:, None]) % m]
            idx = (np.arange(n)[:, None] * (nr * nc) + rolled * nc + cols[None, :]).ravel()
            tables = np.bincount(idx, minlength=n * nr * nc).reshape(n, nr, nc)
        null_vals.append(np.minimum(1.0, _mutual_info(tables) / denom))
    null_arr = np.concatenate(null_vals)
    exceed = int((null_arr >= observed - 1e-12).sum())
    out.update(p=(1 + exceed) / (1 + n_permutations), null_mean=float(null_arr.mean()),
               null_q95=float(np.quantile(null_arr, 0.95)))
    return out


# ------------------------------------------------------------------- step-log probes


def read_steps(path: Path) -> pd.DataFrame:
    """The per-step log; numeric agent columns as floats (NaN where empty), text columns as str."""
    if not path.is_file():
        raise DataError(f"{path} is missing: the run's step log is needed; rerun `k1 train` for this run")
    try:
        steps = pd.read_csv(path, keep_default_na=False, dtype={"domain": str, "culprit": str, "path": str})
    except Exception as err:  # noqa: BLE001 - any parse failure means the file is unusable
        raise DataError(f"{path} is unreadable ({type(err).__name__}: {err}); rerun `k1 train` for this run") from None
    for col in steps.columns:
        if col.startswith(("grad_", "score_", "loo_", "trust_")) or col in ("loss", "avg_trust"):
            steps[col] = pd.to_numeric(steps[col], errors="coerce")
    missing = [c for c in ("step", "domain", "culprit", "loo_computed", "scales") if c not in steps.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {missing}; it was not written by this version of `k1 train`")
    return steps


def _agent_matrix(steps: pd.DataFrame, prefix: str, names: Sequence[str]) -> np.ndarray:
    cols = [f"{prefix}{n}" for n in names]
    missing = [c for c in cols if c not in steps.columns]
    if missing:
        raise DataError(f"steps.csv.gz lacks column(s) {missing[:3]}{' ...' if len(missing) > 3 else ''}; "
                        "the run and the params disagree on the agents")
    return steps[cols].to_numpy(dtype=np.float64)


def grad_loo_agreement(steps: pd.DataFrame, names: Sequence[str]) -> dict[str, Any]:
    """Spearman ρ(g, −Δ) per logged LOO step (blame agreement), and ρ(g, |Δ|) (importance agreement)."""
    rows = steps[steps["loo_computed"].astype(int) == 1]
    grad, loo = _agent_matrix(rows, "grad_", names), _agent_matrix(rows, "loo_", names)
    blame = [spearman(g, -d) for g, d in zip(grad, loo)]
    importance = [spearman(g, np.abs(d)) for g, d in zip(grad, loo)]
    fin = [r for r in blame if math.isfinite(r)]
    return {
        "what": "Spearman rho between gradient score g_k and LOO blame -Delta_k across agents, per LOO step",
        "n_loo_steps": int(len(rows)), "n_defined": len(fin),
        "mean": float(np.mean(fin)) if fin else math.nan,
        "median": float(np.median(fin)) if fin else math.nan,
        "per_step": [{"step": int(s), "domain": d, "rho": r}
                     for s, d, r in zip(rows["step"], rows["domain"], blame)],
        "importance_mean": float(np.nanmean(importance)) if np.isfinite(importance).any() else math.nan,
        "importance_what": "Spearman rho between g_k and |Delta_k| "
                           "(does the gradient track how much an agent matters?)",
    }


def window_rank_correlation(scores: np.ndarray, windows: int = 10, window_steps: int | None = None,
                            phases: Sequence[Any] | None = None) -> dict[str, Any]:
    """Mean score per agent in consecutive windows of the log; Spearman ρ between consecutive windows."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if window_steps:
        bounds = list(range(0, n, window_steps)) + [n]
    else:
        bounds = [int(round(i * n / windows)) for i in range(windows + 1)]
    spans = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    with np.errstate(all="ignore"):
        means = [np.nanmean(np.where(np.isfinite(scores[a:b]), scores[a:b], np.nan), axis=0)
                 if np.isfinite(scores[a:b]).any() else np.full(scores.shape[1], np.nan) for a, b in spans]
    pairs = []
    for i in range(len(spans) - 1):
        rho = spearman(means[i], means[i + 1])
        crosses = None
        if phases is not None:
            crosses = bool(phases[spans[i][0]] != phases[spans[i + 1][1] - 1])
        pairs.append({"window": i, "steps": [spans[i][0], spans[i + 1][1]], "rho": rho, "crosses_phase": crosses})
    fin = [p["rho"] for p in pairs if math.isfinite(p["rho"])]
    within = [p["rho"] for p in pairs if math.isfinite(p["rho"]) and p["crosses_phase"] is False]
    return {"n_windows": len(spans), "window_bounds": [a for a, _ in spans] + ([spans[-1][1]] if spans else []),
            "mean": float(np.mean(fin)) if fin else math.nan, "pairs": pairs,
            "mean_within_phase": float(np.mean(within)) if within else math.nan,
            "window_means": [m.tolist() for m in means]}


def _top_selected(steps: pd.DataFrame, names: Sequence[str]) -> list[str]:
    """flat_topk's stand-in culprit: the highest-scoring agent among those updated at the step."""
    scores = _agent_matrix(steps, "score_", names)
    out = []
    for row, raw in zip(scores, steps["scales"]):
        selected = [names.index(n) for n, s in json.loads(raw or "{}").items() if s > 0 and n in names]
        out.append(names[max(selected, key=lambda k: (row[k], -k))] if selected else "")
    return out


def specialisation(steps: pd.DataFrame, names: Sequence[str], selection: str, n_permutations: int,
                   seed: Any, leaves: Sequence[str] | None = None) -> dict[str, Any]:
    """Culprit × domain contingency, NMI and permutation p-values (see the module docstring).

    For path variants only steps whose path reached a leaf count when `leaves` is given (a path
    cut short by cooldown ends at an agent that was not chosen by attribution)."""
    if selection == "all":
        return {"defined": False, "reason": "dense updates every agent: there is no culprit", "nmi": math.nan,
                "p": math.nan}
    if selection == "topk":
        labels, rule = _top_selected(steps, names), "highest-scoring agent among the top-K updated (flat_topk)"
        candidates = list(names)
    else:
        labels = [str(c) for c in steps["culprit"]]
        rule = "logged culprit (last agent of the error path)" + (
            "; random by construction (control)" if selection == "random_path" else "")
        candidates = list(leaves) if leaves is not None else list(names)
        if leaves is not None:
            rule += "; steps whose path was cut short by cooldown (culprit not a leaf) left out"
    domains = [str(d) for d in steps["domain"]]
    keep = [i for i, c in enumerate(labels) if c in candidates]
    doms = list(dict.fromkeys(domains))
    table = np.zeros((len(candidates), len(doms)), dtype=np.int64)
    rows = np.array([candidates.index(labels[i]) for i in keep], dtype=np.int64)
    cols = np.array([doms.index(domains[i]) for i in keep], dtype=np.int64)
    np.add.at(table, (rows, cols), 1)
    used_domains = int((table.sum(0) > 0).sum())
    out: dict[str, Any] = {
        "defined": used_domains >= 2, "label_rule": rule, "steps_used": len(keep),
        "steps_left_out": len(labels) - len(keep),
        "left_out_culprits": dict(Counter(c for c in labels if c not in candidates).most_common()),
        "contingency": {"agents": candidates, "domains": doms, "counts": table.tolist()},
        "normalisation": "I(C;D) / ((H(C) + H(D)) / 2), natural log (arithmetic mean, as sklearn's default)",
        "nmi": math.nan, "p": math.nan,
    }
    if used_domains < 2:
        out["reason"] = ("only one training domain" if len(doms) < 2 else "culprits in fewer than two domains") + \
            ": specialisation is undefined"
        return out
    shuffle = nmi_permutation_test(rows, cols, n_permutations, [*seed, 0], null="shuffle")
    circular = nmi_permutation_test(rows, cols, n_permutations, [*seed, 1], null="circular")
    out.update(nmi=shuffle["nmi"], p=shuffle["p"], null_mean=shuffle["null_mean"], null_q95=shuffle["null_q95"],
               p_circular=circular["p"], null_mean_circular=circular["null_mean"], n_permutations=n_permutations,
               mutual_information_bits=float(_mutual_info(table) / math.log(2)))
    return out


# ------------------------------------------------------------------- checkpoint probes


def batch_attribution(model: AgentTree, scorer: GradScorer, x: torch.Tensor, y: torch.Tensor,
                      with_loo: bool = True) -> dict[str, Any]:
    """Loss, gradient scores, LOO Δ and hybrid scores of one batch (eval mode), as host arrays."""
    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        _, loss = model(x, y)
        loss.backward()
    grad = scorer.scores()
    model.zero_grad(set_to_none=True)
    parts = [loss.detach().float().view(1), grad.float()]
    if with_loo:
        _, delta = loo_deltas(model, x, y)
        parts += [delta.float(), hybrid_scores(grad, delta).float()]
    host = torch.cat(parts).cpu().numpy().astype(np.float64)
    n = len(grad)
    out = {"loss": float(host[0]), "grad": host[1:1 + n]}
    if with_loo:
        out["loo"], out["hybrid"] = host[1 + n:1 + 2 * n], host[1 + 2 * n:1 + 3 * n]
    return out


def blame_vectors(att: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per method, higher = more blame: grad g, LOO −Δ, hybrid s."""
    return {"grad": att["grad"], "loo": -att["loo"], "hybrid": att["hybrid"]}


def _variant_scores(att: Mapping[str, Any], use_loo: bool) -> np.ndarray:
    return att["hybrid"] if use_loo else att["grad"]


def _all_eligible(topo: Topology) -> np.ndarray:
    return np.ones(len(topo), dtype=bool)


def resample_probe(model: AgentTree, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], use_loo: bool,
                   device: torch.device | str = "cpu") -> dict[str, Any]:
    """Drill-down path per batch (variant's scores, all eligible); pairwise path agreement, culprit entropy."""
    topo, scorer, elig = model.topology, GradScorer(model), _all_eligible(model.topology)
    rule = "hybrid" if use_loo else "grad"
    paths: dict[str, list[list[int]]] = {m: [] for m in (("grad", "hybrid") if use_loo else ("grad",))}
    for x, y in batches:
        att = batch_attribution(model, scorer, x.to(device), y.to(device), with_loo=use_loo)
        for m in paths:
            paths[m].append(drill_down(topo, att[m], elig))
    chosen = paths[rule]
    culprits = [topo.names[p[-1]] for p in chosen]
    counts = Counter(" > ".join(topo.names[k] for k in p) for p in chosen)
    n_leaves = len(topo.leaves)
    ent = entropy_bits(culprits)
    return {
        "scores": rule, "batches": len(chosen),
        "path_agreement": path_agreement(chosen),
        "modal_path_share": max(counts.values()) / len(chosen),
        "culprit_entropy_bits": ent,
        "culprit_entropy_normalised": ent / math.log2(n_leaves) if n_leaves > 1 else math.nan,
        "chance_path_agreement": 1.0 / n_leaves,
        "path_counts": dict(counts.most_common()),
        "culprit_counts": dict(Counter(culprits).most_common()),
        "path_agreement_grad": path_agreement(paths["grad"]),
        "path_agreement_hybrid": path_agreement(paths["hybrid"]) if "hybrid" in paths else math.nan,
    }


def _fault_params(block: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [block.attn.proj.weight, block.out.weight]


class _Fault:
    """Agent k's residual output projections W (attn.proj.weight, out.weight) set to
    W0 + a · RMS(W0) · ε with a fixed ε ~ N(0, 1) (numpy, seeded); `restore()` puts W0 back bit for bit."""

    def __init__(self, model: AgentTree, k: int, seed: Sequence[int]):
        rng = np.random.default_rng(list(seed))
        self.params = _fault_params(model.agents[k])
        self.originals = [p.detach().clone() for p in self.params]
        self.directions = []
        for p in self.params:
            rms = float(p.detach().double().pow(2).mean().sqrt())
            if rms == 0.0:  # an all-zero projection: fall back to the init scale of the residual projections
                rms = 0.02 / math.sqrt(2 * model.cfg.depth)
            self.directions.append(torch.from_numpy(rng.standard_normal(tuple(p.shape))).to(p) * rms)

    @torch.no_grad()
    def set(self, amplitude: float) -> None:
        for p, w0, d in zip(self.params, self.originals, self.directions):
            p.copy_(w0).add_(d, alpha=amplitude)

    @torch.no_grad()
    def restore(self) -> None:
        for p, w0 in zip(self.params, self.originals):
            p.copy_(w0)


@torch.no_grad()
def _mean_loss(model: AgentTree, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    return float(torch.stack([model(x, y)[1] for x, y in batches]).mean())


def calibrate_fault(fault: _Fault, model: AgentTree, batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                    clean_loss: float, target: float, rel_tol: float = 0.15, max_evals: int = 12) -> dict[str, float]:
    """Find the noise amplitude a whose loss increase on `batches` is `target` (within rel_tol).

    Small damage raises the loss about quadratically in a, so each step rescales a by
    sqrt(target / increase) (clipped to [1/16, 16]) inside the bracket found so far (geometric
    bisection when the step leaves it). Forward passes only. Returns the amplitude closest to the
    target (in log ratio) and its loss increase; the fault is left set to it."""
    a, lo, hi = 1.0, 0.0, math.inf
    best = (math.inf, 1.0, math.nan)
    for _ in range(max_evals):
        fault.set(a)
        inc = _mean_loss(model, batches) - clean_loss
        if inc > 0:
            err = abs(math.log(inc / target))
            if err < best[0]:
                best = (err, a, inc)
            if abs(inc - target) <= rel_tol * target:
                break
        if inc < target:
            lo = max(lo, a)
        else:
            hi = min(hi, a)
        new = a * min(16.0, max(1.0 / 16.0, math.sqrt(target / inc) if inc > 0 else 4.0))
        if lo > 0 and math.isfinite(hi) and not lo < new < hi:
            new = math.sqrt(lo * hi)
        a = new
    _, a, inc = best
    if not math.isfinite(inc):  # never raised the loss: keep the largest amplitude tried
        a = max(lo, a)
    fault.set(a)
    return {"amplitude": a, "calibration_increase": inc}


def walk_probability(topo: Topology, k: int) -> float:
    """Probability that a uniformly random root-to-leaf walk passes agent k."""
    p, node = 1.0, k
    while topo.parents[node] >= 0:
        p /= len(topo.children[topo.parents[node]])
        node = topo.parents[node]
    return p


def fault_agent_set(topo: Topology, cap: int | None) -> list[int]:
    """Every agent, or `cap` agents stratified by level: one per level first (the root included),
    the rest shared out in proportion to the level sizes (largest remainder), evenly spaced within
    each level. With fewer slots than levels, one agent from each of `cap` evenly spaced levels."""
    n = len(topo)
    if cap is None or cap >= n:
        return list(range(n))
    by_level = [[i for i in range(n) if topo.levels[i] == lv] for lv in range(topo.depth)]
    if cap < len(by_level):
        levels = sorted({int(round(v)) for v in np.linspace(0, len(by_level) - 1, cap)})
        return [by_level[lv][len(by_level[lv]) // 2] for lv in levels]
    spare = np.array([len(m) - 1 for m in by_level], dtype=np.float64)
    extra = cap - len(by_level)
    share = spare / spare.sum() * extra if spare.sum() else spare
    quota = np.floor(share).astype(int)
    for lv in np.argsort(-(share - quota), kind="stable")[: extra - int(quota.sum())]:
        quota[lv] += 1
    chosen = []
    for members, q in zip(by_level, quota + 1):
        chosen += [members[int(round(i))] for i in np.linspace(0, len(members) - 1, min(q, len(members)))]
    return sorted(set(chosen))


def _trial_stats(topo: Topology, k: int, att: Mapping[str, Any]) -> dict[str, Any]:
    blames = blame_vectors(att)
    siblings = topo.children[topo.parents[k]] if topo.parents[k] >= 0 else ()
    out: dict[str, Any] = {}
    for m, b in blames.items():
        s = blame_stats(b, k)
        out[f"top1_{m}"], out[f"auc_{m}"], out[f"rank_{m}"] = s["top1"], s["auc"], s["rank"]
        sib = blame_stats(b, k, siblings) if len(siblings) > 1 else None
        out[f"top1_sibling_{m}"] = None if sib is None else sib["top1"]
    elig = _all_eligible(topo)
    for m in ("hybrid", "grad"):
        path = drill_down(topo, att[m], elig)
        out[f"path_hit_{m}"] = None if k == 0 else float(k in path)
        out[f"culprit_{m}"] = topo.names[path[-1]]
    return out


def _mean_or_none(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(vals)) if vals else None


def planted_faults(model: AgentTree, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], cfg: Mapping[str, Any],
                   seed: Sequence[int], device: torch.device | str = "cpu",
                   clean: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Damage each agent of the fault set in turn (restored afterwards); blame statistics per method."""
    topo, scorer = model.topology, GradScorer(model)
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    if clean is None:
        clean = [batch_attribution(model, scorer, x, y) for x, y in batches]
    stat_keys = [f"{s}_{m}" for s in ("top1", "auc", "rank", "top1_sibling") for m in METHODS]
    faults = []
    clean_loss = float(np.mean([c["loss"] for c in clean]))
    for k in fault_agent_set(topo, cfg["fault_agents"]):
        fault = _Fault(model, k, [*seed, _SEED_TAGS["fault"], k])
        try:
            if cfg["fault_noise"] is not None:
                fault.set(float(cfg["fault_noise"]))
                calib = {"amplitude": float(cfg["fault_noise"]), "calibration_increase": math.nan}
            else:
                calib = calibrate_fault(fault, model, batches, clean_loss, float(cfg["fault_loss_increase"]))
            trials = [batch_attribution(model, scorer, x, y) for x, y in batches]
        finally:
            fault.restore()
        stats = [_trial_stats(topo, k, t) for t in trials]
        base = [_trial_stats(topo, k, c) for c in clean]
        rec: dict[str, Any] = {
            "agent": topo.names[k], "index": k, "level": topo.levels[k],
            "siblings": len(topo.children[topo.parents[k]]) if k else 0,
            "noise_amplitude": calib["amplitude"], "calibration_increase": calib["calibration_increase"],
            "loss_clean": clean_loss,
            "loss_damaged": float(np.mean([t["loss"] for t in trials])),
            "loo_self": float(np.mean([t["loo"][k] for t in trials])),
            "loo_self_clean": float(np.mean([c["loo"][k] for c in clean])),
        }
        rec["loss_increase"] = rec["loss_damaged"] - rec["loss_clean"]
        for key in stat_keys + ["path_hit_hybrid", "path_hit_grad"]:
            rec[key] = _mean_or_none(s[key] for s in stats)
            rec[f"baseline_{key}"] = _mean_or_none(s[key] for s in base)
        rec["culprits_hybrid"] = dict(Counter(s["culprit_hybrid"] for s in stats))
        faults.append(rec)

    summary: dict[str, Any] = {}
    for key in stat_keys + ["path_hit_hybrid", "path_hit_grad"]:
        summary[key] = _mean_or_none(f[key] for f in faults)
        summary[f"baseline_{key}"] = _mean_or_none(f[f"baseline_{key}"] for f in faults)
    non_root = [f for f in faults if f["index"] != 0]
    n = len(topo)
    summary["chance"] = {
        "top1": 1.0 / n, "auc": 0.5, "rank": (n + 1) / 2,
        "top1_sibling": _mean_or_none(1.0 / f["siblings"] for f in non_root if f["siblings"] > 1),
        "path_hit": _mean_or_none(walk_probability(topo, f["index"]) for f in non_root),
    }
    summary["n_faults"] = len(faults)
    summary["n_batches"] = len(batches)
    summary["mean_loss_increase"] = float(np.mean([f["loss_increase"] for f in faults])) if faults else math.nan
    summary["faults_that_raise_loss"] = int(sum(f["loss_increase"] > 0 for f in faults))
    if cfg["fault_noise"] is None:  # calibrated: faults whose loss increase missed the target by > 30%
        target = float(cfg["fault_loss_increase"])
        summary["target_loss_increase"] = target
        summary["faults_off_target"] = [f["agent"] for f in faults
                                        if not abs(f["loss_increase"] - target) <= 0.3 * target]
    return {"faults": faults, "summary": summary}


def _fresh_agents(model: AgentTree, seed: Sequence[int]) -> AgentTree:
    """A freshly initialised tree (the model's own init) from a fixed seed; global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.default_rng(list(seed)).integers(2**31 - 1)))
        fresh = AgentTree(model.cfg)
    return fresh.to(next(model.parameters()).device)


def randomisation_probe(model: AgentTree, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], use_loo: bool,
                        seed: Sequence[int], device: torch.device | str = "cpu",
                        trained: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Cascading bottom-up re-initialisation; culprit/path/score change vs the trained model per stage."""
    topo = model.topology
    batches = [(x.to(device), y.to(device)) for x, y in batches]
    if trained is None:
        scorer = GradScorer(model)
        trained = [batch_attribution(model, scorer, x, y, with_loo=use_loo) for x, y in batches]
    elig = _all_eligible(topo)
    base_scores = [_variant_scores(t, use_loo) for t in trained]
    base_paths = [drill_down(topo, s, elig) for s in base_scores]
    fresh = _fresh_agents(model, [*seed, _SEED_TAGS["reinit"]])
    work = copy.deepcopy(model)
    scorer = GradScorer(work)
    stages = []
    for cut in range(topo.depth - 1, -1, -1):
        for i, level in enumerate(topo.levels):
            if level >= cut:
                work.agents[i].load_state_dict(fresh.agents[i].state_dict())
        atts = [batch_attribution(work, scorer, x, y, with_loo=use_loo) for x, y in batches]
        scores = [_variant_scores(a, use_loo) for a in atts]
        paths = [drill_down(topo, s, elig) for s in scores]
        before = Counter(p[-1] for p in base_paths)
        after = Counter(p[-1] for p in paths)
        m = len(paths)
        rhos = [spearman(a, b) for a, b in zip(base_scores, scores)]
        fin = [r for r in rhos if math.isfinite(r)]
        stages.append({
            "levels_randomised": list(range(cut, topo.depth)),
            "agents_randomised": sum(lv >= cut for lv in topo.levels),
            "culprit_change": float(np.mean([p[-1] != q[-1] for p, q in zip(base_paths, paths)])),
            "path_change": float(np.mean([p != q for p, q in zip(base_paths, paths)])),
            "score_one_minus_rho": float(1.0 - np.mean(fin)) if fin else math.nan,
            "expected_change_if_independent": 1.0 - sum(before[c] * after[c] for c in before) / (m * m),
            "loss": float(np.mean([a["loss"] for a in atts])),
        })
    return {"scores": "hybrid" if use_loo else "grad", "batches": len(batches),
            "loss_trained": float(np.mean([t["loss"] for t in trained])), "stages": stages,
            "change_at_full_randomisation": stages[-1]["culprit_change"]}


# ------------------------------------------------------------------------- the run


def _clean_json(obj: Any) -> Any:
    """NaN/inf -> None, numpy -> Python, recursively (attribution.json is strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): _clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean_json(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def attribute_run(params: Mapping[str, Any], data_dir: str | Path, run_dir: str | Path,
                  device: str | None = None) -> dict[str, Any]:
    """All probes of one finished run; writes RUN_DIR/attribution.json and returns its content."""
    from k1model.config import model_config, train_config
    from k1model.data import BatchSampler, eval_batches, load_split
    from k1model.training import load_run_model, resolve_device

    t_start, cpu_start = time.perf_counter(), time.process_time()
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    if not run_dir.is_dir():
        raise DataError(f"run directory {run_dir} does not exist; run `k1 train ... --out {run_dir}` first")
    cfg = probe_config(params.get("analysis"))
    train_cfg = train_config(params.get("train"))
    model_cfg = model_config(params.get("model"))
    dev = resolve_device(device or train_cfg.device)
    model, metrics = load_run_model(run_dir, dict(params), device=str(dev))
    if metrics.get("status", "completed") != "completed":
        raise DataError(f"{run_dir / 'metrics.json'} has status {metrics.get('status')!r}: the run did not finish; "
                        "rerun `k1 train` for it")
    steps = read_steps(run_dir / "steps.csv.gz")
    variant = get_variant(metrics["variant"])
    run_seed = int(metrics.get("seed", 0))
    seed = [int(cfg["rng_seed"]), run_seed]
    topo = model.topology
    names = list(topo.names)
    model.eval()
    timing: dict[str, float] = {}

    # --- step-log probes
    t0 = time.perf_counter()
    gl = grad_loo_agreement(steps, names)
    win = window_rank_correlation(_agent_matrix(steps, "score_", names), cfg["windows"], cfg["window_steps"],
                                  phases=list(steps["phase"]) if "phase" in steps.columns else None)
    spec = specialisation(steps, names, variant.selection, cfg["permutations"], [*seed, _SEED_TAGS["perm"]],
                          leaves=[names[k] for k in topo.leaves])
    timing["step_log"] = time.perf_counter() - t0

    # --- data for the checkpoint probes
    phases = metrics.get("phases") or metrics.get("domains") or []
    if not phases:
        raise DataError(f"{run_dir / 'metrics.json'} names no phases/domains; rerun `k1 train`")
    domain = str(phases[-1])
    T = model_cfg.max_seq_len
    B = cfg["probe_batch_size"] or train_cfg.batch_size
    sampler = BatchSampler(load_split(data_dir, domain, "train"), T, B,
                           seed=int(np.random.default_rng([*seed, _SEED_TAGS["resample"]]).integers(2**31 - 1)))
    resample_batches = [next(sampler) for _ in range(cfg["resample_batches"])]
    n_fixed = max(cfg["fault_batches"], cfg["randomisation_batches"])
    fixed = [(x.to(dev), y.to(dev)) for x, y in eval_batches(load_split(data_dir, domain, "valid"), T, B, n_fixed)]

    t0 = time.perf_counter()
    res = resample_probe(model, resample_batches, variant.use_loo, dev)
    timing["resample"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    scorer = GradScorer(model)
    clean = [batch_attribution(model, scorer, x, y) for x, y in fixed]
    faults = planted_faults(model, fixed[:cfg["fault_batches"]], cfg, seed, dev, clean=clean[:cfg["fault_batches"]])
    timing["faults"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rnd = randomisation_probe(model, fixed[:cfg["randomisation_batches"]], variant.use_loo, seed, dev,
                              trained=clean[:cfg["randomisation_batches"]])
    timing["randomisation"] = time.perf_counter() - t0

    fs = faults["summary"]
    scalars: dict[str, Any] = {
        "attr_grad_loo_spearman": gl["mean"] if variant.use_loo and gl["n_loo_steps"] else None,
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
    timing["total"] = time.perf_counter() - t_start
    timing["total_cpu"] = time.process_time() - cpu_start
    result = {
        "variant": variant.name, "seed": run_seed, "config_hash": metrics.get("config_hash"),
        "agents": [{"name": n, "level": topo.levels[k], "parent": None if topo.parents[k] < 0
                    else names[topo.parents[k]]} for k, n in enumerate(names)],
        "scalars": scalars,
        "settings": {**cfg, "probe_batch_size": B, "seq_len": T, "probe_domain": domain, "device": str(dev),
                     "variant_scores": "hybrid" if variant.use_loo else "grad",
                     "selection_during_training": variant.selection},
        "conventions": {
            "blame": "grad: g_k; loo: -Delta_k (Delta_k = loss without k - loss with k); hybrid: "
                     "g_k * (1 + relu(-Delta_k) / mean|Delta|). Higher = more blamed.",
            "drill_down": "selection.drill_down with every agent eligible, on the variant's scores",
            "fault": "W <- W + a * RMS(W) * N(0,1) on attn.proj.weight and out.weight of the damaged agent; a "
                     "calibrated per fault to raise the loss by fault_loss_increase nats (or a = fault_noise)",
        },
        "details": {
            "grad_loo": gl, "window_stability": win, "resample": res,
            "faults": faults["faults"], "fault_summary": fs,
            "randomisation": rnd, "specialisation": spec,
        },
        "timing_s": timing,
    }
    result = _clean_json(result)
    write_json(run_dir / "attribution.json", result)
    return result


def cli_attribute(args: argparse.Namespace) -> int:
    from k1model.config import load_params

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    result = attribute_run(params, args.data, args.run)
    s = result["scalars"]

    def fmt(v: Any) -> str:
        return "null" if v is None else f"{v:.3f}"

    print(f"{args.run}: attribution.json written in {result['timing_s']['total']:.1f}s")
    for key in SCALAR_NAMES:
        print(f"  {key:34s} {fmt(s.get(key))}")
    off = result["details"]["fault_summary"].get("faults_off_target") or []
    if off:
        print(f"  warning: {len(off)} planted fault(s) missed the target loss increase "
              f"({', '.join(off)}); see details.faults[].loss_increase")
    return 0
