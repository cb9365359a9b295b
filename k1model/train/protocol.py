"""The continual-learning protocol behind `k1 train` (DESIGN.md §3), for one run or many at once.

Domains arrive in sequence (default prose → code → science), a fixed number of steps each.
Every `eval_interval` steps all domains are evaluated on the validation split (learning curves);
at the end of every phase all domains are evaluated on the test split, giving the row R[phase, :]
of the forgetting matrix in bits per byte (and the same on validation, `R_valid`, which is what
tuning may read). The untrained model's bpb is R0 (for forward transfer).

Many runs, one process (DESIGN.md §10): runs that share a topology and the `train` settings
(variants, seeds, method settings, domain orders) train in lockstep in one stacked model; each
run has its own data stream, decisions, optimiser rows and outputs, identical in format to a run
trained alone. Runs never mix.

Robustness: outputs are written atomically. Every run keeps a resumable state (model rows,
optimiser rows, trust, RNGs, sampler positions, logs so far) in `RUN/resume.pt`, written every
`checkpoint_interval` steps and at phase ends, so a killed process resumes to the same numbers.
Runs found at different resume steps are trained in consecutive sub-groups. A run directory
belongs to one config hash and one thread count; resuming anything else into it is refused. A run
whose loss stops being finite is recorded as failed (failure.json, status "failed") while the
others go on; when every run has failed, training stops. A run folder is one process's at a time
(`train/runfolder.py`), and a run records the hash of its data manifest: training over it with other
data is refused, as are params whose data section is not the prepared data's, and a model too big for
the memory left (`train/memory.py`).
"""
from __future__ import annotations

import math
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from k1model.config import MethodConfig, ModelConfig, Params, config_hash, load_params, method_config
from k1model.config.checks import Integer, plain
from k1model.config.experiment import SEED
from k1model.data.loading import check_data_section, read_manifest
from k1model.errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from k1model.io import read_output_json, rerun_hint
from k1model.execution import default_execution, native_unavailable
from k1model.model import AgentTree
from k1model.topology import ACTIVE, STATE_NAMES
from k1model.train.checkpoint import load_checkpoint, save_checkpoint
from k1model.train.decomposition import decomposition, record_phase_end, snapshot, swap_test
from k1model.train.outputs import RunLog, copy_run, finish_run, record_failure, run_metrics, step_row, write_run_outputs
from k1model.train.memory import check_memory
from k1model.train.plugins import Phase
from k1model.train.runfolder import own_run_folder
from k1model.train.runtime import deterministic_mode, resolve_device, versions
from k1model.train.sparsity import SparsityCheck
from k1model.train.step import Trainer

CHECKPOINT_FORMAT = 4  # 3: one run's rows of a (possibly stacked) model, threads, plugin state; 4: + phase-end snapshots


@dataclass(frozen=True)
class RunSpec:
    """One run: its variant, seed, method settings, domain order, directory and architecture."""

    variant: str
    seed: int
    out_dir: Path
    method: MethodConfig
    phases: tuple[str, ...]
    model: ModelConfig
    twin: Path | None = None  # a run that may hold this very run (same config hash): copied instead of retrained
    init_seed: int | None = None  # experiment.init_seed per_order: from (seed, order); None = the seed itself

    @property
    def rng_seed(self) -> int:
        """What the run's initial weights, data stream and every other random choice are seeded with."""
        return self.seed if self.init_seed is None else self.init_seed


def run_hash(model: ModelConfig, spec: RunSpec, identity: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The run's config hash. A run with a derived init seed hashes it as one more part; a run seeded by its
    seed alone (`experiment.init_seed: shared`) hashes exactly what it did before the option existed, so the
    runs trained then stay complete for their params."""
    parts: list[Any] = [model, spec.method.hash_dict(), identity, list(spec.phases), spec.seed, manifest]
    if spec.init_seed is not None:
        parts.append({"init_seed": spec.init_seed})
    return config_hash(*parts)


def run_specs(params: Params, variants: Sequence[str], seeds: Sequence[int], out: str | Path,
              order: Sequence[str] | None = None) -> list[RunSpec]:
    """Runs for variants × seeds in one domain order (default: the first of the params); `out` is a
    directory (one run) or a pattern with {variant} and {seed}."""
    pattern = str(out)
    many = len(variants) * len(seeds) > 1
    missing = [f for f in ("{variant}", "{seed}") if f not in pattern and (
        (f == "{variant}" and len(variants) > 1) or (f == "{seed}" and len(seeds) > 1))]
    if missing:
        raise ConfigError(f"--out {pattern!r} must contain {' and '.join(missing)} when several "
                          f"{'variants' if '{variant}' in missing else 'seeds'} are given, e.g. 'runs/{{variant}}/seed{{seed}}'")
    dupes = sorted({v for v in variants if list(variants).count(v) > 1} | {str(s) for s in seeds if list(seeds).count(s) > 1})
    if dupes:
        raise ConfigError(f"duplicate runs: {', '.join(dupes)} given twice; each variant x seed is one run")
    for s in seeds:
        SEED(s, "seed")
    phases = tuple(order) if order else params.orders[0]
    if sorted(phases) != sorted(params.data.domains):
        raise ConfigError(f"order {list(phases)} is not a permutation of data.domains {list(params.data.domains)}")
    specs = []
    for v in variants:
        if v not in params.experiment.variants:
            raise ConfigError(f"variant {v!r} is not in experiment.variants {list(params.experiment.variants)}")
        for s in seeds:
            out_dir = Path(pattern.format(variant=v, seed=s) if many or "{" in pattern else pattern)
            specs.append(RunSpec(v, int(s), out_dir, method_config(params.method, v), phases, params.model,
                                 init_seed=params.init_seed_of(int(s), phases)))
    return specs


def progress_line(label: str, done_now: int, step: int, total: int, phase: int, elapsed: float,
                  losses: Sequence[float]) -> str:
    """One line of a job's progress (every 5 % of its steps, when stderr is not a terminal): what the
    pipeline shows while a job trains. The time left extrapolates this process's own pace."""
    left = elapsed / done_now * (total - step) if done_now else float("nan")
    return (f"[{label}] step {step}/{total} ({100 * step / total:.0f}%) phase {phase}, "
            f"{elapsed:.0f}s elapsed, ~{left:.0f}s left, loss " + " ".join(f"{v:.3f}" for v in losses))


@dataclass
class _Job:
    """The runs one call of `RunGroup._train` trains together, in one model: their specs (and places in the
    group), the model and trainer, each run's data streams and logs, and the runs that failed."""

    members: list[int]
    specs: list[RunSpec]
    model: AgentTree
    trainer: Trainer
    samplers: list[dict[str, Any]]
    logs: list[RunLog]
    resumed: bool
    failed: dict[int, dict] = field(default_factory=dict)


class RunGroup:
    """Trains `specs` (runs sharing the model and train settings) together; see the module docstring."""

    def __init__(self, params: Params | dict, data_dir: str | Path, specs: Sequence[RunSpec],
                 threads: int | None = None, name: str | None = None):
        self.name = name  # the job's name in the progress lines (the plan's group, e.g. "g03")
        if threads:
            torch.set_num_threads(threads)
        self.params = params = load_params(params)
        self.model_cfg, self.train_cfg = params.model, params.train
        self.data_dir = Path(data_dir)
        if not specs:
            raise ConfigError("no runs to train")
        dirs = [s.out_dir.resolve() for s in specs]
        if len(set(dirs)) != len(dirs):
            raise ConfigError(f"duplicate runs: two runs would write to {sorted(str(d) for d in dirs if dirs.count(d) > 1)[0]}")
        self.specs = list(specs)
        odd = [s for s in self.specs if s.model != self.model_cfg]
        if odd:
            raise ConfigError(f"runs with different model settings cannot train in one process: {odd[0].out_dir} has "
                              f"branching {list(odd[0].model.branching)}, width {odd[0].model.embed_dim}; the group "
                              f"has {list(self.model_cfg.branching)}, width {self.model_cfg.embed_dim}. Give each "
                              "topology its own process")
        lengths = {len(s.phases) for s in self.specs}
        if len(lengths) > 1:
            raise ConfigError(f"runs with different numbers of phases ({sorted(lengths)}) cannot train in lockstep")
        self.device = resolve_device(self.train_cfg.device)
        if self.train_cfg.deterministic:
            deterministic_mode()
        auto_attention, auto_batching = default_execution(self.device)
        self.attention = auto_attention if self.train_cfg.attention == "auto" else self.train_cfg.attention
        self.run_batching = auto_batching if self.train_cfg.run_batching == "auto" else self.train_cfg.run_batching
        if self.attention == "native":
            why = native_unavailable(self.model_cfg, self.device, self.train_cfg.precision)
            if why:
                raise ConfigError(f"train.attention is 'native' but the native kernels cannot run here: {why}; "
                                  "set train.attention to auto or masked")
        # the data the params describe (their data section, the manifest's hash recorded by every run), and a
        # model that fits: checked before anything is allocated or written
        self.manifest, self.data_sha256 = read_manifest(self.data_dir)
        check_data_section(params.data, self.manifest, self.data_dir)
        check_memory(self.model_cfg, self.train_cfg, len(self.specs), self.device)
        identity = self.train_cfg.identity(self.attention, self.run_batching)
        self.hashes = [run_hash(self.model_cfg, s, identity, self.manifest) for s in self.specs]
        self._load_data()

    # --- data ----------------------------------------------------------------------------
    def _load_data(self) -> None:
        from k1model.data.loading import load_split
        from k1model.data.sampling import eval_batches, full_split_batches

        cfg, T = self.train_cfg, self.model_cfg.max_seq_len
        domains = list(dict.fromkeys(d for s in self.specs for d in s.phases))
        self.train_tokens = {d: load_split(self.data_dir, d, "train") for d in domains}
        valid = {d: load_split(self.data_dir, d, "valid") for d in domains}
        test = {d: load_split(self.data_dir, d, "test") for d in domains}
        # learning curves: a fixed subset; the R matrices (test and validation): every byte of the split
        self.curve = {d: eval_batches(valid[d], T, cfg.batch_size, cfg.eval_batches) for d in domains}
        B = 4 * cfg.batch_size  # forward only: larger batches
        self.valid = {d: full_split_batches(valid[d], T, B) for d in domains}
        self.test = {d: full_split_batches(test[d], T, B) for d in domains}

    def samplers(self, spec: RunSpec) -> dict[str, Any]:
        """A run's training batch sampler per domain (seeded by the run's seed and the domain's place)."""
        from k1model.data.sampling import BatchSampler

        T, B = self.model_cfg.max_seq_len, self.train_cfg.batch_size
        order = list(dict.fromkeys(spec.phases))
        return {d: BatchSampler(self.train_tokens[d], T, B, seed=spec.rng_seed * 1000 + i) for i, d in enumerate(order)}

    def phase(self, spec: RunSpec, index: int) -> Phase:
        """Phase `index` of a run: its domain, steps and training tokens."""
        steps = self.train_cfg.steps_per_phase
        return Phase(index=index, domain=spec.phases[index], steps=steps, first_step=index * steps,
                     tokens=self.train_tokens[spec.phases[index]], seq_len=self.model_cfg.max_seq_len,
                     batch_size=self.train_cfg.batch_size, seed=spec.rng_seed, count=len(spec.phases),
                     domain_tokens={d: self.train_tokens[d] for d in dict.fromkeys(spec.phases)})

    @torch.no_grad()
    def evaluate(self, model: AgentTree, which: dict[str, list], bypass: Sequence[int] = ()) -> dict[str, np.ndarray]:
        """Bits per byte of every run on every domain's batches (the same windows for every run): total
        nats over every scored byte (targets -100 are not scored), / ln 2. `bypass`: agents whose blocks
        are skipped (every agent: the shared weights alone, embedding -> final norm -> head)."""
        was = model.training
        model.eval()
        out = {}
        R = model.runs
        for d, batches in which.items():
            nats = torch.zeros(R, dtype=torch.float64, device=self.device)
            count = 0
            for x, y in batches:
                x, y = x.to(self.device), y.to(self.device)
                ce = model.token_losses_of(x.expand(R, *x.shape), y.expand(R, *y.shape), bypass)  # 0 for targets -100
                nats += ce.sum(1, dtype=torch.float64)
                count += int((y != -100).sum())
            out[d] = (nats / count / math.log(2)).cpu().numpy()
        model.train(was)
        return out

    def _untrained_bpb(self, model: AgentTree, specs: Sequence[RunSpec]) -> tuple[dict, dict]:
        """R0 on test and validation for every run of `model` (untrained). A run's initial weights depend
        only on its init seed, and with `loop` batching a run's numbers do not depend on the other runs of the
        process, so each init seed is evaluated once, in a model of one run per seed, and shared: 3 evaluations
        instead of 17 in a default-profile job, the same numbers bit for bit."""
        seeds = list(dict.fromkeys(s.rng_seed for s in specs))
        if self.run_batching != "loop" or len(seeds) == len(specs):
            return self.evaluate(model, self.test), self.evaluate(model, self.valid)
        with torch.random.fork_rng(devices=[]):  # building modules draws from torch's global generator
            probe = AgentTree(self.model_cfg, runs=len(seeds), attention=self.attention, seeds=seeds,
                              run_batching="loop").to(self.device)
        rows = [seeds.index(s.rng_seed) for s in specs]
        return tuple({d: bpb[rows] for d, bpb in self.evaluate(probe, split).items()}
                     for split in (self.test, self.valid))

    # --- checkpoints -----------------------------------------------------------------------
    @staticmethod
    def resume_path(spec: RunSpec) -> Path:
        """The in-progress state. Kept apart from `checkpoint.pt` because workflow managers delete a
        job's declared outputs before rerunning it, which would throw away the state to resume from."""
        return spec.out_dir / "resume.pt"

    def _read_resume(self, i: int) -> dict | None:
        spec, path = self.specs[i], self.resume_path(self.specs[i])
        if not path.exists():
            return None
        blob = load_checkpoint(path, map_location=self.device)
        if blob.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint {path} has an unknown format; delete it to restart the run")
        if blob["config_hash"] != self.hashes[i]:
            raise CheckpointError(
                f"run directory {spec.out_dir} holds a run with config hash {blob['config_hash']}, but the current "
                f"params/data give {self.hashes[i]}; refusing to resume into a stale run. Delete {spec.out_dir} or "
                f"choose another --out.")
        threads = torch.get_num_threads()
        if blob.get("threads") != threads:
            raise CheckpointError(
                f"run directory {spec.out_dir} was started with {blob.get('threads')} torch thread(s), this process "
                f"uses {threads}; results depend on the thread count, so resuming would mix two computations. "
                f"Resume with --threads {blob.get('threads')}, or delete {spec.out_dir} to restart.")
        return blob

    # --- the protocol ----------------------------------------------------------------------
    def run(self, max_steps: int | None = None, progress: bool | None = None) -> list[dict | None]:
        """Train every run to the end (or to `max_steps`); returns each run's metrics (None if stopped early).
        Each run folder is this process's while it runs (`own_run_folder`: a second process is refused)."""
        if max_steps is not None:
            Integer(1)(max_steps, "--max-steps")
        with ExitStack() as folders:
            for spec in self.specs:
                folders.enter_context(own_run_folder(spec.out_dir))
            return self._run_owned(max_steps, progress)

    def _check_data(self, spec: RunSpec, metrics: dict[str, Any]) -> None:
        """Refuse to train again, over a finished (or failed) run, on other data than it was trained on."""
        recorded = metrics.get("data_manifest_sha256")
        if recorded is not None and recorded != self.data_sha256:
            raise DataError(f"{spec.out_dir} was trained on other data (its metrics.json records data manifest sha256 "
                            f"{recorded[:12]}..., {self.data_dir / 'manifest.json'} has {self.data_sha256[:12]}...): "
                            f"delete {spec.out_dir} to train it again on this data, or pass the --data it was "
                            "trained on")

    def _run_owned(self, max_steps: int | None, progress: bool | None) -> list[dict | None]:
        results: list[dict | None] = [None] * len(self.specs)
        finished = {i: read_output_json(s.out_dir / "metrics.json", rerun_hint(s.out_dir))
                    for i, s in enumerate(self.specs) if (s.out_dir / "metrics.json").exists()}
        for i, done in finished.items():
            self._check_data(self.specs[i], done)
        pending: dict[int, list[int]] = {}
        blobs: dict[int, dict | None] = {}
        for i, spec in enumerate(self.specs):
            if i in finished:
                done = finished[i]
                if done.get("config_hash") == self.hashes[i] and done.get("status") == "completed":
                    print(f"{spec.out_dir}: already complete (config hash {self.hashes[i]}); nothing to do")
                    results[i] = done
                    continue
            copied = self._copy_twin(i)
            if copied is not None:
                results[i] = copied
                continue
            blobs[i] = self._read_resume(i)
            start = 0 if blobs[i] is None else int(blobs[i]["trainer"]["step"])
            pending.setdefault(start, []).append(i)
        for start in sorted(pending):  # runs at different resume steps: consecutive sub-groups
            for i, metrics in zip(pending[start], self._train([*pending[start]], blobs, max_steps, progress)):
                results[i] = metrics
        return results

    def _copy_twin(self, i: int) -> dict | None:
        """The run's twin, copied, when it is complete and has this run's config hash (e.g. a tuned run whose
        chosen settings are the profile's own: it is the main comparison's run of that variant and seed)."""
        spec = self.specs[i]
        if spec.twin is None or not (spec.twin / "metrics.json").is_file():
            return None
        twin = read_output_json(spec.twin / "metrics.json", rerun_hint(spec.twin))
        if twin.get("config_hash") != self.hashes[i] or twin.get("status") != "completed":
            return None
        print(f"{spec.out_dir}: the same run as {spec.twin} (config hash {self.hashes[i]}); copied, not retrained")
        return copy_run(spec.twin, spec.out_dir, twin)

    def _kernels_line(self, model: AgentTree) -> str:
        """Which kernels train these runs (also in every run's metrics.json: `kernels`)."""
        return f"kernels: {model.kernels.describe()}, run batching {self.run_batching}"

    def _train(self, members: list[int], blobs: dict[int, dict | None], max_steps: int | None,
               progress: bool | None) -> list[dict | None]:
        """Train the runs `members` (all at the same step) to the end or to `max_steps`: their metrics, None for
        a run stopped early."""
        job = self._start(members, blobs)
        specs, trainer, cfg, R = job.specs, job.trainer, self.train_cfg, len(members)
        total = cfg.steps_per_phase * len(specs[0].phases)
        stop_at = total if max_steps is None else min(total, max_steps)
        start_step = trainer.step_count
        if job.resumed:
            print(f"resuming {R} run(s) at step {start_step}/{total}: {', '.join(str(s.out_dir) for s in specs)}")
        show_bar = sys.stderr.isatty() if progress is None else progress
        label = specs[0].method.variant + (f" +{R - 1} runs" if R > 1 else f" s{specs[0].seed}")
        if self.name:
            label = f"{self.name}: {label}"
        bar = tqdm(total=total, initial=start_step, disable=not show_bar, desc=label)
        agent_counts = job.model.agent_parameter_counts()
        t0 = started = time.perf_counter()
        for step in range(start_step, stop_at):
            phase = step // cfg.steps_per_phase
            trainer.phase = phase
            x, y = self._batch(job, step, phase)
            check = SparsityCheck(job.model, agent_counts) if step % cfg.sparsity_interval == 0 else None
            records = trainer.train_step(x, y)
            if check is not None:
                check.measure()
            end_of_phase = (step + 1) % cfg.steps_per_phase == 0
            self._record_step(job, step, phase, records, check)
            bar.update(1)
            if len(job.failed) == R:  # nothing left to train (the caller says so)
                break
            self._evaluate(job, step, phase, end_of_phase)
            if not show_bar and ((step + 1) % max(1, total // 20) == 0):
                losses = [records[r].loss for r in range(R) if r not in job.failed and records[r] is not None]
                print(progress_line(label, step + 1 - start_step, step + 1, total, phase,
                                    time.perf_counter() - started, losses), flush=True)
            if (step + 1) % cfg.checkpoint_interval == 0 or end_of_phase or step + 1 == stop_at:
                elapsed = time.perf_counter() - t0
                t0 = time.perf_counter()
                self._checkpoint(job, elapsed)
        bar.close()
        if len(job.failed) == R:
            return [job.failed[r] for r in range(R)]
        if trainer.step_count < total:
            print(f"stopped at step {trainer.step_count}/{total} (--max-steps); rerun to resume")
            return [job.failed.get(r) for r in range(R)]
        return self._complete(job)

    def _start(self, members: list[int], blobs: dict[int, dict | None]) -> "_Job":
        """The model, trainer, data streams and logs of the runs `members`: resumed from their state, or new
        with the untrained model's bpb (R0) and its snapshot."""
        specs = [self.specs[i] for i in members]
        for s in specs:
            s.out_dir.mkdir(parents=True, exist_ok=True)
        model = AgentTree(self.model_cfg, runs=len(specs), attention=self.attention,
                          seeds=[s.rng_seed for s in specs], run_batching=self.run_batching).to(self.device)
        print(self._kernels_line(model), flush=True)
        trainer = Trainer(model, [s.method for s in specs], [s.rng_seed for s in specs],
                          precision=self.train_cfg.precision)
        job = _Job(members, specs, model, trainer, [self.samplers(s) for s in specs], [RunLog() for _ in specs],
                   resumed=blobs[members[0]] is not None)
        if job.resumed:
            for r, i in enumerate(members):
                blob = blobs[i]
                trainer.load_run_state_dict(r, blob["trainer"])
                for d, sampler in job.samplers[r].items():
                    sampler.load_state_dict(blob["samplers"][d])
                job.logs[r].load_state_dict(blob["run"])
            torch.set_rng_state(blobs[members[0]]["torch_rng"].cpu())
            return job
        torch.manual_seed(specs[0].rng_seed)  # dropout's stream (unused at dropout 0)
        test0, valid0 = self._untrained_bpb(model, specs)
        for r, s in enumerate(specs):
            job.logs[r].R0 = [float(test0[d][r]) for d in dict.fromkeys(s.phases)]
            job.logs[r].R0_valid = [float(valid0[d][r]) for d in dict.fromkeys(s.phases)]
            job.logs[r].snapshots["init"] = snapshot(model, r)
        return job

    def _batch(self, job: "_Job", step: int, phase: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Every run's batch of this step ([runs, batch, time] on the device): its own sampler's, through its
        plugins (which hear first that a phase begins)."""
        xs, ys = [], []
        for r, s in enumerate(job.specs):
            current = self.phase(s, phase)
            run = job.trainer.runs[r]
            if step == current.first_step:
                for plugin in run.plugins:
                    plugin.before_phase(job.trainer.context(r), current)
            x, y = next(job.samplers[r][current.domain])
            for plugin in run.plugins:
                x, y = plugin.batch(job.trainer.context(r), x, y, current)
            xs.append(x)
            ys.append(y)
        return torch.stack(xs).to(self.device), torch.stack(ys).to(self.device)

    def _record_step(self, job: "_Job", step: int, phase: int, records: Sequence[Any],
                     check: SparsityCheck | None) -> None:
        """Log every run's step (and its measured sparsity); a run whose loss stopped being finite is recorded
        as failed, with its last state kept."""
        for r, (s, record) in enumerate(zip(job.specs, records)):
            run = job.trainer.runs[r]
            if record is None:
                if r not in job.failed and run.failure is not None:
                    if not self.resume_path(s).exists():  # failed before its first checkpoint: keep its unchanged state
                        self._save(s, job.members[r], job.trainer, r, job.samplers[r], job.logs[r])
                    job.failed[r] = self._fail(s, job.members[r], run.failure, job.logs[r])
                continue
            if check is not None:
                job.logs[r].sparsity_checks.append(check.row(r, step, record))
            job.logs[r].step_rows.append(step_row(record, phase, s.phases[phase]))

    def _evaluate(self, job: "_Job", step: int, phase: int, end_of_phase: bool) -> None:
        """The learning curves when due; at a phase's end the R rows (validation, test), where forgetting lives
        and the plugins' phase-end hooks."""
        model, live = job.model, [(r, s) for r, s in enumerate(job.specs) if r not in job.failed]
        if (step + 1) % self.train_cfg.eval_interval == 0 or end_of_phase:
            curve = self.evaluate(model, self.curve)
            for r, s in live:
                for d in dict.fromkeys(s.phases):
                    job.logs[r].eval_rows.append({"step": step + 1, "phase_index": phase, "phase": s.phases[phase],
                                                  "domain": d, "bpb": float(curve[d][r]),
                                                  "end_of_phase": int(end_of_phase)})
        if not end_of_phase:
            return
        valid = self.evaluate(model, self.valid)
        for r, s in live:
            job.logs[r].R_valid.append([float(valid[d][r]) for d in dict.fromkeys(s.phases)])
        test = self.evaluate(model, self.test)
        alone = self.evaluate(model, self.test, bypass=range(len(model.agents)))  # what the agents carry
        for r, s in live:
            job.logs[r].R.append([float(test[d][r]) for d in dict.fromkeys(s.phases)])
            job.logs[r].R_shared.append([float(alone[d][r]) for d in dict.fromkeys(s.phases)])
            record_phase_end(job.logs[r], model, r, phase, len(s.phases))
            for plugin in job.trainer.runs[r].plugins:
                plugin.after_phase(job.trainer.context(r), self.phase(s, phase))

    def _checkpoint(self, job: "_Job", elapsed: float) -> None:
        """Every live run's resumable state, and its share of the process's time since the last checkpoint."""
        for r, s in enumerate(job.specs):
            if r not in job.failed:
                job.logs[r].wall_time_s += elapsed / len(job.specs)  # this run's share of the process
                self._save(s, job.members[r], job.trainer, r, job.samplers[r], job.logs[r])

    def _complete(self, job: "_Job") -> list[dict | None]:
        """Finished runs: the swap test, then every run's outputs (a failed run's failure record)."""
        R, logs = len(job.specs), job.logs
        done = [r for r in range(R) if r not in job.failed]
        swaps = swap_test(job.model, done, [{int(j): v for j, v in logs[r].snapshots.items() if j != "init"}
                                            for r in range(R)], [s.phases for s in job.specs],
                          lambda domains: self.evaluate(job.model, {d: self.test[d] for d in domains}))
        return [job.failed[r] if r in job.failed else
                self._finish(s, job.members[r], job.model, job.trainer, r, logs[r], swaps[r])
                for r, s in enumerate(job.specs)]

    def _save(self, spec: RunSpec, i: int, trainer: Trainer, r: int, samplers: dict, log: RunLog) -> None:
        blob = {"format": CHECKPOINT_FORMAT, "config_hash": self.hashes[i], "threads": torch.get_num_threads(),
                "trainer": trainer.run_state_dict(r), "samplers": {d: s.state_dict() for d, s in samplers.items()},
                "torch_rng": torch.get_rng_state(), "run": log.state_dict()}
        save_checkpoint(self.resume_path(spec), blob)

    def _identity(self, spec: RunSpec, i: int) -> dict[str, Any]:
        return {"variant": spec.variant, "seed": spec.seed, "config_hash": self.hashes[i],
                **({} if spec.init_seed is None else {"init_seed": spec.init_seed}),
                "data_manifest_sha256": self.data_sha256,
                "domains": list(dict.fromkeys(spec.phases)), "phases": list(spec.phases),
                "method": plain(spec.method)}  # this run's effective settings (sweep/tuned runs differ)

    def _fail(self, spec: RunSpec, i: int, failure: dict, log: RunLog) -> dict:
        err = NonFiniteLossError(failure["step"], failure["loss"])
        print(f"{spec.out_dir}: FAILED: {err} (failure.json; the other runs go on)", file=sys.stderr)
        info = {"status": "failed", "step": failure["step"], "loss": str(failure["loss"]), "message": str(err),
                **{k: v for k, v in self._identity(spec, i).items() if k in ("variant", "seed", "config_hash")}}
        return record_failure(spec.out_dir, self.resume_path(spec), log, info)

    def _finish(self, spec: RunSpec, i: int, model: AgentTree, trainer: Trainer, r: int, log: RunLog,
                swaps: list[dict[str, Any]]) -> dict:
        topo, counts = model.topology, model.agent_parameter_counts()
        steps = write_run_outputs(spec.out_dir, log)
        agents = [{"name": n, "level": topo.levels[k], "parent": None if topo.parents[k] < 0 else topo.names[topo.parents[k]],
                   "params": c} for k, (n, c) in enumerate(zip(topo.names, counts))]
        extra: dict[str, Any] = {}
        scalars: dict[str, Any] = {}
        if model.has_slots:  # the final live tree, and its size
            states = model.slot_states(r)
            for k, agent in enumerate(agents):
                agent.update(status=STATE_NAMES[states[k]], slot=k >= model.initial_agents)
            scalars.update(active_agents=int((states == ACTIVE).sum()), active_agent_params=model.active_parameter_count(r))
            extra["allocated_agent_params"] = sum(counts)  # every slot, active or not
        extra["decomposition"], parts = decomposition(log.R, log.drift, swaps)
        scalars.update(parts)
        for plugin in trainer.runs[r].plugins:
            summary = dict(plugin.summary(trainer.context(r)))
            scalars.update(summary.pop("scalars", {}))
            extra.update(summary)
        metrics = run_metrics(
            log, steps, identity=self._identity(spec, i), agents=agents,
            update_counts={name: int(c) for name, c in zip(topo.names, trainer.runs[r].update_counts)},
            n_agents=model.initial_agents, agent_params=sum(counts[:model.initial_agents]),
            shared_params=sum(p.numel() for p in model.shared_parameters(0)),
            extra={**extra, "versions": versions(), "device": str(self.device), "threads": torch.get_num_threads(),
                   "precision": self.train_cfg.precision, "attention": self.attention, "kernels": model.kernels.describe(),
                   "run_batching": self.run_batching,
                   "process_runs": len(trainer.runs)}, more_scalars=scalars)
        return finish_run(spec.out_dir, self.resume_path(spec), log, metrics)


def planned_specs(params: Params, runs: Sequence[Any], root: str | Path,
                  choices: dict[str, Any] | None = None) -> list[RunSpec]:
    """RunSpecs of planned runs (`k1model.study.plan`): their overrides, order and directory under `root`.
    Tuned runs take their settings from the tuning choice (`choices`, written by `k1 tune`)."""
    from k1model.study.design import with_overrides
    from k1model.study.plan import twin_path

    specs = []
    for run in runs:
        overrides = run.overrides
        if run.part == "tuned":
            if choices is None:
                raise ConfigError(f"{run.path} is a tuned run: pass the tuning choice with --choices "
                                  "(results/tuning/chosen.json, written by `k1 tune`)")
            if run.variant not in choices.get("variants", {}):
                raise ConfigError(f"the tuning choice has no entry for {run.variant}; rerun `k1 tune`")
            overrides = tuple(choices["variants"][run.variant]["overrides"].items())
        method = with_overrides(method_config(params.method, run.variant), overrides, run.path)
        twin = Path(root) / twin_path(run) if run.part == "tuned" else None
        specs.append(RunSpec(run.variant, run.seed, Path(root) / run.path, method, tuple(run.order), params.model,
                             twin=twin, init_seed=params.init_seed_of(run.seed, tuple(run.order))))
    return specs


class Run(RunGroup):
    """One run (variant, seed) into `out_dir`."""

    def __init__(self, params: Params | dict, data_dir: str | Path, variant: str, seed: int, out_dir: str | Path,
                 threads: int | None = None):
        params = load_params(params)
        super().__init__(params, data_dir, run_specs(params, [variant], [seed], out_dir), threads=threads)


def run_training(params: Params | dict, data_dir: str | Path, variant: str, seed: int, out_dir: str | Path, *,
                 threads: int | None = None, max_steps: int | None = None, progress: bool | None = None) -> dict | None:
    """Train one run; its metrics, or None when stopped early by `max_steps`. A non-finite loss
    raises NonFiniteLossError after the failure is recorded (failure.json)."""
    metrics = Run(params, data_dir, variant, seed, out_dir, threads=threads).run(max_steps, progress)[0]
    if metrics is not None and metrics.get("status") == "failed":
        raise NonFiniteLossError(int(metrics["step"]), float(metrics["loss"]))
    return metrics
