"""Shared test setup. The suite runs with `pytest -n 2` on 2-core machines: one torch thread per
worker avoids oversubscription (torch's spinning thread pool is very slow on a busy machine)."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub; an offline failure is instant
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
