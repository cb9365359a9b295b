"""Paper sections of the study design: variants and baselines, budgets, the tuned comparison, the
domain orders and the sensitivity sweep. Every number comes from summary.json (through `Numbers`),
the params or the data manifest."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from k1model.analysis.claims import Claim, paired_claims
from k1model.report.claims import Numbers
from k1model.analysis.tables import fmt_num, fmt_p

ClaimFn = Callable[[Numbers, Claim], tuple[str, str, str]]


def variants_paragraph(variants: Sequence[str]) -> str:
    from k1model.config.registry import VARIANTS

    items = [f"`{v}` ({VARIANTS[v].description})" for v in variants if v in VARIANTS]
    return ("**Variants.** " + "; ".join(items) + ". All share architecture, data order, step budget, batch size, "
            "optimizer and seeds; a variant differs only in its selector, scorer, whether the trust cooldown gates, "
            "and its plugins.\n")


def strategy_texts(params: Any, variants: Sequence[str], section: str) -> list[str]:
    """The paper descriptions of the registered strategies of one paper section ("baselines", "structure")
    that add one of `variants`, in registration order, filled in with the params."""
    from k1model.config.registry import STRATEGIES

    return [s.paper.format(method=params.method, model=params.model) for s in STRATEGIES.values()
            if s.paper and s.paper_section == section and any(v.name in variants for v in s.variants)]


def baselines_paragraph(params: Any, variants: Sequence[str]) -> str:
    parts = strategy_texts(params, variants, "baselines")
    return ("**Continual-learning baselines.** " + "; ".join(parts) + ".\n") if parts else ""


def budget_paragraph(params: Any, manifest: Mapping[str, Any]) -> str:
    """Epochs per phase (tokens a phase trains on over the bytes of the domain's training split) and
    the size of the held-out splits the R matrices are evaluated on (every byte of them)."""
    t = params.train
    tokens = t.steps_per_phase * t.batch_size * params.model.max_seq_len
    epochs, test_bytes = {}, {}
    for d in params.data.domains:
        splits = (((manifest.get("domains") or {}).get(d) or {}).get("splits") or {})
        if splits.get("train", {}).get("bytes"):
            epochs[d] = tokens / splits["train"]["bytes"]
        if splits.get("test", {}).get("bytes"):
            test_bytes[d] = splits["test"]["bytes"]
    per = ", ".join(f"{d} {e:.2f}" for d, e in epochs.items()) or "n/a"
    if epochs and max(epochs.values()) <= 1.05:
        verdict = "at most about one, so forgetting is not a by-product of overfitting a small corpus"
    elif epochs:
        verdict = ("more than one on some domain: part of what is measured as forgetting may be the model "
                   "having overfit the earlier corpus")
    else:
        verdict = "the manifest gives no split sizes"
    held_out = ", ".join(f"{d} {b:,}" for d, b in test_bytes.items())
    return (f"**Budget.** Each phase trains on {t.steps_per_phase} × {t.batch_size} windows of {params.model.max_seq_len} "
            f"bytes = {tokens:,} tokens, i.e. epochs per phase over the training split: {per} ({verdict}). "
            "The R matrices are evaluated on every byte of each domain's held-out split after each phase"
            + (f" (test bytes: {held_out})" if held_out else "") + f"; the learning curves on {t.eval_batches} fixed "
            "validation batches.\n")


def _status_table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(":---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def tuned_section(nums: Numbers, claim: ClaimFn, claims: Mapping[str, Mapping[str, Any]]) -> tuple[str, dict]:
    """Every paired claim as specified and after tuning, side by side, and what tuning chose."""
    tuned = nums.get("tuned") or {}
    view = nums.view("tuned")
    out = {}
    rows = []
    for c in paired_claims():
        status, short, sentence = claim(view, c)
        out[c.name] = {"status": status, "short": short, "sentence": sentence}
        rows.append((c.statement, claims[c.name]["status"], status))
    choices = tuned.get("choices") or {}
    L = ["## Tuned comparison\n",
         f"Every variant's settings were chosen on the **validation** split with tuning seeds that no evaluation "
         f"uses ({tuned.get('metric', 'the validation metric')}; {fmt_num(tuned.get('searched'))} settings searched "
         "in all), then run on the evaluation seeds and orders; test data and evaluation seeds informed no choice. "
         "The claims as specified (the profile's settings for every variant) and tuned:\n",
         _status_table(rows, ("claim", "as specified", "tuned"))]
    if choices:
        L.append(_status_table([(v, f"`{c['chosen']}`", fmt_num(c["searched"]), fmt_num(c["validation_mean"]))
                                for v, c in choices.items()],
                               ("variant", "chosen setting", "candidates", "validation metric (mean)")))
    L += [f"- **{c.name}** (tuned). {out[c.name]['sentence']}" for c in paired_claims()]
    return "\n".join(L) + "\n", out


def orders_section(nums: Numbers, claim: ClaimFn, claims: Mapping[str, Mapping[str, Any]],
                   orders: Sequence[str]) -> tuple[str, dict]:
    """Every paired claim within each domain order: does the order change a conclusion?"""
    per: dict[str, dict] = {}
    rows = []
    changed = []
    for c in paired_claims():
        statuses = []
        for o in orders:
            status, short, sentence = claim(nums.view("by_order", o), c)
            per.setdefault(o, {})[c.name] = {"status": status, "short": short}
            statuses.append(status)
        if len(set(statuses)) > 1:
            changed.append(c.name)
        rows.append((c.statement, claims[c.name]["status"], *statuses))
    L = ["## Domain orders\n",
         f"Every run was trained in {len(orders)} domain orders ({', '.join(orders)}); the main comparison pools "
         "them (the initialisations as units, the order as a block). Within each order alone (a secondary table: "
         f"the claims within every order are a Holm family of their own, {nums.q('order_claim_family', 'size')} "
         "tests):\n",
         _status_table(rows, ("claim", "pooled", *orders))]
    L.append(("The order changes the conclusion of: " + ", ".join(changed) + ".\n") if changed else
             "No conclusion changes with the domain order.\n")
    return "\n".join(L) + "\n", {"per_order": per, "changed": changed}


def sweep_section(nums: Numbers) -> tuple[str, dict]:
    """Where in the searched settings each variant-vs-reference claim holds, with the search's multiplicity."""
    sweep = nums.get("sweep") or {}
    claims = sweep.get("claims") or {}
    searched = sweep.get("searched")
    refs = sweep.get("references") or []
    out: dict[str, Any] = {}
    L = ["## Sensitivity\n",
         f"A {sweep.get('design', '').replace('_', '-')} sweep around the profile's settings over "
         f"{', '.join(f'`{k}` {v}' for k, v in (sweep.get('factors') or {}).items())} "
         f"({fmt_num(searched)} settings searched, seeds {sweep.get('seeds')}, order {sweep.get('order')}). At "
         f"each setting every swept variant is compared with {', '.join(f'`{r}`' for r in refs) or 'no reference'} at "
         "the same setting, paired by seed; a claim *holds* at a setting when the variant is lower and the primary "
         f"test's p, Holm-corrected over all {fmt_num(searched)} settings searched, is below α.\n"]
    for ref in refs:
        for v in [v for v in sweep.get("variants", []) if v not in refs]:
            for metric in ("forgetting", "final_avg_bpb"):
                holds = [p for p in claims if ((claims[p].get(ref) or {}).get(v) or {}).get(metric, {}).get("holds")]
                out[f"{v}_vs_{ref}_{metric}"] = holds
                if holds:
                    detail = "; ".join(
                        f"`{p}`: {nums.q('sweep', 'claims', p, ref, v, metric, 'mean_diff')} "
                        f"[{nums.q('sweep', 'claims', p, ref, v, metric, 'diff_ci_low')}, "
                        f"{nums.q('sweep', 'claims', p, ref, v, metric, 'diff_ci_high')}], p (Holm) "
                        f"{nums.q('sweep', 'claims', p, ref, v, metric, 'p_holm_search', p=True)}" for p in holds)
                    L.append(f"- `{v}` has lower {metric} than `{ref}` at {len(holds)} of {fmt_num(searched)} "
                             f"settings: {detail}.")
                else:
                    L.append(f"- `{v}` has significantly lower {metric} than `{ref}` at none of the "
                             f"{fmt_num(searched)} settings searched.")
    failed = sweep.get("failed") or []
    if failed:
        L.append(f"- {len(failed)} sweep runs failed or are missing and were left out: "
                 + ", ".join(f"{f['point']}/{f['variant']}/seed{f['seed']}" for f in failed) + ".")
    return "\n".join(L) + "\n\n", out


def idle_by_rule(nums: Numbers) -> str:
    """The idle-step fraction at the base and under `trust_rule: proportional`, when swept."""
    sweep = nums.get("sweep") or {}
    cells = sweep.get("cells") or {}
    point = next((p["name"] for p in sweep.get("points", []) if p["overrides"].get("trust_rule") == "proportional"),
                 None)
    if point is None or "k1_full" not in (cells.get(point) or {}):
        return ""
    return (f"Under the specified `per_update` trust rule `k1_full` idles on "
            f"{nums.q('sweep', 'cells', 'base', 'k1_full', 'idle_step_fraction', 'mean')} of steps; with "
            f"`proportional` trust on {nums.q('sweep', 'cells', point, 'k1_full', 'idle_step_fraction', 'mean')} "
            f"(forgetting {nums.q('sweep', 'cells', 'base', 'k1_full', 'forgetting', 'mean')} vs "
            f"{nums.q('sweep', 'cells', point, 'k1_full', 'forgetting', 'mean')}).\n")


def p_text(value: Any) -> str:
    return fmt_p(value)
