"""Tests of the data layer (k1model.data): sources, splits, manifest, sampling, errors.

Kept fast: the embedded sources are prepared once per module at a small max_bytes, the rest
uses the synthetic source or tiny temporary files. No network: Hub tests run in offline mode
or against a dataset folder on disk.
"""
from __future__ import annotations

import hashlib
import inspect
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from k1model import data as D
from k1model.analysis.separability import cross_domain_unigram_bpb
from k1model.data import preparation
from k1model.cli import main as k1_main
from k1model.errors import ConfigError, DataError

SEQ = 32
CORPORA = Path(os.environ["K1_DATA_ROOT"]) if os.environ.get("K1_DATA_ROOT") else Path(__file__).parents[2] / "shared/data/corpora"


def data_cfg(**over: Any) -> dict[str, Any]:
    """A small synthetic data config (fast, deterministic)."""
    cfg: dict[str, Any] = {
        "source": "synthetic",
        "domains": ["alpha", "beta", "gamma"],
        "max_bytes": 20_000,
        "valid_fraction": 0.1,
        "test_fraction": 0.1,
        "synthetic": {"doc_bytes": 256, "seed": 0},
    }
    cfg.update(over)
    return cfg


def data_tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def embedded_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("embedded") / "prepared"
    D.prepare({"max_bytes": 60_000}, out, seq_len=64)
    return out


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "prepared"
    D.prepare(data_cfg(), out, seq_len=SEQ)
    return out


@pytest.fixture
def no_data_root_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(D.DATA_ROOT_ENV, raising=False)


# ------------------------------------------------------------------------------ embedded


def test_embedded_prepare_is_deterministic_and_complete(embedded_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    D.prepare({"max_bytes": 60_000}, again, seq_len=64)
    first, second = data_tree_bytes(embedded_dir), data_tree_bytes(again)
    assert first == second  # byte-identical, manifest included
    assert sorted(first) == ["code/test.bin", "code/train.bin", "code/valid.bin", "manifest.json",
                             "prose/test.bin", "prose/train.bin", "prose/valid.bin",
                             "science/test.bin", "science/train.bin", "science/valid.bin"]
    m = json.loads(first["manifest.json"])
    assert m["tokenizer"] == {"kind": "utf8-bytes", "vocab_size": 256, "dtype": "uint8"}
    assert m["source"] == "embedded"
    assert {"python", "datasets", "scipy", "numpy"} <= set(m["versions"])
    assert "sha256" in m["split_rule"]
    for domain, d in m["domains"].items():
        assert d["origin"]["kind"] == "embedded"
        for split, s in d["splits"].items():
            blob = first[f"{domain}/{split}.bin"]
            assert s["sha256"] == hashlib.sha256(blob).hexdigest()
            assert s["bytes"] == s["tokens"] == len(blob)
            assert 65 <= len(blob) <= s["budget"]
            assert len(blob) >= 0.9 * s["budget"], (domain, split)  # budgets are (nearly) filled
        blob = first[f"{domain}/train.bin"]
        blob.decode("utf-8")  # valid UTF-8 text
    assert not any(p.name.startswith(".") for p in embedded_dir.parent.iterdir())  # no temp dirs left


def test_embedded_domains_are_distinguishable(embedded_dir: Path) -> None:
    # Evaluated on the train splits: at this small max_bytes the test splits hold only ~3 KB
    # (a handful of documents), too noisy for a stable check; 256 unigram parameters fitted on
    # ~54 KB make the in-sample optimism negligible (~0.003 bits).
    bpb = cross_domain_unigram_bpb(embedded_dir, eval_split="train")
    assert list(bpb.index) == list(bpb.columns) == ["prose", "code", "science"]
    for col in bpb.columns:
        # each domain's bytes are best predicted by its own domain's byte statistics
        assert bpb[col].idxmin() == col, bpb.round(3).to_string()
    assert cross_domain_unigram_bpb(embedded_dir).shape == (3, 3)  # default: evaluated on test


def test_manifest_splits_do_not_share_documents(embedded_dir: Path) -> None:
    m = D.load_manifest(embedded_dir)
    cfg = m["config"]
    for domain, d in m["domains"].items():
        ids = {s: set(d["splits"][s]["doc_ids"]) for s in D.SPLITS}
        assert not ids["train"] & ids["valid"] and not ids["train"] & ids["test"] and not ids["valid"] & ids["test"]
        for split, doc_ids in ids.items():
            for doc_id in doc_ids:
                assert D.document_split(doc_id, cfg["valid_fraction"], cfg["test_fraction"]) == split


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_domains_differ_and_splits_hold_no_train_text(synthetic_dir: Path) -> None:
    bpb = cross_domain_unigram_bpb(synthetic_dir).to_numpy()
    assert (bpb.diagonal() < 4.5).all()
    off = bpb[~np.eye(len(bpb), dtype=bool)]
    assert (off > bpb.diagonal().max() + 2.0).all()  # disjoint alphabets: far apart
    m = D.load_manifest(synthetic_dir)
    cfg = D.normalize_data_config(m["config"])
    docs, _ = D._synthetic_documents("alpha", 0, cfg)
    text = dict(zip(docs["doc_id"], docs["text"]))
    train = D.load_split(synthetic_dir, "alpha", "train").tobytes()
    held_out = m["domains"]["alpha"]["splits"]["test"]["doc_ids"] + m["domains"]["alpha"]["splits"]["valid"]["doc_ids"]
    assert held_out
    for doc_id in held_out:
        assert D._normalise(text[doc_id]).encode() not in train


def test_synthetic_prepare_deterministic_and_seed_sensitive(synthetic_dir: Path, tmp_path: Path) -> None:
    D.prepare(data_cfg(), tmp_path / "a", seq_len=SEQ)
    assert data_tree_bytes(tmp_path / "a") == data_tree_bytes(synthetic_dir)
    D.prepare(data_cfg(synthetic={"seed": 1}), tmp_path / "b", seq_len=SEQ)
    assert (tmp_path / "b/alpha/train.bin").read_bytes() != (tmp_path / "a/alpha/train.bin").read_bytes()


def test_larger_max_bytes_only_adds_documents(tmp_path: Path) -> None:
    small = D.prepare(data_cfg(domains=["alpha"], max_bytes=10_000), tmp_path / "s", seq_len=SEQ)
    large = D.prepare(data_cfg(domains=["alpha"], max_bytes=30_000), tmp_path / "l", seq_len=SEQ)
    for split in D.SPLITS:
        s, l_ = small["domains"]["alpha"]["splits"][split], large["domains"]["alpha"]["splits"][split]
        whole = [i for i in s["doc_ids"] if i != s["truncated_document"]]
        assert set(whole) <= set(l_["doc_ids"])


# ---------------------------------------------------------------------------- sampling


def test_batch_sampler_is_seeded_and_variant_free() -> None:
    assert list(inspect.signature(D.BatchSampler).parameters) == ["tokens", "seq_len", "batch_size", "seed"]
    tokens = np.arange(1000, dtype=np.int64).astype(np.uint8)
    a, b, c = D.BatchSampler(tokens, 16, 4, 7), D.BatchSampler(tokens, 16, 4, 7), D.BatchSampler(tokens, 16, 4, 8)
    for _ in range(5):
        (xa, ya), (xb, yb), (xc, _) = next(a), next(b), next(c)
        assert xa.dtype == ya.dtype == torch.int64 and xa.shape == ya.shape == (4, 16)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(xa[:, 1:], ya[:, :-1])  # y is x shifted by one
        assert int(xa.max()) < 256
    seqs_a = [next(a)[0] for _ in range(3)]
    seqs_c = [next(c)[0] for _ in range(3)]
    assert not all(torch.equal(p, q) for p, q in zip(seqs_a, seqs_c))


def test_batch_sampler_covers_the_last_window_and_rejects_short_data() -> None:
    tokens = np.arange(10, dtype=np.uint8)
    s = D.BatchSampler(tokens, 9, 64, 0)  # exactly one window: every row is the whole array
    x, y = next(s)
    assert (x == torch.arange(9)).all() and (y == torch.arange(1, 10)).all()
    with pytest.raises(DataError, match="fewer than one window"):
        D.BatchSampler(tokens, 10, 1, 0)


def test_batch_sampler_state_round_trip_resumes_the_stream() -> None:
    tokens = np.frombuffer(bytes(range(256)) * 8, dtype=np.uint8)
    ref = D.BatchSampler(tokens, 8, 3, 123)
    stream = [next(ref) for _ in range(6)]
    s = D.BatchSampler(tokens, 8, 3, 123)
    for _ in range(2):
        next(s)
    buf = io.BytesIO()
    torch.save(s.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    json.dumps(state)  # plain types
    resumed = D.BatchSampler(tokens, 8, 3, 999)  # the seed comes from the state
    resumed.load_state_dict(state)
    assert resumed.batches_drawn == 2
    for x, y in stream[2:]:
        rx, ry = next(resumed)
        assert torch.equal(rx, x) and torch.equal(ry, y)
    other = D.BatchSampler(tokens[:-1], 8, 3, 123)
    with pytest.raises(DataError, match="does not match"):
        other.load_state_dict(state)


def test_eval_batches_fixed_and_evenly_spaced() -> None:
    tokens = np.frombuffer(bytes(range(256)) * 4, dtype=np.uint8)
    state = np.random.get_state()
    a = D.eval_batches(tokens, 16, 4, 3)
    b = D.eval_batches(tokens, 16, 4, 3)
    assert np.array_equal(np.random.get_state()[1], state[1])  # no global RNG use
    assert len(a) == 3
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == (4, 16) and xa.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(xa[:, 1:], ya[:, :-1])
    # the first window starts at 0 and the last one ends at the last token
    assert torch.equal(a[0][0][0], torch.from_numpy(tokens[:16].astype(np.int64)))
    assert torch.equal(a[-1][1][-1], torch.from_numpy(tokens[-16:].astype(np.int64)))
    # evenly spaced starts (integer arithmetic), dealt round-robin to the batches
    starts = (np.arange(12) * (len(tokens) - 17)) // 11
    assert [int(a[i % 3][0][i // 3][0]) for i in range(12)] == [int(tokens[s]) for s in starts]


# --------------------------------------------------------------------------- load_split


def test_load_split_checks(synthetic_dir: Path, tmp_path: Path) -> None:
    arr = D.load_split(synthetic_dir, "beta", "valid")
    assert arr.dtype == np.uint8 and arr.ndim == 1 and len(arr) > SEQ
    with pytest.raises(DataError, match="k1 prepare"):
        D.load_split(tmp_path / "nothing", "beta", "train")
    with pytest.raises(DataError, match="unknown domain 'delta'.*alpha, beta, gamma"):
        D.load_split(synthetic_dir, "delta", "train")
    with pytest.raises(DataError, match="unknown split"):
        D.load_split(synthetic_dir, "beta", "validation")
    copy = tmp_path / "copy"
    D.prepare(data_cfg(), copy, seq_len=SEQ)
    with open(copy / "beta/test.bin", "ab") as fh:
        fh.write(b"x")
    with pytest.raises(DataError, match="sha256"):
        D.load_split(copy, "beta", "test")
    (copy / "beta/test.bin").unlink()
    with pytest.raises(DataError, match="k1 prepare"):
        D.load_split(copy, "beta", "test")


# ------------------------------------------------------------------------ config errors


@pytest.mark.parametrize(
    ("cfg", "pattern"),
    [
        ({"source": "web"}, r"data\.source.*'web'.*embedded, hub, local, synthetic"),
        ({"colour": 1}, r"data\.colour: unknown key; allowed keys: source, domains"),
        ({"local": {"rooot": "x"}}, r"data\.local\.rooot: unknown key"),
        ({"hub": {"prose": {"path": "x", "subset": "y"}}}, r"data\.hub\.prose\.subset: unknown key"),
        ({"synthetic": {"size": 3}}, r"data\.synthetic\.size: unknown key"),
        ({"domains": ["prose", "poetry"]}, r"data\.domains: unknown domain 'poetry'.*prose, code, science"),
        ({"domains": ["code", "code"]}, r"'code' is listed more than once"),
        ({"domains": []}, r"data\.domains must be a non-empty list"),
        ({"max_bytes": 1000}, r"data\.max_bytes=1000 is too small for domain 'prose'.*valid split.*max_bytes >= \d+"),
        ({"max_bytes": -5}, r"data\.max_bytes must be a positive integer"),
        ({"valid_fraction": 0}, r"data\.valid_fraction must be a number in \(0, 1\)"),
        ({"valid_fraction": 0.6, "test_fraction": 0.5}, r"must be < 1"),
        ({"source": "hub", "domains": ["code"]}, r"data\.hub\.code: no Hub dataset configured for domain 'code'"),
        ({"source": "local", "domains": ["poetry"]}, r"data\.local\.folders has no entry for domain 'poetry'"),
        ({"source": "hub", "hub": {"prose": {"path": "x", "documents": "pages"}}}, r"data\.hub\.prose\.documents"),
    ],
)
def test_bad_params_raise_config_errors_naming_the_key(cfg: dict[str, Any], pattern: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=pattern):
        D.prepare(cfg, tmp_path / "out", seq_len=64)
    assert not (tmp_path / "out").exists()
    assert isinstance(ConfigError("x"), ValueError)


def test_min_max_bytes_suggestion_is_sufficient() -> None:
    with pytest.raises(ConfigError) as info:
        D.normalize_data_config({"max_bytes": 100}, seq_len=64)
    need = int(str(info.value).split("max_bytes >= ")[1].split()[0])
    D.normalize_data_config({"max_bytes": need}, seq_len=64)
    with pytest.raises(ConfigError):
        D.normalize_data_config({"max_bytes": need - 1}, seq_len=64)


def test_default_config_is_complete() -> None:
    cfg = D.normalize_data_config(None, seq_len=64)
    assert cfg == D.normalize_data_config(D.DEFAULT_DATA_CONFIG, seq_len=64)
    assert cfg["source"] == "embedded" and cfg["domains"] == ["prose", "code", "science"]
    assert cfg["hub"]["prose"]["path"] == "wikitext" and cfg["hub"]["prose"]["field"] == "text"
    assert set(D.DEFAULT_DATA_CONFIG) == {"source", "domains", "max_bytes", "valid_fraction", "test_fraction",
                                          "local", "hub", "synthetic"}


# ---------------------------------------------------------------------------------- local


def test_local_root_precedence_and_missing_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_data_root_env: None) -> None:
    for name in ("cli", "env", "params"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "doc.txt").write_text("".join(f"{name} text line {i}\n\n" for i in range(400)), encoding="utf-8")
    cfg = {"source": "local", "domains": ["prose"], "max_bytes": 4000, "valid_fraction": 0.2, "test_fraction": 0.2,
           "local": {"root": str(tmp_path / "params"), "folders": {"prose": "doc.txt"}, "chunk_bytes": 64}}

    def first_word(out: Path) -> str:
        return (out / "prose/train.bin").read_bytes().split()[0].decode()

    D.prepare(cfg, tmp_path / "o1", seq_len=16)
    assert first_word(tmp_path / "o1") == "params"
    monkeypatch.setenv(D.DATA_ROOT_ENV, str(tmp_path / "env"))
    D.prepare(cfg, tmp_path / "o2", seq_len=16)
    assert first_word(tmp_path / "o2") == "env"
    D.prepare(cfg, tmp_path / "o3", seq_len=16, data_root=tmp_path / "cli")
    assert first_word(tmp_path / "o3") == "cli"
    m = D.load_manifest(tmp_path / "o3")
    assert str(tmp_path) not in json.dumps(m)  # no machine-specific root in the manifest
    assert m["domains"]["prose"]["origin"]["layout"].startswith("single file")
    monkeypatch.delenv(D.DATA_ROOT_ENV)
    cfg["local"]["root"] = None
    with pytest.raises(DataError, match=r"--data-root.*K1_DATA_ROOT.*data\.local\.root"):
        D.prepare(cfg, tmp_path / "o4", seq_len=16)


def test_local_errors_name_the_domain_and_key(tmp_path: Path, no_data_root_env: None) -> None:
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    (tmp_path / "half").mkdir()
    (tmp_path / "half/train.txt").write_text("some text\n", encoding="utf-8")
    base = {"source": "local", "domains": ["code"], "max_bytes": 4000}
    with pytest.raises(DataError, match=r"domain 'code'.*data\.local\.folders\.code.*'nope'"):
        D.prepare({**base, "local": {"folders": {"code": "nope"}}}, tmp_path / "o", seq_len=16, data_root=tmp_path)
    with pytest.raises(DataError, match=r"domain 'code'.*empty\.txt.*is empty"):
        D.prepare({**base, "local": {"folders": {"code": "empty.txt"}}}, tmp_path / "o", seq_len=16, data_root=tmp_path)
    with pytest.raises(DataError, match=r"domain 'code'.*has train\.txt but no valid\.txt"):
        D.prepare({**base, "local": {"folders": {"code": "half"}}}, tmp_path / "o", seq_len=16, data_root=tmp_path)
    with pytest.raises(DataError, match="is not an existing folder"):
        D.prepare({**base, "local": {"folders": {"code": "x"}}}, tmp_path / "o", seq_len=16, data_root=tmp_path / "missing")
    (tmp_path / "tiny.txt").write_text("just a few words\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"domain 'code': the (train|valid|test) split holds only"):
        D.prepare({**base, "local": {"folders": {"code": "tiny.txt"}}}, tmp_path / "o", seq_len=16, data_root=tmp_path)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not (CORPORA / "wikitext2" / "train.txt").is_file(), reason=f"corpora not found at {CORPORA}")
def test_local_shared_corpora(tmp_path: Path, no_data_root_env: None) -> None:
    cfg = {"source": "local", "domains": ["prose", "code", "science", "fairytales"], "max_bytes": 80_000,
           "local": {"folders": {"fairytales": "fairytales"}}}
    m = D.prepare(cfg, tmp_path / "out", seq_len=64, data_root=CORPORA)
    for domain, folder in (("prose", "wikitext2"), ("code", "python_code"), ("science", "science"), ("fairytales", "fairytales")):
        d = m["domains"][domain]
        assert d["origin"]["layout"].startswith("pre-split")
        recorded = {f["path"]: f for f in d["origin"]["files"]}
        for split, name in (("train", "train.txt"), ("valid", "valid.txt"), ("test", "test.txt")):
            src = (CORPORA / folder / name).read_bytes()
            assert recorded[f"{folder}/{name}"]["sha256"] == hashlib.sha256(src).hexdigest()
            assert all(i.startswith(f"{folder}/{name}#") for i in d["splits"][split]["doc_ids"])
            blob = (tmp_path / "out" / domain / f"{split}.bin").read_bytes()
            assert blob[:200].rstrip() in src  # the split's text comes from the same split file
            assert d["splits"][split]["bytes"] >= 0.9 * d["splits"][split]["budget"]
    bpb = cross_domain_unigram_bpb(tmp_path / "out")
    for col in bpb.columns:
        assert bpb[col].idxmin() == col


# ------------------------------------------------------------------------------------ hub


def _go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)


def test_hub_unreachable_is_a_clear_error_without_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    _go_offline(monkeypatch)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")  # an empty cache
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        D.prepare({"source": "hub", "domains": ["prose"]}, tmp_path / "out", seq_len=64)
    assert time.perf_counter() - start < 15
    msg = str(info.value)
    for part in ("'wikitext'", "domain 'prose'", "offline", "data.source: embedded", "data.source: local", "Nothing was substituted"):
        assert part in msg, msg
    assert not (tmp_path / "out").exists()


def test_hub_path_loads_a_dataset_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    _go_offline(monkeypatch)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    lines = [f"Sentence number {i} of a small corpus about rivers and hills." + ("\n" if i % 4 == 3 else "")
             for i in range(600)]
    (folder / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = {"source": "hub", "domains": ["rivers"], "max_bytes": 8000, "valid_fraction": 0.2, "test_fraction": 0.2,
           "hub": {"rivers": {"path": str(folder), "split": "train", "field": "text", "chunk_bytes": 256}}}
    m = D.prepare(cfg, tmp_path / "out", seq_len=32)
    origin = m["domains"]["rivers"]["origin"]
    assert origin["kind"] == "hub" and origin["rows"] == 750 and origin["builder"] == "text"  # 600 + 150 blank
    assert origin["revision"] == "default branch (unpinned)"
    text = (tmp_path / "out/rivers/train.bin").read_bytes().decode()
    assert "Sentence number" in text and "rivers and hills." in text
    assert "huggingface_hub" in m["versions"]
    m2 = D.prepare({**cfg, "hub": {"rivers": {**cfg["hub"]["rivers"], "documents": "rows"}}}, tmp_path / "rows", seq_len=32)
    ids = m2["domains"]["rivers"]["splits"]["train"]["doc_ids"]
    assert len(ids) > 50 and all(i.rsplit("#", 1)[1].isdigit() for i in ids)
    with pytest.raises(ConfigError, match=r"data\.hub\.rivers\.field.*no column 'content'"):
        D.prepare({**cfg, "hub": {"rivers": {**cfg["hub"]["rivers"], "field": "content"}}}, tmp_path / "bad", seq_len=32)


# ------------------------------------------------------------------------- CLI, atomicity


def test_cli_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": data_cfg(), "model": {"max_seq_len": SEQ}}), encoding="utf-8")
    assert k1_main(["prepare", "--params", str(params), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "alpha" in out and "train bytes" in out and "unigram" in out
    params.write_text(yaml.safe_dump({"data": data_cfg(source="nope"), "model": {"max_seq_len": SEQ}}), encoding="utf-8")
    assert k1_main(["prepare", "--params", str(params), "--out", str(tmp_path / "out2")]) == 2
    assert "data.source" in capsys.readouterr().err
    params.write_text(yaml.safe_dump({"data": data_cfg()}), encoding="utf-8")
    assert k1_main(["prepare", "--params", str(params), "--out", str(tmp_path / "out2")]) == 2
    assert "model.max_seq_len" in capsys.readouterr().err


def test_prepare_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    D.prepare(data_cfg(), out, seq_len=SEQ)
    before = data_tree_bytes(out)
    real = preparation._make_splits

    def fail_on_gamma(ds: Any, domain: str, cfg: Any, window: int) -> Any:
        if domain == "gamma":
            raise KeyboardInterrupt  # interrupted half-way through
        return real(ds, domain, cfg, window)

    monkeypatch.setattr(preparation, "_make_splits", fail_on_gamma)
    with pytest.raises(KeyboardInterrupt):
        D.prepare(data_cfg(synthetic={"seed": 5}), out, seq_len=SEQ)
    assert data_tree_bytes(out) == before  # old output untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp dirs left
    monkeypatch.setattr(preparation, "_make_splits", real)
    D.prepare(data_cfg(domains=["alpha"]), out, seq_len=SEQ)  # replaces, stale domains go
    assert sorted(p.name for p in out.iterdir()) == ["alpha", "manifest.json"]
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign/notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(DataError, match="refusing to replace"):
        D.prepare(data_cfg(), tmp_path / "foreign", seq_len=SEQ)
    assert (tmp_path / "foreign/notes.txt").read_text(encoding="utf-8") == "mine"
