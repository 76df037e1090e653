r"""The ``cross_attention`` head: DOSTransformer as described in the seed paper.

P-DOST §3 (eqs. 2–3), App. A.3, Table 4; docs/papers/dostransformer.md §2.4. Learnable energy
embeddings attend to the
atom embeddings of the crystal over ``L`` layers, then each attended energy token is read out with
the crystal vector:

.. math::
    \mathbf E^l &= \mathrm{softmax}\!\Big(\frac{\mathbf E^{l-1}W_Q\,(\mathbf H W_K)^\top}
        {\sqrt d}\Big)\mathbf H W_V \qquad l = 1\ldots L \quad\text{(eq. 2)}\\
    \hat Y_j &= \phi(\mathbf E^L_j + \alpha\,\mathbf g) \quad\text{(eq. 3)}

:math:`\mathbf E^0 \in \mathbb R^{M\times d}` (``nn.Embedding(M, d)``), :math:`\mathbf H` the
atom embeddings of the crystal (encoder node embeddings, projected to ``d`` when
``node_dim ≠ d``), :math:`\mathbf g` the sum-pooled crystal representation (the encoder's
``graph``, projected to ``d`` when ``graph_dim ≠ d``).

Each layer is eq. 2 wrapped in a standard **pre-LN transformer block** — residual connection,
LayerNorm before the attention (on the energy queries and on the atom keys/values) and a ReLU FFN
``d→4d→d`` — followed by a final LayerNorm after the stack; the paper writes only the attention
(its "transformer layer"), the block structure is that of the authors' code
(docs/papers/dostransformer.md §2.5).
The attention uses Q/K/V projections as in eq. 2 (the code has none) and, unlike the code, a
**key padding mask over atoms**, so a crystal's prediction does not depend on the other crystals
in its batch. Default 1 head and no output projection = eq. 2 literally (``n_heads`` > 1 and
``out_proj`` are options).

Not implemented: the released NeurIPS-2023 *prompt-guided* model of the DOSTransformer repository
(crystal-system prompt tokens, second output head, extra self-/cross-attention stacks;
docs/papers/dostransformer.md §2.5, docs/pitfalls.md §6.10) — it is not the seed-paper model.
"""

from __future__ import annotations

from torch import Tensor, nn

from dos_bench.models.gemm import Linear
from dos_bench.models.heads.attention import TransformerLayer, dense_atoms, host_max_atoms
from dos_bench.models.heads.energy_embedding import EnergyReadout
from dos_bench.models.model import EncoderOutput

__all__ = ["CrossAttentionHead"]


class CrossAttentionHead(nn.Module):
    """DOSTransformer head (seed paper): energy tokens ⟶ cross-attention to atoms ⟶ readout.

    Args:
        node_dim: atom-embedding size (from the encoder).
        graph_dim: crystal-embedding size (from the encoder).
        out_dim: number of grid points ``M`` (201 eDOS / 51 phDOS).
        d: width ``d`` (P-DOST Table 4: 256).
        n_layers: cross-attention layers ``L`` (Table 4: 2).
        n_heads: attention heads (eq. 2 is single-head: default 1).
        d_ff: FFN width (default ``4 d`` as the code).
        attn_dropout: dropout on attention probabilities (code ``--attn_drop`` default 0).
        dropout: residual dropout (code: 0).
        out_proj: output projection W_O in the attention (eq. 2: none).
        fusion: readout fusion, ``add`` (paper eq. 3) or ``concat`` (code).
        readout_hidden: hidden width of φ (default ``d``).
        alpha_init: initial α of eq. 3 (not given in the paper [?]).
        kernel: attention implementation: ``"auto"`` (C kernel on CPU float32 without attention
            dropout) | ``"torch"`` (:func:`torch.nn.functional.scaled_dot_product_attention`).

    Shapes:
        node ``(n, node_dim)``, batch ``(n,)``, graph ``(B, graph_dim)`` → ``(B, M)``.
    """

    def __init__(
        self,
        node_dim: int,
        graph_dim: int,
        out_dim: int,
        d: int = 256,
        n_layers: int = 2,
        n_heads: int = 1,
        d_ff: int | None = None,
        attn_dropout: float = 0.0,
        dropout: float = 0.0,
        out_proj: bool = False,
        fusion: str = "add",
        readout_hidden: int | None = None,
        alpha_init: float = 1.0,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        self.energy = nn.Embedding(out_dim, d)
        self.node_proj = Linear(node_dim, d) if node_dim != d else nn.Identity()
        self.graph_proj = Linear(graph_dim, d) if graph_dim != d else nn.Identity()
        self.layers = nn.ModuleList(
            TransformerLayer(
                d,
                n_heads,
                d_ff=4 * d if d_ff is None else d_ff,
                self_attn=False,
                cross_attn=True,
                attn_dropout=attn_dropout,
                dropout=dropout,
                act="relu",
                memory_norm=True,
                out_proj=out_proj,
                kernel=kernel,
            )
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.readout = EnergyReadout(d, readout_hidden, fusion, "leaky_relu", alpha_init)

    def forward(self, enc: EncoderOutput, batch=None, target: Tensor | None = None) -> Tensor:
        b = enc.graph.shape[0]
        atoms, mask = dense_atoms(  # (B, n_max, d)
            self.node_proj(enc.node), enc.batch, b, max_atoms=host_max_atoms(batch)
        )
        x = self.energy.weight.unsqueeze(0).expand(b, -1, -1)  # (B, M, d)
        for layer in self.layers:
            x = layer(x, atoms, mask)
        return self.readout(self.norm(x), self.graph_proj(enc.graph))
