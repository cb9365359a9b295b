"""The pilot that chose the competent profile's regime (issue 30): its tables, from its kept outputs.

Every number is read from outputs/pilot_competent/runs/ (the runs' metrics.json, the first-phase states of
the runs stopped after their first phase, and the floors `k1 floors` wrote for each data size), on the
validation split only (the choice never read a test number). Prints Markdown:

    python scripts/pilot_competent.py [outputs/pilot_competent]

How each round was run is in outputs/pilot_competent/README.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from k1model.analysis.competence import competence_check
from k1model.analysis.runs import RunRecord
from k1model.analysis.validity import benchmark_forgets, phase_table

ROUNDS = {  # round -> (what changed, the floors of its data)
    "round1": ("760 kB, batch 16, 1000 steps/phase, lr 0.003", "floors_760k.json"),
    "round3": ("760 kB, batch 16, 1000 steps/phase, lr 0.003", "floors_760k.json"),
    "round4": ("850 kB, batch 16, 1200 steps/phase, lr 0.003", "floors_850k.json"),
    "round5": ("850 kB, batch 16, 1500 steps/phase, lr 0.001 / 0.002 / 0.003", "floors_850k.json"),
    "round6": ("850 kB, batch 12, 1500 steps/phase, lr 0.002", "floors_850k.json"),
}


def _floor(floors: dict, domain: str, name: str = "trigram") -> float:
    return float(floors["domains"][domain]["valid"][name])


def first_phase_table(root: Path) -> list[str]:
    """Every run's first domain: its validation bpb right after that phase against the trigram floor."""
    rows = ["| round | setting | run | first domain | valid bpb after its phase | valid trigram floor | reached |",
            "|:---|:---|:---|:---|---:|---:|:---|"]
    partial = json.loads((root / "partial_runs.json").read_text())
    entries = []
    for run in sorted(root.glob("round*/*/metrics.json")):
        m = json.loads(run.read_text())
        entries.append((run.parent.parent.name, run.parent.name, m["phases"][0], m["R_valid"][0][0]))
    for name, p in partial.items():
        rnd, run = name.split("/")
        entries.append((rnd, run, p["first_domain"], p["R_valid_after_phases"][0][0]))
    for rnd, run, first, value in sorted(entries):
        floors = json.loads((root / ROUNDS[rnd][1]).read_text())
        bound = _floor(floors, first)
        setting = ROUNDS[rnd][0] if rnd != "round5" else f"850 kB, batch 16, 1500 steps/phase, lr {run.split('_')[0][2:]}"
        rows.append(f"| {rnd[5:]} | {setting} | {run} | {first} | {value:.3f} | {bound:.3f} | "
                    f"{'yes' if value <= bound else '**no**'} |")
    return rows


def final_round(root: Path) -> list[str]:
    """Round 6 in full: the competence and validity checks on the validation split, and K-1's update rate."""
    floors = json.loads((root / ROUNDS["round6"][1]).read_text())
    records = []
    for run in sorted((root / "round6").glob("*/metrics.json")):
        m = json.loads(run.read_text())
        R = m["R_valid"]
        order = "-".join(m["phases"])
        records.append(RunRecord(m["variant"], m["seed"], run.parent, "completed", {"R": R, "domains": m["phases"]},
                                 None, order))
    valid_floors = {"domains": {d: {"test": v["valid"]} for d, v in floors["domains"].items()}}  # read valid as test
    comp = competence_check(records, valid_floors, reference="dense", floor="trigram", confidence=0.95)
    out = ["| domain | dense: valid bpb right after its phase, per run | mean | valid trigram floor | every run reached |",
           "|:---|:---|---:|---:|:---|"]
    for d, doc in comp["domains"].items():
        values = [float(np.asarray(r.metrics["R"])[r.metrics["domains"].index(d)][r.metrics["domains"].index(d)])
                  for r in records if r.variant == "dense"]
        out.append(f"| {d} | {', '.join(f'{v:.3f}' for v in values)} | {doc['mean']:.3f} | {doc['floor_bpb']:.3f} | "
                   f"{'yes' if max(values) <= doc['floor_bpb'] else '**no**'} |")
    phases = phase_table([r for r in records if r.variant == "dense"])
    dense = [r for r in records if r.variant == "dense"]
    avg = [float(np.mean(np.asarray(r.metrics["R"])[-1, :-1] - np.asarray(r.metrics["R"])[:-1, :-1].min(0)))
           for r in dense]
    check = benchmark_forgets(phases, np.asarray(avg), "dense", 0.5, 0.95)
    a = check["average"]
    out += ["", f"dense's validation forgetting: {', '.join(f'{v:.3f}' for v in avg)}; mean {a['mean']:.3f} "
            f"[{a['ci_low']:.3f}, {a['ci_high']:.3f}] (95 % t-interval): "
            + ("at least the 0.5 bpb margin with its interval above 0." if check["forgets"] else "**short of the margin**.")]
    idle = []
    for run in sorted((root / "round6").glob("k1_full_*/metrics.json")):
        idle.append(json.loads(run.read_text())["scalars"]["idle_step_fraction"])
    out.append(f"k1_full's idle step fraction: {', '.join(f'{v:.4f}' for v in idle)}; its agent update rate "
               f"1 − {np.mean(idle):.4f} = {1 - np.mean(idle):.3f} (method.throttle_share).")
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "outputs/pilot_competent") / "runs"
    print("### Every run's first domain (the hardest position: trained from scratch)\n")
    print("\n".join(first_phase_table(root)))
    print("\n### Round 6 in full (the chosen regime)\n")
    print("\n".join(final_round(root)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
