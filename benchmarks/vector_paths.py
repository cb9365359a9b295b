#!/usr/bin/env python3
"""The native kernels on their AVX2 and their AVX-512 paths (`k1model/kernels/wide.h`), at the default model's shapes.

    python benchmarks/vector_paths.py --params params/default.yaml --out benchmarks/results/vector_paths.json

Each kernel of an agent block that has an AVX-512 path (attention, GELU with its bias; the whole block in C,
whose products are gemm.c's tiles: benchmarks/gemm.py) and the LM head's cross-entropy, on one run's batch of the
profile (batch x context rows), timed alone in a loop on both paths, the paths interleaved round by round, one
thread; medians of `--repeats` rounds. Checks on the way that the two paths give the same bits (what
tests/test_kernels.py asserts), and prints what each kernel saves a dense step (its calls per step: one per agent,
forward and backward; the cross-entropy once). LayerNorm has no AVX-512 path: 16 lanes measured no faster there
(its time is in its row sums, which keep the 8-lane order). Needs a CPU with AVX-512; exits 1 without one.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch

from k1model.app.bench.measure import _cpu_model, per_call
from k1model.config import load_params
from k1model.kernels.block import _Pointers
from k1model.kernels.library import avx512_available, library


def kernels(params) -> dict[str, tuple[Callable[[], object], Callable[[], list[torch.Tensor]], int]]:
    """name -> (the call, the outputs it writes, calls per dense step) at the profile's shapes."""
    cfg, B = params.model, params.train.batch_size
    N, T, D, Hd, H, V = B, cfg.max_seq_len, cfg.embed_dim, cfg.hidden_dim, cfg.num_heads, cfg.vocab_size
    hd, agents = D // H, cfg.num_agents
    lib, g = library(), torch.Generator().manual_seed(0)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    shapes = [(D,), (D,), (3 * D, D), (3 * D,), (D, D), (D,), (D,), (D,), (Hd, D), (Hd,), (D, Hd), (D,)]
    w = [r(*s) * 0.05 + (1.0 if i in (0, 6) else 0.0) for i, s in enumerate(shapes)]
    x, grad = r(N, T, D), r(N, T, D)
    saved = torch.empty(lib.k1_block_saved_floats(N, T, D, Hd, H))
    out, dx, dw = torch.empty(N, T, D), torch.empty(N, T, D), [torch.empty_like(t) for t in w]
    wp, dwp = _Pointers(*[t.data_ptr() for t in w]), _Pointers(*[t.data_ptr() for t in dw])
    qkv, y, lse, dqkv, db = r(N, T, 3 * D), torch.empty(N, T, D), torch.empty(N, H, T), torch.empty(N, T, 3 * D), torch.empty(3 * D)
    f, gelu, dfx, fb = r(N * T, Hd), torch.empty(N * T, Hd), torch.empty(N * T, Hd), torch.empty(Hd)
    zero, dg = torch.zeros(Hd), r(N * T, Hd)
    rows = N * T
    logits, targets = r(rows, V), torch.randint(0, V, (rows,), generator=g)
    losses, ce_lse, ce_g, dlogits = torch.empty(rows), torch.empty(rows), r(rows), torch.empty(rows, V)
    lib.k1_cross_entropy_forward(logits.data_ptr(), targets.data_ptr(), losses.data_ptr(), ce_lse.data_ptr(), rows, V, -100)
    lib.k1_block_forward(x.data_ptr(), wp, saved.data_ptr(), out.data_ptr(), N, T, D, Hd, H, hd ** -0.5, 1e-5)
    return {
        "attention forward": (lambda: lib.k1_attention_forward(qkv.data_ptr(), None, y.data_ptr(), lse.data_ptr(), N, T,
                                                               H, hd, hd ** -0.5), lambda: [y, lse], agents),
        "attention backward": (lambda: lib.k1_attention_backward(qkv.data_ptr(), y.data_ptr(), lse.data_ptr(),
                                                                 grad.data_ptr(), dqkv.data_ptr(), db.data_ptr(), N, T, H,
                                                                 hd, hd ** -0.5), lambda: [dqkv, db], agents),
        "GELU forward": (lambda: lib.k1_gelu_bias_forward(f.data_ptr(), zero.data_ptr(), gelu.data_ptr(), rows, Hd),
                         lambda: [gelu], agents),
        "GELU backward": (lambda: lib.k1_gelu_bias_backward_output(dg.data_ptr(), f.data_ptr(), dfx.data_ptr(),
                                                                   fb.data_ptr(), gelu.data_ptr(), rows, Hd),
                          lambda: [dfx, fb, gelu], agents),
        "cross-entropy forward": (lambda: lib.k1_cross_entropy_forward(logits.data_ptr(), targets.data_ptr(),
                                                                       losses.data_ptr(), ce_lse.data_ptr(), rows, V,
                                                                       -100), lambda: [losses, ce_lse], 1),
        "cross-entropy backward": (lambda: lib.k1_cross_entropy_backward(logits.data_ptr(), targets.data_ptr(),
                                                                         ce_lse.data_ptr(), ce_g.data_ptr(),
                                                                         dlogits.data_ptr(), rows, V, -100),
                                   lambda: [dlogits], 1),
        # (the block calls hold `w` as a default argument: wp holds only its raw pointers)
        "block forward (all of it)": (lambda _w=w: lib.k1_block_forward(x.data_ptr(), wp, saved.data_ptr(), out.data_ptr(),
                                                                   N, T, D, Hd, H, hd ** -0.5, 1e-5),
                                      lambda: [out, saved], agents),
        "block backward (all of it)": (lambda _w=w: lib.k1_block_backward(grad.data_ptr(), x.data_ptr(), wp, saved.data_ptr(),
                                                                     dx.data_ptr(), dwp, N, T, D, Hd, H, hd ** -0.5),
                                       lambda: [dx, *dw], agents),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params/default.yaml"))
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    if not avx512_available():
        print("this CPU has no AVX-512: the kernels run their AVX2 paths only; nothing to compare", file=sys.stderr)
        return 1
    torch.set_num_threads(1)
    params = load_params(args.params)
    lib = library()
    before = lib.k1_wide(-1)
    rows = []
    try:
        for name, (call, outputs, per_step) in kernels(params).items():
            results = []
            for wide in (0, 1):
                lib.k1_wide(wide)
                call()
                results.append([t.clone() for t in outputs()])
            if not all(torch.isfinite(t).all() for t in results[0]) or not all(torch.equal(a, b) for a, b in zip(*results)):
                raise AssertionError(f"{name}: the AVX2 and AVX-512 paths differ (or give non-finite numbers)")
            calls = max(1, int(0.02 / max(per_call(call, 3), 1e-6)))
            times: dict[str, list[float]] = {"avx2": [], "avx512": []}
            for r in range(args.repeats + 1):
                for path in (("avx2", "avx512") if r % 2 == 0 else ("avx512", "avx2")):
                    lib.k1_wide(int(path == "avx512"))
                    t = per_call(call, calls)
                    if r:  # the first round warms up
                        times[path].append(t)
            med = {path: statistics.median(t) for path, t in times.items()}
            rows.append({"kernel": name, "calls_per_step": per_step, "same_bits": True,
                         **{f"{path}_s": times[path] for path in times},
                         **{f"{path}_median_s": med[path] for path in med}})
    finally:
        lib.k1_wide(before)
    print(f"{'kernel (one run of the profile)':30} {'AVX2 us':>9} {'AVX-512 us':>11} {'speed-up':>9} {'per step ms saved':>18}")
    for row in rows:
        a, b = row["avx2_median_s"], row["avx512_median_s"]
        print(f"{row['kernel']:30} {1e6 * a:9.1f} {1e6 * b:11.1f} {a / b:8.2f}x {1e3 * (a - b) * row['calls_per_step']:18.2f}")
    print(f"same bits on both paths for every kernel; torch {torch.__version__}, 1 thread, medians of {args.repeats}; "
          f"{_cpu_model()}")
    if args.out:
        args.out.write_text(json.dumps({"params": str(args.params), "torch": torch.__version__, "repeats": args.repeats,
                                        "cpu": _cpu_model(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
