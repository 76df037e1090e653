"""Transformer-head attention kernels (issue 14).

On CPU in float32 without attention-probability dropout, :func:`attend` runs dos_bench's C
kernel (``dos_bench::attention``, ``csrc/attention.c``), which scores only the query-key pairs
a causal mask allows, in the backward too. Elsewhere — ``kernel: torch``, float64, attention
dropout in training — it runs :func:`torch.nn.functional.scaled_dot_product_attention`, whose
CPU dispatch picks the fused (flash) kernel for every mask the heads use, unless attention
dropout is on, which only its unfused ``math`` path implements on CPU. The kernels compute the
same function (values and gradients, checked against the softmax formula in float64); their
speed is measured by ``make bench`` (section ``attention``), never asserted here.
"""

from __future__ import annotations

import functools
import logging
import math

import pytest
import torch
from torch.profiler import profile

from dos_bench.io import ConfigError
from dos_bench.models import native
from dos_bench.models.heads.attention import (
    MultiHeadAttention,
    attend,
    dense_atoms,
    host_max_atoms,
)
from dos_bench.models.heads.cross_attention import CrossAttentionHead
from dos_bench.models.heads.seq_transformer import SeqTransformerHead
from dos_bench.models.model import EncoderOutput

OURS = "dos_bench::attention"
FUSED = "aten::_scaled_dot_product_flash_attention_for_cpu"
MATH = "aten::_scaled_dot_product_attention_math"

needs_kernel = pytest.mark.skipif(
    native.attention_library() is None, reason="needs a C compiler (the C kernel's own tests)"
)

HEADS = {
    "seq_transformer": functools.partial(
        SeqTransformerHead, d_model=16, n_layers=2, n_heads=2, d_ff=32
    ),
    "cross_attention": functools.partial(CrossAttentionHead, d=16, n_layers=2, n_heads=2),
}


def _encoded(counts=(3, 1, 5), dim=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    node = torch.randn(int(sum(counts)), dim, generator=g)
    return EncoderOutput(node, batch, torch.randn(len(counts), dim, generator=g))


def _kernels(fn) -> set[str]:
    with profile() as prof:
        fn()
    return {e.name for e in prof.events() if e.name in (OURS, FUSED, MATH)}


def _reference_attend(q, k, v, key_mask=None, causal=False):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    if causal:
        n = q.shape[-2]
        tri = torch.ones(n, n, dtype=torch.bool).tril()
        scores = scores.masked_fill(~tri, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def _mask(b: int, n: int) -> torch.Tensor:
    """Key padding of a batch: crystal 1 has 4 atoms, crystal 2 one, the others all ``n``."""
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 1:] = False  # a query sees at least key 0 even under the causal mask
    return mask


@pytest.mark.parametrize(
    ("masked", "causal"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_attend_on_torchs_kernels_equals_the_softmax_formula(masked, causal) -> None:
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 2, 7, 8, generator=g, dtype=torch.float64) for _ in range(3))
    key_mask = _mask(3, 7) if masked else None
    torch.testing.assert_close(
        attend(q, k, v, key_mask=key_mask, causal=causal),
        _reference_attend(q, k, v, key_mask, causal),
    )
    qf, kf, vf = q.float(), k.float(), v.float()
    fused = _kernels(lambda: attend(qf, kf, vf, key_mask=key_mask, causal=causal, kernel="torch"))
    assert fused == {FUSED}


def _heads_layout(b, h, n, d, g):
    """A ``(B, H, n, d)`` view of a ``(B, n, H, d)`` tensor: how the projections split heads."""
    return torch.randn(b, n, h, d, generator=g).transpose(1, 2).requires_grad_()


@needs_kernel
@pytest.mark.parametrize(
    ("n_q", "n_k", "masked", "causal", "d"),
    [
        (7, 7, False, False, 8),
        (70, 70, False, True, 8),  # two query blocks of the kernel, the second partial
        (130, 130, True, True, 8),  # three blocks, padding under the causal mask
        (130, 9, True, False, 8),  # cross-attention: many queries, few (padded) keys
        (5, 67, True, False, 8),
        # head widths of the micro-kernel's whole tiles (64) and of a tile, a narrow vector
        # strip and single columns (40 = 16 + 16 + 8 on AVX-512)
        (150, 150, False, True, 64),
        (70, 23, True, False, 40),
    ],
)
def test_c_kernel_equals_the_softmax_formula_values_and_gradients(n_q, n_k, masked, causal, d):
    g = torch.Generator().manual_seed(n_q + n_k)
    b, h = 3, 2
    q = _heads_layout(b, h, n_q, d, g)
    k, v = _heads_layout(b, h, n_k, d, g), _heads_layout(b, h, n_k, d, g)
    key_mask = _mask(b, n_k) if masked else None
    grad = torch.randn(b, h, n_q, d, generator=g)
    assert _kernels(lambda: attend(q, k, v, key_mask=key_mask, causal=causal)) == {OURS}
    out = attend(q, k, v, key_mask=key_mask, causal=causal)
    got = [out, *torch.autograd.grad(out, (q, k, v), grad)]
    q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref = _reference_attend(q64, k64, v64, key_mask, causal)
    want = [ref, *torch.autograd.grad(ref, (q64, k64, v64), grad.double())]
    for name, a, w in zip(("out", "dq", "dk", "dv"), got, want, strict=True):
        torch.testing.assert_close(a.double(), w, rtol=1e-4, atol=2e-5, msg=name)
    if masked:  # padding keys get exactly zero gradient
        for t in got[2:]:
            assert torch.count_nonzero(t[2, :, 1:]) == 0


@needs_kernel
def test_c_kernel_later_keys_have_exactly_no_influence_under_the_causal_mask() -> None:
    # the masked scores inside a diagonal block are -inf; their probabilities must be exactly
    # 0 (the kernel's exp), not merely small: a gradient on query 0 alone reaches key 0 only
    g = torch.Generator().manual_seed(7)
    q, k, v = (_heads_layout(2, 2, 70, 8, g) for _ in range(3))
    out = attend(q, k, v, causal=True)
    grad = torch.zeros_like(out)
    grad[:, :, 0] = torch.randn(2, 2, 8, generator=g)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)
    assert torch.count_nonzero(dv[:, :, 0]) > 0
    assert torch.count_nonzero(dk[:, :, 1:]) == 0 and torch.count_nonzero(dv[:, :, 1:]) == 0
    assert torch.count_nonzero(dq[:, :, 1:]) == 0


@needs_kernel
def test_c_kernel_gives_a_query_without_keys_a_zero_row_like_torch() -> None:
    """``attend`` requires a key per query; where a padded batch breaks that, the C kernel
    returns a zero row, as torch 2.13's kernels do, and no NaN reaches the gradients."""
    q, k, v = (torch.randn(2, 1, 4, 8, requires_grad=True) for _ in range(3))
    key_mask = torch.tensor([[True, True, False, False], [False, False, False, False]])
    out = attend(q, k, v, key_mask=key_mask)
    out.sum().backward()
    assert torch.count_nonzero(out[1]) == 0
    torch.testing.assert_close(out, attend(q, k, v, key_mask=key_mask, kernel="torch"))
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    torch.testing.assert_close(out[:1], _reference_attend(q, k, v, key_mask)[:1])


@pytest.mark.parametrize("name", sorted(HEADS))
def test_heads_pick_the_kernel_by_config_and_attention_dropout(name) -> None:
    enc = _encoded()
    torch.manual_seed(0)
    head = HEADS[name](node_dim=12, graph_dim=12, out_dim=10, attn_dropout=0.0)
    torch.manual_seed(0)
    dropped = HEADS[name](node_dim=12, graph_dim=12, out_dim=10, attn_dropout=0.3)
    dropped.load_state_dict(head.state_dict())
    torch.manual_seed(0)
    on_torch = HEADS[name](node_dim=12, graph_dim=12, out_dim=10, attn_dropout=0.0, kernel="torch")
    on_torch.load_state_dict(head.state_dict())
    default = {OURS} if native.attention_library() is not None else {FUSED}
    head.train()  # no attention dropout: the default kernel, forward and backward
    assert _kernels(lambda: head(enc).sum().backward()) == default
    assert _kernels(lambda: on_torch(enc).sum().backward()) == {FUSED}
    with torch.no_grad():
        head.eval()
        dropped.eval()
        # attention dropout changes nothing outside training
        torch.testing.assert_close(dropped(enc), head(enc))
        assert _kernels(lambda: dropped(enc)) == default
    dropped.train()
    assert _kernels(lambda: dropped(enc)) == {MATH}  # the cost make bench measures


@pytest.mark.parametrize("name", sorted(HEADS))
def test_all_kernels_give_the_same_head_outputs_and_gradients(name) -> None:
    enc = _encoded()
    torch.manual_seed(0)
    make = functools.partial(HEADS[name], node_dim=12, graph_dim=12, out_dim=10, attn_dropout=0.0)
    head = make().train()
    torch.manual_seed(0)
    on_torch = make(kernel="torch").train()
    on_torch.load_state_dict(head.state_dict())

    def run(model):
        out = model(enc)
        grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
        return [out.detach(), *grads]

    ours, fused = run(head), run(on_torch)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        assert _kernels(lambda: on_torch(enc)) == {MATH}
        unfused = run(on_torch)
    for a, b, c in zip(ours, fused, unfused, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, c, rtol=1e-4, atol=1e-5)


def test_an_unknown_kernel_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.head\.kernel.*'flash'"):
        MultiHeadAttention(16, 2, kernel="flash")


def test_without_a_compiler_attention_falls_back_to_torch(without_compiler, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="dos_bench.models.native"):
        assert native.attention_library() is None
    assert ["C attention kernel unavailable" in r.getMessage() for r in caplog.records] == [True]
    q, k, v = (torch.randn(2, 2, 6, 8) for _ in range(3))
    assert _kernels(lambda: attend(q, k, v, causal=True)) == {FUSED}


def test_dense_atoms_from_host_sizes_equals_to_dense_batch() -> None:
    from torch_geometric.data import Batch, Data

    enc = _encoded(counts=(3, 1, 5, 2))
    data = [Data(x=torch.zeros(n, 1)) for n in (3, 1, 5, 2)]
    batch = Batch.from_data_list(data)
    assert host_max_atoms(batch) == 5 and host_max_atoms(None) is None
    node = enc.node.requires_grad_()
    want, want_mask = dense_atoms(node, enc.batch, 4)  # to_dense_batch
    got, mask = dense_atoms(node, enc.batch, 4, max_atoms=host_max_atoms(batch))
    assert torch.equal(mask, want_mask)
    torch.testing.assert_close(got, want)
    (grad,) = torch.autograd.grad((got * got).sum(), node)
    torch.testing.assert_close(grad, 2 * node)
