"""Will the runs fit? An estimate of a training process's memory, checked before anything is allocated.

A tree too big for the machine (`branching: [64, 64]` at `embed_dim: 512`: 4161 agents, 13 billion
parameters a run) would otherwise allocate until the machine runs out and end in a long traceback, or be
killed by the kernel without a word. The estimate counts only what training must hold per run whatever
the kernels and precision: the float32 weights, their gradients and AdamW's two moments, and every agent's
output for the backward pass (in 2 bytes, bf16's size). The true use is larger (the other activations, the
allocator, the libraries), so the estimate is a lower bound and a refusal is never a false alarm.
"""
from __future__ import annotations

import os
import resource
from pathlib import Path

import torch

from k1model.config import ModelConfig, TrainConfig
from k1model.errors import ConfigError

GIB = 2**30
#: bytes kept per parameter: the float32 weight, its gradient and AdamW's two moments
BYTES_PER_PARAMETER = 4 * 4


def parameters_per_run(cfg: ModelConfig) -> tuple[int, int]:
    """(agents, parameters) of one run's tree (agent slots included) and its shared weights."""
    agents = cfg.num_slots  # every agent and agent slot of the tree
    D, H = cfg.embed_dim, cfg.hidden_dim
    block = 4 * D * D + 2 * D * H + 9 * D + H  # 2 LayerNorms, qkv, proj, fc, out (with biases)
    shared = (cfg.vocab_size + cfg.max_seq_len + 2) * D
    return agents, agents * block + shared


def training_bytes(cfg: ModelConfig, train: TrainConfig, runs: int) -> int:
    """Memory `runs` runs of this model need to train together (a lower bound)."""
    agents, params = parameters_per_run(cfg)
    outputs = agents * train.batch_size * cfg.max_seq_len * cfg.embed_dim * 2  # every agent's output, kept
    return runs * (params * BYTES_PER_PARAMETER + outputs)                     # for the backward pass


def available_bytes(device: torch.device) -> tuple[int, str] | None:
    """The memory this process can still take on `device`, and where that number comes from (None: unknown)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free), f"free on {device}"
    found: list[tuple[int, str]] = []
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "available on this machine"))
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit.isdigit():
            found.append((int(limit) - int((cgroup / "memory.current").read_text()), "left in this cgroup"))
    except (OSError, ValueError):
        pass
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _virtual_size()
        found.append((soft - used, "left under this process's address-space limit (ulimit -v)"))
    if not found:
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free on this machine"
        except (ValueError, OSError):
            return None
    return min(found)


def _virtual_size() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def check_memory(cfg: ModelConfig, train: TrainConfig, runs: int, device: torch.device) -> None:
    """ConfigError, before any allocation, when the runs cannot fit in the memory left on `device`."""
    need = training_bytes(cfg, train, runs)
    have = available_bytes(device)
    if have is None or need <= have[0]:
        return
    agents, params = parameters_per_run(cfg)
    raise ConfigError(
        f"model.branching {list(cfg.branching)} with embed_dim {cfg.embed_dim} and hidden_dim {cfg.hidden_dim} makes "
        f"{agents} agents and {params / 1e6:,.0f}M parameters a run; training {runs} run(s) at batch size "
        f"{train.batch_size} needs at least {need / GIB:,.1f} GiB of memory, but only {max(have[0], 0) / GIB:,.1f} "
        f"GiB is {have[1]}. Use a smaller tree (model.branching) or width (model.embed_dim, model.hidden_dim), "
        "fewer runs in one `k1 train` (fewer --variant / --seed), or a machine with more memory")
