"""The ``direct`` head: an MLP from the crystal embedding to all grid points at once.

Used by D-ALIGNN (§2, "four FC layers" → ``n_layers=4``), GATGNN and the DOSTransformer
"Energy ✗" baselines (docs/papers/dostransformer.md §2.5).
"""

from __future__ import annotations

from torch import Tensor, nn

from dos_bench.models.layers import mlp
from dos_bench.models.model import EncoderOutput

__all__ = ["DirectHead"]


class DirectHead(nn.Module):
    """Args:
        graph_dim: size of the crystal embedding (given by the encoder).
        out_dim: number of outputs (grid points or latent size).
        hidden: width of the hidden layers.
        n_layers: number of Linear layers (1 = a single linear map, as the ALIGNN code).
        act: activation between layers.
        dropout: dropout between layers.

    Shapes:
        graph ``(B, graph_dim)`` → ``(B, out_dim)``.
    """

    def __init__(
        self,
        graph_dim: int,
        out_dim: int,
        node_dim: int | None = None,
        hidden: int = 256,
        n_layers: int = 2,
        act: str = "silu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = mlp(
            [graph_dim] + [hidden] * (n_layers - 1) + [out_dim],
            act=act,
            dropout=dropout,
            last_act=False,
        )

    def forward(self, enc: EncoderOutput, batch=None, target: Tensor | None = None) -> Tensor:
        return self.net(enc.graph)
