"""Dense layers on oneDNN (``cpu_gemm: onednn``, dos_bench/models/gemm.py): the same function
and gradients as ``F.linear`` to fp32 rounding, on the product the setting names."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from dos_bench.io import ConfigError
from dos_bench.models import gemm, native

pytestmark = pytest.mark.skipif(not gemm.onednn_available(), reason="torch built without oneDNN")


@pytest.fixture
def backend():
    """Restore the process-wide setting after the test."""
    before = gemm.cpu_gemm()
    yield gemm.set_cpu_gemm
    gemm.set_cpu_gemm(before)


def _ops(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def _reference(x, w, b, g):
    """Values and gradients of ``x w^T + b`` in float64."""
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    b64 = None if b is None else b.detach().double().requires_grad_()
    y = F.linear(x64, w64, b64)
    y.backward(g.double())
    return y, x64.grad, w64.grad, None if b64 is None else b64.grad


CASES = {
    # name: (x shape, weight (out, in), bias, how x / weight are laid out)
    "2d": ((700, 96), (80, 96), True, "plain"),
    "3d": ((6, 50, 64), (128, 64), True, "plain"),
    "no bias": ((3000, 130), (140, 130), False, "plain"),
    "x transposed view": ((900, 64), (48, 64), True, "x.T"),
    "weight column slice": ((400, 64), (96, 64), True, "w[:, :in]"),
    "weight transposed view": ((500, 72), (72, 72), True, "w.T"),
    # weight gradient over several row blocks, the last one partial (1024-row blocks)
    "long": ((2 * gemm._WEIGHT_GRAD_ROWS + 37, 160), (144, 160), True, "plain"),
    # a side narrower than _NARROW: the weight gradient stays on torch
    "narrow": ((4000, 40), (160, 40), True, "plain"),
}


def _inputs(name: str):
    """Leaf tensors and the views of them passed to :func:`gemm.linear` (laid out as named)."""
    xs, ws, has_bias, layout = CASES[name]
    gen = torch.Generator().manual_seed(7)
    out, inp = ws
    if layout == "x.T":
        x_leaf = torch.randn(xs[::-1], generator=gen).requires_grad_()
        x = x_leaf.t()
    else:
        x_leaf = torch.randn(xs, generator=gen).requires_grad_()
        x = x_leaf
    if layout == "w[:, :in]":
        w_leaf = torch.randn(out, 2 * inp, generator=gen).requires_grad_()
        w = w_leaf[:, :inp]
    elif layout == "w.T":
        w_leaf = torch.randn(inp, out, generator=gen).requires_grad_()
        w = w_leaf.t()
    else:
        w_leaf = torch.randn(ws, generator=gen).requires_grad_()
        w = w_leaf
    b = torch.randn(out, generator=gen).requires_grad_() if has_bias else None
    g = torch.randn(*x.shape[:-1], out, generator=gen)
    return x_leaf, x, w_leaf, w, b, g


def _grad_of_view(leaf: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """The gradient of ``view`` read from its leaf's (transposed or column-sliced views)."""
    if view is leaf:
        return leaf.grad
    if view.data_ptr() == leaf.data_ptr() and view.stride() == leaf.stride()[::-1]:
        return leaf.grad.t()
    return leaf.grad[:, : view.shape[1]]


@pytest.mark.parametrize("name", CASES)
def test_values_and_gradients_match_float64(name: str, backend) -> None:
    backend("onednn")
    x_leaf, x, w_leaf, w, b, g = _inputs(name)
    y = gemm.linear(x, w, b)
    assert "mkldnn::_linear_pointwise" in _ops(lambda: gemm.linear(x, w, b))
    y.backward(g)
    ref, gx, gw, gb = _reference(x, w, b, g)

    def close(got: torch.Tensor, want: torch.Tensor) -> bool:
        return (got.double() - want).abs().max().item() < 1e-5 * want.abs().max().item()

    assert y.shape == ref.shape and close(y, ref)
    assert close(_grad_of_view(x_leaf, x), gx)
    assert close(_grad_of_view(w_leaf, w), gw)
    if name == "weight column slice":  # the other half of the weight is not used
        assert not w_leaf.grad[:, w.shape[1] :].any()
    if b is not None:
        assert close(b.grad, gb)


def test_the_setting_picks_the_product(backend) -> None:
    x = torch.randn(512, 256, requires_grad=True)
    layer = gemm.Linear(256, 256)

    def step() -> None:
        layer(x).sum().backward()

    backend("onednn")
    ops = _ops(step)
    assert "mkldnn::_linear_pointwise" in ops and "aten::addmm" not in ops
    backend("torch")
    ops = _ops(step)
    assert "mkldnn::_linear_pointwise" not in ops and "aten::addmm" in ops


def test_small_products_other_dtypes_and_autocast_stay_on_torch(backend) -> None:
    backend("onednn")
    layer = gemm.Linear(16, 16)
    assert "mkldnn::_linear_pointwise" not in _ops(lambda: layer(torch.randn(8, 16)))
    big = gemm.Linear(256, 256)
    x = torch.randn(256, 256)
    assert "mkldnn::_linear_pointwise" in _ops(lambda: big(x))
    assert "mkldnn::_linear_pointwise" not in _ops(lambda: big.double()(x.double()))
    big.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert "mkldnn::_linear_pointwise" not in _ops(lambda: big(x))


def test_linear_keeps_nn_linear_parameters_and_state_dict() -> None:
    ours, theirs = gemm.Linear(24, 12), torch.nn.Linear(24, 12)
    assert isinstance(ours, torch.nn.Linear)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(5000, 24)
    assert torch.allclose(ours(x), theirs(x), atol=1e-5)


def test_output_may_be_modified_in_place(backend) -> None:
    """The graph-network encoder adds into a layer's output; autograd must allow it (a view
    made inside a custom Function could not be modified in place)."""
    backend("onednn")
    x = torch.randn(600, 64, requires_grad=True)
    w = torch.randn(64, 64, requires_grad=True)
    y = gemm.linear(x, w)
    y.add_(1.0).mul_(2.0).sum().backward()
    assert torch.allclose(x.grad, 2.0 * w.sum(0).expand_as(x), atol=1e-4)


def test_double_backward_uses_differentiable_ops(backend) -> None:
    backend("onednn")
    x = torch.randn(300, 64, dtype=torch.float32, requires_grad=True)
    w = torch.randn(64, 64, requires_grad=True)
    (gx,) = torch.autograd.grad(gemm.linear(x, w).pow(2).sum(), x, create_graph=True)
    gx.sum().backward()
    x2, w2 = x.detach().requires_grad_(), w.detach().clone().requires_grad_()
    (rx,) = torch.autograd.grad(F.linear(x2, w2).pow(2).sum(), x2, create_graph=True)
    rx.sum().backward()
    assert torch.allclose(gx, rx, rtol=1e-4, atol=1e-3)
    assert torch.allclose(w.grad, w2.grad, rtol=1e-4, atol=1e-2)


TN_CASES = {
    # name: (rows, dy width (n_out), x width (n_in), leading stride of dy, product expected)
    "small": (1, 300, 260, 300, "torch"),
    "neither width a multiple of 16": (1000, 300, 260, 300, "onednn"),
    "oneDNN row blocks, last partial": (2 * gemm._WEIGHT_GRAD_ROWS + 5, 300, 260, 300, "onednn"),
    "C: dy^T x": (1000, 144, 160, 144, "c"),
    "C: (x^T dy)^T": (777, 256, 200, 256, "c"),
    # 128-row blocks of the sum with a partial last one, 400 = 66 tiles of 6 + 4 rows,
    # 416 = 6 strips of 64 + one of 32 (a partial strip)
    "C: several blocks": (2053, 400, 416, 400, "c"),
    "C: dy a column slice": (1000, 144, 160, 200, "c"),
}
_PRODUCT_OPS = {"c": "dos_bench::matmul_tn", "onednn": "mkldnn::_linear_pointwise"}


@pytest.mark.parametrize("name", TN_CASES)
def test_weight_gradient_product(name: str, backend) -> None:
    backend("onednn")
    rows, n_out, n_in, ld, product = TN_CASES[name]
    if product == "c" and native.gemm_library() is None:
        product = "onednn"  # no C compiler here: the oneDNN row blocks
    gen = torch.Generator().manual_seed(rows)
    dy = torch.randn(rows, ld, generator=gen)[:, :n_out]
    x = torch.randn(rows, n_in, generator=gen)
    ref = dy.double().t() @ x.double()
    got = gemm.matmul_tn(dy, x)
    assert got.shape == (n_out, n_in)
    ops = _ops(lambda: gemm.matmul_tn(dy, x))
    assert {op for op in _PRODUCT_OPS.values() if op in ops} == (
        {_PRODUCT_OPS[product]} if product in _PRODUCT_OPS else set()
    )
    assert (got.double() - ref).abs().max().item() < 1e-5 * ref.abs().max().item()


@pytest.mark.parametrize(("n_out", "n_in"), [(144, 160), (256, 200)])
def test_bias_gradient_with_the_weight_gradient(n_out: int, n_in: int, backend) -> None:
    """The C kernel sums ``dy``'s columns while it reads ``dy`` in place (160 wide ``x``); where
    it reads ``x`` in place instead (200 is not a multiple of 16) torch sums them."""
    backend("onednn")
    gen = torch.Generator().manual_seed(n_in)
    x = torch.randn(1500, n_in, generator=gen, requires_grad=True)
    layer = gemm.Linear(n_in, n_out)
    g = torch.randn(1500, n_out, generator=gen)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        layer(x).backward(g)
    ops = {e.key for e in prof.key_averages()}
    fused = native.gemm_library() is not None and n_in % 16 == 0
    assert ("aten::sum" not in ops) == fused
    want = g.double().sum(0)
    assert (layer.bias.grad.double() - want).abs().max().item() < 1e-5 * want.abs().max().item()


def test_weight_gradient_without_a_compiler_sums_oneDNN_row_blocks(
    backend, without_compiler
) -> None:
    backend("onednn")
    gen = torch.Generator().manual_seed(11)
    dy, x = torch.randn(1500, 144, generator=gen), torch.randn(1500, 160, generator=gen)
    assert native.gemm_library() is None
    ops = _ops(lambda: gemm.matmul_tn(dy, x))
    assert "mkldnn::_linear_pointwise" in ops and "dos_bench::matmul_tn" not in ops
    ref = dy.double().t() @ x.double()
    got = gemm.matmul_tn(dy, x)
    assert (got.double() - ref).abs().max().item() < 1e-5 * ref.abs().max().item()


def test_matmul_nt_adds_into_the_product(backend) -> None:
    gen = torch.Generator().manual_seed(3)
    x, w, add = (torch.randn(s, generator=gen) for s in ((900, 128), (256, 128), (900, 256)))
    ref = x.double() @ w.double().t() + add.double()
    for name in gemm.BACKENDS:
        backend(name)
        got = gemm.matmul_nt(x, w, add=add)
        assert (got.double() - ref).abs().max().item() < 1e-4, name


def test_mismatched_shapes_get_torchs_message(backend) -> None:
    backend("onednn")
    with pytest.raises(RuntimeError, match="cannot be multiplied"):
        gemm.linear(torch.randn(900, 64), torch.randn(48, 65))


def test_an_unknown_setting_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="cpu_gemm must be one of"):
        gemm.set_cpu_gemm("mkl")


def test_adopted_pyg_layers_keep_parameters_and_outputs(backend) -> None:
    """The UniMP encoder moves PyG TransformerConv's dense layers onto cpu_gemm: the same
    Parameters (so the same initialisation and state dict) and the same outputs."""
    from torch_geometric.nn import TransformerConv

    from dos_bench.models.encoders.unimp import _CONV_LINEARS

    backend("onednn")
    torch.manual_seed(0)
    theirs = TransformerConv(64, 32, heads=4, edge_dim=64, root_weight=True)
    torch.manual_seed(0)
    ours = TransformerConv(64, 32, heads=4, edge_dim=64, root_weight=True)
    for name in _CONV_LINEARS:
        before = getattr(ours, name).weight
        setattr(ours, name, gemm.adopt(getattr(ours, name)))
        assert isinstance(getattr(ours, name), gemm.Linear)
        assert getattr(ours, name).weight is before
    assert list(ours.state_dict()) == list(theirs.state_dict())
    g = torch.Generator().manual_seed(1)
    x, e = torch.randn(400, 64, generator=g), torch.randn(3000, 64, generator=g)
    index = torch.randint(0, 400, (2, 3000), generator=g)
    assert "mkldnn::_linear_pointwise" in _ops(lambda: ours(x, index, e))
    assert torch.allclose(ours(x, index, e), theirs(x, index, e), atol=1e-5)


def test_adopt_refuses_a_layer_without_a_weight_matrix() -> None:
    from torch_geometric.nn import Linear as PyGLinear

    with pytest.raises(TypeError, match="cannot adopt Linear"):
        gemm.adopt(PyGLinear(-1, 8))  # lazy: its weight exists only after a first call
