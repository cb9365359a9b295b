"""`train:` the continual-learning protocol of `k1 train` (DESIGN.md §3)."""
from __future__ import annotations

from dataclasses import dataclass

from k1model.config.checks import Boolean, Integer, OneOf, Section, Text, setting

DOMAIN_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
DOMAIN = Text(DOMAIN_PATTERN, "a domain name (letters, digits, '_', '-', '.')")


@dataclass(frozen=True)
class TrainConfig(Section):
    """`train:` the continual-learning protocol: batches, steps, evaluation, device and kernels."""
    SECTION = "train"
    DESCRIPTION = "the continual-learning protocol (k1 train)"

    batch_size: int = setting(16, Integer(1), "windows per step")
    steps_per_phase: int = setting(300, Integer(1), "steps on each domain")
    eval_interval: int = setting(50, Integer(1), "validation bpb every that many steps (learning curves)")
    eval_batches: int = setting(8, Integer(1), "validation batches of the learning curves (the R matrices are "
                                "evaluated on every byte of the held-out splits)")
    checkpoint_interval: int = setting(100, Integer(1), "resumable state every that many steps")
    sparsity_interval: int = setting(10, Integer(1), "measure changed weights every that many steps")
    device: str = setting("cpu", Text(r"cpu|cuda|auto|cuda:[0-9]+", "cpu, cuda, cuda:N or auto"),
                          "cpu | cuda | cuda:N | auto (cuda and auto make train jobs request resources: gpu=1)")
    precision: str = setting("fp32", OneOf(("fp32", "bf16")),
                             "fp32, or bf16 autocast for the matmuls (losses, norms, optimiser stay fp32)")
    attention: str = setting("auto", OneOf(("auto", "native", "masked", "causal")),
                             "kernels: masked / causal = torch's SDPA with a mask / is_causal; native = the C kernels "
                             "of k1model/kernels (CPU, x86 with AVX2 and a C compiler, built on first use; faster, "
                             "rounds differently); auto = torch's portable kernels (CPU masked, CUDA causal). The "
                             "kernels used are part of a run's identity and named in its metrics.json")
    run_batching: str = setting("auto", OneOf(("auto", "loop", "batched")),
                                "runs of one process: loop = each run's own kernels in turn; batched = batched matmuls "
                                "over runs; auto = chosen by measurement per device (CPU loop, CUDA batched)")
    deterministic: bool = setting(False, Boolean(), "torch.use_deterministic_algorithms and CUBLAS_WORKSPACE_CONFIG "
                                  "(bit-reproducible CUDA runs, slower); CPU runs are deterministic anyway")

    def identity(self, attention: str | None = None, run_batching: str | None = None) -> dict:
        """What a run's results depend on (hashed into its config hash): every setting, with the kernels `auto`
        resolved to on this device (so a run never resumes under other kernels)."""
        out = self.to_dict()
        out.update({k: v for k, v in (("attention", attention), ("run_batching", run_batching)) if v is not None})
        return out
