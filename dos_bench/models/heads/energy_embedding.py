r"""The ``energy_embedding`` head: DOSTransformer's "Energy ✓" baselines.

DOSTransformer (P-DOST §4 "Methods Compared", App. A.4; docs/papers/dostransformer.md §2.5, Table 1
rows "MLP /
Graph Network / E3NN, Energy ✓") adds a learnable embedding per grid point to the crystal
representation and predicts one DOS value per energy with a shared MLP:

.. math::
    \hat Y_{ij} = \phi(\mathbf E_j + \alpha\,\mathbf g_i)
    \qquad \mathbf E \in \mathbb R^{M\times d},\ \alpha \in \mathbb R \text{ learnable},\
    \phi:\mathbb R^d \to \mathbb R

(``fusion="add"``, the paper, A.4). The authors' code instead concatenates (``fusion="concat"``):
:math:`\hat Y_{ij} = W_2\,\mathrm{LeakyReLU}(W_1[\mathbf E_j; \mathbf g_i] + b_1) + b_2` with
:math:`W_1 \in \mathbb R^{d\times 2d}`. The concatenation is evaluated as
:math:`W_1^{E}\mathbf E_j + W_1^{g}\mathbf g_i + b_1` — the same function, computed once per
energy and once per crystal instead of on a ``(B, M, 2d)`` tensor.

:class:`EnergyReadout` (the fusion and :math:`\phi`) is shared with the ``cross_attention`` head,
whose eq. 3 is the same readout applied to the attended embeddings :math:`\mathbf E^L`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dos_bench.io import ConfigError
from dos_bench.models.gemm import Linear, linear
from dos_bench.models.layers import activation
from dos_bench.models.model import EncoderOutput

__all__ = ["EnergyReadout", "EnergyEmbeddingHead"]

_FUSIONS = ("add", "concat")


class EnergyReadout(nn.Module):
    r"""Fuse per-energy tokens with the crystal vector and map each to one value.

    ``fusion="add"`` (DOSTransformer eq. 3 / A.4): :math:`\phi(\mathbf e_j + \alpha\mathbf g)`,
    :math:`\phi` = ``Linear(d→hidden) – act – Linear(hidden→1)``. The depth/width of
    :math:`\phi` is not given in the paper [?]; the default mirrors the code's output MLP
    (one hidden layer of width ``d``, LeakyReLU).

    ``fusion="concat"`` (DOSTransformer code): ``Linear(2d→hidden) – act – Linear(hidden→1)``
    on :math:`[\mathbf e_j; \mathbf g]`.

    Args:
        d: token width.
        hidden: hidden width of :math:`\phi` (default ``d``).
        fusion: ``add`` (paper) or ``concat`` (code).
        act: activation of :math:`\phi` (``leaky_relu`` as the code).
        alpha_init: initial :math:`\alpha` (not specified in the paper [?]).
        dropout: dropout on the hidden layer of :math:`\phi`.

    Shapes:
        tokens ``(M, d)`` (shared) or ``(B, M, d)``, g ``(B, d)`` → ``(B, M)``.
    """

    def __init__(
        self,
        d: int,
        hidden: int | None = None,
        fusion: str = "add",
        act: str = "leaky_relu",
        alpha_init: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if fusion not in _FUSIONS:
            raise ConfigError(f"model.head.fusion must be one of {_FUSIONS}, got {fusion!r}")
        hidden = d if hidden is None else hidden
        self.fusion, self.d = fusion, d
        if fusion == "add":
            self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
            self.fc1 = Linear(d, hidden)
        else:
            self.fc1 = Linear(2 * d, hidden)
        self.act = activation(act)
        self.drop = nn.Dropout(dropout)
        self.fc2 = Linear(hidden, 1)

    def forward(self, tokens: Tensor, g: Tensor) -> Tensor:
        if self.fusion == "add":
            h = self.fc1(tokens + self.alpha * g.unsqueeze(-2))
        else:  # W [e; g] + b == W_e e + W_g g + b, evaluated without materialising [e; g]
            w_e, w_g = self.fc1.weight[:, : self.d], self.fc1.weight[:, self.d :]
            h = linear(tokens, w_e) + linear(g, w_g, self.fc1.bias).unsqueeze(-2)
        return self.fc2(self.drop(self.act(h))).squeeze(-1)


class EnergyEmbeddingHead(nn.Module):
    r"""Learnable energy embeddings fused with the crystal embedding (DOSTransformer "Energy ✓").

    .. math::
        \hat Y_{ij} = \phi(\mathbf E_j + \alpha\,P\mathbf g_i),\quad j = 1\ldots M

    with :math:`\mathbf E` = ``nn.Embedding(M, d)``, :math:`\mathbf g_i` the encoder's pooled
    crystal embedding (sum-pooled in the MLP / Graph Network encoders, P-DOST A.4) and
    :math:`P` = ``Linear(graph_dim→d)`` only when ``graph_dim ≠ d`` (identity otherwise, as in
    the paper where both are ``d``). Vectorised over all ``M`` energies.

    Args:
        graph_dim: crystal-embedding size (from the encoder).
        out_dim: number of grid points ``M`` (201 eDOS / 51 phDOS in P-DOST).
        node_dim: unused (heads share one constructor signature).
        d: embedding width (P-DOST Table 4: 256).
        hidden: hidden width of :math:`\phi` (default ``d``).
        fusion: ``add`` = paper (A.4, eq. 3) / ``concat`` = authors' code
        (docs/papers/dostransformer.md §2.5).
        act: activation of :math:`\phi`.
        alpha_init: initial value of :math:`\alpha` (``add`` only).
        dropout: dropout inside :math:`\phi`.

    Shapes:
        graph ``(B, graph_dim)`` → ``(B, M)``.
    """

    def __init__(
        self,
        graph_dim: int,
        out_dim: int,
        node_dim: int | None = None,
        d: int = 256,
        hidden: int | None = None,
        fusion: str = "add",
        act: str = "leaky_relu",
        alpha_init: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.energy = nn.Embedding(out_dim, d)
        self.graph_proj = Linear(graph_dim, d) if graph_dim != d else nn.Identity()
        self.readout = EnergyReadout(d, hidden, fusion, act, alpha_init, dropout)

    def forward(self, enc: EncoderOutput, batch=None, target: Tensor | None = None) -> Tensor:
        return self.readout(self.energy.weight, self.graph_proj(enc.graph))
