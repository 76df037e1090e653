r"""The ``seq_transformer`` head: the Xtal2DoS transformer decoder.

Xtal2DoS §2.3 ("Transformer"), §4.2; docs/papers/xtal2dos.md §3.3. The spectrum is decoded as a
sequence of
``M`` positions; the input at position ``i`` is a position embedding concatenated with the
crystal context, and each decoder layer applies self-attention over positions, then
source-attention over the atom embeddings of the crystal, then an FFN:

.. math::
    z_i &= \mathrm{LeakyReLU}\big(W_{in}[\sqrt d\,\mathbf s_i;\ \mathbf h_x] + b_{in}\big)\\
    Z &\leftarrow \text{6 pre-LN layers: } \mathrm{SelfAttn}(Z)\ (\text{causal}) \to
        \mathrm{SrcAttn}(Z, \mathbf H, \text{atom mask}) \to \mathrm{FFN}\\
    \hat y_i &= w^\top \mathrm{LN}(Z)_i + b \qquad\text{(logits, } (B, M))

- :math:`\mathbf s_i` is a learned position embedding ``Embedding(M, d)`` scaled by
  :math:`\sqrt d` (code); the paper's one-hot :math:`\mathbf s_i` followed by the input Linear is
  the same function class. :math:`\mathbf h_x` is the encoder's ``graph`` vector (in Xtal2DoS the
  mean-pooled atoms concatenated with the composition embedding).
- Source attention keys/values are the atom embeddings (``node``, projected to ``d`` when
  ``node_dim ≠ d``) with the **atom padding mask**.
- ``causal=True`` (default, paper §2.3: "masking to prevent the current positions from attending
  to the future positions") masks self-attention to ``j ≤ i``. ``causal=False`` is the authors'
  code (``tgt_mask=None``: unmasked, non-autoregressive; docs/papers/xtal2dos.md §3.3,
  docs/pitfalls.md §6.8). In both
  settings the decoder inputs do **not** contain previous outputs (like the code, nothing is fed
  back), so the whole sequence is computed in one parallel pass; the causal mask reproduces the
  paper's described information flow (position ``i`` only sees positions ``≤ i``) without
  autoregressive sampling.
- Sizes (docs/papers/xtal2dos.md §3.3, ``scripts/run_train.sh``): 6 layers, 8 heads, ``d`` 512,
``d_ff`` 2048,
  ReLU FFN, attention-probability dropout 0.1, residual dropout 0, final LayerNorm. (Every
  LayerNorm of the code's decoder, per sub-layer and final, uses the unbiased std with eps added
  to the std; ``nn.LayerNorm`` is used here.)

The logits are turned into a sum-normalised spectrum by the target representation's link
(softmax for ``target_repr=sum_norm``), as Xtal2DoS does.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from dos_bench.models.gemm import Linear, linear
from dos_bench.models.heads.attention import TransformerLayer, dense_atoms, host_max_atoms
from dos_bench.models.model import EncoderOutput

__all__ = ["SeqTransformerHead"]


class SeqTransformerHead(nn.Module):
    """Xtal2DoS transformer decoder over the ``M`` grid positions.

    Args:
        node_dim: atom-embedding size (from the encoder).
        graph_dim: crystal-context size (from the encoder).
        out_dim: sequence length ``M`` (128 eDOS / 51 phDOS in Xtal2DoS).
        d_model: decoder width (512).
        n_layers: decoder layers (6).
        n_heads: attention heads (8).
        d_ff: FFN width (2048).
        attn_dropout: dropout on attention probabilities (0.1, code module default).
        dropout: residual dropout (``dec_dropout`` 0.0 in the scripts).
        causal: causal self-attention (paper) or unmasked (``False``, code).
        kernel: attention implementation: ``"auto"`` (C kernel on CPU float32 without attention
            dropout) | ``"torch"`` (:func:`torch.nn.functional.scaled_dot_product_attention`).

    Shapes:
        node ``(n, node_dim)``, batch ``(n,)``, graph ``(B, graph_dim)`` → logits ``(B, M)``.
    """

    def __init__(
        self,
        node_dim: int,
        graph_dim: int,
        out_dim: int,
        d_model: int = 512,
        n_layers: int = 6,
        n_heads: int = 8,
        d_ff: int = 2048,
        attn_dropout: float = 0.1,
        dropout: float = 0.0,
        causal: bool = True,
        kernel: str = "auto",
    ) -> None:
        super().__init__()
        self.causal = causal
        self.scale = math.sqrt(d_model)
        self.pos = nn.Embedding(out_dim, d_model)
        self.inp = Linear(d_model + graph_dim, d_model)
        self.node_proj = Linear(node_dim, d_model) if node_dim != d_model else nn.Identity()
        self.layers = nn.ModuleList(
            TransformerLayer(
                d_model,
                n_heads,
                d_ff,
                self_attn=True,
                cross_attn=True,
                attn_dropout=attn_dropout,
                dropout=dropout,
                act="relu",
                memory_norm=False,
                kernel=kernel,
            )
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.out = Linear(d_model, 1)

    def decoder_input(self, graph: Tensor) -> Tensor:
        """``LeakyReLU(Linear([√d · pos_i; h_x])`` for every position: ``(B, M, d)``.

        The input layer is linear in the concatenation, ``W [p; c] + b = W_p p + (W_c c + b)``,
        so the position part is computed once for the ``M`` positions and the context part once
        per crystal, then broadcast-added: the same function and parameters (``inp`` keeps its
        ``(d, d + graph_dim)`` weight) without the ``(B·M) × (d + graph_dim)`` product of the
        concatenated input (3 % of an Xtal2DoS training step's FLOPs at ``M`` = 300).
        """
        d = self.pos.embedding_dim
        w, b = self.inp.weight, self.inp.bias
        pos = linear(self.pos.weight * self.scale, w[:, :d])  # (M, d)
        ctx = linear(graph, w[:, d:], b)  # (B, d)
        return F.leaky_relu(ctx.unsqueeze(1) + pos.unsqueeze(0))

    def forward(self, enc: EncoderOutput, batch=None, target: Tensor | None = None) -> Tensor:
        b = enc.graph.shape[0]
        atoms, mask = dense_atoms(
            self.node_proj(enc.node), enc.batch, b, max_atoms=host_max_atoms(batch)
        )
        x = self.decoder_input(enc.graph)
        for layer in self.layers:
            x = layer(x, atoms, mask, causal=self.causal)
        return self.out(self.norm(x)).squeeze(-1)
