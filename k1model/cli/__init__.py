"""The `k1` command line: one subcommand per pipeline step.

The parser lives here, the handlers in `commands.py`; each handler imports the library
modules it calls, so `k1 --help` is instant and a subcommand only pays for what it uses.
Errors the user can fix (bad params, missing data, a stale run directory) are printed as
one clear line and exit with status 2.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Sequence

from k1model.cli import commands
from k1model.errors import Interrupted, K1Error
from k1model.io import write_error

#: torch CPU threads of `k1 train` / `k1 attribute` when not given: what the pipeline uses, so a
#: run reproduced by hand gives the pipeline's numbers (results depend on the thread count)
DEFAULT_THREADS = 1


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, required=True, help="params YAML (e.g. params/default.yaml)")


def build_parser() -> argparse.ArgumentParser:
    """The `k1` argument parser: one subcommand per pipeline step."""
    parser = argparse.ArgumentParser(prog="k1", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train a tiny tree for a few hundred steps and show who did what")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--variant", default="k1_full")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.demo)

    p = sub.add_parser("prepare", help="build tokenised train/valid/test splits per domain + manifest.json")
    _add_params(p)
    p.add_argument("--out", type=Path, required=True, help="output data directory")
    p.add_argument("--data-root", type=Path, default=None,
                   help="root folder for `source: local` (overrides data.local.root and $K1_DATA_ROOT)")
    p.set_defaults(func=commands.prepare)

    p = sub.add_parser("train", help="train variants × seeds through the domain sequence (together, in one process)")
    _add_params(p)
    p.add_argument("--data", type=Path, required=True, help="directory written by `k1 prepare`")
    p.add_argument("--variant", help="a variant, or several: k1_full,dense,...")
    p.add_argument("--seed", help="a seed, or several: 0,1,2")
    p.add_argument("--out", help="run directory; with several runs a pattern such as 'runs/{variant}/seed{seed}'")
    p.add_argument("--order", help="domain order, e.g. code,prose,science (default: the params' first order)")
    p.add_argument("--run", help="instead of --variant/--seed/--out: this run of the params' plan, by its path "
                                 "(e.g. runs/prose-code-science/k1_full/seed0; the pipeline's way) ...")
    p.add_argument("--runs-root", type=Path, help="... under this directory (the plan's paths are relative to it)")
    p.add_argument("--choices", type=Path, help="the tuning choice of its variant (`k1 tune`), for a tuned run")
    p.add_argument("--attention", choices=("masked", "causal", "native"),
                   help="the kernels, instead of the params' train.attention (native: the C kernels; part of a "
                        "run's identity)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help="torch CPU threads (default %(default)s, as the pipeline; part of a run's identity)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop (with a checkpoint) after this many total steps; for tests of resume")
    p.set_defaults(func=commands.train)

    p = sub.add_parser("attribute", help="attribution probes on a finished run (planted faults, resampling, ...)")
    _add_params(p)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--run", type=Path, required=True, help="run directory written by `k1 train`")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch CPU threads (default %(default)s)")
    p.set_defaults(func=commands.attribute)

    p = sub.add_parser("floors", help="reference floors: held-out bpb of byte n-gram models of every domain")
    _add_params(p)
    p.add_argument("--data", type=Path, required=True, help="directory written by `k1 prepare`")
    p.add_argument("--out", type=Path, required=True, help="the floors document (e.g. results/floors.json)")
    p.set_defaults(func=commands.floors)

    p = sub.add_parser("aggregate", help="tidy table, statistics and tables across runs")
    _add_params(p)
    p.add_argument("--results", type=Path, required=True,
                   help="results directory holding the plan's runs (runs/<order>/<variant>/seed<k>, tuned/, sweep/)")
    p.add_argument("--out", type=Path, default=None, help="where tables/, summary.json, tidy.csv go (default --results)")
    p.add_argument("--floors", type=Path, default=None,
                   help="reference floors (`k1 floors`) for the competence check (default RESULTS/floors.json)")
    p.set_defaults(func=commands.aggregate)

    p = sub.add_parser("tune", help="choose every variant's settings on the validation split of the tuning runs")
    _add_params(p)
    p.add_argument("--results", type=Path, required=True, help="results directory holding tuning/<variant>/...")
    p.add_argument("--variant", help="only this variant's choice (what its tuned runs read: "
                                     "results/tuning/<variant>/chosen.json)")
    p.add_argument("--out", type=Path, required=True, help="the choice (results/tuning/chosen.json)")
    p.set_defaults(func=commands.tune)

    p = sub.add_parser("figures", help="figures from results")
    _add_params(p)
    p.add_argument("--results", type=Path, required=True, help="results directory (summary.json, tidy.csv, runs/)")
    p.add_argument("--out", type=Path, required=True, help="figures directory")
    p.set_defaults(func=commands.figures)

    p = sub.add_parser("paper", help="render the manuscript from results")
    _add_params(p)
    p.add_argument("--results", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="prepared data dir (for its manifest)")
    p.add_argument("--out", type=Path, required=True, help="paper directory")
    p.set_defaults(func=commands.paper)

    p = sub.add_parser("bench", help="step-time and memory benchmark of every variant against dense")
    p.add_argument("--trees", default="2,2;4,4;4,3,2", help="semicolon-separated branchings")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--loo-interval", type=int, default=50)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch CPU threads (default %(default)s)")
    p.add_argument("--params", type=Path, default=None,
                   help="take the reference model and batch of the execution/efficiency measurements from here")
    p.add_argument("--multi-runs", type=int, default=6, help="runs per process in the multi-run measurement")
    p.add_argument("--versus", type=Path, default=None, metavar="TREE",
                   help="instead: this code's dense step against another checkout's (e.g. a `git worktree` of main), "
                        "side by side, on the model and batch of --params (default params/default.yaml)")
    p.add_argument("--versus-runs", default="1,17", help="runs per process of the --versus comparison")
    p.add_argument("--out", type=Path, default=None, help="write JSON results here")
    p.set_defaults(func=commands.bench)

    p = sub.add_parser("compare", help="compare two results trees: every number (exactly or within a tolerance), the "
                                       "largest difference per metric, and whether every claim's verdict is the same")
    p.add_argument("a", type=Path, help="a results directory (or the output root above it), e.g. results/")
    p.add_argument("b", type=Path, help="the other one, e.g. another machine's results/")
    p.add_argument("--atol", "--tolerance", type=float, default=0.0, dest="atol",
                   help="absolute tolerance (default 0: exactly)")
    p.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (of the larger magnitude)")
    p.add_argument("--no-runs", action="store_true", help="only tidy.csv, the statistics and the verdicts")
    p.add_argument("--verdicts-only", action="store_true",
                   help="exit status from the verdicts alone (another machine: numbers are reported, not judged)")
    p.add_argument("--json", type=Path, default=None, help="also write the full comparison here")
    p.set_defaults(func=commands.compare)

    p = sub.add_parser("schema", help="print (or write) the JSON schema of params files, generated from the library")
    p.add_argument("--out", type=Path, default=None, help="write here (workflow/schemas/params.schema.yaml)")
    p.set_defaults(func=commands.schema)

    return parser


#: what to do after an interruption, per command (default: outputs are written whole or not at all)
RESUME = {"train": "rerun the same command to resume from the last checkpoint (finished runs are kept)",
          "prepare": "rerun the same command (the data folder is replaced only when complete)"}


def _interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a subcommand. Errors a user can fix, a full disk or an unwritable folder, and an interruption (Ctrl-C,
    SIGTERM) are one line on stderr: status 2 for an error, 128 + the signal for an interruption."""
    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()  # (only it may set signal handlers)
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None  # unwinds like Ctrl-C: every
    try:  # `finally` runs (temporary files removed, run folders unlocked)
        return int(args.func(args) or 0)
    except K1Error as err:
        return _error(args.command, str(err))
    except OSError as err:
        converted = write_error(err)
        if converted is None:
            raise
        return _error(args.command, str(converted))
    except KeyboardInterrupt as err:
        signum = err.signum if isinstance(err, Interrupted) else signal.SIGINT
        what = RESUME.get(args.command, "rerun the same command (outputs are written whole or not at all)")
        print(f"k1 {args.command}: interrupted ({signal.Signals(signum).name}); {what}", file=sys.stderr)
        return 128 + signum
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _error(command: str, message: str) -> int:
    one_line = " ".join(part.strip() for part in message.splitlines())  # one line, whatever the message
    print(f"k1 {command}: error: {one_line}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
