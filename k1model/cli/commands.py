"""The handlers of the `k1` subcommands: parse nothing, compute nothing; call the library and print.

Each handler imports what it uses, so `k1 --help` is instant and a command only pays for its own
dependencies.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from k1model.errors import ConfigError


def _threads(n: int) -> None:
    """Torch CPU threads (results depend on the count, so runs record it) and the process's memory reuse."""
    from k1model.train.runtime import configure_process

    configure_process(n)


def demo(args: argparse.Namespace) -> int:
    """Train a tiny tree for a few hundred steps and show who did what."""
    from k1model.app.demo import run_demo

    run_demo(steps=args.steps, variant=args.variant, seed=args.seed)
    return 0


def prepare(args: argparse.Namespace) -> int:
    """Prepare the params' data (the data and model sections only) and print the splits."""
    from k1model.analysis.separability import cross_domain_unigram_bpb
    from k1model.config import load_data_sections, read_params_file
    from k1model.data.preparation import format_split_table, prepare as prepare_data

    raw = read_params_file(args.params, required=("data",))
    model = raw.get("model")
    if not isinstance(model, dict) or "max_seq_len" not in model:
        raise ConfigError(f"params file {str(args.params)!r}: model.max_seq_len is required (the window length)")
    data, model_cfg = load_data_sections(args.params)  # only what preparation reads (the DVC data stage's params)
    manifest = prepare_data(data, Path(args.out), data_root=args.data_root, seq_len=model_cfg.max_seq_len)
    print(format_split_table(manifest))
    if len(manifest["domains"]) > 1:
        matrix = cross_domain_unigram_bpb(Path(args.out))
        print("\nunigram byte model bpb (rows: fitted on train of; columns: evaluated on test of)")
        print(matrix.round(3).to_string())
    print(f"\nwrote {Path(args.out) / 'manifest.json'}")
    return 0


def _list(text: str, what: str, cast=str) -> list:
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    try:
        return [cast(t) for t in items]
    except ValueError:
        raise ConfigError(f"--{what} {text!r}: expected a comma-separated list, e.g. --{what} "
                          f"{'0,1,2' if cast is int else 'k1_full,dense'}") from None


def train(args: argparse.Namespace) -> int:
    """Every variant x seed given, trained together in one process (runs sharing the model), or one planned run.
    Exit status 2 when every run failed (a rerun fails again)."""
    import dataclasses

    from k1model.config import MAX_SEED, load_params
    from k1model.config.checks import Integer
    from k1model.errors import K1Error
    from k1model.train.protocol import RunGroup, run_specs

    if args.max_steps is not None:
        Integer(1)(args.max_steps, "--max-steps")
    seeds = [Integer(0, MAX_SEED)(s, "--seed") for s in _list(args.seed, "seed", int)] if args.seed else None
    params = load_params(args.params)
    if args.attention is not None:
        params = dataclasses.replace(params, train=dataclasses.replace(params.train, attention=args.attention))
    _threads(args.threads)
    if args.run is not None:
        from k1model.io import read_json
        from k1model.study.plan import planned_run
        from k1model.train.protocol import planned_specs

        if args.runs_root is None or any(a is not None for a in (args.variant, args.seed, args.out, args.order)):
            raise ConfigError("--run needs --runs-root and replaces --variant/--seed/--out/--order")
        choices = read_json(args.choices) if args.choices else None
        specs = planned_specs(params, [planned_run(params, args.run)], args.runs_root, choices)
    else:
        if any(a is None for a in (args.variant, args.seed, args.out)):
            raise ConfigError("k1 train needs --variant, --seed and --out (or --run with --runs-root)")
        specs = run_specs(params, _list(args.variant, "variant"), seeds, args.out,
                          order=_list(args.order, "order") if args.order else None)
    results = RunGroup(params, args.data, specs, threads=args.threads, name=args.run).run(max_steps=args.max_steps)
    for spec, metrics in zip(specs, results):
        if metrics is None:
            continue
        if metrics.get("status") == "failed":
            print(f"{spec.variant} seed {spec.seed}: FAILED ({metrics.get('error')}); see {spec.out_dir}/failure.json")
            continue
        s = metrics["scalars"]
        print(f"{spec.variant} seed {spec.seed}: final avg bpb {s['final_avg_bpb']:.4f}, forgetting "
              f"{s['forgetting']}, agent params changed/step {s['sparsity_param_fraction']:.3f}, "
              f"wall {metrics['wall_time_s']:.1f}s")
    failed = [(spec, m) for spec, m in zip(specs, results) if m is not None and m.get("status") == "failed"]
    if failed and len(failed) == len(specs):
        spec, first = failed[0]
        raise K1Error(f"every run failed ({len(failed)} of {len(specs)}; failure.json in each run folder, e.g. "
                      f"{spec.out_dir}): {first.get('error')} A rerun with these params fails the same way")
    return 0


def attribute(args: argparse.Namespace) -> int:
    """The attribution probes of one finished run (attribution.json in its directory)."""
    from k1model.analysis.probes import SCALAR_NAMES, attribute_run
    from k1model.config import load_params

    params = load_params(args.params)
    _threads(args.threads)
    result = attribute_run(params, args.data, args.run)
    s = result["scalars"]
    print(f"{args.run}: attribution.json written in {result['timing_s']['total']:.1f}s")
    for key in SCALAR_NAMES:
        value = s.get(key)
        print(f"  {key:34s} {'null' if value is None else f'{value:.3f}'}")
    off = result["details"]["fault_summary"].get("faults_off_target") or []
    if off:
        print(f"  warning: {len(off)} planted fault(s) missed the target loss increase "
              f"({', '.join(off)}); see details.faults[].loss_increase")
    return 0


def floors(args: argparse.Namespace) -> int:
    from k1model.analysis.floors import reference_floors
    from k1model.config import load_params
    from k1model.io import write_json

    params = load_params(args.params)
    doc = reference_floors(args.data, params.analysis.floor_orders)
    write_json(args.out, doc)
    names = doc["orders"]
    print(f"held-out bpb of byte n-gram models fitted on each training split ({args.data}):")
    print(f"{'domain':<12}{'split':<7}" + "".join(f"{n:>9}" for n in names))
    for domain, d in doc["domains"].items():
        for split in ("valid", "test"):
            print(f"{domain:<12}{split:<7}" + "".join(f"{d[split][n]:9.3f}" for n in names))
    print(f"wrote {args.out}")
    return 0


def aggregate(args: argparse.Namespace) -> int:
    """The tidy table, statistics and tables of a results tree."""
    from k1model.analysis.aggregate import aggregate as run_aggregate

    result = run_aggregate(args.params, args.results, args.out, floors=args.floors)
    for path in result["written"]:
        print(path)
    if result["failed_runs"]:
        print(f"note: {len(result['failed_runs'])} failed run(s) excluded; see summary.json failed_runs")
    return 0


def tune(args: argparse.Namespace) -> int:
    """The tuning choice of every tuned variant (or of one) from its tuning runs."""
    from k1model.study.tuning import tune as run_tune

    doc = run_tune(args.params, args.results, args.out, variant=args.variant)
    for variant, v in doc["variants"].items():
        print(f"{variant}: {v['chosen']} (validation {doc['metric'].split(' (')[0]} {v['mean']:.4f}; "
              f"{v['searched']} candidates)")
    print(f"wrote {args.out} ({doc['searched']} settings searched)")
    return 0


def figures(args: argparse.Namespace) -> int:
    """The figures of a results tree."""
    from k1model.report.figures import make_figures

    result = make_figures(args.params, args.results, args.out)
    for p in result["files"]:
        print(p)
    for n in result["notes"]:
        print(f"note: {n}")
    return 0


def paper(args: argparse.Namespace) -> int:
    """The manuscript from a results tree."""
    from k1model.report.paper import render_paper

    result = render_paper(args.params, args.results, args.data, args.out)
    for f in result["files"]:
        print(f)
    for k, v in result["claims"].items():
        print(f"{k}: {v['status']}")
    return 0


def bench(args: argparse.Namespace) -> int:
    """Step-time benchmarks (`--versus TREE`: this code against another checkout)."""
    from k1model.app.bench import format_table, parse_trees, run_benchmark
    from k1model.config import load_params
    from k1model.io import write_json

    _threads(args.threads)
    if args.versus is not None:
        from k1model.app.bench.versus import format_versus, versus_experiment

        if args.device != "cpu":
            raise ConfigError("--versus compares CPU steps; leave --device at cpu")
        result = versus_experiment(args.versus, args.params or Path("params/default.yaml"),
                                   runs=_list(args.versus_runs, "versus-runs", int), repeats=args.repeats,
                                   warmup=args.warmup, threads=args.threads,
                                   log=lambda s: print(s, file=sys.stderr, flush=True))
        print(format_versus(result))
        if args.out is not None:
            write_json(args.out, result)
        return 0
    reference = None
    if args.params is not None:
        params = load_params(args.params)
        reference = (params.model, params.train.batch_size)
    result = run_benchmark(
        parse_trees(args.trees), width=args.width, hidden=getattr(args, "hidden", None),
        heads=getattr(args, "heads", None) or 4, context=args.context, batch=args.batch, repeats=args.repeats,
        warmup=args.warmup, loo_interval=args.loo_interval, device=args.device, threads=args.threads,
        loo_repeats=getattr(args, "loo_repeats", None), reference=reference, multi_runs=args.multi_runs,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(format_table(result))
    if args.out is not None:
        write_json(args.out, result)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def compare(args: argparse.Namespace) -> int:
    """0: every number within tolerance and every verdict the same (--verdicts-only: every verdict the same);
    1: something differs."""
    from k1model.analysis.compare import compare_trees, format_comparison, write_comparison

    result = compare_trees(args.a, args.b, atol=args.atol, rtol=args.rtol, runs=not args.no_runs)
    sys.stdout.write(format_comparison(result))
    if args.json is not None:
        write_comparison(result, args.json)
    if args.verdicts_only:
        if not result.verdicts:
            raise ConfigError(f"--verdicts-only: {result.verdict_note}")
        return 0 if result.same_verdicts else 1
    return 0 if result.same else 1


def schema(args: argparse.Namespace) -> int:
    """The JSON schema of params files, with every registered strategy's keys."""
    from k1model.config import schema_yaml
    from k1model.io import write_text

    text = schema_yaml()
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_text(args.out, text)
        print(f"wrote {args.out}")
    return 0
