"""The native attention kernel (k1model/kernels): the same function and gradients as torch's attention,
deterministic, built once and cached, and a clear error (or, for `auto`, torch's kernel) where it cannot run."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from k1model import kernels
from k1model.config import ModelConfig, load_params, method_config
from k1model.errors import ConfigError
from k1model.kernels.layer_norm import add_ln_forward, ln_backward, ln_forward
from k1model.kernels.library import SOURCES, avx512_available, check, float32, library
from k1model.kernels import build
from k1model.execution import NativeKernels, default_execution, native_unavailable
from k1model.model import AgentTree
from k1model.train.step import Trainer

needs_native = pytest.mark.skipif(kernels.unavailable() is not None,
                                  reason=f"native kernel unavailable here: {kernels.unavailable()}")


def sdpa(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """torch's masked SDPA on qkv [N, T, 3D] -> [N, T, D] (the reference, in qkv's dtype)."""
    N, T, three_d = qkv.shape
    D = three_d // 3
    q, k, v = qkv.view(N, T, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    mask = torch.full((T, T), float("-inf"), dtype=qkv.dtype).triu(1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(N, T, D)


@needs_native
@pytest.mark.parametrize("N,T,heads,width", [(16, 64, 4, 16), (3, 5, 2, 8), (2, 17, 3, 32), (2, 64, 2, 64),
                                              (1, 1, 1, 8), (5, 33, 1, 24), (1, 130, 2, 16)])
def test_native_attention_is_the_attention_of_a_float64_reference_to_float32_rounding(N, T, heads, width):
    g = torch.Generator().manual_seed(N * 1000 + T)
    qkv = torch.randn(N, T, 3 * heads * width, generator=g).requires_grad_()
    dy = torch.randn(N, T, heads * width, generator=g)
    ref = qkv.detach().double().requires_grad_()
    expected = sdpa(ref, heads)
    expected.backward(dy.double())
    out = kernels.native_attention(qkv, heads)
    out.backward(dy)
    torch_out = sdpa(qkv.detach().requires_grad_(), heads)  # torch's own float32 error, for scale
    torch_err = (torch_out.double() - expected).abs().max().item()
    assert out.shape == (N, T, heads * width)
    assert (out.double() - expected).abs().max().item() <= max(4 * torch_err, 2e-6)
    assert torch.allclose(qkv.grad.double(), ref.grad, rtol=0, atol=1e-5)


@needs_native
def test_native_attention_is_causal_and_deterministic():
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(4, 20, 3 * 2 * 16, generator=g)
    out = kernels.native_attention(qkv, 2)
    assert torch.equal(out, kernels.native_attention(qkv.clone(), 2))  # bit for bit, run to run
    later = qkv.clone()
    later[:, 10:] = torch.randn(4, 10, 96, generator=g)  # changing positions >= 10 leaves earlier outputs alone
    assert torch.equal(kernels.native_attention(later, 2)[:, :10], out[:, :10])


@needs_native
def test_a_model_with_the_native_kernel_trains_as_one_with_torchs_kernel_to_rounding():
    params = load_params("params/default.yaml")
    cfg = params.model
    x = torch.randint(0, 256, (2, 4, 64), generator=torch.Generator().manual_seed(1))
    losses = {}
    for attention in ("masked", "native"):
        model = AgentTree(cfg, runs=2, attention=attention, seeds=[0, 1])
        trainer = Trainer(model, [method_config(params.method, "dense")] * 2, [0, 1])
        losses[attention] = [r.loss for _ in range(3) for r in trainer.train_step(x[..., :-1].contiguous(), x[..., 1:].contiguous())]
    assert losses["masked"] == pytest.approx(losses["native"], rel=1e-5)


def test_auto_means_torchs_portable_kernels_and_native_ones_only_when_asked_for():
    """`auto` never picks the C kernels (a run's numbers must not depend on the CPU or a compiler); asking for
    them where they cannot run is an error naming why."""
    assert default_execution("cpu") == ("masked", "loop") and default_execution("cuda") == ("causal", "batched")
    assert kernels.unsupported(12) and kernels.unsupported(72) and kernels.unsupported(16) is None
    odd = ModelConfig(branching=(2,), embed_dim=36, num_heads=3, hidden_dim=32, max_seq_len=16)  # head width 12
    assert "multiple of 8" in native_unavailable(odd)
    with pytest.raises(ConfigError, match="head width 12"):
        AgentTree(odd, attention="native")
    dropout = ModelConfig(branching=(2,), embed_dim=32, num_heads=2, hidden_dim=32, max_seq_len=16, dropout=0.1)
    assert "dropout" in native_unavailable(dropout)
    assert AgentTree(dropout).kernels.describe() == "torch (masked attention)"


def test_a_machine_without_a_compiler_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "no-such-compiler-k1")
    monkeypatch.setenv("K1_KERNEL_CACHE", str(tmp_path))
    if build.cpu_supported() is not None:
        pytest.skip("this CPU cannot run the kernels at all")
    with pytest.raises(build.KernelUnavailable, match="no C compiler"):
        build.load("k1native", SOURCES)
    assert not list(tmp_path.iterdir())  # nothing half-built left behind


@needs_native
def test_the_kernel_is_built_once_into_the_cache_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("K1_KERNEL_CACHE", str(tmp_path))
    build.load("k1native", SOURCES)
    built = list(tmp_path.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    stamp = built[0].stat().st_mtime_ns
    build.load("k1native", SOURCES)  # a second process (or call) loads it, does not rebuild
    assert [p.stat().st_mtime_ns for p in tmp_path.iterdir()] == [stamp]


@needs_native
def test_a_fresh_process_builds_into_an_empty_cache_and_trains(tmp_path):
    """What a new machine does: no cache, the first use builds it (about a second), then it runs."""
    code = ("import torch; from k1model import kernels; "
            "print(kernels.unavailable()); print(kernels.native_attention(torch.randn(2, 8, 48), 2).shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "K1_KERNEL_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["None", "torch.Size([2, 8, 16])"]


@needs_native
def test_the_native_block_is_the_eager_block_with_the_same_gradients():
    """The one-node block (hand-written backward) against autograd through the eager block with the native attention."""
    from k1model.model import Block

    cfg = ModelConfig(branching=(2,), embed_dim=32, num_heads=2, hidden_dim=48, max_seq_len=24)
    torch.manual_seed(3)
    block = Block(cfg)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))  # norms and biases away from 1 and 0
    x = torch.randn(5, 24, 32, requires_grad=True)
    dy = torch.randn(5, 24, 32)
    mask = torch.full((24, 24), float("-inf")).triu(1)

    def run(kind: str):
        out = block(x, mask, NativeKernels()) if kind == "native" else _eager_with_native_attention(block, x)
        out.backward(dy)
        grads = [x.grad.clone()] + [p.grad.clone() for p in block.parameters()]
        x.grad = None
        block.zero_grad(set_to_none=True)
        return out.detach(), grads

    fused, fused_grads = run("native")
    eager, eager_grads = run("eager")
    assert torch.allclose(fused, eager, rtol=0, atol=1e-5)
    for a, b in zip(fused_grads, eager_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def _eager_with_native_attention(block, x):
    y = kernels.native_attention(block.qkv(block.ln1(x)), block.num_heads)
    x = x + block.proj(y)
    return x + block.out(F.gelu(block.fc(block.ln2(x))))


@needs_native
@pytest.mark.parametrize("M,V", [(1024, 256), (7, 13), (33, 64), (5, 1)])
def test_native_cross_entropy_is_torchs_per_row_loss_and_gradient(M, V):
    g = torch.Generator().manual_seed(M + V)
    logits = (3 * torch.randn(M, V, generator=g)).requires_grad_()
    targets = torch.randint(0, V, (M,), generator=g)
    targets[::5] = -100  # not scored: loss 0, no gradient
    weights = torch.rand(M, generator=g)
    expected = F.cross_entropy(logits, targets, reduction="none")
    (expected * weights).sum().backward()
    expected_grad = logits.grad.clone()
    logits.grad = None
    got = kernels.native_cross_entropy(logits, targets)
    (got * weights).sum().backward()
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-5)
    assert torch.equal(got[::5], torch.zeros_like(got[::5])) and torch.equal(logits.grad[::5], torch.zeros(len(got[::5]), V))
    assert torch.allclose(logits.grad, expected_grad, rtol=1e-5, atol=1e-7)


@needs_native
def test_native_cross_entropy_refuses_a_target_outside_the_vocabulary():
    with pytest.raises(RuntimeError, match="bad shape or target"):
        kernels.native_cross_entropy(torch.randn(3, 8), torch.tensor([1, 8, 2]))


@needs_native
def test_the_models_native_losses_are_torchs_mean_over_scored_tokens():
    cfg = ModelConfig(branching=(2,), embed_dim=32, num_heads=2, hidden_dim=48, max_seq_len=16)
    native, masked = (AgentTree(cfg, runs=2, attention=a, seeds=[0, 1]) for a in ("native", "masked"))
    logits = torch.randn(2, 3, 16, 256)
    targets = torch.randint(0, 256, (2, 3, 16))
    targets[1, 0, :5] = -100
    assert torch.allclose(native.run_losses(logits, targets), masked.run_losses(logits, targets), rtol=1e-6)
    assert torch.allclose(native.token_losses(logits, targets), masked.token_losses(logits, targets), atol=1e-5)


@needs_native
def test_native_gelu_is_the_erf_gelu_and_its_derivative():
    """Against float64: within torch's own float32 error, and without torch's cancellation in the left tail."""
    from k1model.kernels.library import library

    lib = library()
    x = torch.cat([torch.linspace(-12, 12, 4001), torch.randn(1003)])  # 5004 values: a tail that is not a multiple of 8
    y, dx = torch.empty_like(x), torch.empty_like(x)
    dy = torch.randn_like(x)
    lib.k1_gelu_forward(x.data_ptr(), y.data_ptr(), x.numel())
    lib.k1_gelu_backward(dy.data_ptr(), x.data_ptr(), dx.data_ptr(), x.numel())
    x64 = x.double().requires_grad_()
    truth = F.gelu(x64)
    truth.backward(dy.double())
    ours, torch_own = (y.double() - truth).abs(), (F.gelu(x).double() - truth).abs()
    assert ours.max() <= max(torch_own.max().item(), 1e-6)
    assert torch.all(ours <= 3e-7 * x.abs().clamp_min(1.0))
    left = (x < -3) & (x > -5)  # Phi(x) < 1.4e-3: relative error stays small where torch's 1 + erf loses it
    rel, torch_rel = (ours / truth.abs())[left].max(), (torch_own / truth.abs())[left].max()
    assert rel < 2e-3 and rel < torch_rel / 10
    assert torch.allclose(dx.double(), x64.grad, rtol=0, atol=2e-6)


@needs_native
@pytest.mark.parametrize("rows,D", [(1024, 64), (7, 13), (3, 128)])
def test_native_layer_norm_is_torchs_with_the_same_gradients(rows, D):
    g = torch.Generator().manual_seed(rows + D)
    x = (2 * torch.randn(rows, D, generator=g) + 1).requires_grad_()
    w, b = torch.randn(D, generator=g).requires_grad_(), torch.randn(D, generator=g).requires_grad_()
    dy = torch.randn(rows, D, generator=g)
    x64, w64, b64 = (t.detach().double().requires_grad_() for t in (x, w, b))
    F.layer_norm(x64, (D,), w64, b64).backward(dy.double())
    out = kernels.native_layer_norm(x, w, b)
    out.backward(dy)
    assert torch.allclose(out.double(), F.layer_norm(x64, (D,), w64, b64), rtol=0, atol=2e-6)
    for got, want in ((x.grad, x64.grad), (w.grad, w64.grad), (b.grad, b64.grad)):
        assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-4)


@needs_native
def test_the_native_kernels_refuse_other_dtypes():
    """The kernels read raw float32 memory: a bf16 tensor (bf16 autocast) is refused before any pointer is passed."""
    cfg = ModelConfig(branching=(2,), embed_dim=32, num_heads=2, hidden_dim=48, max_seq_len=16)
    model = AgentTree(cfg, attention="native", seeds=[0])
    x = torch.randint(0, 256, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="float32"):
        model(x, x)
    assert "bf16" in native_unavailable(cfg, "cpu", "bf16")


def test_asking_for_the_native_kernels_where_they_cannot_run_is_a_clear_error(prepare_data, tmp_path):
    from k1model.train.protocol import RunGroup, run_specs

    params = {"data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 6000,
                       "valid_fraction": 0.1, "test_fraction": 0.1},
              "model": {"branching": [2], "embed_dim": 32, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
              "train": {"batch_size": 2, "steps_per_phase": 2, "attention": "native", "precision": "bf16"},
              "experiment": {"variants": ["dense"], "seeds": [0]}, "method": {}, "analysis": {}}
    data = prepare_data(params)
    with pytest.raises(ConfigError, match="bf16"):
        RunGroup(params, data, run_specs(load_params(params), ["dense"], [0], tmp_path / "run"))
    params["model"].update(embed_dim=36, num_heads=3)  # head width 12
    params["train"]["precision"] = "fp32"
    with pytest.raises(ConfigError, match="head width 12"):
        RunGroup(params, prepare_data(params), run_specs(load_params(params), ["dense"], [0], tmp_path / "run"))

    # auto: torch's kernels, whatever the model
    params["train"]["attention"] = "auto"
    group = RunGroup(params, prepare_data(params), run_specs(load_params(params), ["dense"], [0], tmp_path / "run"))
    assert group.attention == "masked"


@needs_native
@pytest.mark.parametrize("rows,D", [(130, 64), (7, 13), (64, 8)])
def test_the_fused_bias_and_residual_kernels_are_the_unfused_ops(rows, D):
    """What the block fuses: bias + residual before the second norm, the output's bias + residual, the
    column sums (bias gradients, in blocks of 64 rows) and the residual joining the norm's backward."""
    from k1model.kernels.layer_norm import add_ln_forward, ln_backward, ln_forward
    from k1model.kernels.library import library

    lib = library()
    g = torch.Generator().manual_seed(rows * D)
    a, resid, dy, dres = (torch.randn(rows, D, generator=g) for _ in range(4))
    bias, w, b = (torch.randn(D, generator=g) for _ in range(3))
    x = a.clone()
    y, mean, rstd = add_ln_forward(x, resid, bias, w, b)
    assert torch.equal(x, (a + bias) + resid)  # the same two roundings as the unfused adds
    y_ref, mean_ref, rstd_ref = ln_forward(x.clone(), w, b)
    assert torch.equal(y, y_ref) and torch.equal(mean, mean_ref) and torch.equal(rstd, rstd_ref)
    out = a.clone()
    lib.k1_add_bias_residual(out.data_ptr(), resid.data_ptr(), bias.data_ptr(), rows, D)
    assert torch.equal(out, (a + bias) + resid)
    sums = torch.empty(D)
    assert lib.k1_column_sums(a.data_ptr(), sums.data_ptr(), rows, D) == 0
    assert torch.allclose(sums.double(), a.double().sum(0), rtol=0, atol=1e-5 * rows ** 0.5)
    dx, dw, db, none = ln_backward(dy, x, mean, rstd, w)
    dx_fused, dw_fused, db_fused, colsum = ln_backward(dy.clone(), x, mean, rstd, w, resid=dres, column_sums=True)
    assert none is None and torch.equal(dw, dw_fused) and torch.equal(db, db_fused)
    assert torch.equal(dx_fused, dx + dres)
    assert torch.allclose(colsum.double(), (dx + dres).double().sum(0), rtol=0, atol=1e-5 * rows ** 0.5)


@needs_native
@pytest.mark.parametrize("rows,n", [(130, 128), (3, 13)])
def test_gelu_with_its_bias_fused_is_gelu_of_the_biased_input_and_sums_the_bias_gradient(rows, n):
    from k1model.kernels.library import library

    lib = library()
    g = torch.Generator().manual_seed(rows + n)
    f0, dy = torch.randn(rows, n, generator=g), torch.randn(rows, n, generator=g)
    bias = torch.randn(n, generator=g)
    f, out = f0.clone(), torch.empty(rows, n)
    lib.k1_gelu_bias_forward(f.data_ptr(), bias.data_ptr(), out.data_ptr(), rows, n)
    assert torch.equal(f, f0 + bias)
    ref = torch.empty_like(f)
    lib.k1_gelu_forward(f.data_ptr(), ref.data_ptr(), f.numel())
    # rows of a multiple of 8: the same vector code element for element (else a row's tail is scalar code)
    assert torch.equal(out, ref) if n % 8 == 0 else torch.allclose(out, ref, rtol=0, atol=1e-6)
    dx, db = dy.clone(), torch.empty(n)
    assert lib.k1_gelu_bias_backward(dx.data_ptr(), f.data_ptr(), dx.data_ptr(), db.data_ptr(), rows, n) == 0
    dx_ref = torch.empty_like(dy)
    lib.k1_gelu_backward(dy.data_ptr(), f.data_ptr(), dx_ref.data_ptr(), dy.numel())
    if n % 8 == 0:
        assert torch.equal(dx, dx_ref)
    assert torch.allclose(dx, dx_ref, rtol=0, atol=1e-6)
    assert torch.allclose(db.double(), dx.double().sum(0), rtol=0, atol=1e-5 * rows ** 0.5)


@needs_native
def test_attention_with_the_qkv_bias_fused_is_attention_of_the_biased_input_and_sums_its_gradient():
    from k1model.kernels.library import library

    lib = library()
    N, T, H, hd = 3, 70, 2, 16
    g = torch.Generator().manual_seed(5)
    qkv0, dy = torch.randn(N, T, 3 * H * hd, generator=g), torch.randn(N, T, H * hd, generator=g)
    bias = torch.randn(3 * H * hd, generator=g)
    qkv, y, lse = qkv0.clone(), torch.empty(N, T, H * hd), torch.empty(N, H, T)
    assert lib.k1_attention_forward(qkv.data_ptr(), bias.data_ptr(), y.data_ptr(), lse.data_ptr(), N, T, H, hd,
                                    hd ** -0.5) == 0
    assert torch.equal(qkv, qkv0 + bias)
    assert torch.equal(y, kernels.native_attention(qkv0 + bias, H))
    dqkv, db = torch.empty_like(qkv), torch.empty(3 * H * hd)
    assert lib.k1_attention_backward(qkv.data_ptr(), y.data_ptr(), lse.data_ptr(), dy.data_ptr(), dqkv.data_ptr(),
                                     db.data_ptr(), N, T, H, hd, hd ** -0.5) == 0
    qkv_ref = (qkv0 + bias).requires_grad_()
    kernels.native_attention(qkv_ref, H).backward(dy)
    assert torch.equal(dqkv, qkv_ref.grad)
    assert torch.allclose(db.double(), dqkv.double().sum((0, 1)), rtol=0, atol=1e-5 * (N * T) ** 0.5)


# --------------------------------------------------------------------------- the block in C (block.c)
def _gemm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b by the native gemm (gemm.c): a contiguous or the transpose of a contiguous matrix; b made row-major."""
    a_t = not a.is_contiguous()
    if a_t:
        assert a.t().is_contiguous()
    b = b.contiguous()
    out = a.new_empty(a.shape[0], b.shape[1])
    assert library().k1_gemm(a.data_ptr(), int(a_t), a.shape[0] if a_t else a.shape[1], b.data_ptr(), b.shape[1],
                             out.data_ptr(), b.shape[1], a.shape[0], b.shape[1], a.shape[1]) == 0
    return out


class _BlockOpByOp(torch.autograd.Function):
    """The block as the native kernels called one by one from Python (what the C block does in one call)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, heads: int, *w: torch.Tensor) -> torch.Tensor:
        ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, out_w, out_b = w
        N, T, D = x.shape
        hd = D // heads
        x2 = x.reshape(N * T, D)
        lib = library()
        h1, mean1, rstd1 = ln_forward(x2, ln1_w, ln1_b)
        qkv = _gemm(h1, qkv_w.t())  # the biases are added by the kernels that next read each product, in cache
        att = x.new_empty(N * T, D)
        lse = x.new_empty(N, heads, T)
        float32(qkv)
        check(lib.k1_attention_forward(qkv.data_ptr(), qkv_b.data_ptr(), att.data_ptr(), lse.data_ptr(), N, T,
                                       heads, hd, hd ** -0.5), "attention")
        x1 = _gemm(att, proj_w.t())
        h2, mean2, rstd2 = add_ln_forward(x1, x2, proj_b, ln2_w, ln2_b)  # x1 <- x1 + proj_b + x
        f = _gemm(h2, fc_w.t())
        g = torch.empty_like(f)
        float32(f)
        lib.k1_gelu_bias_forward(f.data_ptr(), fc_b.data_ptr(), g.data_ptr(), f.shape[0], f.shape[1])
        out = _gemm(g, out_w.t())
        float32(out)
        lib.k1_add_bias_residual(out.data_ptr(), x1.data_ptr(), out_b.data_ptr(), N * T, D)
        ctx.save_for_backward(x2, h1, mean1, rstd1, qkv, att, lse, x1, h2, mean2, rstd2, f, g, *w)
        ctx.heads = heads
        return out.view(N, T, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x2, h1, mean1, rstd1, qkv, att, lse, x1, h2, mean2, rstd2, f, g, *w = ctx.saved_tensors
        ln1_w, _, qkv_w, _, proj_w, _, ln2_w, _, fc_w, _, out_w, _ = w
        NT, D = x2.shape
        N, heads, T = lse.shape
        hd = D // heads
        dx1 = grad.reshape(NT, D).contiguous()
        lib = library()
        # MLP: out = x1 + gelu(ln2(x1) fc^T + fc_b) out^T + out_b
        d_out_w = _gemm(dx1.t(), g)
        d_out_b = dx1.new_empty(D)
        float32(dx1)
        check(lib.k1_column_sums(dx1.data_ptr(), d_out_b.data_ptr(), NT, D), "column sums")
        dg = _gemm(dx1, out_w)
        d_fc_b = dg.new_empty(dg.shape[1])
        float32(dg, f)
        check(lib.k1_gelu_bias_backward(dg.data_ptr(), f.data_ptr(), dg.data_ptr(), d_fc_b.data_ptr(), NT,
                                        dg.shape[1]), "gelu")  # in place: dg becomes df
        df = dg
        d_fc_w = _gemm(df.t(), h2)
        dh2 = _gemm(df, fc_w)
        # the residual's gradient joins here; its column sums are proj_b's gradient
        dx1, d_ln2_w, d_ln2_b, d_proj_b = ln_backward(dh2, x1, mean2, rstd2, ln2_w, out=dh2, resid=dx1,
                                                      column_sums=True)
        # attention: x1 = x + attention(ln1(x) qkv^T + qkv_b) proj^T + proj_b
        d_proj_w = _gemm(dx1.t(), att)
        datt = _gemm(dx1, proj_w)
        dqkv = torch.empty_like(qkv)
        d_qkv_b = qkv.new_empty(qkv.shape[1])
        float32(datt)
        check(lib.k1_attention_backward(qkv.data_ptr(), att.data_ptr(), lse.data_ptr(), datt.data_ptr(),
                                        dqkv.data_ptr(), d_qkv_b.data_ptr(), N, T, heads, hd, hd ** -0.5),
              "attention")
        d_qkv_w = _gemm(dqkv.t(), h1)
        dh1 = _gemm(dqkv, qkv_w)
        dx, d_ln1_w, d_ln1_b, _ = ln_backward(dh1, x2, mean1, rstd1, ln1_w, out=dh1, resid=dx1)
        return (dx.view(N, T, D), None, d_ln1_w, d_ln1_b, d_qkv_w, d_qkv_b, d_proj_w, d_proj_b, d_ln2_w, d_ln2_b,
                d_fc_w, d_fc_b, d_out_w, d_out_b)


@needs_native
@pytest.mark.parametrize("N,T,D,heads,hidden", [(16, 64, 64, 4, 128), (3, 37, 64, 4, 128), (1, 1, 64, 4, 128),
                                                (2, 5, 32, 2, 48), (4, 24, 24, 3, 40)])
def test_the_c_block_is_its_kernels_called_one_by_one_bit_for_bit(N, T, D, heads, hidden):
    """block.c transposes the weights, keeps its temporaries in a workspace and recomputes (not keeps) the
    norms' and GELU's outputs: output and every gradient must be the op-by-op block's exactly."""
    from k1model.kernels.block import _NativeBlock, _Pointers
    from k1model.model import BLOCK_TENSORS, Block

    cfg = ModelConfig(branching=(2,), embed_dim=D, num_heads=heads, hidden_dim=hidden, max_seq_len=max(T, 2))
    torch.manual_seed(N * 100 + T)
    block = Block(cfg)
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, dy = torch.randn(N, T, D), torch.randn(N, T, D)
    tensors = [block.get_parameter(name) for name in BLOCK_TENSORS]
    results = []
    for run in (lambda x, w: _NativeBlock.apply(x, heads, _Pointers(*[t.data_ptr() for t in w]), *w),
                lambda x, w: _BlockOpByOp.apply(x, heads, *w)):
        xg = x.clone().requires_grad_()
        w = [p.detach().clone().requires_grad_() for p in tensors]
        out = run(xg, w)
        out.backward(dy)
        results.append([out.detach(), xg.grad] + [t.grad for t in w])
    for name, a, b in zip(["out", "dx", *BLOCK_TENSORS], *results):
        assert torch.equal(a, b), name


@needs_native
def test_the_c_block_without_gradients_is_the_same_forward_and_refuses_weights_changed_before_its_backward():
    from k1model.model import Block

    cfg = ModelConfig(branching=(2,), embed_dim=32, num_heads=2, hidden_dim=48, max_seq_len=16)
    block = Block(cfg)
    mask = torch.full((16, 16), float("-inf")).triu(1)
    x = torch.randn(3, 16, 32)
    with torch.no_grad():
        quick = block(x, mask, NativeKernels())  # no autograd node at all
    out = block(x, mask, NativeKernels())
    assert out.grad_fn is not None and torch.equal(quick, out)
    with torch.no_grad():
        block.fc.weight.mul_(2.0)  # an in-place change the backward would not see
    with pytest.raises(RuntimeError, match="modified in place between its forward and its backward"):
        out.sum().backward()
    shuffled = list(block.parameters())  # registration order (ln1, ln2, qkv, ...), not BLOCK_TENSORS order
    with pytest.raises(ValueError, match="BLOCK_TENSORS order"):
        kernels.native_block(x, 2, shuffled)


@needs_native
@pytest.mark.parametrize("rows,D", [(130, 64), (7, 13)])
def test_the_recomputed_norm_and_gelu_outputs_are_the_forwards_bit_for_bit(rows, D):
    from k1model.kernels.layer_norm import ln_forward
    from k1model.kernels.library import library

    lib = library()
    x = 3 * torch.randn(rows, D) + 1
    w, b = torch.randn(D), torch.randn(D)
    y, mean, rstd = ln_forward(x, w, b)
    again = torch.empty_like(y)
    lib.k1_layer_norm_apply(x.data_ptr(), mean.data_ptr(), rstd.data_ptr(), w.data_ptr(), b.data_ptr(),
                            again.data_ptr(), rows, D)
    assert torch.equal(again, y)
    f, fb = 3 * torch.randn(rows, D), torch.randn(D)
    g = torch.empty_like(f)
    lib.k1_gelu_bias_forward(f.data_ptr(), fb.data_ptr(), g.data_ptr(), rows, D)  # f <- f + fb
    dy, dx, db, g_again = torch.randn(rows, D), torch.empty(rows, D), torch.empty(D), torch.empty(rows, D)
    assert lib.k1_gelu_bias_backward_output(dy.data_ptr(), f.data_ptr(), dx.data_ptr(), db.data_ptr(),
                                            g_again.data_ptr(), rows, D) == 0
    assert torch.equal(g_again, g)


@needs_native
@pytest.mark.parametrize("M,K,N", [(1024, 64, 192), (7, 300, 20), (1, 1, 1), (13, 5, 8), (64, 1024, 128), (6, 0, 3)])
def test_gemm_is_the_product_to_float32_rounding_and_the_same_bits_however_its_operands_lie(M, K, N):
    g = torch.Generator().manual_seed(M + K + N)
    a, b = torch.randn(M, K, generator=g), torch.randn(K, N, generator=g)
    got = _gemm(a, b)
    assert torch.allclose(got.double(), a.double() @ b.double(), rtol=1e-5, atol=1e-5 * max(1, K) ** 0.5)
    assert torch.equal(_gemm(a.t().contiguous().t(), b), got)  # A stored transposed: the same chains
    wide = torch.cat([b, torch.randn(K, 16, generator=g)], 1)  # a narrow last panel vs a full one
    assert torch.equal(_gemm(a, wide)[:, :N], got)
    assert torch.equal(_gemm(a, b), got)  # deterministic


needs_avx512 = pytest.mark.skipif(not avx512_available(), reason="no AVX-512 on this CPU: the kernels run their AVX2 paths only")


@pytest.fixture
def vector_paths():
    """Set which paths the kernels run (1: AVX-512, 0: AVX2) for one test; the process's choice is restored after."""
    lib = library()
    before = lib.k1_wide(-1)
    yield lambda wide: lib.k1_wide(int(wide))
    lib.k1_wide(before)


def _on_both_paths(vector_paths, compute):
    """compute() under the AVX2 paths, then under the AVX-512 paths: (narrow, wide), each a list of tensors."""
    out = []
    for wide in (False, True):
        assert vector_paths(wide) == int(wide)
        out.append([t.clone() for t in compute()])
    return out


@needs_avx512
@pytest.mark.parametrize("M,K,N", [(1024, 64, 192), (64, 1024, 128), (17, 513, 33), (100, 257, 48), (9, 3, 64),
                                   (8, 1, 31), (1, 1, 1), (6, 0, 40)])
def test_gemm_gives_the_same_bits_with_avx512_tiles_as_with_avx2_tiles(vector_paths, M, K, N):
    """Every output element is the same chain of fused multiply-adds, whatever the vector width: so a machine with
    AVX-512 computes what one with AVX2 only does (k-blocks, narrow last panels and transposed operands included)."""
    g = torch.Generator().manual_seed(M * 7 + K + N)
    a, b = torch.randn(M, K, generator=g), torch.randn(K, N, generator=g)
    for left in (a, a.t().contiguous().t()):
        narrow, wide = _on_both_paths(vector_paths, lambda: [_gemm(left, b)])
        assert torch.equal(wide[0], narrow[0])


def _awkward(g: torch.Generator, *shape: int, scale: float = 3.0) -> torch.Tensor:
    """Random values with the inputs where elementwise code differs if it differs at all: signed zeros, the
    exponential's clamp, GELU's far tails."""
    x = torch.randn(*shape, generator=g) * scale
    flat = x.view(-1)
    special = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 9.0, -9.0, 30.0, -30.0, 100.0, -100.0])
    flat[:min(len(special), flat.numel())] = special[:flat.numel()]
    return x


@needs_avx512
@pytest.mark.parametrize("rows,n", [(130, 128), (3, 13), (5, 24), (2, 40)])
def test_gelu_gives_the_same_bits_on_its_avx512_path(vector_paths, rows, n):
    """16 lanes (wide.h's exp512, the same erfc and the same choice by the sign bit) then 8, then scalar tails."""
    lib = library()
    g = torch.Generator().manual_seed(rows * n)
    f0, dy, bias = _awkward(g, rows, n), torch.randn(rows, n, generator=g), torch.randn(n, generator=g)

    def compute():
        f, out, dx, db, again = f0.clone(), torch.empty(rows, n), torch.empty(rows, n), torch.empty(n), torch.empty(rows, n)
        lib.k1_gelu_bias_forward(f.data_ptr(), bias.data_ptr(), out.data_ptr(), rows, n)
        assert lib.k1_gelu_bias_backward_output(dy.data_ptr(), f.data_ptr(), dx.data_ptr(), db.data_ptr(),
                                                again.data_ptr(), rows, n) == 0
        return [f, out, dx, db, again]

    narrow, wide = _on_both_paths(vector_paths, compute)
    assert all(torch.equal(u, v) for u, v in zip(narrow, wide))
    assert torch.equal(wide[1], wide[4])  # the backward's recomputed output is the forward's


@needs_avx512
@pytest.mark.parametrize("N,T,heads,width", [(16, 64, 4, 16), (3, 5, 2, 8), (2, 17, 3, 32), (1, 1, 1, 8),
                                              (2, 33, 1, 24), (1, 130, 2, 16), (2, 20, 2, 64)])
def test_attention_gives_the_same_bits_on_its_avx512_path(vector_paths, N, T, heads, width):
    """The softmax's maxima and exponentials 16 lanes wide, its sums in the 8-lane order: output, log-sum-exp,
    and every gradient identical (large scores included, where the exponential clamps)."""
    lib = library()
    g = torch.Generator().manual_seed(N * 100 + T)
    qkv0, dy = _awkward(g, N, T, 3 * heads * width, scale=4.0), torch.randn(N, T, heads * width, generator=g)
    bias = torch.randn(3 * heads * width, generator=g)

    def compute():
        qkv, y, lse = qkv0.clone(), torch.empty(N, T, heads * width), torch.empty(N, heads, T)
        assert lib.k1_attention_forward(qkv.data_ptr(), bias.data_ptr(), y.data_ptr(), lse.data_ptr(), N, T, heads,
                                        width, width ** -0.5) == 0
        dqkv, db = torch.empty_like(qkv), torch.empty(3 * heads * width)
        assert lib.k1_attention_backward(qkv.data_ptr(), y.data_ptr(), lse.data_ptr(), dy.data_ptr(),
                                         dqkv.data_ptr(), db.data_ptr(), N, T, heads, width, width ** -0.5) == 0
        return [qkv, y, lse, dqkv, db]

    narrow, wide = _on_both_paths(vector_paths, compute)
    assert all(torch.equal(u, v) for u, v in zip(narrow, wide))
    assert torch.isfinite(wide[3]).all()


@needs_avx512
@pytest.mark.parametrize("M,V", [(1024, 256), (7, 13), (33, 64), (5, 1), (9, 24), (4, 40)])
def test_cross_entropy_gives_the_same_bits_on_its_avx512_path(vector_paths, M, V):
    g = torch.Generator().manual_seed(M + V)
    logits, targets = _awkward(g, M, V, scale=5.0), torch.randint(0, V, (M,), generator=g)
    targets[0] = -100  # a row that is not scored
    grad = torch.randn(M, generator=g)

    def compute():
        x = logits.clone().requires_grad_()
        losses = kernels.native_cross_entropy(x, targets)
        losses.backward(grad)
        return [losses.detach(), x.grad]

    narrow, wide = _on_both_paths(vector_paths, compute)
    assert all(torch.equal(u, v) for u, v in zip(narrow, wide))


@needs_avx512
def test_a_training_step_is_the_same_bits_on_the_avx512_and_avx2_paths(vector_paths):
    """The whole native step (the C block forward and backward, every product through gemm.c, the elementwise
    loops, the cross-entropy) at the default model's widths: the loss and every gradient identical."""
    cfg = load_params("params/default.yaml").model

    def compute():
        torch.manual_seed(0)
        model = AgentTree(cfg, runs=1, attention="native", seeds=[0])
        x = torch.randint(0, 256, (1, 4, cfg.max_seq_len), generator=torch.Generator().manual_seed(1))
        logits = model(x)[0]
        loss = model.token_losses(logits, x).mean()
        loss.backward()
        return [loss.detach()] + [p.grad for p in model.parameters() if p.grad is not None]

    narrow, wide = _on_both_paths(vector_paths, compute)
    assert len(narrow) > 10
    assert all(torch.equal(u, v) for u, v in zip(narrow, wide))


@needs_native
def test_k1_native_avx2_in_the_environment_forces_the_avx2_paths():
    code = "from k1model.kernels.library import library; print(library().k1_wide(-1))"
    env = {**os.environ, "K1_NATIVE_AVX2": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


@needs_native
@pytest.mark.parametrize("rows,cols", [(192, 64), (64, 128), (13, 7), (8, 8), (9, 17), (1, 5), (16, 3)])
def test_the_weight_transpose_is_the_transpose(rows, cols):
    """block.c transposes the weights (8 x 8 register blocks, edges element by element) before its products."""
    x = torch.randn(rows, cols, generator=torch.Generator().manual_seed(rows * cols))
    out = torch.full((cols, rows), float("nan"))
    library().k1_transpose(x.data_ptr(), rows, cols, out.data_ptr())
    assert torch.equal(out, x.t())


@needs_avx512
def test_the_vector_paths_benchmark_runs_and_finds_the_same_bits(tmp_path):
    out = tmp_path / "paths.json"
    done = subprocess.run([sys.executable, "benchmarks/vector_paths.py", "--params", "params/default.yaml",
                           "--repeats", "1", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {r["kernel"] for r in rows} >= {"attention forward", "attention backward", "block backward (all of it)"}
    assert all(r["same_bits"] and r["avx2_median_s"] > 0 and r["avx512_median_s"] > 0 for r in rows)


@needs_native
def test_a_run_names_its_kernels_and_runs_the_native_ones_only_when_asked(prepare_data, tmp_path):
    """Issue 28: `auto` trains with torch's kernels; `k1 train --attention native` with the C kernels; each run's
    metrics.json says which, and the two are different runs (config hash)."""
    import json

    import yaml

    from k1model.cli import main as k1

    params = {"data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 6000,
                       "valid_fraction": 0.1, "test_fraction": 0.1},
              "model": {"branching": [2], "embed_dim": 32, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
              "train": {"batch_size": 2, "steps_per_phase": 2, "eval_interval": 2, "eval_batches": 1},
              "experiment": {"variants": ["dense"], "seeds": [0]}, "method": {}, "analysis": {}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    common = ["train", "--params", str(tmp_path / "p.yaml"), "--data", str(prepare_data(params)), "--variant", "dense",
              "--seed", "0"]
    assert k1([*common, "--out", str(tmp_path / "auto")]) == 0
    assert k1([*common, "--out", str(tmp_path / "native"), "--attention", "native"]) == 0
    auto, native = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("auto", "native"))
    assert (auto["attention"], auto["kernels"]) == ("masked", "torch (masked attention)")
    assert native["attention"] == "native" and native["kernels"].startswith("native C kernels (")
    assert auto["config_hash"] != native["config_hash"]
