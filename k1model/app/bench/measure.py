"""Measuring tools of the benchmark: timing, host-sync counting, peak memory, machine facts."""
from __future__ import annotations

import collections
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.overrides import TorchFunctionMode

from k1model.errors import ConfigError

def parse_trees(spec: str) -> list[tuple[int, ...]]:
    """'2,2;4,4;4,3,2' -> [(2, 2), (4, 4), (4, 3, 2)]."""
    trees = []
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        try:
            branching = tuple(int(b) for b in part.split(","))
        except ValueError:
            raise ConfigError(f"invalid value for '--trees': {spec!r}; allowed: branchings like '2,2;4,4;4,3,2'") from None
        if not branching or any(b < 1 for b in branching):
            raise ConfigError(f"invalid value for '--trees': {spec!r}; allowed: positive integers, e.g. '4,3,2'")
        trees.append(branching)
    if not trees:
        raise ConfigError(f"invalid value for '--trees': {spec!r}; allowed: branchings like '2,2;4,4;4,3,2'")
    return trees

def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so a timer sees it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)

def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of fn takes on the device (synchronised before and after)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0

def per_call(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call of fn over `calls` back-to-back calls: for CPU kernels too short to time one by one."""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls

def _summary(values: Sequence[float]) -> dict[str, Any]:
    v = sorted(values)
    if not v:
        return {"median": None, "p25": None, "p75": None, "min": None, "n": 0}
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0], v[0], v[0]]
    return {"median": statistics.median(v), "p25": q[0], "p75": q[2], "min": v[0], "n": len(v), "values": list(values)}

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None

def _maxrss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux

def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))

_HOST_METHODS = {"item", "cpu", "tolist", "__bool__", "__float__", "__int__", "__index__"}  # not .numpy(): CPU-only

_TORCH_DIR = str(Path(torch.__file__).parent)

class HostSyncCounter(TorchFunctionMode):
    """Counts tensor -> host transfers by call site (first frame outside torch)."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _HOST_METHODS or (name == "to" and self._moves_to_cpu(args, kwargs)):
            self.sites[self._site(name)] += 1
        return func(*args, **kwargs)

    @staticmethod
    def _moves_to_cpu(args, kwargs) -> bool:
        """`.to(...)` that copies a non-CPU tensor to the CPU (a same-device `.to` is a no-op)."""
        if not args or not torch.is_tensor(args[0]) or args[0].device.type == "cpu":
            return False
        targets = [a for a in args[1:] if isinstance(a, (str, torch.device))] + [kwargs.get("device")]
        return any(t is not None and torch.device(t).type == "cpu" for t in targets)

    @staticmethod
    def _site(name: str) -> str:
        frame = sys._getframe(2)
        via_torch = frame.f_code.co_filename.startswith(_TORCH_DIR)
        while frame is not None and frame.f_code.co_filename.startswith(_TORCH_DIR):
            frame = frame.f_back
        where = "?" if frame is None else f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
        return f"{where} .{name}()" + (" [inside torch]" if via_torch else "")

def count_host_syncs(fn: Callable[[], Any]) -> dict[str, Any]:
    """How many host syncs one call of fn makes, and where (k1model's own, torch's)."""
    with HostSyncCounter() as counter:
        fn()
    sites = dict(sorted(counter.sites.items()))
    inside_torch = sum(n for s, n in sites.items() if s.endswith("[inside torch]"))
    return {"total": sum(sites.values()), "k1model": sum(sites.values()) - inside_torch,
            "inside_torch": inside_torch, "sites": sites}

def peak_step_memory(fn: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """Peak bytes allocated by torch during `fn` above what was allocated before it."""
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        sync(device)
        return {"peak_extra_mb": (torch.cuda.max_memory_allocated(device) - before) / 2**20,
                "method": "torch.cuda.max_memory_allocated"}
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "99")  # keep kineto's start/stop chatter off stderr
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except AttributeError:  # private profiler API changed: say so instead of guessing
        return {"peak_extra_mb": None, "method": "unavailable (torch profiler API changed)"}
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        if str(e.device_type()).endswith("CPU"):
            current += e.nbytes()
            peak = max(peak, current)
    return {"peak_extra_mb": peak / 2**20, "method": "torch.profiler memory events (CPU allocator)"}
