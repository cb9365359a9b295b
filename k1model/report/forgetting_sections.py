"""The paper's sections on the forgetting question: the statistics that decide a claim at small n, the
benchmark-validity check, which domain is forgotten after which phase, where in the model the
forgetting lives, and what the leave-one-out step changes. Every number comes from summary.json
through `Numbers` (so numbers.json records its source)."""
from __future__ import annotations

from typing import Any

from k1model.report.claims import Numbers, _relation
from k1model.analysis.tables import fmt_num


def validity_section(nums: Numbers, title: str = "Does the benchmark forget?") -> str:
    """The benchmark-validity check of the forgetting claims, with the reference's forgetting per domain."""
    v = nums.get("validity")
    if not v or not v.get("measured"):
        return ""
    ref, margin = v["reference"], fmt_num(v["margin"])
    avg = f"{nums.q('validity', 'average', 'mean')} [{nums.q('validity', 'average', 'ci_low')}, " \
          f"{nums.q('validity', 'average', 'ci_high')}]"
    verdict = ("**it does**: the forgetting claims below are tested." if v.get("forgets") else
               "**it does not**: every forgetting claim is *untestable on this benchmark*, whatever the method "
               "does; a method cannot forget less than a reference that does not forget.")
    lines = [f"### {title}\n",
             f"A forgetting claim is only a test where the reference forgets. The rule, fixed in the params file "
             f"(`analysis.forgetting_reference`, `analysis.forgetting_margin`): the benchmark forgets when {ref}'s "
             f"mean forgetting is at least {margin} bpb and its {v['confidence']:.0%} interval lies above 0. "
             f"Here {ref} forgets {avg} bpb on average over {nums.q('validity', 'average', 'n')} initialisations, so "
             f"{verdict}\n"]
    by_order = v.get("domains") or {}
    if by_order:
        lines.append(f"| order | domain (phase) | {ref} forgetting, bpb [CI] | forgets |\n|:---|:---|---:|:---|")
        for order, by_domain in by_order.items():
            for domain, d in by_domain.items():
                key = ("validity", "domains", order, domain)
                if d.get("n", 2) < 2:  # one run in this order: a value, no interval, no verdict
                    cell, forgets = f"{nums.q(*key, 'mean')} (1 run)", "n/a (one run)"
                else:
                    cell = f"{nums.q(*key, 'mean')} [{nums.q(*key, 'ci_low')}, {nums.q(*key, 'ci_high')}]"
                    forgets = "yes" if d["forgets"] else "no"
                lines.append(f"| {order} | {domain} ({d['position'] + 1}) | {cell} | {forgets} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _ci(nums: Numbers, *path: str) -> str:
    """"mean [lo, hi]" of the statistics at `path` (recorded in numbers.json)."""
    mean = nums.q(*path, "mean")
    if nums.get(*path, "ci_low") is None:
        return mean
    return f"{mean} [{nums.q(*path, 'ci_low')}, {nums.q(*path, 'ci_high')}]"


def decomposition_section(nums: Numbers, variants: list[str], cfg: Any) -> str:
    """Where forgetting lives: the swap test per variant, and the sweep's shared-weight settings."""
    shown = [v for v in variants if (nums.get(v, "forgetting_shared") or {}).get("n")]
    if not shown:
        return ""
    lines = ["### Where forgetting lives: shared weights or agents\n",
             "Every variant trains the shared weights (embedding, positions, final norm, head) at full rate on "
             "every step by default, also on the steps where the trust cooldown leaves every agent idle. The swap "
             "test asks which part carries the forgetting: for each earlier domain j, the final model is "
             "evaluated with the shared weights (or the agents) put back to their state at the end of phase j. "
             "What that recovers is the forgetting the part carries; a part that did not change since phase j "
             "carries exactly 0. The two shares need not add up to the loss (the parts interact).\n",
             "| variant | lost since own phase (BWT) | carried by shared weights | carried by agents | "
             "shared drift / phase | agent drift / phase |", "|:---|---:|---:|---:|---:|---:|"]
    for v in shown:
        lines.append(f"| {v} | {_ci(nums, v, 'bwt')} | {_ci(nums, v, 'forgetting_shared')} | "
                     f"{_ci(nums, v, 'forgetting_agents')} | {nums.q(v, 'drift_shared', 'mean')} | "
                     f"{nums.q(v, 'drift_agents', 'mean')} |")
    lines.append("")
    sentences = []
    for v in [x for x in ("k1_full", "dense") if x in shown]:
        lost = nums.get(v, "bwt", "mean")
        shared, agents = nums.get(v, "forgetting_shared", "mean"), nums.get(v, "forgetting_agents", "mean")
        if None in (lost, shared, agents):
            continue
        share = f" ({shared / lost:.0%} of it)" if lost > 0 else ""
        test = nums.get("decomposition", v) or {}
        if test.get("ttest_p") is not None and test["ttest_p"] < cfg.alpha:
            bigger = "the shared weights" if test["mean"] > 0 else "the agents"
            verdict = f"{bigger} carry significantly more of it"
        else:
            verdict = "the two parts do not differ significantly"
        diff = (f" (shared − agents {_ci(nums, 'decomposition', v)} bpb, paired t-test p "
                f"{_relation(nums.q('decomposition', v, 'ttest_p', p=True))})" if test else "")
        sentences.append(
            f"For {v}, restoring the shared weights recovers {nums.q(v, 'forgetting_shared', 'mean')} bpb of the "
            f"{nums.q(v, 'bwt', 'mean')} bpb lost{share}, restoring the agents {nums.q(v, 'forgetting_agents', 'mean')}"
            f" bpb: {verdict}{diff}.")
    lines.append(" ".join(sentences) + "\n" if sentences else "")
    sweep = nums.get("sweep", "cells") or {}
    points = [p for p in sweep if p.startswith("shared_update~")]
    if points:
        lines.append("The sweep trains every swept variant with the shared weights updated only on steps that "
                     "update an agent, and frozen after the first domain (forgetting, bpb; mean [CI] over the "
                     "sweep seeds):\n")
        head = ["setting"] + [v for v in (nums.get("sweep", "variants") or []) if v in sweep.get("base", {})]
        lines.append("| " + " | ".join(head) + " |\n|:---|" + "---:|" * (len(head) - 1))
        for point in ["base"] + points:
            cells = [_ci(nums, "sweep", "cells", point, v, "forgetting") for v in head[1:]]
            label = "every step (base)" if point == "base" else point.split("~", 1)[1].replace("_", " ")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def loo_section(nums: Numbers, variants: list[str]) -> str:
    """What the leave-one-out step changes (issue 17.5): how often an agent hurts, how often a choice flips."""
    shown = [v for v in variants if (nums.get(v, "loo_hurt_fraction") or {}).get("n")]
    if not shown:
        return ""
    lines = ["### What the leave-one-out step changes\n",
             "The hybrid score multiplies an agent's gradient norm by w_k = 1 + relu(−Δ_k) / mean|Δ|, so it "
             "differs from the gradient score only when some agent *hurts* (Δ_k < 0: the loss falls without it). "
             "Every step of a LOO variant records whether the hybrid weight changed the selection against the "
             "gradient scores alone, with the same eligibility.\n",
             "| variant | LOO rounds with a hurting agent | steps whose selection the LOO changed |",
             "|:---|---:|---:|"]
    for v in shown:
        lines.append(f"| {v} | {_ci(nums, v, 'loo_hurt_fraction')} | {_ci(nums, v, 'loo_changed_fraction')} |")
    lines.append("")
    never = [v for v in shown if (nums.get(v, "loo_changed_fraction", "mean") or 0.0) == 0.0]
    if never:
        lines.append(f"For {', '.join(never)} the LOO never changed a selection: this is a property of the "
                     "specified score (an agent has to hurt, and hurt enough to overturn a gradient ranking), "
                     "not of the implementation, and it is why runs at different `loo_interval` can be "
                     "identical.\n")
    return "\n".join(lines) + "\n"


#: the continual-learning figures the paper points to, in the order of the sentence (figure kind, what it shows)
CL_FIGURES: tuple[tuple[str, str], ...] = (
    ("learning_curves", "the learning curves of every domain order"),
    ("r_matrices", "the R matrices (bpb on domain j after phase i)"),
    ("forgetting_matrices", "their forgetting view, R[i][j] − R[j][j]"),
    ("seen_bpb", "the average bpb over the domains seen so far after each phase"),
    ("stability_plasticity", "stability against plasticity (each run's forgetting against its mean R[j][j] and "
                             "against its final average bpb)"),
    ("forgetting_updates", "forgetting against the number of agent updates"),
)


def figures_paragraph(figures: dict[str, Any]) -> str:
    """Where the continual-learning figures are: "Figure n" as numbered in the paper's figure list
    (figures.json order); a per-order figure is named `<kind>_<order>` and listed with its order."""
    numbers = {name: k for k, name in enumerate(figures, start=1)}
    parts = []
    for kind, what in CL_FIGURES:
        if kind in numbers:
            parts.append(f"{what} are Figure {numbers[kind]}" if kind == "learning_curves" else
                         f"{what}: Figure {numbers[kind]}")
            continue
        per_order = [(name[len(kind) + 1:], k) for name, k in numbers.items() if name.startswith(kind + "_")]
        if per_order:
            parts.append(f"{what}: " + ", ".join(f"Figure {k} (order {o.replace('-', ' → ')})" for o, k in per_order))
    if not parts:
        return ""
    text = "; ".join(parts)
    return f"**Continual-learning figures.** {text[0].upper() + text[1:]}. Every caption names the domain order it draws.\n"
