"""Per-atom MLP encoder with sum pooling (the DOSTransformer "MLP" baseline,
docs/papers/dostransformer.md §2.5).

No message passing: each atom's features go through the same MLP and the crystal embedding is
the sum over atoms (size-extensive, like a per-cell DOS).
"""

from __future__ import annotations

from torch import nn
from torch_geometric.nn import global_add_pool, global_mean_pool

from dos_bench.models.layers import mlp
from dos_bench.models.model import EncoderOutput

__all__ = ["MLPEncoder"]


class MLPEncoder(nn.Module):
    """Args:
        in_dim: atom feature size (92 for CGCNN features).
        hidden: width of every layer and of the embeddings.
        n_layers: number of Linear layers in the atom MLP.
        act: activation name.
        pooling: ``sum`` (default, DOSTransformer) or ``mean``.

    Shapes:
        batch.x ``(n, in_dim)`` → node ``(n, hidden)``, graph ``(B, hidden)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 256,
        n_layers: int = 2,
        act: str = "silu",
        pooling: str = "sum",
    ) -> None:
        super().__init__()
        if pooling not in ("sum", "mean"):
            raise ValueError(f"model.encoder.pooling must be 'sum' or 'mean', got {pooling!r}")
        self.net = mlp([in_dim] + [hidden] * n_layers, act=act, last_act=True)
        self.pool = global_add_pool if pooling == "sum" else global_mean_pool
        self.node_dim = self.graph_dim = hidden

    def forward(self, batch) -> EncoderOutput:
        h = self.net(batch.x)
        return EncoderOutput(h, batch.batch, self.pool(h, batch.batch, size=batch.num_graphs))
