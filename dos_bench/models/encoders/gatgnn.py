r"""GATGNN encoder of Mat2Spec (Mat2Spec Methods "Graph encoder"; docs/papers/mat2spec.md §4.3).

The graph attention network of GATGNN (Louis et al. 2020) as modified in Mat2Spec
(``Mat2Spec/Mat2Spec.py``: ``GNN``, ``GAT_Crystal``, ``COMPOSITION_Attention``).

Embeddings: :math:`h^0_i = W_n x_i + b_n` (``Linear(92→128)``, no activation) and
:math:`e_{ij} = \operatorname{LeakyReLU}_{0.2}(W_b\,\mathrm{RBF}(d_{ij}) + b_b)` with 41
Gaussians :math:`\exp(-(d-\mu_k)^2/0.2^2)`, :math:`\mu_k = 0, 0.2, \ldots, 8` Å (CGCNN style).

GAT_Crystal layer (:class:`GATCrystalConv`), for edge :math:`j \to i` (``j`` the neighbour,
``i`` the centre) and head :math:`k = 1..K`:

.. math::
    a_{ij} &= \operatorname{softplus}([h_i; e_{ij}]\,W), \qquad
    b_{ij}  = \operatorname{softplus}([h_j; e_{ij}]\,W), \qquad
    W \in \mathbb R^{(d+d_e)\times Kd}\\
    s^k_{ij} &= \operatorname{softplus}\big(\mathbf a_k\cdot[a^k_{ij} \,\Vert\, b^k_{ij}]\big),
    \qquad \tilde s_{ij} = \operatorname{softplus}(\operatorname{BN}_K(s_{ij}))\\
    \alpha^k_{ij} &= \frac{\exp \tilde s^k_{ij}}{\sum_{j'\in N(i)} \exp \tilde s^k_{j'i}}, \qquad
    h_i' = \frac1K \sum_k \sum_{j\in N(i)} \alpha^k_{ij}\, b^k_{ij} + \mathbf{bias}

(``BN_K`` a BatchNorm1d over the K head scores of all edges; dropout on :math:`\alpha`); after
each layer :math:`h \leftarrow \operatorname{softplus}(\operatorname{BN}(h'))`.  The products
:math:`[h; e]W` are computed as :math:`hW_h + eW_e` (same parameters, fewer FLOPs).

Composition-weighted pooling (``COMPOSITION_Attention``), with :math:`c` the 103-d element
fractions of the crystal:

.. math::
    w_i = \operatorname{softmax}_{i \in \text{crystal}}\Big(W_2\,\operatorname{softplus}
          (W_1 [h_i; c] + b_1) + b_2\Big), \qquad
    g = \frac1{n}\sum_i w_i h_i

(:math:`W_1`: 231→32, :math:`W_2`: 32→1).  Because the weights already sum to 1 over a
crystal, the code's *mean* makes :math:`g` scale as 1/n: a 2×1×1 supercell gives half the
embedding of its cell.  ``pool_reduce="sum"`` gives the weighted average
:math:`\sum_i w_i h_i`, which is supercell-invariant (default ``"mean"``: paper and code).

Paper vs code: the paper has "two four-head attention layers", the code 3 (``--num_layers``
default) — default ``n_layers=2`` (paper), ``3`` reproduces the code.  Everything else follows
the code (the paper gives no widths).  The code's aggregation is at the centre atom
(``flow="target_to_source"`` on its centre-first edges), which is this package's convention.
The code's unused modules (composition embedding, fractional encoders, ``linear1/2``) are not
built.

Node embeddings returned are the GAT outputs :math:`h_i` *before* the composition weighting
(the weights only serve the pooling).

Graph recipe (model YAML): ``cutoff 8, max_neighbors 12`` (Mat2Spec ``data.py``; the code's
CGCNN padding of atoms with < 12 neighbours by fake 9 Å edges is not reproduced); atom
features ``cgcnn`` (92-d).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import global_add_pool, global_mean_pool
from torch_geometric.utils import softmax

from dos_bench.data.features import N_COMPOSITION
from dos_bench.io import ConfigError
from dos_bench.models.gemm import Linear
from dos_bench.models.layers import GaussianExpansion
from dos_bench.models.model import EncoderOutput

__all__ = ["CompositionPooling", "GATCrystalConv", "GATGNNEncoder"]


class GATCrystalConv(nn.Module):
    r"""One GAT_Crystal layer (Mat2Spec code; equations in the module docstring).

    Args:
        dim: node width d (input and output, heads averaged).
        edge_dim: edge feature width.
        heads: K attention heads (4).
        dropout: dropout on the attention coefficients (0 in Mat2Spec).

    Shapes:
        h ``(N, dim)``, e ``(E, edge_dim)``, edge_index ``(2, E)`` → ``(N, dim)``.
    """

    def __init__(self, dim: int, edge_dim: int, heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim, self.heads = dim, heads
        self.weight = nn.Parameter(torch.empty(dim + edge_dim, heads * dim))
        self.att = nn.Parameter(torch.empty(1, heads, 2 * dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.bn = nn.BatchNorm1d(heads)
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.weight)
        # glorot on (1, heads, 2*dim) as PyG's ``glorot``: bound from the last two dims
        bound = (6.0 / (heads + 2 * dim)) ** 0.5
        nn.init.uniform_(self.att, -bound, bound)

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor) -> Tensor:
        src, dst = edge_index[0], edge_index[1]  # j (neighbour), i (centre)
        w_h, w_e = self.weight[: self.dim], self.weight[self.dim :]
        hw = h @ w_h  # (N, K*d)
        ew = e @ w_e  # (E, K*d)
        # centre side a (from h_i) and neighbour side b (from h_j), (E, K, d)
        a = F.softplus(hw.index_select(0, dst) + ew).view(-1, self.heads, self.dim)
        b = F.softplus(hw.index_select(0, src) + ew).view(-1, self.heads, self.dim)
        score = F.softplus((torch.cat([a, b], dim=-1) * self.att).sum(dim=-1))  # (E, K)
        score = F.softplus(self.bn(score))
        alpha = self.dropout(softmax(score, dst, num_nodes=h.shape[0]))
        msg = (b * alpha.unsqueeze(-1)).reshape(-1, self.heads * self.dim)
        # under bf16 autocast the matmuls give bf16 and the softmax fp32: sum in the message's
        # dtype (index_add_ needs one dtype on both sides)
        out = msg.new_zeros(h.shape[0], self.heads * self.dim).index_add_(0, dst, msg)
        return out.view(-1, self.heads, self.dim).mean(dim=1) + self.bias


class CompositionPooling(nn.Module):
    r"""Composition-attention weighted mean pooling (Mat2Spec ``COMPOSITION_Attention``).

    Args:
        dim: node width; comp_dim: composition length (103); hidden: attention width (32).
        reduce: ``"mean"`` (code) or ``"sum"`` of the weighted node embeddings.

    Shapes:
        h ``(N, dim)``, comp ``(B, 103)``, batch ``(N,)`` → graph ``(B, dim)``.
    """

    def __init__(
        self, dim: int, comp_dim: int = N_COMPOSITION, hidden: int = 32, reduce: str = "mean"
    ) -> None:
        super().__init__()
        if reduce not in ("mean", "sum"):
            raise ConfigError(f"model.encoder.pool_reduce must be 'mean' or 'sum', got {reduce!r}")
        self.reduce = global_mean_pool if reduce == "mean" else global_add_pool
        self.node_layer = Linear(dim + comp_dim, hidden)
        self.att_layer = Linear(hidden, 1)

    def forward(self, h: Tensor, comp: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        chunk = torch.cat([h, comp[batch].to(h.dtype)], dim=-1)
        s = self.att_layer(F.softplus(self.node_layer(chunk)))  # (N, 1)
        w = softmax(s, batch, num_nodes=num_graphs)
        return self.reduce(h * w, batch, size=num_graphs)


class GATGNNEncoder(nn.Module):
    r"""Mat2Spec's GATGNN encoder (Mat2Spec Methods; docs/papers/mat2spec.md §4.3).

    Args:
        in_dim: atom feature size (92, CGCNN).
        hidden: node / edge embedding width (128, Mat2Spec ``--num_neurons``).
        n_layers: GAT_Crystal layers (2 per the paper; the code runs 3).
        heads: attention heads per layer (4; paper "four-head", code ``--num_heads``).
        rbf_num, rbf_stop, rbf_width: Gaussian distance expansion (41 centres 0…8 Å, width
            0.2 Å; Mat2Spec ``data.py``).
        edge_slope: LeakyReLU slope of the edge embedding (0.2, code).
        dropout: dropout on attention coefficients (0, code).
        pool_hidden: hidden width of the composition attention (32, code).
        pool_reduce: ``"mean"`` of the weighted atoms (paper, code) or ``"sum"`` (a weighted
            average, supercell-invariant).

    Shapes:
        batch: ``x (n, in_dim)``, ``edge_index (2, E)``, ``edge_dist (E,)``, ``comp (B, 103)``,
        ``batch (n,)`` → node ``(n, hidden)``, graph ``(B, hidden)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 128,
        n_layers: int = 2,
        heads: int = 4,
        rbf_num: int = 41,
        rbf_stop: float = 8.0,
        rbf_width: float = 0.2,
        edge_slope: float = 0.2,
        dropout: float = 0.0,
        pool_hidden: int = 32,
        pool_reduce: str = "mean",
    ) -> None:
        super().__init__()
        if n_layers < 1 or heads < 1:
            raise ConfigError(
                f"model.encoder needs n_layers >= 1 and heads >= 1, got {n_layers}, {heads}"
            )
        self.rbf = GaussianExpansion(0.0, rbf_stop, rbf_num, rbf_width)
        self.embed_node = Linear(in_dim, hidden)
        self.embed_edge = Linear(rbf_num, hidden)
        self.edge_slope = edge_slope
        self.convs = nn.ModuleList(
            GATCrystalConv(hidden, hidden, heads, dropout) for _ in range(n_layers)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(n_layers))
        self.pool = CompositionPooling(hidden, N_COMPOSITION, pool_hidden, pool_reduce)
        self.node_dim = self.graph_dim = hidden

    def forward(self, batch) -> EncoderOutput:
        h = self.embed_node(batch.x)
        e = F.leaky_relu(self.embed_edge(self.rbf(batch.edge_dist.to(h.dtype))), self.edge_slope)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = F.softplus(norm(conv(h, e, batch.edge_index)))
        graph = self.pool(h, batch.comp, batch.batch, batch.num_graphs)
        return EncoderOutput(h, batch.batch, graph)
