r"""Attention building blocks shared by the sequence / energy-token heads.

One implementation of each piece, used by :mod:`cross_attention` (DOSTransformer §3),
:mod:`seq_transformer` (Xtal2DoS §2.3) and :mod:`rnn` (Xtal2DoS Luong attention):

- :func:`attend` — scaled dot-product attention with an optional key padding mask and/or causal
  mask, on top of :func:`torch.nn.functional.scaled_dot_product_attention`, or on CPU in
  float32 (``kernel: auto``) the C kernel of :mod:`dos_bench.models.native`, which under a causal
  mask scores only the allowed half of the pairs in the backward too (``dos_bench::attention``
  in profiles);
- :func:`dense_atoms` — the atoms of each crystal as a padded ``(B, n_max, d)`` tensor and its
  mask (``torch_geometric.utils.to_dense_batch``), the form every atom-attention needs;
- :class:`MultiHeadAttention` — Q/K/V (and optional output) projections around :func:`attend`;
- :class:`FeedForward` — position-wise ``Linear(d→d_ff) – act – dropout – Linear(d_ff→d)``;
- :class:`TransformerLayer` — a pre-LN block with an optional (causal) self-attention sub-layer,
  an optional source/cross-attention sub-layer over a padded memory, and an FFN:

.. math::
    x &\leftarrow x + \mathrm{Drop}(\mathrm{SelfAttn}(\mathrm{LN}(x)))\\
    x &\leftarrow x + \mathrm{Drop}(\mathrm{CrossAttn}(\mathrm{LN}(x), m, \text{mask}))\\
    x &\leftarrow x + \mathrm{Drop}(\mathrm{FFN}(\mathrm{LN}(x)))

A stack of these layers is followed by a final ``LayerNorm`` in the heads (pre-LN convention).
"""

from __future__ import annotations

import ctypes
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import to_dense_batch

from dos_bench.io import ConfigError
from dos_bench.models import native
from dos_bench.models.gemm import Linear
from dos_bench.models.layers import activation

__all__ = [
    "attend",
    "dense_atoms",
    "host_max_atoms",
    "MultiHeadAttention",
    "FeedForward",
    "TransformerLayer",
    "ATTENTION_KERNELS",
]

ATTENTION_KERNELS = ("auto", "torch")
"""``auto``: the C attention kernel on CPU float32 without attention dropout, torch's
``scaled_dot_product_attention`` elsewhere; ``torch``: always torch's."""


def _ptr(t: Tensor | None) -> ctypes.c_void_p | None:
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _rows(t: Tensor) -> tuple[int, int, int]:
    """Element strides of a ``(B, H, n, d)`` tensor's batch, head and row dimensions."""
    return t.stride(0), t.stride(1), t.stride(2)


def _empty_bnhd(like: Tensor, n: int) -> Tensor:
    """A ``(B, H, n, d)`` tensor stored as ``(B, n, H, d)``: heads merge back without a copy."""
    b, h, _, d = like.shape
    return like.new_empty(b, n, h, d).transpose(1, 2)


@torch.library.custom_op("dos_bench::attention", mutates_args=())
def _native_attention(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, causal: bool, scale: float
) -> tuple[Tensor, Tensor]:
    """Output ``(B, H, n_q, d)`` and row log-sum-exp ``(B, H, n_q)`` of the C kernel."""
    b, h, n_q, d = q.shape
    out, lse = _empty_bnhd(q, n_q), q.new_empty(b, h, n_q)
    status = native.attention_library().dos_attn_forward(
        _ptr(q), _ptr(k), _ptr(v), _ptr(key_mask), b, h, n_q, k.shape[2], d,
        *_rows(q), *_rows(k), *_rows(v), *_rows(out), 0 if key_mask is None else key_mask.stride(0),
        scale, int(causal), _ptr(out), _ptr(lse), torch.get_num_threads(),
    )  # fmt: skip
    if status:
        raise RuntimeError(f"C attention kernel failed (code {status}: 3 = out of memory)")
    return out, lse


@_native_attention.register_fake
def _(q, k, v, key_mask, causal, scale):
    return _empty_bnhd(q, q.shape[2]), q.new_empty(q.shape[:3])


@torch.library.custom_op("dos_bench::attention_backward", mutates_args=())
def _native_attention_backward(
    grad: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None,
    out: Tensor,
    lse: Tensor,
    causal: bool,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``q``, ``k``, ``v`` (P recomputed from ``lse``, not stored)."""
    b, h, n_q, d = q.shape
    n_k = k.shape[2]
    dq, dk, dv = _empty_bnhd(q, n_q), _empty_bnhd(k, n_k), _empty_bnhd(k, n_k)
    status = native.attention_library().dos_attn_backward(
        _ptr(q), _ptr(k), _ptr(v), _ptr(key_mask), _ptr(out), _ptr(grad), _ptr(lse),
        b, h, n_q, n_k, d, *_rows(q), *_rows(k), *_rows(v), *_rows(out), *_rows(grad),
        0 if key_mask is None else key_mask.stride(0), scale, int(causal),
        _ptr(dq), _ptr(dk), _ptr(dv), *_rows(dq), *_rows(dk), torch.get_num_threads(),
    )  # fmt: skip
    if status:
        raise RuntimeError(f"C attention kernel failed (code {status}: 3 = out of memory)")
    return dq, dk, dv


@_native_attention_backward.register_fake
def _(grad, q, k, v, key_mask, out, lse, causal, scale):
    return _empty_bnhd(q, q.shape[2]), _empty_bnhd(k, k.shape[2]), _empty_bnhd(k, k.shape[2])


def _attention_setup(ctx, inputs, output) -> None:
    q, k, v, key_mask, causal, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, key_mask, out, lse)
    ctx.causal, ctx.scale = causal, scale


def _attention_grad(ctx, grad_out: Tensor, grad_lse: Tensor | None):
    q, k, v, key_mask, out, lse = ctx.saved_tensors
    if grad_out.stride(-1) != 1:
        grad_out = grad_out.contiguous()
    dq, dk, dv = _native_attention_backward(
        grad_out, q, k, v, key_mask, out, lse, ctx.causal, ctx.scale
    )
    return dq, dk, dv, None, None, None


_native_attention.register_autograd(_attention_grad, setup_context=_attention_setup)


def _native_applies(
    q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None, causal: bool, dropout_p: float
) -> bool:
    """Whether :func:`attend` can use the C kernel: CPU float32 ``(B, H, n, d)`` inputs with
    contiguous rows, a boolean key mask (if any), no attention dropout, no autocast or
    ``torch.compile`` tracing, and a C compiler here
    (:func:`dos_bench.models.native.attention_library`)."""
    return (
        dropout_p == 0.0
        and q.dim() == 4
        and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (q, k, v))
        and all(t.stride(-1) == 1 for t in (q, k, v))
        and q.shape[2] > 0
        and k.shape[2] > 0
        and (not causal or q.shape[2] == k.shape[2])
        and (
            key_mask is None
            or (key_mask.dtype == torch.bool and key_mask.shape == (q.shape[0], k.shape[2]))
        )
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and native.attention_library() is not None
    )


def host_max_atoms(batch) -> int | None:
    """The largest number of atoms of a crystal in a PyG ``batch``, read from the host.

    ``Batch.from_data_list`` (every PyG ``DataLoader``) keeps its collation offsets in
    ``batch._slice_dict`` as CPU tensors, also after the batch has moved to a GPU: the count is
    read there without waiting for the device. ``None`` when the batch has no such offsets.
    """
    slices = getattr(batch, "_slice_dict", None)
    ptr = slices.get("x") if isinstance(slices, dict) else None
    if not isinstance(ptr, Tensor) or ptr.device.type != "cpu" or ptr.dim() != 1:
        return None
    offsets = ptr.tolist()  # host memory: no tensor op, no device
    return max((b - a for a, b in zip(offsets[:-1], offsets[1:], strict=True)), default=0)


def dense_atoms(
    node: Tensor, batch: Tensor, num_graphs: int, max_atoms: int | None = None
) -> tuple[Tensor, Tensor]:
    """Node embeddings as a padded batch (``torch_geometric.utils.to_dense_batch``'s layout).

    With ``max_atoms`` (the largest crystal, known on the host: :func:`host_max_atoms`) nothing
    is read back from the device; without it ``to_dense_batch`` finds the largest crystal on the
    device (one synchronisation on a GPU). ``batch`` must be sorted, as PyG batches are.

    Shapes:
        node ``(n, d)``, batch ``(n,)`` → atoms ``(B, n_max, d)`` (zeros at padding),
        mask ``(B, n_max)`` bool, ``True`` at real atoms.
    """
    if max_atoms is None:
        return to_dense_batch(node, batch, batch_size=num_graphs)
    counts = torch.zeros(num_graphs, dtype=torch.long, device=node.device)
    counts.index_add_(0, batch, torch.ones_like(batch))
    start = torch.cumsum(counts, 0) - counts
    slot = batch * max_atoms + torch.arange(batch.numel(), device=node.device) - start[batch]
    rows = num_graphs * max_atoms
    atoms = node.new_zeros(rows, *node.shape[1:]).index_copy(0, slot, node)
    mask = torch.zeros(rows, dtype=torch.bool, device=node.device).index_fill_(0, slot, True)
    return atoms.view(num_graphs, max_atoms, *node.shape[1:]), mask.view(num_graphs, max_atoms)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    key_mask: Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    kernel: str = "auto",
) -> Tensor:
    r"""Scaled dot-product attention :math:`\mathrm{softmax}(QK^\top s + \text{mask})\,V`.

    Args:
        q, k, v: queries, keys and values (heads, if any, as a leading dimension after the batch).
        key_mask: ``True`` at keys that may be attended to (padding = ``False``); masked keys get
            exactly zero weight. Every query must have at least one valid key.
        causal: query ``i`` attends only to keys ``j ≤ i`` (needs ``n_q == n_k``).
        dropout_p: dropout on the attention probabilities (pass 0 in eval mode).
        scale: score scale :math:`s`; default :math:`1/\sqrt{d_k}`; ``1.0`` gives Luong "dot".
        kernel: ``"auto"`` (the C kernel where it applies, see :func:`_native_applies`) or
            ``"torch"`` (always :func:`torch.nn.functional.scaled_dot_product_attention`). Both
            compute the same function; they agree to float32 rounding.

    Shapes:
        q ``(B, [h,] n_q, d_k)``, k ``(B, [h,] n_k, d_k)``, v ``(B, [h,] n_k, d_v)``,
        key_mask ``(B, n_k)`` → ``(B, [h,] n_q, d_v)``.
    """
    if kernel == "auto" and _native_applies(q, k, v, key_mask, causal, dropout_p):
        if key_mask is not None:
            key_mask = key_mask.contiguous()
        s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
        return _native_attention(q, k, v, key_mask, causal, s)[0]
    mask = None
    if key_mask is not None:
        # broadcast over (heads,) queries: (B, 1, ..., 1, n_k)
        mask = key_mask.view(key_mask.shape[0], *([1] * (q.dim() - 2)), key_mask.shape[1])
        if causal:
            n_q, n_k = q.shape[-2], k.shape[-2]
            tri = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
            mask = mask & tri
            causal = False
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, scale=scale
    )


class MultiHeadAttention(nn.Module):
    r"""Multi-head attention with key padding / causal masks (Vaswani et al. 2017).

    .. math::
        \mathrm{head}_h = \mathrm{softmax}\!\Big(\frac{(XW_Q^h)(YW_K^h)^\top}{\sqrt{d/H}}\Big)
        YW_V^h, \qquad \mathrm{out} = [\mathrm{head}_1; \dots; \mathrm{head}_H]\,W_O

    Args:
        d_model: query (and output) width ``d``.
        n_heads: number of heads ``H`` (``d`` must be divisible by ``H``).
        kv_dim: width of the key/value input (default ``d_model``).
        attn_dropout: dropout on the attention probabilities (training only).
        out_proj: apply the output projection :math:`W_O` (``False`` = identity, the single-head
            formula of DOSTransformer eq. 2 has none).
        bias: biases in the projections.
        kernel: attention implementation, ``"auto"`` | ``"torch"`` (see :func:`attend`).

    Shapes:
        x ``(B, n_q, d)``, y ``(B, n_k, kv_dim)``, key_mask ``(B, n_k)`` → ``(B, n_q, d)``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        kv_dim: int | None = None,
        attn_dropout: float = 0.0,
        out_proj: bool = True,
        bias: bool = True,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        if kernel not in ATTENTION_KERNELS:
            raise ConfigError(
                f"model.head.kernel must be one of {ATTENTION_KERNELS}, got {kernel!r}"
            )
        self.kernel = kernel
        if d_model % n_heads:
            raise ConfigError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        kv_dim = d_model if kv_dim is None else kv_dim
        self.d_model, self.n_heads, self.attn_dropout = d_model, n_heads, attn_dropout
        self.q = Linear(d_model, d_model, bias=bias)
        self.k = Linear(kv_dim, d_model, bias=bias)
        self.v = Linear(kv_dim, d_model, bias=bias)
        self.o = Linear(d_model, d_model, bias=bias) if out_proj else nn.Identity()

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.n_heads, self.d_model // self.n_heads).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        y: Tensor | None = None,
        key_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        y = x if y is None else y
        q, k, v = self._split(self.q(x)), self._split(self.k(y)), self._split(self.v(y))
        p = self.attn_dropout if self.training else 0.0
        h = attend(q, k, v, key_mask=key_mask, causal=causal, dropout_p=p, kernel=self.kernel)
        b, _, n, _ = h.shape
        return self.o(h.transpose(1, 2).reshape(b, n, self.d_model))


class FeedForward(nn.Module):
    """Position-wise ``Linear(d→d_ff) – act – Dropout – Linear(d_ff→d)``.

    Shapes:
        ``(*, d)`` → ``(*, d)``.
    """

    def __init__(self, d_model: int, d_ff: int, act: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            Linear(d_model, d_ff),
            activation(act),
            nn.Dropout(dropout),
            Linear(d_ff, d_model),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TransformerLayer(nn.Module):
    """A pre-LN transformer block (see the module docstring for the equations).

    Args:
        d_model: token width ``d``.
        n_heads: attention heads (both sub-layers).
        d_ff: FFN hidden width.
        self_attn: include the self-attention sub-layer (Xtal2DoS decoder).
        cross_attn: include the cross/source-attention sub-layer over a memory.
        attn_dropout: dropout on attention probabilities.
        dropout: residual dropout after each sub-layer.
        act: FFN activation.
        memory_norm: LayerNorm the memory before the cross-attention (the keys/values are then
            normalised like the queries, as in cross-modal pre-LN transformers).
        out_proj: output projection in the attention sub-layers.
        kernel: attention implementation, ``"auto"`` | ``"torch"`` (see :func:`attend`).

    Shapes:
        x ``(B, n, d)``, memory ``(B, n_m, d)``, memory_mask ``(B, n_m)`` → ``(B, n, d)``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int = 1,
        d_ff: int = 1024,
        self_attn: bool = False,
        cross_attn: bool = True,
        attn_dropout: float = 0.0,
        dropout: float = 0.0,
        act: str = "relu",
        memory_norm: bool = False,
        out_proj: bool = True,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        if not (self_attn or cross_attn):
            raise ConfigError("a TransformerLayer needs self_attn and/or cross_attn")
        mha = dict(attn_dropout=attn_dropout, out_proj=out_proj, kernel=kernel)
        self.self_attn = MultiHeadAttention(d_model, n_heads, **mha) if self_attn else None
        self.norm_self = nn.LayerNorm(d_model) if self_attn else None
        self.cross_attn = MultiHeadAttention(d_model, n_heads, **mha) if cross_attn else None
        self.norm_cross = nn.LayerNorm(d_model) if cross_attn else None
        self.norm_memory = nn.LayerNorm(d_model) if (cross_attn and memory_norm) else None
        self.ffn = FeedForward(d_model, d_ff, act=act, dropout=0.0)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        causal: bool = False,
    ) -> Tensor:
        if self.self_attn is not None:
            h = self.norm_self(x)
            x = x + self.drop(self.self_attn(h, causal=causal))
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("this TransformerLayer has a cross-attention and needs a memory")
            m = self.norm_memory(memory) if self.norm_memory is not None else memory
            x = x + self.drop(self.cross_attn(self.norm_cross(x), m, key_mask=memory_mask))
        return x + self.drop(self.ffn(self.norm_ffn(x)))
