"""Shared test setup. The suite runs with `pytest -n 2` on 2-core machines: one torch thread per
worker avoids oversubscription (torch's spinning thread pool is very slow on a busy machine)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub; an offline failure is instant
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prepare_data(tmp_path_factory):
    """`prepare_data(params) -> Path`: the params' prepared data, built once per data config and
    context length in the session (modules with the same synthetic data share it)."""
    from k1model.data import prepare

    built: dict[str, Path] = {}

    def build(params: dict) -> Path:
        key = json.dumps([params["data"], params["model"]["max_seq_len"]], sort_keys=True)
        if key not in built:
            built[key] = tmp_path_factory.mktemp("data")
            prepare(params["data"], built[key], seq_len=params["model"]["max_seq_len"])
        return built[key]

    return build
