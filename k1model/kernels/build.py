"""Building a native kernel on first use: the machine's C compiler, a per-user cache, an atomic rename.

The kernels are plain C files (no Python or torch headers), built into one shared library in about
a second with only a C compiler (`$CC`, else `cc` or `gcc`). The library lands in the cache under a
name that hashes the sources, the flags and the compiler's version, so a changed kernel is rebuilt
and two processes building at once cannot see each other's half-written file.

Cache: `$K1_KERNEL_CACHE`, else `$XDG_CACHE_HOME/k1model/kernels`, else `~/.cache/k1model/kernels`.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

#: the flags every kernel is built with: no fused multiply-add contraction beyond what the source writes,
#: so the numbers depend on the source, not on the optimiser
FLAGS = ("-O3", "-mavx2", "-mfma", "-ffp-contract=off", "-std=c99", "-fPIC", "-shared")


class KernelUnavailable(RuntimeError):
    """A native kernel cannot be used on this machine; the message says why and what would fix it."""


def cache_dir() -> Path:
    """Where built kernel libraries are cached ($K1_KERNEL_CACHE, else ~/.cache/k1model/kernels)."""
    if os.environ.get("K1_KERNEL_CACHE"):
        return Path(os.environ["K1_KERNEL_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "k1model" / "kernels"


def cpu_supported() -> str | None:
    """None when this CPU runs the kernels (x86-64 with AVX2 and FMA, as torch's dispatch sees it), else why not."""
    import torch

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the kernels are written for x86-64 with AVX2; this machine is {platform.machine()}"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"this CPU (torch capability {capability}) lacks AVX2/FMA"
    if os.name != "posix":
        return "native kernels are built and loaded on Linux and macOS only"
    return None


def compiler() -> str | None:
    """The C compiler to build with ($CC, else cc, else gcc); None when there is none."""
    cc = os.environ.get("CC")
    if cc:
        return shutil.which(cc.split()[0]) and cc
    return shutil.which("cc") or shutil.which("gcc")


def load(name: str, sources: Sequence[Path]) -> ctypes.CDLL:
    """The shared library `name` built from `sources` (and the headers beside them), built now if the cache
    lacks it. KernelUnavailable if it cannot be."""
    why = cpu_supported()
    if why:
        raise KernelUnavailable(why)
    cc = compiler()
    if cc is None:
        raise KernelUnavailable("no C compiler found (set $CC, or install gcc/clang)")
    try:
        version = subprocess.run([*cc.split(), "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise KernelUnavailable(f"the C compiler {cc!r} does not run: {err}") from None
    folder = Path(sources[0]).parent
    text = b"".join(p.read_bytes() for p in sorted([*map(Path, sources), *folder.glob("*.h")]))
    key = hashlib.sha256(text + repr(FLAGS).encode() + version.encode()).hexdigest()[:16]
    target = cache_dir() / f"{name}-{key}.so"
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
        except OSError as err:
            raise KernelUnavailable(f"cannot write the kernel cache {target.parent} ({err}); set $K1_KERNEL_CACHE "
                                    "to a writable directory") from None
        try:
            done = subprocess.run([*cc.split(), *FLAGS, f"-I{folder}", "-o", tmp, *map(str, sources), "-lm"],
                                  capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise KernelUnavailable(f"{cc} could not build {name}: {done.stderr.strip()[-500:]}")
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    try:
        return ctypes.CDLL(str(target))
    except OSError as err:
        raise KernelUnavailable(f"cannot load {target} ({err}); delete it to rebuild") from None
