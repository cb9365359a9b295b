"""`k1 demo`: train a tiny tree for a few hundred steps on text that ships with Python,
then show the responsibility tree of the last step and every agent's status."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

import pydoc_data.topics

from k1model.app.api import create_k1_model

DEMO_CONFIG = {"vocab_size": 256, "embed_dim": 64, "hidden_dim": 128, "num_heads": 4, "max_seq_len": 64,
               "branching": [4, 4], "learning_rate": 3e-3, "loo_interval": 25}


def demo_text() -> bytes:
    """The Python reference manual's prose, as shipped in the standard library (pydoc_data)."""
    return Path(pydoc_data.topics.__file__).read_bytes()


def run_demo(steps: int = 300, variant: str = "k1_full", seed: int = 0) -> None:
    """Train, print progress every 50 steps, then the responsibility tree, agent status and a sample."""
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    data = torch.from_numpy(np.frombuffer(demo_text(), dtype=np.uint8).astype(np.int64))
    model = create_k1_model({**DEMO_CONFIG, "variant": variant, "seed": seed})
    gen = torch.Generator().manual_seed(seed)
    T, B = DEMO_CONFIG["max_seq_len"], 16
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(data) - T - 1, (B,), generator=gen)
        window = torch.stack([data[i:i + T + 1] for i in idx.tolist()])
        info = model.train_step(window[:, :-1], window[:, 1:])
        if step % 50 == 0 or step == steps - 1:
            path = " → ".join(info["path"]) or "(no path)"
            print(f"step {step:4d}  loss {info['loss']:.3f}  bpb {info['loss'] / np.log(2):.3f}  "
                  f"updated {info['updated']}/{info['updated'] + info['skipped']}  avg trust {info['avg_trust']:.2f}"
                  f"{'  [LOO]' if info['loo_computed'] else ''}  path {path}")
    print(f"\n{steps} steps in {time.perf_counter() - start:.1f} s ({variant}, seed {seed})\n")
    print("Responsibility tree of the last step:")
    print(model.responsibility_tree())
    print("\nAgent status:")
    print(f"{'agent':34s} {'level':>5s} {'trust':>6s} {'loo':>9s} {'grad':>8s} {'updates':>7s}")
    for s in model.get_agent_status():
        loo = "-" if s["loo_score"] is None else f"{s['loo_score']:+.5f}"
        grad = "-" if s["grad_score"] is None else f"{s['grad_score']:.4f}"
        print(f"{s['name']:34s} {s['level']:5d} {s['trust']:6.2f} {loo:>9s} {grad:>8s} {s['updates']:7d}")
    prompt = torch.tensor(list(b"The "), dtype=torch.long)
    sample = model.generate(prompt, max_new_tokens=60, temperature=0.8)
    print("\nSample:", bytes(sample.tolist()).decode("utf-8", errors="replace").replace("\n", " "))
