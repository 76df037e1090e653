"""Transformer heads on torch's fused attention kernel (issue 14).

``torch.nn.functional.scaled_dot_product_attention`` picks a fused (flash) kernel on CPU for
every mask the heads use — key padding masks and causal self-attention through ``is_causal`` —
unless attention-probability dropout is on, which only its unfused ``math`` path implements on
CPU. Dropout is applied in training only; its cost is measured by ``make bench`` (section
``attention``), never asserted here. The fused and unfused paths give the same outputs.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch.profiler import profile

from dos_bench.models.heads.attention import attend, dense_atoms, host_max_atoms
from dos_bench.models.heads.cross_attention import CrossAttentionHead
from dos_bench.models.heads.seq_transformer import SeqTransformerHead
from dos_bench.models.model import EncoderOutput

FUSED = "aten::_scaled_dot_product_flash_attention_for_cpu"
MATH = "aten::_scaled_dot_product_attention_math"

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
    return {e.name for e in prof.events() if e.name in (FUSED, MATH)}


def _reference_attend(q, k, v, key_mask=None, causal=False):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    if causal:
        n = q.shape[-2]
        tri = torch.ones(n, n, dtype=torch.bool).tril()
        scores = scores.masked_fill(~tri, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


@pytest.mark.parametrize(
    ("masked", "causal"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_attend_on_the_fused_kernel_equals_the_softmax_formula(masked, causal) -> None:
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 2, 7, 8, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 1:] = False  # a query sees at least key 0 even under the causal mask
    key_mask = mask if masked else None
    torch.testing.assert_close(
        attend(q, k, v, key_mask=key_mask, causal=causal),
        _reference_attend(q, k, v, key_mask, causal),
    )
    qf, kf, vf = q.float(), k.float(), v.float()
    assert _kernels(lambda: attend(qf, kf, vf, key_mask=key_mask, causal=causal)) == {FUSED}


@pytest.mark.parametrize("name", sorted(HEADS))
def test_heads_use_the_fused_kernel_unless_attention_dropout_trains(name) -> None:
    enc = _encoded()
    torch.manual_seed(0)
    head = HEADS[name](node_dim=12, graph_dim=12, out_dim=10, attn_dropout=0.0)
    torch.manual_seed(0)
    dropped = HEADS[name](node_dim=12, graph_dim=12, out_dim=10, attn_dropout=0.3)
    dropped.load_state_dict(head.state_dict())
    head.train()  # no attention dropout: fused in training, forward and backward
    assert _kernels(lambda: head(enc).sum().backward()) == {FUSED}
    with torch.no_grad():
        head.eval()
        dropped.eval()
        # attention dropout changes nothing outside training
        torch.testing.assert_close(dropped(enc), head(enc))
        assert _kernels(lambda: dropped(enc)) == {FUSED}
    dropped.train()
    assert _kernels(lambda: dropped(enc)) == {MATH}  # the cost make bench measures


@pytest.mark.parametrize("name", sorted(HEADS))
def test_fused_and_unfused_paths_agree(name) -> None:
    enc = _encoded()
    torch.manual_seed(0)
    head = HEADS[name](node_dim=12, graph_dim=12, out_dim=10).eval()
    with torch.no_grad():
        fused = head(enc)
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            assert _kernels(lambda: head(enc)) == {MATH}
            unfused = head(enc)
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-6)


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
