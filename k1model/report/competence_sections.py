"""The paper's sections on what the networks learned (DESIGN.md §12): the reference floors, the competence
check, what the agents carry, and the stability-plasticity frontiers. Every number comes from summary.json
through `Numbers` (so numbers.json records its source)."""
from __future__ import annotations

from typing import Any

from k1model.report.claims import Numbers
from k1model.analysis.tables import fmt_num


def competence_banner(nums: Numbers) -> str:
    """The line at the top of a paper whose reference did not learn its domains (empty otherwise)."""
    c = nums.get("competence")
    if not c or not c.get("checked") or c.get("competent"):
        return ""
    short = ", ".join(c.get("short_of_floor") or []) or "every domain (no floors)"
    return (f"> **Not competent.** {c['reference']} did not reach the {c['floor']} floor right after its own phase "
            f"on {short} (section *What the networks learned*): what this study's models forget is closer to byte "
            f"statistics than to language, and every claim below is marked *not competent*.\n")


def floors_paragraph(nums: Numbers) -> str:
    """The setup's reference floors: held-out bpb of byte n-gram models per domain (test split)."""
    floors = nums.get("floors")
    if not floors or not floors.get("domains"):
        return ""
    orders = floors.get("orders") or []
    head = "| domain | train bytes | " + " | ".join(orders) + " |\n|:---|---:|" + "---:|" * len(orders)
    rows = [f"| {d} | {doc['train_bytes']:,} | " + " | ".join(nums.q("floors", "domains", d, "test", o) for o in orders)
            + " |" for d, doc in floors["domains"].items()]
    return ("**Reference floors.** Held-out (test) bits per byte of smoothed byte n-gram models, fitted on each "
            "domain's training split (interpolated absolute discounting; `k1 floors`): what a model that learned "
            "only byte statistics of that order reaches. The network's numbers are read against them.\n\n"
            + head + "\n" + "\n".join(rows) + "\n")


def competence_section(nums: Numbers) -> str:
    """Did the reference learn every domain (R[j][j] at or below the floor), and what the agents carry."""
    c = nums.get("competence")
    if not c:
        return ""
    if not c.get("checked"):
        return f"### What the networks learned\n\nThe competence check was not made: {c.get('reason')}.\n"
    lines = ["### What the networks learned\n",
             f"The rule, fixed in the params file (`analysis.competence_floor`): the profile is competent when "
             f"{c['rule'].split('competent when ', 1)[-1]}. "
             + ("**It is**: every domain was learned beyond the floor." if c.get("competent") else
                "**It is not**, so every claim of this profile reads *not competent*.") + "\n",
             f"| domain | {c['reference']} R[j][j] ({c['split']}) | n | {c['floor']} floor | reached |",
             "|:---|---:|---:|---:|:---|"]
    for d, doc in (c.get("domains") or {}).items():
        ci = f"{nums.q('competence', 'domains', d, 'mean')} [{nums.q('competence', 'domains', d, 'ci_low')}, " \
             f"{nums.q('competence', 'domains', d, 'ci_high')}]"
        lines.append(f"| {d} | {ci} | {doc['n']} | {nums.q('competence', 'domains', d, 'floor_bpb')} | "
                     f"{'yes' if doc['reached'] else '**no**'} |")
    lines.append("")
    gain = [(v, nums.get(v, "agents_gain", "mean")) for v in nums.get("metrics") or []]
    gain = [(v, g) for v, g in gain if g is not None]
    if gain:
        lines.append("**What the agents carry.** Bypassing every agent (embedding → final norm → head) after the "
                     "last phase costs, in bpb on average over the domains: "
                     + "; ".join(f"{v} {nums.ci(v, 'agents_gain')}" for v, _ in gain)
                     + ". A model whose agents carried nothing would be a byte-statistics model of its embedding.\n")
    return "\n".join(lines)


def _gap_sentence(nums: Numbers, y: str, label: str) -> str:
    g = nums.get("frontier", "claims", y, "gap")
    if not g:
        return ""
    path = ("frontier", "claims", y, "gap")
    if g["status"] == "outside":
        lo, hi = g.get("frontier_x_range") or (None, None)
        return (f"the method's plasticity ({nums.q(*path, 'method_x')} bpb) lies outside the reference frontier's "
                f"range ({fmt_num(lo)} to {fmt_num(hi)} bpb), so nothing is interpolated for {label}.")
    if g["status"] != "ok":
        return f"no interval for {label} (a frontier point has fewer than two runs)."
    return (f"{label}: the reference's frontier at the method's plasticity ({nums.q(*path, 'method_x')} bpb) gives "
            f"{nums.q(*path, 'reference_y')}, the method {nums.q(*path, 'method_y')}; gap (reference − method) "
            f"{nums.q(*path, 'gap')} [{nums.q(*path, 'ci_low')}, {nums.q(*path, 'ci_high')}], "
            f"p = {nums.q(*path, 'p', p=True)} (delta-method t-interval, {fmt_num(g['df'])} df).")


def frontier_section(nums: Numbers) -> str:
    """The frontiers: what was run, the gap at the method's plasticity, dominance."""
    f = nums.get("frontier")
    if not f:
        return ""
    knobs = "; ".join(f"{v}: " + ", ".join(f"{k} ∈ {{{', '.join(fmt_num(x) for x in vals)}}}" for k, vals in kn.items())
                      for v, kn in (f.get("knobs") or {}).items())
    lines = ["### Stability–plasticity frontiers\n",
             "A method that learns less can forget less for that reason alone. Every method was therefore run "
             f"along its knobs, one at a time around the profile's settings ({knobs}; {f['settings']} settings in "
             f"all, {f['replicates']} runs per setting, each from the initialisation and in the order of a main-comparison "
             "run, the base setting being the main comparison). A method's frontier is "
             "its settings that no other setting of it beats on both plasticity (mean R[j][j], bpb right after "
             "each domain's phase) and forgetting.\n"]
    claims = f.get("claims") or {}
    if claims:
        lines.append(f"At {f['method']}'s plasticity, against {f['reference']}'s frontier: "
                     + _gap_sentence(nums, "forgetting", "forgetting") + " "
                     + _gap_sentence(nums, "final_avg_bpb", "final average bpb") + "\n")
        for y, label in (("forgetting", "forgetting"), ("final_avg_bpb", "final average bpb")):
            d = claims.get(y, {}).get("dominance")
            if d:
                lines.append(f"- **Dominance ({label}).** {d['compared']} of {f['method']}'s settings lie inside "
                             f"{f['reference']}'s frontier range; better there (Holm over them): "
                             f"{', '.join(d['better']) or 'none'}; worse: {', '.join(d['worse']) or 'none'}; "
                             f"verdict: {d['verdict']}.")
        lines.append("")
    return "\n".join(lines)
