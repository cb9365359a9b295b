#!/usr/bin/env python3
"""The native gemm (k1model/kernels/gemm.c) against torch's matmul (MKL on x86-64) at the agent block's shapes.

    python benchmarks/gemm.py --params params/default.yaml --out benchmarks/results/gemm.json

Every product of a dense step's agent blocks (`k1model.app.bench.shapes.gemm_shapes`: forward, input
gradient, weight gradient of the four linear layers) with the operands laid out as the block lays them
out (a weight gradient reads its left operand transposed), timed alone in a loop, the two
implementations interleaved, one thread; medians of `--repeats` timings. gemm.c is timed with its AVX2
tiles and, where the CPU has AVX-512, with its AVX-512 tiles (the ones it runs there; the same bits). Prints
GFLOP/s per shape and what a step's block products cost at each rate, and checks that every implementation
gives the same product to float32 rounding. (The LM head's products stay torch's and are not listed.)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from k1model.app.bench.shapes import gemm_shapes
from k1model.config import load_params
from k1model.app.bench.measure import _cpu_model, per_call
from k1model.kernels.library import avx512_available, library


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params/default.yaml"))
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    torch.set_num_threads(1)
    params = load_params(args.params)
    lib = library()
    wide_before = lib.k1_wide(-1)
    names = ["torch", "avx2", *(["avx512"] if avx512_available() else [])]
    g = torch.Generator().manual_seed(0)
    rows, total = [], {name: 0.0 for name in names}
    for shape in [s for s in gemm_shapes(params.model, params.train.batch_size) if not s["name"].startswith("head")]:
        m, k, n = shape["mkn"]
        transposed = "weight grad" in shape["name"]  # dY^T X: the left operand is read transposed
        stored = torch.randn(k, m, generator=g) if transposed else torch.randn(m, k, generator=g)
        a = stored.t() if transposed else stored
        b, c = torch.randn(k, n, generator=g), torch.empty(m, n)
        lda = m if transposed else k

        def prepare(name: str):
            """The call to time for one implementation (selecting gemm.c's tiles first, outside the timed calls)."""
            if name == "torch":
                return lambda: a @ b
            lib.k1_wide(int(name == "avx512"))
            return lambda: lib.k1_gemm(stored.data_ptr(), int(transposed), lda, b.data_ptr(), n, c.data_ptr(), n, m,
                                       n, k)

        for name in names[1:]:
            prepare(name)()
            assert torch.allclose(c, a @ b, rtol=1e-4, atol=1e-4 * k ** 0.5), (shape["name"], name)
        calls = max(1, int(1e8 // (2 * m * k * n)))
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.repeats + 1):
            for name in (names if r % 2 == 0 else names[::-1]):
                t = per_call(prepare(name), calls)
                if r:  # the first round warms up
                    times[name].append(t)
        flops = 2 * m * k * n
        med = {name: statistics.median(t) for name, t in times.items()}
        for name in total:
            total[name] += med[name] * shape["count"]
        rows.append({"name": shape["name"], "mkn": [m, k, n], "count": shape["count"], "left_transposed": transposed,
                     **{f"{name}_gflops": flops / med[name] / 1e9 for name in names},
                     **{f"{name}_s": times[name] for name in names}})
    lib.k1_wide(wide_before)
    print(f"{'product':22} {'m x k x n':>16}" + "".join(f" {name + ' GFLOP/s':>15}" for name in names))
    for row in rows:
        m, k, n = row["mkn"]
        print(f"{row['name']:22} {f'{m}x{k}x{n}':>16}" + "".join(f" {row[name + '_gflops']:>15.1f}" for name in names))
    native = names[-1]
    print(f"a dense step's block products ({params.model.num_agents} agents): "
          + ", ".join(f"{name} {1000 * total[name]:.1f} ms" for name in names)
          + f"; gemm.c as it runs here ({native} tiles) x{total['torch'] / total[native]:.2f} torch's speed; "
          f"torch {torch.__version__}, 1 thread, medians of {args.repeats}")
    if args.out:
        args.out.write_text(json.dumps({"params": str(args.params), "torch": torch.__version__, "repeats": args.repeats,
                                        "cpu": _cpu_model(), "native_isa": native, "rows": rows,
                                        "step_block_products_s": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
