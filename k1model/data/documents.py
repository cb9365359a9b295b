"""Documents -> normalised, de-duplicated, split by hash, cut to the byte budget -> split bytes.

The shared path of every source: a source only produces a `datasets.Dataset` of documents
(columns `doc_id`, `text`, `split`); everything here is the same for all of them, so sources
cannot drift apart in how they are split or counted. The exact rule is `SPLIT_RULE` (also
written into every manifest).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from k1model.config.data import SPLITS, split_budgets
from k1model.errors import DataError

if TYPE_CHECKING:
    import datasets

_DOC_END = b"\n\n"  # ends every document in a split file: one blank line between documents

SPLIT_RULE = (
    "Documents are normalised (BOM removed, CRLF->LF, trailing whitespace stripped, empty "
    "documents dropped) and de-duplicated by content (the first in doc_id order is kept). "
    "u(doc_id) = int(sha256(doc_id.encode('utf-8'))[:8 bytes], big-endian) / 2**64. A document goes "
    "to test if u < test_fraction, to valid if u < test_fraction + valid_fraction, else to train "
    "(folders that already hold train/valid/test files keep their split). Byte budgets: "
    "valid = floor(max_bytes * valid_fraction), test = floor(max_bytes * test_fraction), "
    "train = max_bytes - valid - test. Within a split, documents are visited in increasing u (ties "
    "by doc_id) and taken whole while they fit (each costs its UTF-8 bytes + 2 for the two newlines "
    "that end it); if bytes remain, the first document that did not fit contributes a prefix cut "
    "at its last line break that fits. Split file = concatenation of the taken documents in that "
    "order, each followed by '\\n\\n' (one blank line between documents). Tokens = UTF-8 bytes (uint8, vocabulary 256)."
)

def _doc_unit(doc_id: str) -> float:
    """u(doc_id) in [0, 1) from sha256: the split and the order of a document."""
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64

def document_split(doc_id: str, valid_fraction: float, test_fraction: float) -> str:
    """The split (train/valid/test) the hash rule gives a document id (see ``SPLIT_RULE``)."""
    u = _doc_unit(doc_id)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"

def _normalise(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").rstrip()

def _chunk_text(text: str, target: int) -> list[str]:
    """Cut ``text`` into paragraph-aligned chunks of about ``target`` bytes (exact: joined back,
    the chunks give ``text``). A chunk ends after a blank line once it has ``target`` bytes, or
    at any line end once it has ``4 * target`` bytes (text without blank lines)."""
    chunks: list[str] = []
    cur: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        size += len(line.encode("utf-8", "surrogatepass"))
        if (size >= target and not line.strip()) or size >= 4 * target:
            chunks.append("".join(cur))
            cur, size = [], 0
    if cur:
        chunks.append("".join(cur))
    return chunks

def _prefix_at_line(data: bytes, limit: int) -> bytes:
    """The longest prefix of ``data`` of at most ``limit`` bytes that ends at a line break
    (or, without one, at a UTF-8 character boundary)."""
    if limit <= 0:
        return b""
    head = data[:limit]
    cut = head.rfind(b"\n")
    if cut >= 0:
        return head[: cut + 1]
    end = len(head)
    while end > 0 and end < len(data) and (data[end] & 0xC0) == 0x80:
        end -= 1  # do not split a multi-byte character
    return head[:end]

def _documents_dataset(doc_ids: list[str], texts: list[str], splits: list[str] | None = None) -> "datasets.Dataset":
    import datasets

    return datasets.Dataset.from_dict(
        {"doc_id": doc_ids, "text": texts, "split": splits if splits is not None else [""] * len(doc_ids)}
    )

def _make_splits(
    ds: "datasets.Dataset", domain: str, cfg: Mapping[str, Any], window: int
) -> tuple[dict[str, bytes], dict[str, Any], dict[str, dict[str, Any]]]:
    """The shared path: documents -> normalised, de-duplicated -> split -> budget -> bytes."""
    cols = ds.to_dict()
    ids: list[str] = cols["doc_id"]
    texts: list[str] = cols["text"]
    given: list[str] = cols["split"]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"domain {domain!r}: document id {dup!r} occurs twice in the source")
    rank = {"": 0, "train": 0, "valid": 1, "test": 2}
    order = sorted(range(len(ids)), key=lambda i: (rank[given[i]], ids[i]))
    seen: set[bytes] = set()
    n_empty = n_dupes = 0
    per_split: dict[str, list[tuple[float, str, bytes]]] = {s: [] for s in SPLITS}
    for i in order:
        data = _normalise(texts[i]).encode("utf-8", "replace")
        if not data:
            n_empty += 1
            continue
        key = hashlib.sha256(data).digest()
        if key in seen:
            n_dupes += 1
            continue
        seen.add(key)
        split = given[i] or document_split(ids[i], cfg["valid_fraction"], cfg["test_fraction"])
        per_split[split].append((_doc_unit(ids[i]), ids[i], data))

    budgets = split_budgets(cfg["max_bytes"], cfg["valid_fraction"], cfg["test_fraction"])
    out: dict[str, bytes] = {}
    info: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        docs = sorted(per_split[split], key=lambda t: (t[0], t[1]))
        budget = budgets[split]
        parts: list[bytes] = []
        taken: list[str] = []
        used = 0
        first_skipped: tuple[str, bytes] | None = None
        for _, doc_id, data in docs:
            if budget is not None and used + len(data) + len(_DOC_END) > budget:
                if first_skipped is None:
                    first_skipped = (doc_id, data)
                if budget - used <= len(_DOC_END):
                    break
                continue
            parts.append(data + _DOC_END)
            taken.append(doc_id)
            used += len(data) + len(_DOC_END)
        truncated = None
        if budget is not None and first_skipped is not None and budget - used > len(_DOC_END):
            prefix = _prefix_at_line(first_skipped[1], budget - used - len(_DOC_END)).rstrip()
            if prefix:
                parts.append(prefix + _DOC_END)
                taken.append(first_skipped[0])
                truncated = first_skipped[0]
                used += len(prefix) + len(_DOC_END)
        blob = b"".join(parts)
        if len(blob) < window:
            raise DataError(
                f"domain {domain!r}: the {split} split holds only {len(blob)} bytes "
                f"({len(per_split[split])} documents available in the source for it), less than one "
                f"window of model.max_seq_len + 1 = {window} bytes. Use a larger source for this domain, "
                "raise data.max_bytes / data.valid_fraction / data.test_fraction, or lower model.max_seq_len"
            )
        out[split] = blob
        info[split] = {
            "budget": budget,
            "documents": len(taken),
            "truncated_document": truncated,
            "doc_ids": taken,
        }
    documents = {
        "available": sum(len(v) for v in per_split.values()),
        "available_bytes": sum(len(d) + len(_DOC_END) for v in per_split.values() for _, _, d in v),
        "available_per_split": {s: len(per_split[s]) for s in SPLITS},
        "dropped_empty": n_empty,
        "dropped_duplicates": n_dupes,
    }
    return out, documents, info

def _file_record(path: Path, rel: str) -> dict[str, Any]:
    data = path.read_bytes()
    return {"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
