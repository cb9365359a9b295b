"""What the agents carry (DESIGN.md §12): the bpb with every agent bypassed is the bpb of the shared weights
alone (embedding + positions -> final norm -> tied head), and runs record it after every phase."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from k1model.config import ModelConfig
from k1model.model import AgentTree
from k1model.train.outputs import agents_gain
from k1model.train.protocol import run_training

CFG = ModelConfig(branching=(2, 2), embed_dim=16, num_heads=2, hidden_dim=32, max_seq_len=8)


@pytest.mark.parametrize("run_batching, attention", [("loop", "masked"), ("batched", "masked"), ("loop", "native")])
def test_all_agents_bypassed_is_the_embedding_norm_head_model(run_batching, attention):
    from k1model.execution import native_unavailable

    if attention == "native" and native_unavailable(CFG):
        pytest.skip(f"native kernels unavailable here: {native_unavailable(CFG)}")
    model = AgentTree(CFG, runs=2, seeds=[3, 4], run_batching=run_batching, attention=attention)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 8), generator=g)
    y = torch.randint(0, 256, (2, 3, 8), generator=g)
    with torch.no_grad():
        for agent in model.agents:  # make the agents matter, so bypassing them changes the loss
            for p in agent.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
        bypassed = model.token_losses_of(x, y, bypass=range(len(model.agents)))
        tree = model.token_losses_of(x, y)
        for r, shared in enumerate(model.shared):
            h = shared.tok_emb(x[r]) + shared.pos_emb.weight[:8]
            logits = F.linear(shared.ln_f(h), shared.tok_emb.weight)
            by_hand = F.cross_entropy(logits.reshape(-1, 256), y[r].reshape(-1), reduction="none")
            torch.testing.assert_close(bypassed[r], by_hand, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(bypassed, tree)


def test_agents_gain_by_hand():
    R = [[3.0, 9.0], [3.5, 2.0]]
    shared = [[4.0, 9.5], [4.5, 2.5]]
    assert agents_gain(R, shared) == pytest.approx({"agents_gain": ((4.5 - 3.5) + (2.5 - 2.0)) / 2,
                                                    "agents_gain_own_phase": ((4.0 - 3.0) + (2.5 - 2.0)) / 2})
    assert agents_gain(R, shared[1:]) == {"agents_gain": None, "agents_gain_own_phase": None}  # resumed from old code


PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 12000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"learning_rate": 0.003},
    "train": {"batch_size": 4, "steps_per_phase": 6, "eval_interval": 3, "eval_batches": 1,
              "checkpoint_interval": 6, "sparsity_interval": 3},
    "experiment": {"variants": ["dense"], "seeds": [0]},
    "analysis": {},
}


def test_runs_record_the_shared_weights_alone_after_every_phase(prepare_data, tmp_path):
    data = prepare_data(PARAMS)
    metrics = run_training(copy.deepcopy(PARAMS), data, "dense", 0, tmp_path / "run", progress=False)
    assert np.asarray(metrics["R_shared"]).shape == np.asarray(metrics["R"]).shape == (2, 2)
    expected = agents_gain(metrics["R"], metrics["R_shared"])
    assert metrics["scalars"]["agents_gain"] == expected["agents_gain"]
    assert metrics["scalars"]["plasticity"] == pytest.approx(np.mean(np.diag(metrics["R"])))
