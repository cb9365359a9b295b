"""Measured sparsity: the fraction of agent parameters that actually change per step, per variant,
measured by comparing weights before and after every step (not by counting intentions).

    python benchmarks/sparsity.py --steps 200 --out benchmarks/results/sparsity.json

Trains on the Python reference manual's prose (ships with Python), width 64, context 64, batch 16.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from k1model.app.demo import demo_text
from k1model.config import MethodConfig, ModelConfig
from k1model.model import AgentTree
from k1model.train.step import K1Trainer

# the variants whose step alone decides what changes (replay, EWC and structural plasticity act
# through phase and data hooks of the protocol; their per-step sparsity equals dense's or k1_full's)
STEP_VARIANTS = ("k1_full", "flat_topk", "no_trust", "no_loo", "random_path", "dense")


def measure(branching: tuple[int, ...], variant: str, steps: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = AgentTree(ModelConfig(branching=branching, embed_dim=64, hidden_dim=128, max_seq_len=64))
    trainer = K1Trainer(model, MethodConfig(variant=variant), seed=seed)
    data = torch.from_numpy(np.frombuffer(demo_text(), dtype=np.uint8).astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    params = [list(a.parameters()) for a in model.agents]
    total = sum(p.numel() for ps in params for p in ps)
    fractions, agents_changed, agents_scaled, idle = [], [], [], 0
    for _ in range(steps):
        idx = torch.randint(0, len(data) - 65, (16,), generator=gen).tolist()
        w = torch.stack([data[i:i + 65] for i in idx])
        before = [[p.detach().clone() for p in ps] for ps in params]
        rec = trainer.train_step(w[:, :-1], w[:, 1:])
        changed = [sum(int((p.detach() != b).sum()) for p, b in zip(ps, bs)) for ps, bs in zip(params, before)]
        fractions.append(sum(changed) / total)
        agents_changed.append(sum(c > 0 for c in changed))
        agents_scaled.append(rec.updated)
        idle += rec.updated == 0
    return {"branching": list(branching), "agents": len(model.agents), "variant": variant, "steps": steps,
            "param_fraction_changed_per_step": float(np.mean(fractions)),
            "agents_changed_per_step": float(np.mean(agents_changed)),
            "agents_with_scale_per_step": float(np.mean(agents_scaled)),
            "changed_equals_scaled_every_step": agents_changed == agents_scaled,
            "idle_step_fraction": idle / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    print(f"{'tree':>9s} {'variant':12s} {'params changed/step':>20s} {'agents changed/step':>20s} "
          f"{'= scaled?':>9s} {'idle steps':>10s}")
    for branching in ((4, 4), (4, 3, 2)):
        for variant in STEP_VARIANTS:
            t0 = time.perf_counter()
            r = measure(branching, variant, args.steps)
            rows.append(r)
            print(f"{str(r['agents']) + ' agents':>9s} {variant:12s} {r['param_fraction_changed_per_step']:20.4f} "
                  f"{r['agents_changed_per_step']:13.2f} / {r['agents']:<4d} {str(r['changed_equals_scaled_every_step']):>9s}"
                  f" {r['idle_step_fraction']:10.2f}   ({time.perf_counter() - t0:.0f}s)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
