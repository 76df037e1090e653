r"""UniMP graph-transformer encoder of Xtal2DoS (Xtal2DoS §2.2, §4.2; docs/papers/xtal2dos.md
§3.2–3.3).

Embeddings (Xtal2DoS code, class ``GAT``): :math:`h^0_i = \operatorname{LeakyReLU}(W_n x_i)`
(``Linear(92→d)``, slope 0.01), :math:`e_{ij} = \operatorname{LeakyReLU}_{0.2}(W_b\,
\mathrm{RBF}(d_{ij}))` (41 Gaussians 0…8 Å, width 0.2, CGCNN style) and
:math:`c = \operatorname{LeakyReLU}_{0.2}(W_c\,\mathrm{comp})` (``Linear(103→d)``), d = 512.

UniMP layer (PyG :class:`~torch_geometric.nn.conv.TransformerConv`, Xtal2DoS eqs. 2–6), for
edge :math:`j \to i` and each head:

.. math::
    \alpha_{ij} &= \operatorname{softmax}_{j \in N(i)}
        \frac{(W_q h_i)^\top (W_k h_j + W_e e_{ij})}{\sqrt{c}}, \qquad
    \hat h_i = \sum_{j \in N(i)} \alpha_{ij}\,(W_v h_j + W_e e_{ij}) \\
    r_i &= W_r h_i, \qquad
    \beta_i = \operatorname{sigmoid}(\mathbf a\cdot[\hat h_i; r_i; \hat h_i - r_i]), \qquad
    \tilde h_i = (1 - \beta_i)\,\hat h_i + \beta_i\, r_i

(heads concatenated, or averaged in the last layer, before the residual).  With
``beta=False`` the residual is the plain sum :math:`\hat h_i + r_i` (PyG
``root_weight=True``).  Then, per layer :math:`l`:

.. math::
    h^{l+1} = \operatorname{Dropout}\Big(\operatorname{LeakyReLU}\big(\operatorname{BN}(
        \sigma(\operatorname{LN}(\tilde h))\big)\Big)

where :math:`\sigma(\operatorname{LN}(\cdot))` (eq. 6, σ = LeakyReLU) is applied only with
``layer_norm=True`` and never in the last layer (paper: "for the last layer of UniMP, σ and
f_LN are skipped"), and BN + activation + dropout follow every layer (paper §4.2 "each
followed by batch normalization and a non-linear activation"; code).

Widths (code): 512 → 4 heads × 16 (concat, 64) → 4 × 16 (64) → 512 (4 heads averaged); the
code's unused ``conv3`` is not built.  Node embeddings :math:`h^L` (512).  Crystal embedding
(``crystal_vector``): ``mean_composition`` (default) = [mean over atoms of :math:`h^L`;
:math:`c`] (1024-d, the code's crystal context); ``mean`` = the mean over atoms alone, the
paper's :math:`h_x = \frac1n \sum_i h_i^L` (Xtal2DoS eq. 7; 512-d, no composition embedding).

Paper vs code, and what is chosen here
--------------------------------------
* Gated residual + LayerNorm/σ (paper eq. 6): default ``beta=True, layer_norm=True``;
  the released code has ``beta=False`` and no LayerNorm (``beta=False, layer_norm=False``).
  ``layer_norm=None`` follows ``beta``.
* Shared edge projection (paper eq. 3: :math:`W_e` shared by all layers): PyG's
  TransformerConv has one ``lin_edge`` per layer after the shared edge embedding, as the code.
* Crystal vector (paper eq. 7: the mean of the atoms; code: that mean concatenated with the
  composition embedding): default ``crystal_vector="mean_composition"``, the code's — the
  composition embedding is the model's only composition input, and runs saved before the
  option existed keep loading; ``crystal_vector="mean"`` is the paper's.
* Message direction: the paper attends over the neighbours of each atom (aggregation at the
  centre, this package's convention: ``aggregate_at="centre"``); the code's edge index is
  centre-first under PyG's default flow, so it aggregates at the neighbour
  (``aggregate_at="neighbour"`` reproduces it; it differs only on non-symmetric k-NN graphs).

Graph recipe (model YAML): ``cutoff 8, max_neighbors 12`` (Xtal2DoS/Mat2Spec ``data.py``);
atom features ``cgcnn``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch_geometric.nn import TransformerConv, global_mean_pool

from dos_bench.data.features import N_COMPOSITION
from dos_bench.io import ConfigError
from dos_bench.models.gemm import Linear, adopt
from dos_bench.models.layers import GaussianExpansion
from dos_bench.models.model import EncoderOutput

__all__ = ["UniMPEncoder"]

_AGGREGATE = ("centre", "neighbour")
_CRYSTAL_VECTOR = ("mean_composition", "mean")
#: the dense layers of PyG's TransformerConv (queries, keys, values, edges, root/skip)
_CONV_LINEARS = ("lin_query", "lin_key", "lin_value", "lin_edge", "lin_skip")


class UniMPEncoder(nn.Module):
    r"""Xtal2DoS UniMP encoder (Xtal2DoS §2.2; docs/papers/xtal2dos.md §3.3).

    Args:
        in_dim: atom feature size (92, CGCNN).
        hidden: d, width of the node, edge and composition embeddings and of the last layer
            (512, code ``d_model``).
        channels: per-head width of the inner layers (16, code).
        heads: attention heads of every layer (4, code).
        n_layers: UniMP layers (3, paper §4.2 and code).
        rbf_num, rbf_stop, rbf_width: Gaussian distance expansion (41, 8 Å, 0.2 Å).
        dropout: dropout after every layer (0.2, code ``graph_dropout``).
        attn_dropout: dropout on the attention coefficients (0, PyG default as in the code).
        beta: gated residual of eq. 6 (``True``, paper) or plain residual sum (``False``,
            code).
        layer_norm: σ(LayerNorm(·)) after the residual in all but the last layer (eq. 6);
            ``None`` = same as ``beta``.
        aggregate_at: ``"centre"`` (paper, default) or ``"neighbour"`` (code's edge direction).
        negative_slope: LeakyReLU slope after the node embedding, the BatchNorms and the
            LayerNorms (0.01, ``F.leaky_relu`` default in the code).
        edge_slope: LeakyReLU slope of the edge and composition embeddings (0.2, code).
        crystal_vector: ``"mean_composition"`` ([mean of atoms; composition embedding], code,
            default) or ``"mean"`` (mean of atoms, paper eq. 7).

    Shapes:
        batch: ``x (n, in_dim)``, ``edge_index (2, E)``, ``edge_dist (E,)``, ``comp (B, 103)``
        (read only by ``mean_composition``), ``batch (n,)`` → node ``(n, hidden)``, graph
        ``(B, 2 * hidden)`` (``mean_composition``) or ``(B, hidden)`` (``mean``).
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 512,
        channels: int = 16,
        heads: int = 4,
        n_layers: int = 3,
        rbf_num: int = 41,
        rbf_stop: float = 8.0,
        rbf_width: float = 0.2,
        dropout: float = 0.2,
        attn_dropout: float = 0.0,
        beta: bool = True,
        layer_norm: bool | None = None,
        aggregate_at: str = "centre",
        negative_slope: float = 0.01,
        edge_slope: float = 0.2,
        crystal_vector: str = "mean_composition",
    ) -> None:
        super().__init__()
        if crystal_vector not in _CRYSTAL_VECTOR:
            raise ConfigError(
                f"model.encoder.crystal_vector must be one of {_CRYSTAL_VECTOR}, "
                f"got {crystal_vector!r}"
            )
        if aggregate_at not in _AGGREGATE:
            raise ConfigError(
                f"model.encoder.aggregate_at must be one of {_AGGREGATE}, got {aggregate_at!r}"
            )
        if n_layers < 1:
            raise ConfigError(f"model.encoder.n_layers must be >= 1, got {n_layers}")
        self.aggregate_at = aggregate_at
        self.negative_slope = negative_slope
        self.edge_slope = edge_slope
        self.layer_norm = bool(beta if layer_norm is None else layer_norm)
        self.rbf = GaussianExpansion(0.0, rbf_stop, rbf_num, rbf_width)
        self.embed_node = Linear(in_dim, hidden)
        self.embed_edge = Linear(rbf_num, hidden)
        self.crystal_vector = crystal_vector
        self.embed_comp = (
            Linear(N_COMPOSITION, hidden) if crystal_vector == "mean_composition" else None
        )
        inner = heads * channels
        self.convs = nn.ModuleList()
        self.lns = nn.ModuleList()
        self.bns = nn.ModuleList()
        width = hidden
        for k in range(n_layers):
            last = k == n_layers - 1
            out_ch, concat = (hidden, False) if last else (channels, True)
            conv = TransformerConv(
                width,
                out_ch,
                heads=heads,
                concat=concat,
                beta=beta,
                dropout=attn_dropout,
                edge_dim=hidden,
                root_weight=True,
            )
            for name in _CONV_LINEARS:  # PyG's F.linear layers onto cpu_gemm, same parameters
                setattr(conv, name, adopt(getattr(conv, name)))
            self.convs.append(conv)
            width = hidden if last else inner
            if self.layer_norm and not last:
                self.lns.append(nn.LayerNorm(width))
            self.bns.append(nn.BatchNorm1d(width))
        self.dropout = nn.Dropout(dropout)
        self.node_dim = hidden
        self.graph_dim = 2 * hidden if self.embed_comp is not None else hidden

    def forward(self, batch) -> EncoderOutput:
        edge_index = batch.edge_index
        if self.aggregate_at == "neighbour":
            edge_index = edge_index.flip(0)
        slope = self.negative_slope
        h = F.leaky_relu(self.embed_node(batch.x), slope)
        e = F.leaky_relu(self.embed_edge(self.rbf(batch.edge_dist.to(h.dtype))), self.edge_slope)
        for k, (conv, bn) in enumerate(zip(self.convs, self.bns, strict=True)):
            h = conv(h, edge_index, e)
            if k < len(self.lns):
                h = F.leaky_relu(self.lns[k](h), slope)
            h = self.dropout(F.leaky_relu(bn(h), slope))
        pooled = global_mean_pool(h, batch.batch, size=batch.num_graphs)
        if self.embed_comp is None:
            return EncoderOutput(h, batch.batch, pooled)
        c = F.leaky_relu(self.embed_comp(batch.comp.to(h.dtype)), self.edge_slope)
        return EncoderOutput(h, batch.batch, torch.cat([pooled, c], dim=-1))
