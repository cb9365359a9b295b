"""The native library: every C kernel of this folder in one shared library, built on first use (`build.py`),
with the signatures ctypes calls them with."""
from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch

from k1model.kernels.build import KernelUnavailable, load

SOURCES = tuple(Path(__file__).with_name(name) for name in ("attention.c", "block.c", "cross_entropy.c", "gelu.c",
                                                             "gemm.c", "layer_norm.c", "wide.c"))


RETURN_NOTHING = ("k1_gelu_forward", "k1_gelu_backward", "k1_gelu_bias_forward", "k1_add_bias_residual",
                  "k1_layer_norm_apply", "k1_transpose")


@functools.cache
def library() -> ctypes.CDLL:
    """The native kernels' shared library, built on first use, with every function's signature."""
    lib = load("k1native", SOURCES)
    p, i, f = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    signatures = {
        "k1_attention_forward": [p, p, p, p, i, i, i, i, f],
        "k1_attention_backward": [p, p, p, p, p, p, i, i, i, i, f],
        "k1_cross_entropy_forward": [p, p, p, p, i, i, i],
        "k1_cross_entropy_backward": [p, p, p, p, p, i, i, i],
        "k1_gelu_forward": [p, p, i],
        "k1_gelu_backward": [p, p, p, i],
        "k1_gelu_bias_forward": [p, p, p, i, i],
        "k1_gelu_bias_backward": [p, p, p, p, i, i],
        "k1_gelu_bias_backward_output": [p, p, p, p, p, i, i],
        "k1_layer_norm_forward": [p, p, p, p, p, p, i, i, f],
        "k1_add_layer_norm_forward": [p, p, p, p, p, p, p, p, i, i, f],
        "k1_layer_norm_backward": [p, p, p, p, p, p, p, p, i, i, p, p],
        "k1_layer_norm_apply": [p, p, p, p, p, p, i, i],
        "k1_add_bias_residual": [p, p, p, i, i],
        "k1_column_sums": [p, p, i, i],
        "k1_gemm": [p, ctypes.c_int, i, p, i, p, i, i, i, i],
        "k1_wide": [ctypes.c_int],
        "k1_can_wide": [],
        "k1_transpose": [p, i, i, p],
        "k1_block_saved_floats": [i, i, i, i, i],
        "k1_block_forward": [p, p, p, p, i, i, i, i, i, f, f],
        "k1_block_backward": [p, p, p, p, p, p, i, i, i, i, i, f],
    }
    for name, args in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, (None if name in RETURN_NOTHING else ctypes.c_int)
    lib.k1_block_saved_floats.restype = ctypes.c_int64
    return lib


@functools.cache
def unavailable() -> str | None:
    """None when the native kernels run here (built and loaded now if need be), else why not."""
    try:
        library()
    except KernelUnavailable as err:
        return str(err)
    return None


def float32(*tensors: "torch.Tensor") -> None:
    """The kernels read and write raw float32 memory: refuse anything else before a pointer is passed."""
    for t in tensors:  # (the cheapest attributes: this runs ~80 times a step)
        if t.dtype is not torch.float32 or not t.is_cpu or not t.is_contiguous():
            raise RuntimeError(f"the native kernels take contiguous float32 CPU tensors; got {t.dtype} on {t.device}"
                               f"{'' if t.is_contiguous() else ', not contiguous'} (under bf16 autocast use "
                               "train.attention: masked)")


def check(rc: int, what: str) -> None:
    """Raise for a kernel's non-zero return code, naming what went wrong."""
    if rc:
        raise RuntimeError(f"native {what} kernel failed (code {rc}: "
                           f"{ {1: 'bad shape or target', 2: 'out of memory'}.get(rc, 'unknown') })")


def avx512_available() -> bool:
    """Whether the kernels can run their AVX-512 paths here (the CPU and the operating system support AVX-512)."""
    return unavailable() is None and bool(library().k1_can_wide())


def vector_isa() -> str | None:
    """Which paths the kernels run in this process ("AVX-512" or "AVX2": `gemm.c`'s tiles and the 16-lane
    elementwise loops of `wide.h`, the same bits either way), None without the kernels: for the record in
    `k1 train`'s kernels line and `k1 bench`, since the step's speed depends on it. $K1_NATIVE_AVX2=1 forces AVX2."""
    if unavailable() is not None:
        return None
    return "AVX-512" if library().k1_wide(-1) else "AVX2"
