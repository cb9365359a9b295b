"""The paper's sections on what the networks learned (DESIGN.md §12): the reference floors, the competence
check, what the agents carry, and the stability-plasticity frontiers. Every number comes from summary.json
through `Numbers` (so numbers.json records its source)."""
from __future__ import annotations

from typing import Any

from k1model.report.claims import Numbers
from k1model.analysis.tables import fmt_num


def competence_banner(nums: Numbers) -> str:
    """The line at the top of a paper whose reference did not pass the competence check (empty otherwise): which
    domains, by how much, and whether the mean itself or only the interval's upper end is above the floor."""
    c = nums.get("competence")
    if not c or not c.get("checked") or c.get("competent"):
        return ""
    short = list(c.get("short_of_floor") or [])
    if not short:
        return (f"> **Not competent.** {c['reference']}'s check against the {c['floor']} floor could not be made on "
                f"every domain (missing floors: {', '.join(c.get('missing_floors') or []) or 'none'}); every claim "
                "below is marked *not competent*.\n")
    domains = c.get("domains") or {}
    parts = [f"{d} {nums.q('competence', 'domains', d, 'mean')} [{nums.q('competence', 'domains', d, 'ci_low')}, "
             f"{nums.q('competence', 'domains', d, 'ci_high')}] bpb against a floor of "
             f"{nums.q('competence', 'domains', d, 'floor_bpb')}" for d in short]
    above = [d for d in short if (domains.get(d) or {}).get("mean", 0.0) > (domains.get(d) or {}).get("floor_bpb", 0.0)]
    why = (f"on {', '.join(above)} even the mean is above the floor: the models did not learn that text beyond "
           f"its byte {c['floor']} statistics" if above else
           "every mean is below the floor, but the upper end of the interval is not, so these runs do not show "
           "that the reference reached it")
    return (f"> **Not competent.** By the declared rule (the upper end of {c['reference']}'s interval of its "
            f"bpb right after each domain's own phase at or below the domain's {c['floor']} floor): "
            f"{'; '.join(parts)}. {why[0].upper() + why[1:]}. Every claim below is marked *not competent*, with "
            "the verdict its test would have had (section *What the networks learned*).\n")


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
    return (f"the reference's frontier at the method's plasticity ({nums.q(*path, 'method_x')} bpb) gives {label} "
            f"{nums.q(*path, 'reference_y')}, the method {nums.q(*path, 'method_y')}; gap (reference − method) "
            f"{nums.q(*path, 'gap')} [{nums.q(*path, 'ci_low')}, {nums.q(*path, 'ci_high')}], "
            f"p = {nums.q(*path, 'p', p=True)} (delta-method t-interval, {fmt_num(g['df'])} df).")


def _verdict(g: dict[str, Any], nums: Numbers, y: str) -> str:
    """The gap claim's verdict (Holm over the frontier's gap claims), and the one withheld by the competence check."""
    if not g.get("verdict"):
        return ""
    holm = (f" (Holm p {nums.q('frontier', 'claims', y, 'gap', 'p_holm', p=True)} over the "
            f"{g.get('family_size')} gap claim{'s' if g.get('family_size') != 1 else ''} tested)" if g.get("p_holm") is not None else "")
    would = f"; it would read **{g['verdict_if_competent']}**" if g.get("verdict_if_competent") else ""
    return f"Verdict: **{g['verdict']}**{holm}{would}."


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
             f"all, {f['replicates']} runs per setting, each from the initialisation and in the order of a "
             "main-comparison run, the base setting being the main comparison). A method's frontier is its "
             "settings that no other setting of it beats on both plasticity (mean R[j][j], bpb right after each "
             "domain's phase) and forgetting. The table: *Stability-plasticity frontiers* below.\n"]
    claims = f.get("claims") or {}
    if claims:
        for y, label in (("forgetting", "forgetting"), ("final_avg_bpb", "final average bpb")):
            text = _gap_sentence(nums, y, label)
            if text:
                lines.append(f"- **{label[0].upper() + label[1:]} at {f['method']}'s plasticity, against "
                             f"{f['reference']}'s frontier.** {text[0].upper() + text[1:]} "
                             + _verdict(nums.get("frontier", "claims", y, "gap") or {}, nums, y))
        for y, label in (("forgetting", "forgetting"), ("final_avg_bpb", "final average bpb")):
            d = claims.get(y, {}).get("dominance")
            if d:
                lines.append(f"- **Dominance ({label}).** {d['compared']} of {f['method']}'s settings lie inside "
                             f"{f['reference']}'s frontier range; better there (Holm over them): "
                             f"{', '.join(d['better']) or 'none'}; worse: {', '.join(d['worse']) or 'none'}; "
                             f"verdict: {d['verdict']}"
                             + (f" (would read: {d['verdict_if_competent']})" if d.get("verdict_if_competent") else "")
                             + ".")
        lines.append("")
    return "\n".join(lines)
