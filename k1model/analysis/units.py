"""The unit of analysis: one initialisation (DESIGN.md §12, issue 31).

A run's initial weights and data stream come from its init seed (`experiment.init_seed`):

- `per_order` (the default): the init seed derives from (seed, domain order), so every run is its own
  initialisation. The unit is the run; n = seeds × orders; a paired comparison blocks on the order (the
  same seed number in two orders is two unrelated initialisations, and the order may interact with the
  method).
- `shared` (the behaviour before issue 31, pinned by the profiles trained with it): a seed starts from the
  same weights and data stream in every order, so its runs in different orders are one initialisation seen
  several times, not independent runs. The unit is the seed: its runs are averaged over the orders (the
  order effects cancel in a balanced design) and n = seeds. A paired comparison uses the seeds with a run
  of both variants in every order (complete blocks); in this balanced design the t-test on the seed means is
  the test of a linear mixed model with a random intercept per initialisation and the order as a fixed
  effect (`tests/test_design.py` checks it against statsmodels' MixedLM).

With one domain order both rules give the same units: a seed's one run.

Orders listed in the params are fixed: they are blocks (fixed effects). Orders drawn at random from the
permutations (`experiment.orders: {draw: k}`) are a sample of them: their effect is part of the unit-to-unit
variation the claims generalise over, so the units are not blocked (`orders_are_blocks`), and a design with one
seed per drawn order keeps its degrees of freedom.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

SCHEMES = ("per_order", "shared")


def unit_kind(scheme: str, n_orders: int) -> str:
    """'run' (every run is its own initialisation) or 'seed' (a seed's runs share one initialisation)."""
    if scheme not in SCHEMES:
        raise ValueError(f"init seed scheme must be one of {SCHEMES}, got {scheme!r}")
    return "seed" if scheme == "shared" and n_orders > 1 else "run"


def unit_values(tidy: pd.DataFrame, scheme: str) -> pd.DataFrame:
    """One row per variant × unit × metric: the unit's value (a seed's mean over its orders when the unit is
    the seed), its block (the order; "" for a seed, which spans every order) and how many runs it averages."""
    cols = ["variant", "unit", "block", "seed", "metric", "value", "runs"]
    if tidy.empty:
        return pd.DataFrame(columns=cols)
    if unit_kind(scheme, tidy["order"].nunique()) == "run":
        out = tidy.assign(unit=tidy["order"].astype(str) + "/seed" + tidy["seed"].astype(str), block=tidy["order"],
                          runs=tidy["value"].notna().astype(int))
        return out[cols].reset_index(drop=True)
    grouped = tidy.groupby(["variant", "seed", "metric"], sort=False)["value"]
    out = grouped.agg(value="mean", runs="count").reset_index()
    return out.assign(unit="seed" + out["seed"].astype(str), block="")[cols]


@dataclass
class PairedUnits:
    """The units of one comparison: every unit of each side (for unpaired statistics) and the pairs."""

    kind: str
    x: np.ndarray
    y: np.ndarray
    x_paired: np.ndarray
    y_paired: np.ndarray
    blocks: list[Any] | None
    runs: int  # paired runs behind the pairs (each side)
    labels: list[str] = field(default_factory=list)  # the paired units, in order


def orders_are_blocks(params: Any) -> bool:
    """Whether a paired comparison blocks on the order: yes for listed orders, no for drawn ones (module doc)."""
    from k1model.config.experiment import OrderDraw

    return not isinstance(params.experiment.orders, OrderDraw)


def paired_units(tidy: pd.DataFrame, variant: str, reference: str | float, metric: str, scheme: str,
                 orders: Sequence[str] | None = None, blocked: bool = True) -> PairedUnits:
    """The units of `variant` against `reference` on `metric` (a variant name, or a number: a fixed level such
    as chance, compared with every unit of the variant). Runs are paired by (order, seed); with `shared` init
    seeds only seeds paired in every order count, averaged over the orders. `orders`: the study's orders (default:
    those of `tidy`; give them when `tidy` is already one metric's rows). `blocked`: the order is a block
    (`orders_are_blocks`)."""
    orders = list(dict.fromkeys(tidy["order"])) if orders is None else list(orders)
    kind = unit_kind(scheme, len(orders))
    sub = tidy[tidy["metric"].to_numpy() == metric]
    names, keys_o, keys_s = sub["variant"].to_numpy(), sub["order"].to_numpy(), sub["seed"].to_numpy()
    vals = sub["value"].to_numpy(float)

    def values(name: str) -> dict[tuple[str, int], float]:
        mask = (names == name) & ~np.isnan(vals)
        return {(o, int(k)): float(v) for o, k, v in zip(keys_o[mask], keys_s[mask], vals[mask])}

    xs = values(variant)
    ys = values(reference) if isinstance(reference, str) else {k: float(reference) for k in xs}
    rank = {o: i for i, o in enumerate(orders)}
    common = sorted(set(xs) & set(ys), key=lambda k: (rank.get(k[0], len(rank)), k[1]))
    y_all = np.array(list(ys.values()), dtype=float) if isinstance(reference, str) else np.array([], dtype=float)
    if kind == "run":
        blocks = [o for o, _ in common] if len(orders) > 1 and blocked else None
        return PairedUnits(kind, np.array(list(xs.values()), dtype=float), y_all,
                           np.array([xs[k] for k in common]), np.array([ys[k] for k in common]), blocks, len(common),
                           [f"{o}/seed{s}" for o, s in common])

    def seed_means(by_run: dict[tuple[str, int], float]) -> np.ndarray:
        seeds: dict[int, list[float]] = {}
        for (_, k), v in by_run.items():
            seeds.setdefault(k, []).append(v)
        return np.array([np.mean(v) for _, v in sorted(seeds.items())], dtype=float)

    complete = sorted(k for k in {s for _, s in common} if sum(1 for _, s in common if s == k) == len(orders))
    pairs = [k for k in common if k[1] in complete]
    xm = [np.mean([xs[k] for k in pairs if k[1] == seed]) for seed in complete]
    ym = [np.mean([ys[k] for k in pairs if k[1] == seed]) for seed in complete]
    return PairedUnits(kind, seed_means(xs), seed_means(ys) if isinstance(reference, str) else y_all,
                       np.array(xm, dtype=float), np.array(ym, dtype=float), None, len(pairs),
                       [f"seed{s}" for s in complete])


def planned_units(n_seeds: int, n_orders: int, scheme: str, blocked: bool = True) -> tuple[int, int]:
    """(units, blocks) the params plan per variant: seeds × orders runs of their own initialisation in
    `n_orders` blocks (one when the orders are not blocks), or `n_seeds` initialisations (shared seeds, one
    block: the orders are averaged)."""
    if unit_kind(scheme, n_orders) == "run":
        return n_seeds * n_orders, (n_orders if blocked else 1)
    return n_seeds, 1


def describe_units(kind: str, n_units: int, n_runs: int) -> str:
    """'10 initialisations (runs)' / '5 initialisations (seeds, each the mean of its 2 runs)'."""
    if kind == "run":
        return f"{n_units} initialisations (one run each)"
    per = n_runs / n_units if n_units else math.nan
    each = f"{per:g}" if math.isfinite(per) and per == int(per) else "its"
    return f"{n_units} initialisations (seeds, each the mean of {each} runs in different orders)"
