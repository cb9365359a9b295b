"""Data layer: text sources -> documents -> deterministic splits -> UTF-8 byte arrays -> batches.

Why it looks like this
----------------------
* **One code path for every source.** Each source (``embedded``, ``hub``, ``local``,
  ``synthetic``) only produces a :class:`datasets.Dataset` of documents (columns
  ``doc_id``, ``text``, ``split``). Everything after that (normalisation, de-duplication,
  split assignment, the ``max_bytes`` budget, tokenisation, hashing, writing) is shared, so
  the sources cannot drift apart in how they are split or counted.
* **Bytes as tokens.** The tokenizer is UTF-8 bytes (vocabulary 256, stored as raw
  ``uint8``). No tokenizer is trained, every domain uses the same one, and a loss in nats per
  token converts exactly to bits per byte (bpb = loss / ln 2).
* **Splits by document, by hash.** A document goes to test when
  ``u(doc_id) < test_fraction``, to valid when ``u < test_fraction + valid_fraction``, and to
  train otherwise, where ``u`` is the first 8 bytes of ``sha256(doc_id)`` read as a number in
  [0, 1). The split of a document never depends on the other documents, on ``max_bytes`` or on
  the file order, so held-out documents stay held out when the source grows.
* **max_bytes by hash order.** Each split gets a byte budget (valid/test:
  ``floor(max_bytes * fraction)``, train: the rest). Its documents are visited in increasing
  ``u`` (the same hash: a pseudo-random order spread over the whole source) and taken whole
  while they fit; if bytes remain at the end, the first document that did not fit contributes
  a prefix cut at a line boundary (recorded as ``truncated_document``). Raising ``max_bytes``
  therefore only adds documents.
* **Embedded default, no network.** Text that ships with the installed packages, so a fresh
  machine runs the whole pipeline offline (see :data:`EMBEDDED_DOMAINS` for what and why).
  Its content depends on the Python and scipy versions, which the manifest records together
  with the sha256 of every file written.
* **Sampling independent of the variant.** :class:`BatchSampler` takes no variant: given a
  seed it yields the same windows in the same order for every variant, and its RNG state can
  be saved and restored so that a resumed run continues the exact same stream.
  :func:`eval_batches` uses no RNG at all.

Modules: ``documents`` (normalisation, split rule, budgets), ``sources/`` (one module per
source), ``preparation`` (``prepare``: the manifest and atomic writes), ``loading`` (manifest
and split files), ``sampling`` (training and evaluation batches). The ``data:`` params section
is ``k1model.config.DataConfig``.

Prepared layout (``k1 prepare --params P --out DIR``)::

    DIR/manifest.json
    DIR/<domain>/{train,valid,test}.bin      # raw uint8 UTF-8 bytes
"""
from __future__ import annotations

from k1model.config.data import SOURCES, SPLITS, DataConfig
from k1model.config.data import data_config as normalize_data_config
from k1model.data.documents import SPLIT_RULE, _make_splits, _normalise, document_split
from k1model.data.loading import load_manifest, load_split
from k1model.data.preparation import MANIFEST_FORMAT, TOKENIZER, format_split_table, prepare
from k1model.data.sampling import BatchSampler, eval_batches
from k1model.data.sources.embedded import EMBEDDED_DOMAINS
from k1model.data.sources.local import DATA_ROOT_ENV
from k1model.data.sources.synthetic import _synthetic_documents

#: the defaults of the ``data:`` section (a validated ``DataConfig``; reads like a mapping)
DEFAULT_DATA_CONFIG = DataConfig()

__all__ = [
    "BatchSampler", "DATA_ROOT_ENV", "DEFAULT_DATA_CONFIG", "EMBEDDED_DOMAINS", "MANIFEST_FORMAT", "SOURCES",
    "SPLITS", "SPLIT_RULE", "TOKENIZER", "document_split", "eval_batches", "format_split_table", "load_manifest",
    "load_split", "normalize_data_config", "prepare",
]
