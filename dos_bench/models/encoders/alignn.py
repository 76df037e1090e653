r"""ALIGNN encoder on PyG / plain torch (ALIGNN-DOS §2; docs/papers/alignn_dos.md §1.2–1.3).

Atomistic Line Graph Neural Network (Choudhary & DeCost 2021), as used for the DOS by
Kaundinya et al. (ALIGNN-DOS, §2 and §3).  Two graphs are updated alternately:

* the **crystal graph** :math:`G`: nodes = atoms (features :math:`v_i`), edges = bonds
  (features :math:`u_{e}`, from the bond length);
* the **line graph** :math:`\mathcal L(G)`: nodes = the bonds of :math:`G` (they share the
  features :math:`u_e`), edges = pairs of bonds meeting at an atom (features :math:`t`, from the
  bond-angle cosine).

Line graph (built with the crystal graphs, or on the fly in ``forward``)
------------------------------------------------------------------------
With ``line_graph: true`` in the model's graph recipe (``conf/model/d_alignn.yaml``), the line
graph and its bond-angle cosines are built once per crystal with the crystal graphs and cached
with them (:mod:`dos_bench.data.line_graphs`); batches then carry ``lg_edge_index`` and
``lg_cos`` and ``forward`` reads them.  Batches without them (graphs built by another recipe)
get the line graph built here at every step, vectorised (:func:`line_graph`, which reads its size
back from the device) — same pairs in the same order, same cosines up to float32 rounding of
the positions.

Crystal-graph edges follow the package convention (``dos_bench.data.graphs``): edge
:math:`e = (j \to i)` has source ``edge_index[0] = j`` (neighbour), target
``edge_index[1] = i`` (centre) and vector :math:`\mathbf r_e = \mathbf x_j + \mathbf n_e L -
\mathbf x_i` (centre → neighbour, :func:`~dos_bench.data.graphs.edge_vectors`).  As in ALIGNN
(DGL ``line_graph``), the line graph has an edge :math:`e_1 \to e_2` for every pair with

.. math::
    e_1 = (k \to j),\quad e_2 = (j \to i),\qquad \text{target}(e_1) = \text{source}(e_2) = j,

i.e. for each bond :math:`e_2` all bonds arriving at its source atom :math:`j`; messages flow
from :math:`e_1` to :math:`e_2`.  The angle is the one at the shared atom :math:`j` between
its neighbours :math:`k` and :math:`i` (ALIGNN: ``r1 = -r(src edge)``, ``r2 = r(dst edge)``
with ALIGNN's source→target bond vectors, which are minus ours):

.. math::
    \cos\theta_{e_1 e_2} = \operatorname{clamp}\Big(
        -\frac{\mathbf r_{e_1}\cdot\mathbf r_{e_2}}{\lVert\mathbf r_{e_1}\rVert\,
        \lVert\mathbf r_{e_2}\rVert},\,-1,\,1\Big).

``backtracking=True`` (ALIGNN/DGL default) keeps the pair of a bond with its own reverse
(:math:`k = i` *and the same periodic image*, i.e. :math:`\mathbf n_{e_1} + \mathbf n_{e_2} =
0`), whose cosine is +1; ``False`` drops exactly those pairs (a different periodic image of
:math:`i` is a different bond and stays).  With :math:`d_a` the in-degree of atom :math:`a`,
the line graph has :math:`\sum_{e} d_{\text{source}(e)}` edges (fcc, 12 neighbours: 144 per
atom).

Edge-gated graph convolution (:class:`EdgeGatedConv`, ALIGNN-DOS eqs. 1–3; ALIGNN code)
-----------------------------------------------------------------------------------------
For a graph with node features :math:`h` and edge features :math:`e_{ji}` (edge
:math:`j \to i`):

.. math::
    m_{ji} &= W_s h_j + W_d h_i + W_e e_{ji} \\
    \hat\eta_{ji} &= \frac{\sigma(m_{ji})}{\sum_{j' \in N(i)} \sigma(m_{j'i}) + 10^{-6}} \\
    h_i' &= h_i + \operatorname{SiLU}\Big(\operatorname{BN}\big(W_1 h_i +
            \textstyle\sum_{j \in N(i)} \hat\eta_{ji} \odot W_2 h_j\big)\Big) \\
    e_{ji}' &= e_{ji} + \operatorname{SiLU}(\operatorname{BN}(m_{ji}))

(all :math:`W` with biases).  One ALIGNN layer = an edge-gated conv on the line graph (nodes
:math:`u`, edges :math:`t`) followed by one on the crystal graph (nodes :math:`v`, edges the
updated :math:`u`); then ``gcn_layers`` edge-gated convs on the crystal graph alone.

Embeddings (ALIGNN code): atoms ``Linear(in_dim→256)+BN+SiLU``; bonds: 80 Gaussians on
[0, 8] Å → ``Linear(80→64)+BN+SiLU`` → ``Linear(64→256)+BN+SiLU``; angles: 40 Gaussians on
[−1, 1] → ``Linear(40→64)+BN+SiLU`` → ``Linear(64→256)+BN+SiLU``.  The Gaussians are ALIGNN's
``RBFExpansion``: :math:`\exp(-(x-\mu_k)^2/\Delta)` with :math:`\Delta` the centre spacing
(:class:`~dos_bench.models.layers.GaussianExpansion` with ``rbf_style="alignn"``).  Readout:
average pooling over atoms (paper and code); the FC layers belong to the head.

Paper vs code, and what is chosen here
--------------------------------------
* Order inside an ALIGNN layer: the paper (§2: "iterative modifications of the line graph and
  crystal graph, in order") updates the line graph first — default ``order="line_first"``; the
  ALIGNN code (``ALIGNNConv.forward``) updates the crystal graph first, then the line graph
  with the new bond features — ``order="crystal_first"``.
* Atom features: the paper concatenates five element attributes (feature set ``alignn5``,
  :func:`dos_bench.data.element_tables.alignn_dos_features`); the code's default is the 92-d
  CGCNN table (``cgcnn``).  The encoder takes either (``in_dim``); the model YAML chooses.
* Edge-gate normalisation, BN + SiLU + residual placement, embeddings, 4 + 4 layers, hidden
  256, embedding 64, 80/40 bins: ALIGNN code defaults (paper eq. 2 writes an activation around
  the neighbour sum only; the code's placement is used).
* ``atom_embedding_dim``: ALIGNN maps atoms straight to ``hidden``; an int inserts an
  intermediate ``Linear+BN+SiLU`` of that width (as for bonds and angles).

Implementation: on CPU in float32 (``kernel: auto``, the default) a convolution's message
passing, edge projection bias and edge update run on the C kernels of
:mod:`dos_bench.models.native` (:class:`_GatedConvNative`): edges are sorted by target (the
crystal graphs by centre, the line graphs by :math:`e_2`), so each output row belongs to one
thread and one pass over the ``(E, d)`` edge rows computes :math:`m`, :math:`\sigma(m)`, the
gated sum, its normaliser and the BatchNorm statistics; a second writes
:math:`e + \operatorname{SiLU}(\mathrm{BN}(m))`; backward is two passes plus the projection's
two matrix products. Elsewhere (GPU, float64, autocast, ``torch.compile``, ``kernel: torch``,
no C compiler) the message passing is one torch autograd function
(:class:`_GatedAggregate`) whose backward recomputes :math:`\sigma(m)` and the gathered
:math:`W_2 h_j` instead of keeping them, and which works in place on the tensors it creates:
per line-graph convolution two ``(T, dim)`` tensors fewer held for backward and fewer
temporaries than autograd's version.  Every BatchNorm + SiLU on edges or line-graph edges is
:func:`batch_norm_silu`, which keeps only the BatchNorm input and recomputes the rest in
backward (one ``(T, dim)`` tensor fewer each).  Same values, gradients and running statistics as
the plain modules; at 16 toy crystals the tensors held for backward fall from 29.4 to 12.3
``(T, dim)`` tensors (tests/models/test_alignn_line_graph.py keeps the plain version as the
reference).

Unused parameters: the edge update of the last line-graph conv (its :math:`t'` is never read)
and of the last crystal-graph conv are not built (ALIGNN builds them; they receive no gradient
there), so every parameter here receives a gradient — except with ``order="crystal_first"``
and ``gcn_layers=0``, where the last line-graph conv feeds nothing (as in ALIGNN).

Graph recipe (model YAML, not this module): ``cutoff 8, max_neighbors 16, keep_ties true``
(ALIGNN-DOS §2: 16 nearest neighbours; ALIGNN keeps all neighbours tied with the 16th),
``line_graph true`` with ``line_graph_backtracking`` equal to the encoder's ``backtracking``
(:meth:`ALIGNNEncoder.check_graph_recipe` refuses a mismatch).
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor, nn
from torch_geometric.nn import global_mean_pool

from dos_bench.data.graphs import edge_vectors
from dos_bench.io import ConfigError
from dos_bench.models import gemm, native
from dos_bench.models.gemm import Linear
from dos_bench.models.layers import GaussianExpansion
from dos_bench.models.model import EncoderOutput

__all__ = ["ALIGNNEncoder", "EdgeGatedConv", "bond_cosines", "line_graph"]

_ORDERS = ("line_first", "crystal_first")
_KERNELS = ("auto", "torch")
_GATE_EPS = 1e-6  # ALIGNN: sum(sigma * P) / (sum(sigma) + 1e-6)


def line_graph(
    edge_index: Tensor,
    num_nodes: int,
    edge_shift: Tensor | None = None,
    backtracking: bool = True,
) -> Tensor:
    r"""Edges of the line graph of a (batched) crystal graph, vectorised.

    Line-graph edge :math:`e_1 \to e_2` for every pair of crystal-graph edges with
    ``edge_index[1, e1] == edge_index[0, e2]`` (the bond :math:`e_1 = (k \to j)` arrives at the
    atom :math:`j` that sends :math:`e_2 = (j \to i)`).  Built without Python loops: the edges
    are grouped by target atom (stable ``argsort``), and for each :math:`e_2` the
    ``in_degree(source(e2))`` edges of its source atom are enumerated with
    ``repeat_interleave``.

    Args:
        edge_index: crystal-graph edges (row 0 source = neighbour, row 1 target = centre).
        num_nodes: number of atoms.
        edge_shift: periodic image of every edge's source; needed only when
            ``backtracking=False``.
        backtracking: keep the pairs of a bond with its own reverse (same atoms, opposite
            image), as ALIGNN/DGL do.

    Returns:
        ``(2, T)`` int64: row 0 the source bond :math:`e_1`, row 1 the target bond
        :math:`e_2`; sorted by :math:`e_2`.

    Shapes:
        edge_index ``(2, E)``, edge_shift ``(E, 3)`` → ``(2, T)`` with
        :math:`T = \sum_e \text{in\_degree}(\text{source}(e))`.
    """
    src, dst = edge_index[0], edge_index[1]
    n_edges = src.numel()
    device = src.device
    by_target = torch.argsort(dst, stable=True)
    in_deg = torch.bincount(dst, minlength=num_nodes)
    first = torch.cumsum(in_deg, 0) - in_deg  # position of atom a's first incoming edge
    counts = in_deg[src]  # number of e1 for every e2
    total = int(counts.sum())
    e2 = torch.repeat_interleave(torch.arange(n_edges, device=device), counts, output_size=total)
    group_start = torch.cumsum(counts, 0) - counts
    offset = torch.arange(total, device=device) - torch.repeat_interleave(
        group_start, counts, output_size=total
    )
    e1 = by_target[first[src][e2] + offset]
    if not backtracking:
        if edge_shift is None:
            raise ValueError("line_graph(backtracking=False) needs edge_shift")
        same_bond = (src[e1] == dst[e2]) & (edge_shift[e1] + edge_shift[e2] == 0).all(dim=-1)
        keep = ~same_bond
        e1, e2 = e1[keep], e2[keep]
    return torch.stack([e1, e2])


def bond_cosines(vec: Tensor, lg_edge_index: Tensor) -> Tensor:
    r"""Cosine of the angle at the shared atom for every line-graph edge, clamped to [−1, 1].

    With ``vec`` the centre→neighbour vectors of :func:`~dos_bench.data.graphs.edge_vectors`,
    :math:`\cos = -\mathbf r_{e_1}\cdot\mathbf r_{e_2} / (\lVert\mathbf r_{e_1}\rVert
    \lVert\mathbf r_{e_2}\rVert)` (see the module docstring).  Zero-length vectors (self loops)
    give 0.

    Shapes:
        vec ``(E, 3)``, lg_edge_index ``(2, T)`` → ``(T,)``.
    """
    unit = vec / vec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = -(unit[lg_edge_index[0]] * unit[lg_edge_index[1]]).sum(dim=-1)
    return cos.clamp(-1.0, 1.0)


def _mlp_layer(i: int, o: int) -> nn.Sequential:
    """ALIGNN ``MLPLayer``: Linear, BatchNorm1d, SiLU."""
    return nn.Sequential(Linear(i, o), nn.BatchNorm1d(o), nn.SiLU())


def _mlp(layers: nn.Sequential, x: Tensor) -> Tensor:
    """A stack of :func:`_mlp_layer`, each as Linear then :func:`batch_norm_silu`."""
    for layer in layers:
        x = batch_norm_silu(layer[0](x), layer[1])
    return x


class _BatchNormSiLU(torch.autograd.Function):
    """``silu(batch_norm(x))`` that keeps only ``x`` (and the per-channel statistics) for
    backward and recomputes the normalised values there: autograd would also keep them, one
    more ``(rows, d)`` tensor. Forward and running-statistics updates are
    ``torch.native_batch_norm``'s, the backward ``native_batch_norm_backward``'s."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, batch_stats, momentum, eps):  # noqa: ANN001, ANN205
        y, mean, invstd = torch.native_batch_norm(
            x, weight, bias, running_mean, running_var, batch_stats, momentum, eps
        )
        out = nn.functional.silu(y)
        ctx.save_for_backward(x, weight, bias, running_mean, running_var, mean, invstd)
        ctx.batch_stats, ctx.eps = batch_stats, eps
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # noqa: ANN001, ANN205
        x, weight, bias, running_mean, running_var, mean, invstd = ctx.saved_tensors
        if ctx.batch_stats:
            scale, shift = invstd, mean
        else:
            scale, shift = torch.rsqrt(running_var + ctx.eps), running_mean
        scale = scale.to(x.dtype)
        if weight is not None:
            y = (x - shift.to(x.dtype)).mul_(scale * weight.to(x.dtype)).add_(bias.to(x.dtype))
        else:
            y = (x - shift.to(x.dtype)).mul_(scale)
        g_y = torch.ops.aten.silu_backward(g, y)
        del y
        g_x, g_w, g_b = torch.ops.aten.native_batch_norm_backward(
            g_y,
            x,
            weight,
            running_mean,
            running_var,
            mean,
            invstd,
            ctx.batch_stats,
            ctx.eps,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]],
        )
        return g_x, g_w, g_b, None, None, None, None, None


def _bn_step(bn: nn.BatchNorm1d) -> tuple[Tensor | None, Tensor | None, bool, float]:
    """The arguments of one ``bn`` call — running mean and variance to use and update (or
    ``None``), whether batch statistics are used, the momentum — with the bookkeeping of
    ``torch.nn.modules.batchnorm._BatchNorm.forward`` (``num_batches_tracked``)."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(bn.num_batches_tracked)
    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    track = not bn.training or bn.track_running_stats
    return (
        bn.running_mean if track else None,
        bn.running_var if track else None,
        batch_stats,
        momentum,
    )


def batch_norm_silu(x: Tensor, bn: nn.BatchNorm1d) -> Tensor:
    """``silu(bn(x))`` with the memory of ``bn``'s input only (:class:`_BatchNormSiLU`); the
    same values, gradients and running-statistics updates as the two modules."""
    needs_grad = torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in bn.parameters())
    )
    if not needs_grad or x.dim() != 2 or torch.compiler.is_compiling():
        # torch.compile: dynamo cannot trace the hand-written Function; inductor fuses these
        return nn.functional.silu(bn(x))
    running_mean, running_var, batch_stats, momentum = _bn_step(bn)
    return _BatchNormSiLU.apply(
        x, bn.weight, bn.bias, running_mean, running_var, batch_stats, momentum, bn.eps
    )


def _gated_aggregate_autograd(
    s: Tensor, p: Tensor, q: Tensor, c: Tensor, src: Tensor, dst: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """:class:`_GatedAggregate`'s forward in out-of-place torch operators, differentiated by
    autograd: the path ``torch.compile`` traces (dynamo cannot trace the hand-written
    Function, whose backward works in place)."""
    m = s.index_select(0, src) + q.index_select(0, dst) + c
    sig = torch.sigmoid(m)
    num = torch.zeros_like(q).index_add(0, dst, p.index_select(0, src) * sig)
    den = torch.zeros_like(q).index_add(0, dst, sig) + eps
    return m, num / den


class _GatedAggregate(torch.autograd.Function):
    r"""The message passing of an edge-gated convolution, with a hand-written backward.

    .. math::
        m_e = S_{\text{src}(e)} + Q_{\text{dst}(e)} + C_e, \qquad
        \text{out}_i = \frac{\sum_{e \to i} \sigma(m_e) \odot P_{\text{src}(e)}}
                           {\sum_{e \to i} \sigma(m_e) + \epsilon}

    with the node projections :math:`S = W_s h + b_s`, :math:`P = W_2 h + b_2`,
    :math:`Q = W_d h + b_d` ``(N, d)`` and the edge projection :math:`C = W_e e + b_e`
    ``(E, d)``. Returns ``(m, out)``. Keeps ``m`` (an output the edge update reads anyway),
    ``P``, ``out`` and the denominator for backward, which recomputes :math:`\sigma(m)` and
    the gathered :math:`P_{\text{src}(e)}`: autograd would keep both, two ``(E, d)`` tensors.
    Every ``(E, d)`` tensor is contiguous (``index_add_`` of a strided source is several times
    slower on CPU).
    """

    @staticmethod
    def forward(ctx, s, p, q, c, src, dst, eps: float):  # noqa: ANN001, ANN205
        dtype = torch.promote_types(torch.promote_types(s.dtype, p.dtype), c.dtype)
        s, p, q, c = s.to(dtype), p.to(dtype), q.to(dtype), c.to(dtype)
        m = s.index_select(0, src).add_(q.index_select(0, dst)).add_(c)
        sig = torch.sigmoid(m)
        msg = p.index_select(0, src).mul_(sig)
        num = torch.zeros_like(q).index_add_(0, dst, msg)
        del msg
        den = torch.zeros_like(q).index_add_(0, dst, sig).add_(eps)
        del sig
        out = num.div_(den)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(m, p, out, den, src, dst)
        return m, out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_m: Tensor | None, g_out: Tensor | None):  # noqa: ANN205
        m, p, out, den, src, dst = ctx.saved_tensors
        if g_out is None:
            g_out = torch.zeros_like(out)
        # node side: out = num / den  ->  d/dnum = g / den, d/dden = -(g / den) * out
        g_num = g_out / den
        g_den = (g_num * out).neg_()
        g_msg = g_num.index_select(0, dst)
        sig = torch.sigmoid(m)
        g_p = torch.zeros_like(p).index_add_(0, src, g_msg * sig)
        # d/dsigma = g_msg * P_src + g_den[dst], written over the recomputed gather of P
        g_sig = p.index_select(0, src).mul_(g_msg).add_(g_den.index_select(0, dst))
        del g_msg
        g_mm = g_sig.mul_(sig.addcmul_(sig, sig, value=-1.0))  # sigma' = sigma (1 - sigma)
        del sig
        if g_m is not None:
            g_mm.add_(g_m)
        g_s = torch.zeros_like(p).index_add_(0, src, g_mm)
        g_q = torch.zeros_like(p).index_add_(0, dst, g_mm)
        return g_s, g_p, g_q, g_mm, None, None, None


def _f32(t: Tensor | None):  # noqa: ANN202
    if t is None:
        return ctypes.POINTER(ctypes.c_float)()
    return ctypes.cast(t.data_ptr(), ctypes.POINTER(ctypes.c_float))


def _i64(t: Tensor):  # noqa: ANN202
    return ctypes.cast(t.data_ptr(), ctypes.POINTER(ctypes.c_int64))


def _f64(t: Tensor | None):  # noqa: ANN202
    if t is None:
        return ctypes.POINTER(ctypes.c_double)()
    return ctypes.cast(t.data_ptr(), ctypes.POINTER(ctypes.c_double))


def _native_ptr(src: Tensor, dst: Tensor, n_src: int, n_dst: int) -> Tensor | None:
    """CSR offsets of edges sorted by ``dst`` (``None`` if they are not sorted: torch path)."""
    lib = native.gated_library()
    if lib is None:
        return None
    src, dst = src.long().contiguous(), dst.long().contiguous()
    ptr = torch.empty(n_dst + 1, dtype=torch.long)
    rc = lib.dos_csr_from_sorted(_i64(dst), _i64(src), dst.numel(), n_dst, n_src, _i64(ptr))
    if rc == 2:
        raise IndexError(f"edge index out of range ({n_src} sources, {n_dst} targets)")
    return ptr if rc == 0 else None


class _GatedConvNative(torch.autograd.Function):
    r"""The message passing of an edge-gated convolution *and* its edge update on the C kernels
    of :mod:`dos_bench.models.native` (float32, CPU, edges sorted by target).

    From the node projections ``s, p, q`` (as :class:`_GatedAggregate`), the edge features ``e``
    and the edge projection's ``weight``/``bias``, returns the aggregate ``out`` and, when
    ``bn_weight`` is given, the updated edges :math:`e' = e + \operatorname{SiLU}(\mathrm{BN}(m))`
    with the BatchNorm in training (batch statistics; ``running_mean``/``running_var`` updated
    in place as ``nn.BatchNorm1d`` does, with the unbiased variance) or eval mode. Without
    ``bn_weight`` (the convs whose edge output is never read) it returns ``(None, out)``.

    Forward reads each edge row once for the aggregation and the BatchNorm statistics (the
    projection is written into the tensor that becomes :math:`m`) and once for the update;
    backward makes one pass for the BatchNorm sums and one for everything else, recomputing
    :math:`\sigma(m)` and the BatchNorm output, then two matrix products for the projection.
    Saved for backward: ``e``, ``m``, ``p`` and ``(N, d)``/``(d,)`` tensors.
    """

    @staticmethod
    def forward(  # noqa: ANN205
        ctx,  # noqa: ANN001
        s: Tensor,
        p: Tensor,
        q: Tensor,
        e: Tensor,
        weight: Tensor,
        bias: Tensor,
        src: Tensor,
        ptr: Tensor,
        bn_weight: Tensor | None,
        bn_bias: Tensor | None,
        running_mean: Tensor | None,
        running_var: Tensor | None,
        batch_stats: bool,
        momentum: float,
        bn_eps: float,
    ):
        lib = native.gated_library()
        threads = torch.get_num_threads()
        s, p, q, e = (x.contiguous() for x in (s, p, q, e))
        src = src.long().contiguous()
        m = gemm.matmul_nt(e, weight)  # the kernel adds the bias (addmm would copy it in first)
        bias = bias.contiguous()
        n_rows, d = m.shape
        n_dst = q.shape[0]
        out, den = q.new_empty(n_dst, d), q.new_empty(n_dst, d)
        update = bn_weight is not None
        stats = torch.zeros(2 * d, dtype=torch.float64) if update and batch_stats else None
        lib.dos_gated_forward(
            _f32(s), _f32(p), _f32(q), _f32(bias), _f32(m), _i64(src), _i64(ptr), n_dst, d,
            _GATE_EPS,
            _f32(out), _f32(den), _f64(stats), threads,
        )  # fmt: skip
        ctx.set_materialize_grads(False)
        ctx.update, ctx.batch_stats = update, batch_stats
        if not update:
            ctx.save_for_backward(e, weight, m, p, out, den, src, ptr)
            return None, out
        if stats is not None:
            mean64 = stats[:d] / n_rows
            var64 = (stats[d:] / n_rows - mean64 * mean64).clamp_min(0.0)
            mean, var = mean64.float(), var64.float()
            if running_mean is not None and running_var is not None:
                with torch.no_grad():
                    running_mean.lerp_(mean.to(running_mean.dtype), momentum)
                    unbiased = var * (n_rows / max(n_rows - 1, 1))
                    running_var.lerp_(unbiased.to(running_var.dtype), momentum)
        else:
            assert running_mean is not None and running_var is not None
            mean, var = running_mean.float(), running_var.float()
        invstd = torch.rsqrt(var + bn_eps)
        a = (bn_weight * invstd).contiguous()
        shift = (bn_bias - mean * a).contiguous()
        e_new = torch.empty_like(e)
        lib.dos_bn_silu_residual(_f32(e), _f32(m), _f32(a), _f32(shift), n_rows, d, _f32(e_new),
                                 threads)  # fmt: skip
        ctx.save_for_backward(e, weight, m, p, out, den, src, ptr, mean, invstd, a, shift)
        return e_new, out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_e: Tensor | None, g_out: Tensor | None):  # noqa: ANN205
        lib = native.gated_library()
        threads = torch.get_num_threads()
        if ctx.update:
            e, weight, m, p, out, den, src, ptr, mean, invstd, a, shift = ctx.saved_tensors
        else:
            e, weight, m, p, out, den, src, ptr = ctx.saved_tensors
        n_rows, d = m.shape
        n_dst, n_src = out.shape[0], p.shape[0]
        g_out = None if g_out is None else g_out.contiguous()
        g_e = None if g_e is None or not ctx.update else g_e.contiguous()
        g_bn_w = g_bn_b = bn_block = None
        gm = torch.empty_like(m)
        if g_e is not None:
            sums = torch.zeros(2 * d, dtype=torch.float64)
            # the sums pass leaves g_y in gm for the main pass to read (and overwrite with dm)
            lib.dos_bn_silu_grad_sums(
                _f32(g_e), _f32(m), _f32(a), _f32(shift), _f32(mean), _f32(invstd), n_rows, d,
                _f64(sums), _f32(gm), threads,
            )  # fmt: skip
            g_bn_b, g_bn_w = sums[:d].float(), sums[d:].float()
            if ctx.batch_stats:
                c1, c2 = g_bn_b / n_rows, g_bn_w / n_rows
            else:
                c1 = c2 = torch.zeros_like(mean)
            # dm = a (g_y - c1 - (m - mean) invstd c2) = a g_y + k0 - m k1
            k1 = a * invstd * c2
            k0 = mean * k1 - a * c1
            bn_block = torch.cat([k0, k1, a]).contiguous()
        g_s, g_p = p.new_zeros(n_src, d), p.new_zeros(n_src, d)
        g_q = out.new_empty(n_dst, d)
        rc = lib.dos_gated_backward(
            _f32(g_out), _f32(g_e), _f32(bn_block), _f32(m), _f32(p), _f32(out), _f32(den),
            _i64(src), _i64(ptr), n_dst, n_src, d, _f32(gm), _f32(g_s), _f32(g_p), _f32(g_q),
            _f32(None), threads,
        )  # fmt: skip
        if rc != 0:
            raise MemoryError("edge-gated backward: cannot allocate its per-thread buffers")
        g_in = None
        if ctx.needs_input_grad[3]:
            # e enters both the projection and the residual of the update: g_e + dm W
            g_in = gemm.matmul_nt(gm, weight.t(), add=g_e)
        g_w = gemm.matmul_tn(gm, e) if ctx.needs_input_grad[4] else None
        # sum over edges of dm = sum over targets of their edges' dm (the kernel's g_q)
        g_b = g_q.sum(0) if ctx.needs_input_grad[5] else None
        return (
            g_s, g_p, g_q, g_in, g_w, g_b, None, None, g_bn_w, g_bn_b,
            None, None, None, None, None,
        )  # fmt: skip


class EdgeGatedConv(nn.Module):
    r"""Edge-gated graph convolution with residuals (ALIGNN-DOS eqs. 1–3; ALIGNN code).

    See the module docstring for the equations.  Messages flow from ``edge_index[0]`` (source
    :math:`j`) to ``edge_index[1]`` (target :math:`i`).  The parameters are ALIGNN's five
    linear maps; the message passing is :class:`_GatedAggregate`.

    Args:
        dim: width of node and edge features (input = output, residual connections).
        update_edges: compute and return the edge update :math:`e'`; ``False`` returns the
            input edge features unchanged and builds no edge BatchNorm (for a last layer whose
            edge output is never used).

    Shapes:
        h ``(N, dim)``, e ``(E, dim)``, edge_index ``(2, E)`` (int64 or int32) →
        ``(N, dim)``, ``(E, dim)``.
    """

    def __init__(self, dim: int, update_edges: bool = True, kernel: str = "auto") -> None:
        super().__init__()
        if kernel not in _KERNELS:
            raise ConfigError(f"model.encoder.kernel must be one of {_KERNELS}, got {kernel!r}")
        self.src_gate = Linear(dim, dim)  # W_s, applied to the source j
        self.dst_gate = Linear(dim, dim)  # W_d, applied to the target i
        self.edge_gate = Linear(dim, dim)  # W_e
        self.self_update = Linear(dim, dim)  # W_1 (ALIGNN's ``src_update``)
        self.nbr_update = Linear(dim, dim)  # W_2 (ALIGNN's ``dst_update``)
        self.bn_nodes = nn.BatchNorm1d(dim)
        self.update_edges = update_edges
        self.bn_edges = nn.BatchNorm1d(dim) if update_edges else None
        self.kernel = kernel

    def _native_ptr(self, h: Tensor, e: Tensor, edge_index: Tensor) -> Tensor | None:
        """CSR offsets for the C kernel, or ``None`` where it does not apply (``kernel:
        torch``, not CPU float32, autocast, ``torch.compile`` tracing, edges not sorted by
        target, no C compiler)."""
        bn = self.bn_edges
        if (
            self.kernel != "auto"
            or h.device.type != "cpu"
            or h.dtype != torch.float32
            or e.dtype != torch.float32
            or torch.is_autocast_enabled("cpu")
            or torch.compiler.is_compiling()
            or (bn is not None and (not bn.affine or (bn.training and e.shape[0] < 2)))
        ):
            return None
        return _native_ptr(edge_index[0], edge_index[1], h.shape[0], h.shape[0])

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        ptr = self._native_ptr(h, e, edge_index)
        if ptr is not None:
            return self._forward_native(h, e, edge_index, ptr)
        src_gate, nbr_update, dst_gate, self_update = self._node_projections(h)
        aggregate = (
            _gated_aggregate_autograd if torch.compiler.is_compiling() else _GatedAggregate.apply
        )
        m, agg = aggregate(
            src_gate, nbr_update, dst_gate, self.edge_gate(e), edge_index[0], edge_index[1],
            _GATE_EPS,
        )  # fmt: skip
        h_out = h + batch_norm_silu(self_update + agg, self.bn_nodes)
        if self.bn_edges is None:
            return h_out, e
        return h_out, e + batch_norm_silu(m, self.bn_edges)

    def _forward_native(
        self, h: Tensor, e: Tensor, edge_index: Tensor, ptr: Tensor
    ) -> tuple[Tensor, Tensor]:
        bn = self.bn_edges
        if bn is not None:
            running_mean, running_var, batch_stats, momentum = _bn_step(bn)
            bn_args = (bn.weight, bn.bias, running_mean, running_var, batch_stats, momentum, bn.eps)
        else:
            bn_args = (None, None, None, None, False, 0.0, 0.0)
        src_gate, nbr_update, dst_gate, self_update = self._node_projections(h)
        e_new, agg = _GatedConvNative.apply(
            src_gate,
            nbr_update,
            dst_gate,
            e,
            self.edge_gate.weight,
            self.edge_gate.bias,
            edge_index[0],
            ptr,
            *bn_args,
        )
        h_out = h + batch_norm_silu(self_update + agg, self.bn_nodes)
        return h_out, (e if e_new is None else e_new)

    def _node_projections(self, h: Tensor) -> tuple[Tensor, ...]:
        """``W_s h, W_2 h, W_d h, W_1 h`` (with biases) as one matrix product with the four
        weights stacked — one larger product runs nearer the matmul peak than four small ones —
        returned as column views of the ``(N, 4 dim)`` result."""
        layers = (self.src_gate, self.nbr_update, self.dst_gate, self.self_update)
        weight = torch.cat([lin.weight for lin in layers])
        bias = torch.cat([lin.bias for lin in layers])
        return gemm.linear(h, weight, bias).split(self.src_gate.out_features, dim=1)


class ALIGNNEncoder(nn.Module):
    r"""ALIGNN crystal encoder (ALIGNN-DOS §2, §3; docs/papers/alignn_dos.md §1.2–1.3).

    Args:
        in_dim: atom feature size (92 for ``cgcnn``, the ALIGNN code default; 5 for
            ``alignn5``, the paper's element attributes).
        hidden: width of atom, bond and angle features (256, ALIGNN code).
        embedding: intermediate width of the bond and angle embeddings (64, ALIGNN code).
        alignn_layers: ALIGNN layers, each a line-graph then a crystal-graph edge-gated conv
            (4; paper §3 "four ALIGNN edge-gated graph convolution updates", code default 4).
        gcn_layers: edge-gated convs on the crystal graph alone after the ALIGNN layers
            (4, ALIGNN code; the paper does not mention them).
        edge_bins: Gaussians of the bond length on [0, ``cutoff``] Å (80, ALIGNN code).
        angle_bins: Gaussians of the bond-angle cosine on [−1, 1] (40, ALIGNN code).
        cutoff: last bond-length centre in Å (8, ALIGNN ``RBFExpansion(vmax=8)``).
        order: ``"line_first"`` (paper §2, default) or ``"crystal_first"`` (ALIGNN code) —
            which graph is updated first inside an ALIGNN layer.
        backtracking: keep line-graph edges between a bond and its own reverse (cos = +1), as
            ALIGNN (DGL ``line_graph`` default) does.
        atom_embedding_dim: ``None`` (ALIGNN code): atoms ``Linear(in_dim→hidden)+BN+SiLU``;
            an int adds an intermediate ``Linear+BN+SiLU`` of that width.
        kernel: ``"auto"``: the edge-gated aggregation runs on the C kernel of
            :mod:`dos_bench.models.native` where it applies (CPU, float32, no autocast, edges
            sorted by target, a C compiler), else on torch; ``"torch"``: always torch (the
            reference; same results to float32 rounding).

    Shapes:
        batch: ``x (n, in_dim)``, ``pos (n, 3)``, ``cell (B, 3, 3)``, ``edge_index (2, E)``,
        ``edge_shift (E, 3)``, ``edge_dist (E,)``, ``batch (n,)`` → node ``(n, hidden)``,
        graph ``(B, hidden)`` (mean over atoms).  Line graph: ``(2, T)``, T ≈ E·degree.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 256,
        embedding: int = 64,
        alignn_layers: int = 4,
        gcn_layers: int = 4,
        edge_bins: int = 80,
        angle_bins: int = 40,
        cutoff: float = 8.0,
        order: str = "line_first",
        backtracking: bool = True,
        atom_embedding_dim: int | None = None,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        if order not in _ORDERS:
            raise ConfigError(f"model.encoder.order must be one of {_ORDERS}, got {order!r}")
        if alignn_layers < 0 or gcn_layers < 0 or alignn_layers + gcn_layers < 1:
            raise ConfigError(
                "model.encoder needs alignn_layers >= 0, gcn_layers >= 0 and at least one layer, "
                f"got alignn_layers={alignn_layers}, gcn_layers={gcn_layers}"
            )
        self.order = order
        self.backtracking = bool(backtracking)
        if atom_embedding_dim is None:
            self.atom_embedding = _mlp_layer(in_dim, hidden)
        else:
            self.atom_embedding = nn.Sequential(
                _mlp_layer(in_dim, atom_embedding_dim), _mlp_layer(atom_embedding_dim, hidden)
            )
        self.edge_rbf = GaussianExpansion(0.0, cutoff, edge_bins, rbf_style="alignn")
        self.edge_embedding = nn.Sequential(
            _mlp_layer(edge_bins, embedding), _mlp_layer(embedding, hidden)
        )
        self.angle_rbf = GaussianExpansion(-1.0, 1.0, angle_bins, rbf_style="alignn")
        self.angle_embedding = nn.Sequential(
            _mlp_layer(angle_bins, embedding), _mlp_layer(embedding, hidden)
        )
        # which convs' edge outputs are read later (the others skip their edge update)
        n_a, n_g = alignn_layers, gcn_layers
        line_convs, crystal_convs = [], []
        for k in range(n_a):
            last = k == n_a - 1
            if order == "line_first":
                # t' is read by the next ALIGNN layer's line conv; u' by the next layer or GCNs
                line_convs.append(EdgeGatedConv(hidden, update_edges=not last, kernel=kernel))
                crystal_convs.append(EdgeGatedConv(hidden, not last or n_g > 0, kernel))
            else:
                # crystal conv's u' feeds this layer's line conv; t' the next layer's line conv
                crystal_convs.append(EdgeGatedConv(hidden, update_edges=True, kernel=kernel))
                line_convs.append(EdgeGatedConv(hidden, update_edges=not last, kernel=kernel))
        self.line_convs = nn.ModuleList(line_convs)
        self.crystal_convs = nn.ModuleList(crystal_convs)
        self.gcn_convs = nn.ModuleList(
            EdgeGatedConv(hidden, update_edges=k < n_g - 1, kernel=kernel) for k in range(n_g)
        )
        self.node_dim = self.graph_dim = hidden

    def check_graph_recipe(self, recipe: dict) -> None:
        """Refuse a graph recipe whose precomputed line graph is not the one this encoder
        expects (``line_graph_backtracking`` ≠ ``backtracking``); called by
        :class:`~dos_bench.models.model.DOSModel`."""
        if not recipe.get("line_graph") or not len(self.line_convs):
            return
        lg_back = bool(recipe.get("line_graph_backtracking", True))
        if lg_back != self.backtracking:
            raise ConfigError(
                f"model.graph.line_graph_backtracking={lg_back} but "
                f"model.encoder.backtracking={self.backtracking}: the line graph built with the "
                "graphs must be the one the ALIGNN encoder expects; set both alike"
            )

    def forward(self, batch) -> EncoderOutput:
        edge_index = batch.edge_index
        n = batch.x.shape[0]
        h = self.atom_embedding(batch.x)
        u = _mlp(self.edge_embedding, self.edge_rbf(batch.edge_dist.to(h.dtype)))
        if len(self.line_convs):
            lg = getattr(batch, "lg_edge_index", None)
            if lg is not None:  # built with the graphs (recipe line_graph: true)
                lg = lg.long()  # stored as int32; index_add_ is faster with int64 indices
                cos = batch.lg_cos
            else:  # built here, at every step
                vec = edge_vectors(batch.pos, batch.cell, edge_index, batch.edge_shift, batch.batch)
                lg = line_graph(edge_index, n, batch.edge_shift, self.backtracking)
                cos = bond_cosines(vec, lg)
            t = _mlp(self.angle_embedding, self.angle_rbf(cos.to(h.dtype)))
            for line_conv, crystal_conv in zip(self.line_convs, self.crystal_convs, strict=True):
                if self.order == "line_first":
                    u, t = line_conv(u, t, lg)
                    h, u = crystal_conv(h, u, edge_index)
                else:
                    h, u = crystal_conv(h, u, edge_index)
                    u, t = line_conv(u, t, lg)
        for conv in self.gcn_convs:
            h, u = conv(h, u, edge_index)
        graph = global_mean_pool(h, batch.batch, size=batch.num_graphs)
        return EncoderOutput(h, batch.batch, graph)
