"""Sections of the paper that are computed from the params and the results: the trust budget,
the data, and small formatting helpers shared by the paper."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from k1model.config import ModelConfig
from k1model.report.claims import Numbers

def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, Mapping):
        rows = []
        for k, v in obj.items():
            rows += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows or [(prefix, "{}")]
    if isinstance(obj, list) and any(isinstance(v, (Mapping, list)) for v in obj):
        rows = []
        for i, v in enumerate(obj):
            rows += _flatten(v, f"{prefix}[{i}]")
        return rows
    return [(prefix, json.dumps(obj) if not isinstance(obj, str) else obj)]

def _kv_table(rows: Sequence[tuple[str, str]], head: tuple[str, str] = ("key", "value")) -> str:
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = [f"| {head[0]} | {head[1]} |", "|:---|:---|"] + [f"| `{cell(k)}` | {cell(v)} |" for k, v in rows]
    return "\n".join(lines) + "\n"

def _trust_budget_section(nums: Numbers, params: Mapping[str, Any], variants: Sequence[str]) -> str:
    """How much the trust cooldown lets the tree learn: an analytic bound from the params and the
    measured idle-step fractions from results (a mechanism that explains the other results)."""
    method = params.get("method", {})
    inc, decay, thr = (float(method.get(k, d)) for k, d in
                       (("trust_increase", 0.1), ("trust_decay", 0.995), ("trust_threshold", 0.7)))
    n_agents = _n_agents(params.get("model", {}).get("branching", []))
    if inc <= 0:
        return ""
    rate = min(1.0, thr * (1.0 - decay) / inc)  # steady state: t* = inc·r/(1−decay) must stay ≤ threshold
    idle = {v: nums.ci(v, "idle_step_fraction") for v in variants if nums.get(v, "idle_step_fraction") is not None}
    lines = ["### Trust budget\n",
             f"Trust rises by {inc:g} per update and decays by ×{decay:g} per step, so an agent updated at a "
             f"sustained rate r settles at trust ≈ {inc:g}·r/(1 − {decay:g}); it stays out of cooldown only if that "
             f"is ≤ {thr:g}, i.e. r ≤ {rate:.3g}. Each agent can therefore be updated on at most about "
             f"{100 * rate:.1f}% of steps, and the whole tree of {n_agents} agents on at most about "
             f"{rate * n_agents:.2f} agent-updates per step; since every error path passes through a level-1 agent, "
             "once those are all cooling down the drill-down stops at the root and nothing is updated."]
    if idle:
        lines.append("Measured fraction of steps in which no agent was updated (mean [95% CI]): "
                     + "; ".join(f"{v} {t}" for v, t in idle.items()) + ". "
                     "Shared parameters (embedding, positions, final norm, head) are updated at full rate every step "
                     "in every variant, so in idle steps only they learn; differences in forgetting between sparse "
                     "variants and `dense` must be read together with how much the agents learned at all "
                     "(final bpb, `no_trust`).")
    return "\n".join(lines) + "\n"

def _data_section(manifest: Mapping[str, Any]) -> str:
    """Per-domain origin, split sizes and checksums; the full manifest (document ids, file lists)
    stays in `manifest.json`, which the paper cites instead of reprinting."""
    tok = manifest.get("tokenizer", {})
    tok_text = (f"{tok.get('kind', '?')} with vocabulary {tok.get('vocab_size', '?')}" if isinstance(tok, Mapping)
                else str(tok))
    versions = ", ".join(f"{k} {v}" for k, v in sorted(dict(manifest.get("versions") or {}).items()))
    lines = [f"**Data** (from the data manifest: source `{manifest.get('source', '?')}`, tokenizer "
             f"{tok_text}; {versions}). Sizes in bytes; "
             "sha256 abbreviated to 12 hex digits; document lists and file checksums are in `manifest.json`.\n",
             "| domain | origin | train | valid | test | documents (train/valid/test) | sha256 (train/valid/test) |",
             "|:---|:---|---:|---:|---:|---:|:---|"]
    for name, dom in dict(manifest.get("domains") or {}).items():
        if not isinstance(dom, Mapping):
            continue
        origin = dom.get("origin") if isinstance(dom.get("origin"), Mapping) else {"description": dom.get("origin")}
        what = str(origin.get("description") or origin.get("package") or origin.get("kind", "")).split(":")[0].split(" (")[0]
        splits = dom.get("splits", {})
        get = lambda key: [splits.get(s, {}).get(key) for s in ("train", "valid", "test")]  # noqa: E731
        b, docs, sha = get("bytes"), get("documents"), get("sha256")
        size = lambda v: f"{v:,}" if isinstance(v, int) else "n/a"  # noqa: E731
        lines.append(f"| {name} | {what.replace('|', '/')} | {size(b[0])} | {size(b[1])} | {size(b[2])} | "
                     f"{'/'.join(str(d) for d in docs)} | {' / '.join(str(h)[:12] for h in sha)} |")
    rule = str(manifest.get("split_rule", "")).split(". ")[0]
    if rule:
        lines.append(f"\nSplit rule (abridged; full text in the manifest): {rule}.")
    return "\n".join(lines) + "\n"

def _n_agents(branching: Sequence[int]) -> int:
    return ModelConfig(branching=tuple(int(b) for b in branching)).num_agents if branching else 1

def _embed_table(md: str, number: int) -> str:
    """Turn the table file's bold caption line into "Table N: caption"."""
    lines = md.strip("\n").splitlines()
    if lines and lines[0].startswith("**") and lines[0].endswith("**"):
        lines[0] = f"*Table {number}: {lines[0].strip('*')}*"
    return "\n".join(lines) + "\n"

def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()
