"""The C kernels of dos_bench.models.native against the torch path they replace (issue 14).

ALIGNN's edge-gated convolution runs on a C kernel on CPU float32 (``kernel: auto``) and on torch
otherwise (``kernel: torch``, the reference); both must give the same outputs and gradients to
float32 rounding, whatever the graph (empty targets, no edges, one thread or two), propagate NaN,
refuse bad indices, and fall back to torch where the kernel does not apply.
"""

from __future__ import annotations

import logging

import pytest
import torch

from dos_bench.models import native
from dos_bench.models.encoders.alignn import ALIGNNEncoder, EdgeGatedConv

pytestmark = pytest.mark.skipif(
    native.gated_library() is None, reason="needs a C compiler (the kernel's own tests)"
)


def _graph(n: int, n_edges: int, seed: int = 0, sort: bool = True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dst = torch.randint(0, n, (n_edges,), generator=g)
    if sort:
        dst = torch.sort(dst).values
    src = torch.randint(0, n, (n_edges,), generator=g)
    return torch.stack([src, dst])


def _run(conv: EdgeGatedConv, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor):
    h = h.clone().requires_grad_(True)
    e = e.clone().requires_grad_(True)
    conv.zero_grad(set_to_none=True)
    h_out, e_out = conv(h, e, edge_index)
    # a loss that reads both outputs non-linearly, so every gradient path is exercised
    (h_out.sin().sum() + (e_out * e_out).sum() * 0.1).backward()
    grads = {k: p.grad for k, p in conv.named_parameters() if p.grad is not None}
    return h_out.detach(), e_out.detach(), h.grad, e.grad, grads


def _pair(dim: int, update_edges: bool, seed: int = 0) -> tuple[EdgeGatedConv, EdgeGatedConv]:
    torch.manual_seed(seed)
    ref = EdgeGatedConv(dim, update_edges, kernel="torch")
    fast = EdgeGatedConv(dim, update_edges, kernel="auto")
    fast.load_state_dict(ref.state_dict())
    return ref, fast


def _assert_same(a, b, rtol: float = 2e-4, atol: float = 2e-5) -> None:
    for x, y in zip(a[:4], b[:4], strict=True):
        torch.testing.assert_close(y, x, rtol=rtol, atol=atol)
    assert a[4].keys() == b[4].keys()
    # biases followed by a BatchNorm have gradients ~0 (rounding noise): absolute tolerance
    # relative to the largest parameter gradient of the layer
    scale = max(float(g.abs().max()) for g in a[4].values())
    for k in a[4]:
        torch.testing.assert_close(b[4][k], a[4][k], rtol=rtol, atol=atol * scale)


def _uses_kernel(conv: EdgeGatedConv, h, e, edge_index) -> bool:
    return conv._native_ptr(h, e, edge_index) is not None


@pytest.mark.parametrize("update_edges", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_matches_torch(update_edges: bool, threads: int) -> None:
    n, n_edges, dim = 40, 300, 16
    edge_index = _graph(n, n_edges)
    g = torch.Generator().manual_seed(1)
    h, e = torch.randn(n, dim, generator=g), torch.randn(n_edges, dim, generator=g)
    ref, fast = _pair(dim, update_edges)
    assert _uses_kernel(fast, h, e, edge_index) and not _uses_kernel(ref, h, e, edge_index)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _assert_same(_run(ref, h, e, edge_index), _run(fast, h, e, edge_index))
    finally:
        torch.set_num_threads(old)
    # running statistics of the BatchNorms move alike
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(fast.state_dict()[k], v, rtol=1e-4, atol=1e-6)


def test_targets_without_edges_and_graphs_without_edges() -> None:
    dim = 8
    # atoms 0, 3 and 9 receive no edge: their aggregate is 0 / eps = 0
    edge_index = torch.tensor([[1, 2, 4, 5, 6], [1, 2, 2, 5, 7]])
    g = torch.Generator().manual_seed(2)
    h, e = torch.randn(10, dim, generator=g), torch.randn(5, dim, generator=g)
    ref, fast = _pair(dim, True)
    _assert_same(_run(ref, h, e, edge_index), _run(fast, h, e, edge_index))
    empty = torch.zeros(2, 0, dtype=torch.long)
    ref, fast = _pair(dim, False)
    a = _run(ref, h, torch.zeros(0, dim), empty)
    b = _run(fast, h, torch.zeros(0, dim), empty)
    _assert_same(a, b)


def test_unsorted_edges_fall_back_to_torch() -> None:
    edge_index = _graph(20, 100, sort=False)
    assert bool((edge_index[1][1:] < edge_index[1][:-1]).any())
    g = torch.Generator().manual_seed(3)
    h, e = torch.randn(20, 8, generator=g), torch.randn(100, 8, generator=g)
    ref, fast = _pair(8, True)
    assert not _uses_kernel(fast, h, e, edge_index)
    _assert_same(_run(ref, h, e, edge_index), _run(fast, h, e, edge_index))


def test_float64_and_autocast_take_the_torch_path() -> None:
    edge_index = _graph(10, 30)
    h, e = torch.randn(10, 8), torch.randn(30, 8)
    _, fast = _pair(8, True)
    assert not _uses_kernel(fast, h.double(), e.double(), edge_index)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _uses_kernel(fast, h, e, edge_index)


def test_out_of_range_index_is_refused() -> None:
    edge_index = torch.tensor([[0, 11], [0, 1]])  # source 11 of 10 atoms
    _, fast = _pair(8, True)
    with pytest.raises(IndexError, match="out of range"):
        fast(torch.randn(10, 8), torch.randn(2, 8), edge_index)


def test_nan_propagates_as_in_torch() -> None:
    edge_index = _graph(10, 40)
    h, e = torch.randn(10, 8), torch.randn(40, 8)
    e[3, 0] = float("nan")
    _, fast = _pair(8, True)
    h_out, e_out = fast(h, e, edge_index)
    assert torch.isnan(e_out[3]).any()
    assert torch.isnan(h_out).any() or torch.isnan(e_out).all()


def test_encoder_kernel_option_gives_the_same_model() -> None:
    from test_model_zoo import _batch, _structures, build_model

    model, recipe, feats = build_model("d_alignn", small=True)
    batch = _batch(_structures()[:3], recipe, feats, torch.float32)
    enc = model.encoder
    assert isinstance(enc, ALIGNNEncoder)
    torch.manual_seed(0)
    fast = enc.float().train()
    out_fast = fast(batch).node
    for conv in [*fast.line_convs, *fast.crystal_convs, *fast.gcn_convs]:
        conv.kernel = "torch"
    torch.manual_seed(0)
    out_ref = fast(batch).node
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-4, atol=1e-5)


def test_bad_kernel_value_names_the_key() -> None:
    from dos_bench.io import ConfigError

    with pytest.raises(ConfigError, match="model.encoder.kernel"):
        EdgeGatedConv(8, kernel="cuda")


def test_library_is_cached_by_source_flags_and_cpu(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DOS_BENCH_KERNEL_DIR", str(tmp_path))
    cc = native._compiler()
    assert cc is not None
    first = native._build(native._SRC, cc)
    assert first.parent == tmp_path and first.suffix == ".so"
    mtime = first.stat().st_mtime_ns
    assert native._build(native._SRC, cc) == first and first.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left


def test_editing_an_included_header_rebuilds_the_library(tmp_path, monkeypatch) -> None:
    # the kernels include csrc/vexp.h: a cached library built from an older header must not
    # be loaded after the header changes
    monkeypatch.setenv("DOS_BENCH_KERNEL_DIR", str(tmp_path / "cache"))
    src_dir = tmp_path / "csrc"
    src_dir.mkdir()
    for f in native._SRC.parent.iterdir():
        if f.suffix in (".c", ".h"):
            (src_dir / f.name).write_text(f.read_text())
    cc = native._compiler()
    assert cc is not None
    first = native._build(src_dir / native._SRC.name, cc)
    header = src_dir / "vexp.h"
    header.write_text(header.read_text() + "\n/* edited */\n")
    second = native._build(src_dir / native._SRC.name, cc)
    assert second != first and second.exists()


@pytest.mark.parametrize("scale", [1e2, 1e4])
def test_saturated_gates_match_torch(scale: float) -> None:
    # pre-activations of hundreds to tens of thousands: the sigmoid gates and the SiLU are
    # saturated (exp of below -87 is 0 in the kernel's exp, as float32's exp rounds it in torch)
    n, n_edges, dim = 30, 200, 8
    edge_index = _graph(n, n_edges, seed=3)
    g = torch.Generator().manual_seed(4)
    h, e = torch.randn(n, dim, generator=g), torch.randn(n_edges, dim, generator=g) * scale
    ref, fast = _pair(dim, True, seed=5)
    a, b = _run(ref, h, e, edge_index), _run(fast, h, e, edge_index)
    for x, y in zip(a[:4], b[:4], strict=True):
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y, x, rtol=2e-4, atol=2e-5 * scale)


def test_without_a_compiler_the_models_fall_back(without_compiler, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="dos_bench.models.native"):
        assert native.gated_library() is None
    assert ["C kernels unavailable" in r.getMessage() for r in caplog.records] == [True]
    edge_index = _graph(10, 30)
    h, e = torch.randn(10, 8), torch.randn(30, 8)
    ref, fast = _pair(8, True)
    assert not _uses_kernel(fast, h, e, edge_index)
    _assert_same(_run(ref, h, e, edge_index), _run(fast, h, e, edge_index))
