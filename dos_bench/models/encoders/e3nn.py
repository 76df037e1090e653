r"""E(3)-equivariant gate-points encoder (TUT ``PeriodicNetwork``; docs/papers/dostransformer.md
§2.5, docs/data/phonon_sources.md §5.1).

The E3NN phonon-DOS model of Chen et al. (2021) in the e3nn-0.4 re-write of the MRS tutorial
(TUT, ``ninarina12/phononDoS_tutorial``), used as the E3NN baseline of DOSTransformer and as
the E3NN rows / E3NN2DoS encoder of Mat2Spec and Xtal2DoS.

Inputs: :math:`x_i` = mass-weighted one-hot of Z (feature set ``mass_onehot``, 118-d) and
:math:`z_i` = one-hot of Z (118-d, built here from ``batch.z``), both embedded by
:math:`\operatorname{ReLU}(W x + b)` to ``em_dim`` = 64 scalars (``64x0e``); TUT uses one
shared ``Linear`` for both (``shared_embedding=True``).

Edges: :math:`\mathbf r_{ij}` from :func:`~dos_bench.data.graphs.edge_vectors` (periodic images
included), oriented like TUT (from the message sender to the receiver, i.e. minus the package's
centre→neighbour vector; only parity-even scalars are output, so the sign does not matter).

.. math::
    Y_{ij} = u(\lVert\mathbf r_{ij}\rVert / r_{max})\; Y^{l\le l_{max}}(\hat{\mathbf r}_{ij}),
    \qquad
    B_{ij} = \sqrt{n_b}\;\mathrm{gauss}_{k}(\lVert\mathbf r_{ij}\rVert), \; k = 1..n_b

with spherical harmonics in ``component`` normalisation, :math:`u` e3nn's ``smooth_cutoff``
(1 below :math:`r_{max}/2`, cosine decay to 0 at :math:`r_{max}`) and ``gauss`` e3nn's
``soft_one_hot_linspace(0, r_max, n_b, basis="gaussian", cutoff=False)``.

Layers: ``n_layers`` × [e3nn ``Convolution`` → ``Gate``] and a final ``Convolution`` to
``out_scalars x 0e``, where ``Convolution`` is e3nn 0.6's
:class:`e3nn.nn.models.gate_points_2101.Convolution` (the building block TUT imports)

.. math::
    h_i' = \cos\tfrac{\pi}{8}\,\mathrm{L}_2\Big(\frac{1}{\sqrt{\bar n}}\sum_{j \to i}
        \mathrm{TP}_{\mathrm{MLP}(B_{ij})}\big(\mathrm{L}_1(h_j, z_j),\, Y_{ij}\big),\, z_i\Big)
        + \sin\tfrac{\pi}{8}\,\mathrm{SC}(h_i, z_i)

(L₁, L₂, SC fully connected tensor products with the node attributes; the radial MLP
:math:`n_b \to 100 \to` weights, SiLU; :math:`\bar n` = ``num_neighbors``).  The hidden irreps
are TUT's ``mul x (l, p)`` for l ≤ ``lmax`` and both parities (``32x0o+32x0e+32x1o+32x1e``),
of which the paths reachable from the input are kept (gate scalars SiLU/tanh, gates
sigmoid/tanh), as in ``gate_points_2101.Network`` — its ``forward`` builds a non-periodic radius
graph, so only its layer recipe is reproduced here, not the class.

Output: per-atom scalars (``out_scalars``, default 64) = node embeddings; graph = mean over
atoms (TUT ``scatter_mean``; E3NNorig sums: ``pooling="sum"``).  TUT applies ReLU to its
output before pooling (it predicts the DOS directly); as an encoder feeding a head the default
here is no output activation (``out_act="relu"`` reproduces TUT).

Self edges: TUT's neighbour list has ``self_interaction=True`` (a zero-length edge per atom,
graph recipe ``self_loops: true``).  The spherical harmonics of a zero vector are set to
:math:`(1, 0, \ldots, 0)` explicitly (only the l = 0 part survives; e3nn's ``normalize`` gives
the same), so self edges are rotation-invariant and gradient-safe.

Graph recipe (model YAML): ``cutoff 4 (= r_max), max_neighbors null, self_loops true``; atom
features ``mass_onehot``.  Edges longer than ``r_max`` would contribute exactly zero
(:math:`u = 0`) but still cost time.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import Gate
from e3nn.nn.models.gate_points_2101 import Convolution, tp_path_exists
from torch import Tensor, nn
from torch.nn import functional as F
from torch_geometric.nn import global_add_pool, global_mean_pool

from dos_bench.data.graphs import edge_vectors
from dos_bench.io import ConfigError
from dos_bench.models.gemm import Linear
from dos_bench.models.model import EncoderOutput

__all__ = ["E3NNEncoder", "GatedConvolution"]

_ZERO_LENGTH = 1e-9  # Å; shorter edges are treated as self edges


def smooth_cutoff(x: Tensor) -> Tensor:
    r"""e3nn's ``smooth_cutoff`` (``gate_points_2101``) without boolean-mask assignment, which
    reads the mask's size back to the host (a synchronisation per call on a GPU): with
    :math:`u = 2(x - 1)`, :math:`(1 - \cos \pi u)/2` for :math:`-1 \le u \le 0`, 1 below and 0
    above. Same values and gradients."""
    u = 2 * (x - 1)
    y = (math.pi * u).cos().neg().add(1).div(2)
    return torch.where(u > 0, 0.0, torch.where(u < -1, 1.0, y))


class GatedConvolution(nn.Module):
    """An e3nn ``Convolution`` followed by a ``Gate`` (``gate_points_2101.Compose``)."""

    def __init__(self, conv: nn.Module, gate: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.gate = gate

    def forward(self, *args: Tensor) -> Tensor:
        return self.gate(self.conv(*args))


class E3NNEncoder(nn.Module):
    r"""TUT PeriodicNetwork as an encoder (docs/papers/dostransformer.md §2.5 "E3NN (TUT)
    baseline", §5.1).

    Args:
        in_dim: size of ``batch.x`` (118, ``mass_onehot``).
        em_dim: embedding width of node inputs and attributes (64, TUT ``em_dim``).
        out_scalars: scalar outputs per atom = node_dim = graph_dim (64 here; TUT uses the
            51 DOS bins directly).
        mul: multiplicity of each hidden irrep (32, TUT).
        lmax: maximum degree of hidden irreps and edge spherical harmonics (1, TUT).
        n_layers: gated convolutions before the output convolution (2, TUT).
        r_max: radial cutoff in Å (4, TUT; E3NNorig used 5).
        n_basis: Gaussian radial basis functions (10, TUT).
        radial_layers, radial_neurons: hidden layers / width of the radial MLP (1, 100, TUT).
        num_neighbors: normalisation :math:`\bar n` of the neighbour sum, ≈ mean train degree
            (15.84, docs/papers/dostransformer.md §2.5).
        n_types: length of the atom-type one-hot built from ``batch.z`` (118).
        shared_embedding: one ``Linear`` embeds both ``x`` and the type one-hot (TUT); needs
            ``in_dim == n_types``.  ``False``: separate embeddings.
        pooling: ``"mean"`` (TUT) or ``"sum"`` (E3NNorig).
        out_act: ``"none"`` (default) or ``"relu"`` (TUT's output ReLU) on the atom outputs.

    Shapes:
        batch: ``x (n, in_dim)``, ``z (n,)``, ``pos (n, 3)``, ``cell (B, 3, 3)``,
        ``edge_index (2, E)``, ``edge_shift (E, 3)``, ``batch (n,)`` → node
        ``(n, out_scalars)``, graph ``(B, out_scalars)``.
    """

    def __init__(
        self,
        in_dim: int = 118,
        em_dim: int = 64,
        out_scalars: int = 64,
        mul: int = 32,
        lmax: int = 1,
        n_layers: int = 2,
        r_max: float = 4.0,
        n_basis: int = 10,
        radial_layers: int = 1,
        radial_neurons: int = 100,
        num_neighbors: float = 15.84,
        n_types: int = 118,
        shared_embedding: bool = True,
        pooling: str = "mean",
        out_act: str = "none",
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "sum"):
            raise ConfigError(f"model.encoder.pooling must be 'mean' or 'sum', got {pooling!r}")
        if out_act not in ("none", "relu"):
            raise ConfigError(f"model.encoder.out_act must be 'none' or 'relu', got {out_act!r}")
        if shared_embedding and in_dim != n_types:
            raise ConfigError(
                f"model.encoder.shared_embedding=true embeds x ({in_dim}-d) and the type one-hot "
                f"({n_types}-d) with one Linear: use the 118-d 'mass_onehot' atom features or "
                "set shared_embedding=false"
            )
        if not (r_max > 0 and num_neighbors > 0):
            raise ConfigError("model.encoder r_max and num_neighbors must be positive")
        self.r_max = float(r_max)
        self.n_basis = int(n_basis)
        self.n_types = int(n_types)
        self.pooling = pooling
        self.out_act = out_act
        self.embed_x = Linear(in_dim, em_dim)
        self.embed_z = None if shared_embedding else Linear(n_types, em_dim)

        self.irreps_edge = o3.Irreps.spherical_harmonics(lmax)
        irreps_node_attr = o3.Irreps(f"{em_dim}x0e")
        irreps_hidden = o3.Irreps([(mul, (l, p)) for l in range(lmax + 1) for p in (-1, 1)])
        act = {1: F.silu, -1: torch.tanh}
        act_gates = {1: torch.sigmoid, -1: torch.tanh}
        conv_args = (n_basis, radial_layers, radial_neurons, num_neighbors)

        irreps = o3.Irreps(f"{em_dim}x0e")
        self.layers = nn.ModuleList()
        for _ in range(n_layers):
            scalars = o3.Irreps(
                [
                    (m, ir)
                    for m, ir in irreps_hidden
                    if ir.l == 0 and tp_path_exists(irreps, self.irreps_edge, ir)
                ]
            )
            gated = o3.Irreps(
                [
                    (m, ir)
                    for m, ir in irreps_hidden
                    if ir.l > 0 and tp_path_exists(irreps, self.irreps_edge, ir)
                ]
            )
            gate_ir = "0e" if tp_path_exists(irreps, self.irreps_edge, "0e") else "0o"
            gates = o3.Irreps([(m, gate_ir) for m, _ in gated])
            gate = Gate(
                scalars,
                [act[ir.p] for _, ir in scalars],
                gates,
                [act_gates[ir.p] for _, ir in gates],
                gated,
            )
            conv = Convolution(
                irreps, irreps_node_attr, self.irreps_edge, gate.irreps_in, *conv_args
            )
            self.layers.append(GatedConvolution(conv, gate))
            irreps = gate.irreps_out
        self.out_conv = Convolution(
            irreps, irreps_node_attr, self.irreps_edge, o3.Irreps(f"{out_scalars}x0e"), *conv_args
        )
        self.node_dim = self.graph_dim = int(out_scalars)

    def edge_features(self, batch) -> tuple[Tensor, Tensor]:
        """Edge attributes ``(E, (lmax+1)^2)`` and embedded lengths ``(E, n_basis)``."""
        vec = -edge_vectors(batch.pos, batch.cell, batch.edge_index, batch.edge_shift, batch.batch)
        length = vec.norm(dim=-1)
        zero = length < _ZERO_LENGTH
        safe = torch.where(zero.unsqueeze(-1), torch.ones_like(vec), vec)
        sh = o3.spherical_harmonics(self.irreps_edge, safe, True, normalization="component")
        sh = torch.cat([sh[:, :1], sh[:, 1:] * (~zero).unsqueeze(-1).to(sh.dtype)], dim=-1)
        emb = soft_one_hot_linspace(
            length, 0.0, self.r_max, self.n_basis, basis="gaussian", cutoff=False
        ).mul(math.sqrt(self.n_basis))
        attr = smooth_cutoff(length / self.r_max).unsqueeze(-1) * sh
        return attr, emb

    def forward(self, batch) -> EncoderOutput:
        # e3nn's tensor products contract fp32 weights with their inputs through einsum, which
        # mixed-precision autocast would feed bf16 inputs: the encoder always runs in fp32 (the
        # head after it still runs under autocast)
        with torch.autocast(device_type=batch.x.device.type, enabled=False):
            return self._forward(batch)

    def _forward(self, batch) -> EncoderOutput:
        h = F.relu(self.embed_x(batch.x))
        # one-hot of Z - 1 by comparison: F.one_hot reads the classes' range back to the host
        types = torch.arange(1, self.n_types + 1, device=batch.z.device)
        onehot = (batch.z.long().unsqueeze(-1) == types).to(h.dtype)
        embed_z = self.embed_x if self.embed_z is None else self.embed_z
        attr_nodes = F.relu(embed_z(onehot))
        edge_attr, edge_emb = self.edge_features(batch)
        src, dst = batch.edge_index[0], batch.edge_index[1]
        for layer in self.layers:
            h = layer(h, attr_nodes, src, dst, edge_attr, edge_emb)
        h = self.out_conv(h, attr_nodes, src, dst, edge_attr, edge_emb)
        if self.out_act == "relu":
            h = F.relu(h)
        pool = global_mean_pool if self.pooling == "mean" else global_add_pool
        return EncoderOutput(h, batch.batch, pool(h, batch.batch, size=batch.num_graphs))
