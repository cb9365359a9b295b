#!/usr/bin/env python3
"""The native gemm (k1model/kernels/gemm.c) against torch's matmul (MKL on x86-64) at the agent block's shapes.

    python benchmarks/gemm.py --params params/default.yaml --out benchmarks/results/gemm.json

Every product of a dense step's agent blocks (`k1model.app.bench.shapes.gemm_shapes`: forward, input
gradient, weight gradient of the four linear layers) with the operands laid out as the block lays them
out (a weight gradient reads its left operand transposed), timed alone in a loop, the two
implementations interleaved, one thread; medians of `--repeats` timings. Prints GFLOP/s per shape and
what a step's block products cost at each rate, and checks that both give the same product to float32
rounding. (The LM head's products stay torch's and are not listed.)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from k1model.app.bench.shapes import gemm_shapes
from k1model.config import load_params
from k1model.kernels.library import library


def timed(fn, calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params/default.yaml"))
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import k1model.strategies  # noqa: F401  (registers the variants the params name)

    torch.set_num_threads(1)
    params = load_params(args.params)
    lib = library()
    g = torch.Generator().manual_seed(0)
    rows, total = [], {"torch": 0.0, "native": 0.0}
    for shape in [s for s in gemm_shapes(params.model, params.train.batch_size) if not s["name"].startswith("head")]:
        m, k, n = shape["mkn"]
        transposed = "weight grad" in shape["name"]  # dY^T X: the left operand is read transposed
        stored = torch.randn(k, m, generator=g) if transposed else torch.randn(m, k, generator=g)
        a = stored.t() if transposed else stored
        b, c = torch.randn(k, n, generator=g), torch.empty(m, n)
        lda = m if transposed else k
        native = lambda: lib.k1_gemm(stored.data_ptr(), int(transposed), lda, b.data_ptr(), n, c.data_ptr(), n, m, n, k)  # noqa: E731
        reference = lambda: a @ b  # noqa: E731
        native()
        assert torch.allclose(c, a @ b, rtol=1e-4, atol=1e-4 * k ** 0.5), shape["name"]
        calls = max(1, int(1e8 // (2 * m * k * n)))
        times: dict[str, list[float]] = {"torch": [], "native": []}
        for r in range(args.repeats + 1):
            order = [("torch", reference), ("native", native)]
            for name, fn in (order if r % 2 == 0 else order[::-1]):
                t = timed(fn, calls)
                if r:  # the first round warms up
                    times[name].append(t)
        flops = 2 * m * k * n
        med = {name: statistics.median(t) for name, t in times.items()}
        for name in total:
            total[name] += med[name] * shape["count"]
        rows.append({"name": shape["name"], "mkn": [m, k, n], "count": shape["count"], "left_transposed": transposed,
                     "torch_gflops": flops / med["torch"] / 1e9, "native_gflops": flops / med["native"] / 1e9,
                     "speedup": med["torch"] / med["native"], "torch_s": times["torch"], "native_s": times["native"]})
    print(f"{'product':22} {'m x k x n':>16} {'torch GFLOP/s':>14} {'gemm.c GFLOP/s':>15} {'speed-up':>9}")
    for row in rows:
        m, k, n = row["mkn"]
        print(f"{row['name']:22} {f'{m}x{k}x{n}':>16} {row['torch_gflops']:>14.1f} {row['native_gflops']:>15.1f} "
              f"{row['speedup']:>8.2f}x")
    print(f"a dense step's block products ({params.model.num_agents} agents): torch {1000 * total['torch']:.1f} ms, "
          f"gemm.c {1000 * total['native']:.1f} ms (x{total['torch'] / total['native']:.2f}); torch {torch.__version__}, "
          f"1 thread, medians of {args.repeats}")
    if args.out:
        args.out.write_text(json.dumps({"params": str(args.params), "torch": torch.__version__, "repeats": args.repeats,
                                        "rows": rows, "step_block_products_s": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
