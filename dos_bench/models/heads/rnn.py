r"""The ``rnn`` head: Xtal2DoS's recurrent decoder ablations (RNN, RNN+Attn, Chunk RNN+Attn).

Xtal2DoS §2.3 (Figs. 2–3), Tables 3–4; docs/papers/xtal2dos.md §3.3. A GRU decodes the spectrum
step by step,
``chunk`` values per step; the crystal vector is the initial hidden state and each step reads the
previous emitted chunk (zeros = ⟨start⟩) together with the latent crystal vector:

.. math::
    \mathbf z &= W_z\,\mathbf g + b_z \in \mathbb R^{h}, \qquad \mathbf h_0 = \mathbf z
        \ (\text{every GRU layer})\\
    \mathbf x_t &= \mathrm{ReLU}(W_x[\hat{\mathbf y}_{t-1}; \mathbf z] + b_x),
        \qquad \hat{\mathbf y}_0 = \mathbf 0\\
    \mathbf o_t, \mathbf h_t &= \mathrm{GRU}(\mathbf x_t, \mathbf h_{t-1}),
        \qquad \mathbf r_t = W_p\,\mathrm{ReLU}(\mathbf o_t) + b_p

with ``attention=True`` (Luong "dot", code ``graph2seq.py``):

.. math::
    a_{tk} = \mathrm{softmax}_{k \in \text{atoms}}(\mathbf r_t^\top \mathbf u_k),\quad
    \mathbf c_t = \textstyle\sum_k a_{tk}\mathbf u_k,\quad
    \hat{\mathbf y}_t = W_2\,\mathrm{ReLU}(W_1[\mathbf r_t; \mathbf c_t; \mathbf x_t])

(:math:`\mathbf u_k` = atom embeddings projected to ``h``; padded atoms masked out), and without
attention :math:`\hat{\mathbf y}_t = W_2\,\mathrm{ReLU}(W_1[\mathbf r_t; \mathbf x_t])` (the
no-attention output layer is not in the released code [?]; this is the attention layer without
the context).

- ``chunk=1`` is the plain RNN (paper: one value per step, 128 or 51 steps); ``chunk>1`` is the
  chunk RNN (paper: 32 ⇒ 4 steps for eDOS 128; code default 3). When ``M`` is not divisible by
  ``chunk`` the decoder runs ``ceil(M/chunk)`` steps and the last chunk is truncated to ``M``.
- Each step feeds back its own (pre-link) output, in training too (no teacher forcing; the paper
  says "the output at each step is also the input for the next step").
- Hidden size 128, 1 GRU layer (``dec_layers``), inter-layer GRU dropout 0.1 (code default;
  only active with ``n_layers > 1``).
- The loop runs over steps only; all crystals of the batch advance together.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dos_bench.models.gemm import Linear
from dos_bench.models.heads.attention import attend, dense_atoms, host_max_atoms
from dos_bench.models.model import EncoderOutput

__all__ = ["RNNHead"]


class RNNHead(nn.Module):
    """GRU decoder, optionally chunked and with Luong dot attention over atoms.

    Args:
        node_dim: atom-embedding size (from the encoder).
        graph_dim: crystal-embedding size (from the encoder).
        out_dim: sequence length ``M``.
        hidden: GRU hidden size ``h`` (128).
        n_layers: GRU layers (1).
        chunk: values emitted per step (1 = RNN; e.g. 32 for eDOS 128, 17 for phDOS 51).
        attention: Luong dot attention over the atom embeddings (RNN+Attn).
        gru_dropout: dropout between GRU layers (code default 0.1).

    Shapes:
        node ``(n, node_dim)``, batch ``(n,)``, graph ``(B, graph_dim)`` → ``(B, M)``.
    """

    def __init__(
        self,
        node_dim: int,
        graph_dim: int,
        out_dim: int,
        hidden: int = 128,
        n_layers: int = 1,
        chunk: int = 1,
        attention: bool = False,
        gru_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if chunk < 1:
            raise ValueError(f"model.head.chunk must be >= 1, got {chunk}")
        self.out_dim, self.chunk, self.attention = out_dim, min(chunk, out_dim), attention
        self.n_steps = math.ceil(out_dim / self.chunk)
        self.n_layers, self.hidden = n_layers, hidden
        self.latent = Linear(graph_dim, hidden)
        self.inp = Linear(self.chunk + hidden, hidden)
        self.gru = nn.GRU(
            hidden, hidden, n_layers, batch_first=True, dropout=gru_dropout if n_layers > 1 else 0.0
        )
        self.proj = Linear(hidden, hidden)
        self.node_proj = Linear(node_dim, hidden) if attention else None
        self.compress = Linear((3 if attention else 2) * hidden, hidden)
        self.out = Linear(hidden, self.chunk)

    def forward(self, enc: EncoderOutput, batch=None, target: Tensor | None = None) -> Tensor:
        b = enc.graph.shape[0]
        z = self.latent(enc.graph)  # (B, h)
        state = z.unsqueeze(0).repeat(self.n_layers, 1, 1).contiguous()  # (layers, B, h)
        atoms = mask = None
        if self.attention:
            atoms, mask = dense_atoms(  # (B, n_max, h)
                self.node_proj(enc.node), enc.batch, b, max_atoms=host_max_atoms(batch)
            )
        y = z.new_zeros(b, self.chunk)
        outs: list[Tensor] = []
        for _ in range(self.n_steps):
            x = torch.relu(self.inp(torch.cat([y, z], dim=-1)))  # (B, h)
            o, state = self.gru(x.unsqueeze(1), state)
            r = self.proj(torch.relu(o.squeeze(1)))  # (B, h)
            if self.attention:
                ctx = attend(r.unsqueeze(1), atoms, atoms, key_mask=mask, scale=1.0)
                feats = [r, ctx.squeeze(1), x]
            else:
                feats = [r, x]
            y = self.out(torch.relu(self.compress(torch.cat(feats, dim=-1))))  # (B, chunk)
            outs.append(y)
        return torch.cat(outs, dim=-1)[:, : self.out_dim]
