"""Reference forward passes for the model rows, written from the published equations.

Companion of ``test_reference_forward.py`` (graph network, Mat2Spec head), in the same style:
each reference is a few lines of plain torch per layer, written from the equations in
docs/papers/*.md and docs/models.md (never by calling dos_bench's layers), reading dos_bench's
parameters and BatchNorm running statistics as plain tensors by name. Everything runs in eval
mode (dropout off, BatchNorm on random running statistics) and in float64.

Rows (docs/models.md):

* MLP encoder + ``direct`` head (DOSTransformer "MLP, Energy ✗", §2.5) and the
  ``energy_embedding`` head (A.4, ``Ŷ_j = φ(E_j + α g)``; code ``φ([E_j; g])``);
* GATGNN encoder (Mat2Spec §4.3);
* UniMP encoder (Xtal2DoS §3.3, UniMP attention with edge features, eq. 6 gate optional);
* ``cross_attention`` head (DOSTransformer eq. 2–3 in the code's pre-LN block, §2.4–2.5);
* ``seq_transformer`` head (Xtal2DoS decoder, §3.3);
* ``rnn`` head (Xtal2DoS recurrent ablations, GRU + Luong dot attention, §3.3);
* ALIGNN encoder (ALIGNN-DOS §1.2–1.3, edge-gated convolutions on line and crystal graph).

One strict xfail records a difference from the published text: the UniMP crystal vector (the
paper's h_x is the mean of the atoms; dos_bench's is the code's [mean; composition embedding]).

The e3nn encoder has no reference here: its layers are e3nn tensor products (Clebsch–Gordan
paths, spherical harmonics, path normalisation, gates), which cannot be restated in a few
independent lines of torch.

Crystals are hand built (``edge_index[0]`` = neighbour j, ``edge_index[1]`` = centre i, the
package convention of ``dos_bench.data.graph_data``): two periodic images of one neighbour, an
exact duplicate edge, bonds to an atom's own image, an atom with no incoming edge, and crystals
of 2, 4 and 1 atoms (so that per-crystal attention needs padding). The references loop over
centres and crystals, so neither scatter nor padding is shared with the code under test.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from dos_bench.io import ConfigError
from dos_bench.models.encoders.alignn import ALIGNNEncoder
from dos_bench.models.encoders.gatgnn import GATGNNEncoder
from dos_bench.models.encoders.mlp import MLPEncoder
from dos_bench.models.encoders.unimp import UniMPEncoder
from dos_bench.models.heads.cross_attention import CrossAttentionHead
from dos_bench.models.heads.direct import DirectHead
from dos_bench.models.heads.energy_embedding import EnergyEmbeddingHead
from dos_bench.models.heads.rnn import RNNHead
from dos_bench.models.heads.seq_transformer import SeqTransformerHead
from dos_bench.models.model import DOSModel, EncoderOutput

TOL = {"rtol": 1e-5, "atol": 1e-5}
DT = torch.float64
IN_DIM, N_COMP = 5, 103


# ---------------------------------------------------------------------------- helpers
def randomise(module: torch.nn.Module, seed: int, scale: float = 1.0) -> torch.nn.Module:
    """Every parameter random in ±scale/2; BatchNorm running means random, variances in
    [0.5, 1.5]; float64, eval mode."""
    g = torch.Generator().manual_seed(seed)
    module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * (torch.rand(p.shape, generator=g, dtype=DT) - 0.5))
        for name, buf in module.named_buffers():
            if name.endswith("running_mean"):
                buf.copy_(torch.rand(buf.shape, generator=g, dtype=DT) - 0.5)
            elif name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=g, dtype=DT))
    return module.eval()


def weights(module: torch.nn.Module) -> dict[str, Tensor]:
    """dos_bench's parameters and buffers, copied as plain tensors."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def affine(p: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    """``W x + c`` with ``W = p[name.weight]`` (``c`` if present)."""
    y = x @ p[f"{name}.weight"].T
    return y + p[f"{name}.bias"] if f"{name}.bias" in p else y


def layer_norm(p: dict[str, Tensor], name: str, x: Tensor, eps: float = 1e-5) -> Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * p[f"{name}.weight"] + p[f"{name}.bias"]


def batch_norm(p: dict[str, Tensor], name: str, x: Tensor, eps: float = 1e-5) -> Tensor:
    """Eval-mode BatchNorm: the running statistics."""
    z = (x - p[f"{name}.running_mean"]) / torch.sqrt(p[f"{name}.running_var"] + eps)
    return z * p[f"{name}.weight"] + p[f"{name}.bias"]


def softplus(x: Tensor) -> Tensor:
    return torch.logaddexp(x, torch.zeros_like(x))  # log(1 + e^x)


def leaky(x: Tensor, slope: float) -> Tensor:
    return torch.where(x >= 0, x, slope * x)


def silu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


def softmax0(s: Tensor) -> Tensor:
    """Softmax over the first dimension."""
    w = torch.exp(s - s.max(0, keepdim=True).values)
    return w / w.sum(0, keepdim=True)


def linear_names(p: dict[str, Tensor], prefix: str) -> list[str]:
    """Names of the linear layers directly under ``prefix`` (``prefix.<i>``), in order."""
    depth = prefix.count(".") + 1
    idx = set()
    for k, v in p.items():
        parts = k.split(".")
        if k.startswith(prefix + ".") and v.dim() == 2 and len(parts) == depth + 2:
            idx.add(int(parts[depth]))
    return [f"{prefix}.{i}" for i in sorted(idx)]


def centres(lo: float, hi: float, num: int) -> Tensor:
    """Uniform Gaussian centres, rounded to float32 as dos_bench stores them (so that the
    float64 comparison is not limited by the centres' rounding, ~1e-7)."""
    return torch.linspace(lo, hi, num, dtype=torch.float32).to(DT)


def rbf_cgcnn(d: Tensor, num: int = 41, stop: float = 8.0, width: float = 0.2) -> Tensor:
    """CGCNN Gaussians exp(−(d − μ_k)²/width²), μ_k = 0, …, stop (Mat2Spec/Xtal2DoS data.py)."""
    mu = centres(0.0, stop, num)
    return torch.exp(-((d[:, None] - mu) ** 2) / width**2)


def rbf_alignn(x: Tensor, lo: float, hi: float, num: int) -> Tensor:
    """ALIGNN RBFExpansion exp(−(x − μ_k)²/Δ), Δ the centre spacing (ALIGNN-DOS §1.2)."""
    mu = centres(lo, hi, num)
    return torch.exp(-((x[:, None] - mu) ** 2) / ((hi - lo) / (num - 1)))


def assert_differs(a: Tensor, b: Tensor, by: float = 1e-3) -> None:
    """The test is sensitive to the detail that distinguishes ``a`` from ``b``."""
    assert (a - b).abs().max() > by


# ------------------------------------------------------------------------- crystals
# (atoms, edges (neighbour j, centre i, image of j in lattice vectors)); every atom but one
# (crystal 1, atom 3) receives an edge
CRYSTALS = (
    (2, [(0, 1, (0, 0, 0)), (1, 0, (0, 0, 0)), (0, 1, (0, 0, 1)), (0, 0, (1, 0, 0))]),
    (
        4,
        [
            (0, 1, (0, 0, 0)),
            (1, 2, (0, 0, 0)),
            (1, 2, (0, 0, 0)),  # exact duplicate
            (2, 0, (0, -1, 0)),
            (0, 2, (0, 1, 0)),
            (1, 0, (0, 0, 0)),
            (3, 0, (0, 0, 0)),  # atom 3 sends, never receives
            (2, 1, (1, 0, 0)),
        ],
    ),
    (1, [(0, 0, (1, 0, 0)), (0, 0, (-1, 0, 0)), (0, 0, (0, 1, 1))]),
)


def hand_batch() -> Batch:
    """The crystals above with random atom features, positions, cells and compositions, in
    float64; ``edge_dist = |x_j + n L − x_i|``."""
    g = torch.Generator().manual_seed(3)
    graphs = []
    for n, edges in CRYSTALS:
        cell = 3.0 * torch.eye(3, dtype=DT) + 0.6 * torch.rand(3, 3, generator=g, dtype=DT)
        pos = torch.rand(n, 3, generator=g, dtype=DT) @ cell
        j = torch.tensor([e[0] for e in edges])
        i = torch.tensor([e[1] for e in edges])
        shift = torch.tensor([e[2] for e in edges], dtype=DT)
        vec = pos[j] + shift @ cell - pos[i]
        comp = torch.zeros(1, N_COMP, dtype=DT)
        comp[0, torch.randperm(N_COMP, generator=g)[:3]] = torch.tensor([0.5, 0.3, 0.2], dtype=DT)
        graphs.append(
            Data(
                x=torch.randn(n, IN_DIM, generator=g, dtype=DT),
                pos=pos,
                cell=cell[None],
                edge_index=torch.stack([j, i]),
                edge_shift=shift,
                edge_dist=vec.norm(dim=-1),
                comp=comp,
                num_nodes=n,
            )
        )
    return Batch.from_data_list(graphs)


def crystal_rows(batch: Batch) -> list[Tensor]:
    """The atom indices of every crystal."""
    return [torch.nonzero(batch.batch == b).flatten() for b in range(batch.num_graphs)]


def incoming(centre: Tensor, n: int) -> list[Tensor]:
    """For every atom, the edges whose centre it is."""
    return [torch.nonzero(centre == a).flatten() for a in range(n)]


def fake_encoder(batch: Batch, node_dim: int, graph_dim: int, seed: int = 1) -> EncoderOutput:
    g = torch.Generator().manual_seed(seed)
    node = torch.randn(batch.num_nodes, node_dim, generator=g, dtype=DT)
    graph = torch.randn(batch.num_graphs, graph_dim, generator=g, dtype=DT)
    return EncoderOutput(node, batch.batch, graph)


# --------------------------------------------------- row 1: MLP encoder, direct / energy heads
D1, M1 = 6, 7  # width, grid points


def reference_mlp_encoder(p: dict[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
    """Per-atom MLP with an activation after every layer, then Σ over each crystal's atoms."""
    h = batch.x
    for name in linear_names(p, "encoder.net"):
        h = silu(affine(p, name, h))
    return h, torch.stack([h[rows].sum(0) for rows in crystal_rows(batch)])


def reference_direct(p: dict[str, Tensor], g: Tensor) -> Tensor:
    names = linear_names(p, "head.net")
    for name in names[:-1]:
        g = silu(affine(p, name, g))
    return affine(p, names[-1], g)


def readout(p: dict[str, Tensor], prefix: str, tokens: Tensor, g: Tensor, fusion: str) -> Tensor:
    """P-DOST eq. 3 / A.4: Ŷ_ij = φ(E_j + α g_i) (add); the code's φ([E_j; g_i]) (concat);
    φ = Linear–LeakyReLU(0.01)–Linear(→1); tokens ``(M, d)``, g ``(B, d)`` → ``(B, M)``."""
    b, m = g.shape[0], tokens.shape[0]
    if fusion == "add":
        z = tokens[None] + p[f"{prefix}.alpha"] * g[:, None]  # (B, M, d)
    else:
        z = torch.cat([tokens[None].expand(b, m, -1), g[:, None].expand(b, m, -1)], dim=-1)
    hidden = leaky(affine(p, f"{prefix}.fc1", z), 0.01)
    return affine(p, f"{prefix}.fc2", hidden).squeeze(-1)


def reference_energy_head(p: dict[str, Tensor], g: Tensor, fusion: str) -> Tensor:
    """Learnable energy embeddings E (M × d) read out with the crystal vector g, projected to d
    only when its width differs (the paper has both of width d)."""
    if "head.graph_proj.weight" in p:
        g = affine(p, "head.graph_proj", g)
    return readout(p, "head.readout", p["head.energy.weight"], g, fusion)


def test_mlp_direct_matches_reference() -> None:
    """DOSTransformer "MLP, Energy ✗": per-atom MLP, Σ over atoms, MLP to every grid point."""
    model = DOSModel(
        MLPEncoder(IN_DIM, hidden=D1, n_layers=2),
        functools.partial(DirectHead, hidden=5, n_layers=2),
        out_dim=M1,
    )
    randomise(model, 0)
    batch = hand_batch()
    p = weights(model)
    node, graph = reference_mlp_encoder(p, batch)
    with torch.no_grad():
        enc = model.encoder(batch)
        pred = model(batch)["pred"]
    torch.testing.assert_close(enc.node, node, **TOL)
    torch.testing.assert_close(enc.graph, graph, **TOL)
    torch.testing.assert_close(pred, reference_direct(p, graph), **TOL)
    mean = torch.stack([node[rows].mean(0) for rows in crystal_rows(batch)])
    assert_differs(pred, reference_direct(p, mean))  # sum pooling, not mean


@pytest.mark.parametrize(
    ("fusion", "hidden"),
    [("add", D1), ("concat", D1), ("add", D1 + 2)],
    ids=["add", "concat", "add_projected"],
)
def test_mlp_energy_embedding_matches_reference(fusion: str, hidden: int) -> None:
    """DOSTransformer "MLP, Energy ✓" with both fusions (and g projected when its width ≠ d)."""
    model = DOSModel(
        MLPEncoder(IN_DIM, hidden=hidden, n_layers=2),
        functools.partial(EnergyEmbeddingHead, d=D1, fusion=fusion, alpha_init=0.7),
        out_dim=M1,
    )
    randomise(model, 1)
    batch = hand_batch()
    p = weights(model)
    _, graph = reference_mlp_encoder(p, batch)
    with torch.no_grad():
        pred = model(batch)["pred"]
    ref = reference_energy_head(p, graph, fusion)
    assert pred.shape == (3, M1)
    torch.testing.assert_close(pred, ref, **TOL)
    if fusion == "add":  # α is used (φ(E_j + g) would differ)
        q = dict(p)
        q["head.readout.alpha"] = torch.ones((), dtype=DT)
        assert_differs(pred, reference_energy_head(q, graph, fusion))


# ----------------------------------------------------------------------- row 2: GATGNN
D2, K2 = 5, 4  # width, heads (code: 4 heads)


def reference_gatgnn(
    p: dict[str, Tensor], batch: Batch, n_layers: int, reduce: str, at_centre: bool = True
) -> tuple[Tensor, Tensor]:
    """Mat2Spec §4.3 (GATGNN as in the Mat2Spec code), for edge j → i and head k:

        a_ij = SoftPlus([h_i; e_ij] W),  b_ij = SoftPlus([h_j; e_ij] W)
        s^k_ij = SoftPlus(BN_K(SoftPlus(a_k · [a^k_ij ‖ b^k_ij])))
        α^k_ij = softmax of s^k over the edges of centre i
        h_i ← SoftPlus(BN(mean_k Σ_j α^k_ij b^k_ij + bias))

    pooled with the composition attention w_i = softmax_i(W2 SoftPlus(W1 [h_i; c] + b1) + b2)
    and the mean (or sum) of w_i h_i over the crystal's atoms.
    """
    h = affine(p, "embed_node", batch.x)
    e = leaky(affine(p, "embed_edge", rbf_cgcnn(batch.edge_dist)), 0.2)
    j, i = batch.edge_index
    if not at_centre:  # the wrong direction, to show the test can tell
        j, i = i, j
    n, n_e = h.shape[0], e.shape[0]
    for layer in range(n_layers):
        c = f"convs.{layer}"
        w = p[f"{c}.weight"]  # (d + d_e, K·d), used as [h; e] @ W
        a = softplus(torch.cat([h[i], e], -1) @ w).reshape(n_e, K2, D2)
        b = softplus(torch.cat([h[j], e], -1) @ w).reshape(n_e, K2, D2)
        s = softplus((torch.cat([a, b], -1) * p[f"{c}.att"]).sum(-1))  # (E, K)
        s = softplus(batch_norm(p, f"{c}.bn", s))
        new = torch.zeros(n, D2, dtype=DT)
        for atom, edges in enumerate(incoming(i, n)):
            if len(edges):
                alpha = softmax0(s[edges])  # (E_i, K)
                new[atom] = (alpha[:, :, None] * b[edges]).sum(0).mean(0)
        h = softplus(batch_norm(p, f"norms.{layer}", new + p[f"{c}.bias"]))
    graph = []
    for rows, comp in zip(crystal_rows(batch), batch.comp, strict=True):
        x = torch.cat([h[rows], comp.expand(len(rows), -1)], -1)
        s = affine(p, "pool.att_layer", softplus(affine(p, "pool.node_layer", x)))
        weighted = softmax0(s) * h[rows]
        graph.append(weighted.mean(0) if reduce == "mean" else weighted.sum(0))
    return h, torch.stack(graph)


@pytest.mark.parametrize(("n_layers", "reduce"), [(3, "mean"), (2, "sum")], ids=["code", "paper"])
def test_gatgnn_matches_reference(n_layers: int, reduce: str) -> None:
    enc = GATGNNEncoder(
        IN_DIM, hidden=D2, n_layers=n_layers, heads=K2, pool_hidden=4, pool_reduce=reduce
    )
    randomise(enc, 2, scale=3.0)
    batch = hand_batch()
    p = weights(enc)
    node, graph = reference_gatgnn(p, batch, n_layers, reduce)
    with torch.no_grad():
        out = enc(batch)
    torch.testing.assert_close(out.node, node, **TOL)
    torch.testing.assert_close(out.graph, graph, **TOL)
    assert_differs(out.node, reference_gatgnn(p, batch, n_layers, reduce, at_centre=False)[0])


# ------------------------------------------------------------------------ row 3: UniMP
D3, H3, C3 = 8, 4, 2  # width, heads, channels per head of the inner layers


def reference_unimp(
    p: dict[str, Tensor], batch: Batch, n_layers: int, beta: bool, aggregate_at: str
) -> tuple[Tensor, Tensor]:
    """Xtal2DoS §3.3 (UniMP), per layer and head, for edge j → i (heads concatenated, averaged
    in the last layer):

        α_ij = softmax over j ∈ N(i) of (W_q h_i)·(W_k h_j + W_e e_ij)/√c
        ĥ_i = Σ_j α_ij (W_v h_j + W_e e_ij),  r_i = W_r h_i
        β: h̃_i = (1 − β_i) ĥ_i + β_i r_i, β_i = sigmoid(a·[ĥ_i; r_i; ĥ_i − r_i])
           then σ(LN(h̃)) except in the last layer (eq. 6)
        no β (code): h̃_i = ĥ_i + r_i
        h ← LeakyReLU(BN(h̃))

    embeddings h⁰ = LeakyReLU_0.01(W_n x), e = LeakyReLU_0.2(W_b RBF(d)), c = LeakyReLU_0.2(W_c
    comp); graph = [mean of h over atoms; c]. ``aggregate_at="neighbour"`` (code) swaps i, j.
    """
    h = leaky(affine(p, "embed_node", batch.x), 0.01)
    e = leaky(affine(p, "embed_edge", rbf_cgcnn(batch.edge_dist)), 0.2)
    j, i = batch.edge_index
    if aggregate_at == "neighbour":
        j, i = i, j
    n = h.shape[0]
    for layer in range(n_layers):
        last = layer == n_layers - 1
        c = f"convs.{layer}"
        ch = D3 if last else C3
        q = affine(p, f"{c}.lin_query", h).reshape(n, H3, ch)
        k = affine(p, f"{c}.lin_key", h).reshape(n, H3, ch)
        v = affine(p, f"{c}.lin_value", h).reshape(n, H3, ch)
        we = affine(p, f"{c}.lin_edge", e).reshape(-1, H3, ch)
        agg = torch.zeros(n, H3, ch, dtype=DT)
        for atom, edges in enumerate(incoming(i, n)):
            if len(edges):
                keys, values = k[j[edges]] + we[edges], v[j[edges]] + we[edges]
                alpha = softmax0((q[atom] * keys).sum(-1) / math.sqrt(ch))  # (E_i, H)
                agg[atom] = (alpha[:, :, None] * values).sum(0)
        hat = agg.mean(1) if last else agg.reshape(n, H3 * ch)
        r = affine(p, f"{c}.lin_skip", h)
        if beta:
            gate = torch.sigmoid(affine(p, f"{c}.lin_beta", torch.cat([hat, r, hat - r], -1)))
            h = (1 - gate) * hat + gate * r
            if not last:
                h = leaky(layer_norm(p, f"lns.{layer}", h), 0.01)
        else:
            h = hat + r
        h = leaky(batch_norm(p, f"bns.{layer}", h), 0.01)
    comp = leaky(affine(p, "embed_comp", batch.comp), 0.2)
    pooled = torch.stack([h[rows].mean(0) for rows in crystal_rows(batch)])
    return h, torch.cat([pooled, comp], -1)


@pytest.mark.parametrize(
    ("beta", "aggregate_at"),
    [(False, "neighbour"), (False, "centre"), (True, "centre")],
    ids=["code", "code_beta_centre", "paper"],
)
def test_unimp_matches_reference(beta: bool, aggregate_at: str) -> None:
    enc = UniMPEncoder(
        IN_DIM, hidden=D3, channels=C3, heads=H3, n_layers=3, beta=beta, aggregate_at=aggregate_at
    )
    randomise(enc, 3, scale=3.0)
    batch = hand_batch()
    p = weights(enc)
    node, graph = reference_unimp(p, batch, 3, beta, aggregate_at)
    with torch.no_grad():
        out = enc(batch)
    torch.testing.assert_close(out.node, node, **TOL)
    torch.testing.assert_close(out.graph, graph, **TOL)
    other = "centre" if aggregate_at == "neighbour" else "neighbour"
    assert_differs(out.node, reference_unimp(p, batch, 3, beta, other)[0])


def test_unimp_crystal_vector_mean_is_the_published_mean_of_atoms() -> None:
    """``crystal_vector=mean``: h_x = (1/n) Σ_i h_i^L (Xtal2DoS eq. 7), no composition
    embedding built; the default stays the code's [mean; composition embedding]."""
    enc = randomise(
        UniMPEncoder(IN_DIM, hidden=D3, channels=C3, heads=H3, n_layers=3, crystal_vector="mean"),
        3,
    )
    assert enc.embed_comp is None and enc.graph_dim == D3
    batch = hand_batch()
    with torch.no_grad():
        out = enc(batch)
    mean = torch.stack([out.node[rows].mean(0) for rows in crystal_rows(batch)])
    torch.testing.assert_close(out.graph, mean, **TOL)
    default = UniMPEncoder(IN_DIM, hidden=D3, channels=C3, heads=H3, n_layers=3)
    assert default.crystal_vector == "mean_composition" and default.graph_dim == 2 * D3


def test_unimp_crystal_vector_rejects_an_unknown_choice() -> None:
    with pytest.raises(ConfigError, match="model.encoder.crystal_vector must be one of"):
        UniMPEncoder(IN_DIM, hidden=D3, channels=C3, heads=H3, crystal_vector="sum")


# ------------------------------------------------------------ attention, written per crystal
def attention(
    p: dict[str, Tensor], name: str, x: Tensor, y: Tensor, n_heads: int, causal: bool = False
) -> Tensor:
    """softmax((x W_Q)(y W_K)ᵀ/√(d/H)) y W_V per head, heads concatenated, then W_O if the
    module has one (x: one crystal's queries (n_q, d), y: its keys/values (n_k, d), no
    padding)."""
    q, k, v = (affine(p, f"{name}.{t}", z) for t, z in (("q", x), ("k", y), ("v", y)))
    d = q.shape[-1]
    dh = d // n_heads
    heads = []
    for hh in range(n_heads):
        sl = slice(hh * dh, (hh + 1) * dh)
        s = q[:, sl] @ k[:, sl].T / math.sqrt(dh)  # (n_q, n_k)
        if causal:
            s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
        heads.append(torch.softmax(s, dim=-1) @ v[:, sl])
    out = torch.cat(heads, -1)
    return affine(p, f"{name}.o", out) if f"{name}.o.weight" in p else out


def ffn(p: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    """Linear(d→d_ff)–ReLU–Linear(d_ff→d)."""
    first, second = linear_names(p, f"{name}.net")
    return affine(p, second, torch.relu(affine(p, first, x)))


# ------------------------------------------------------------- row 4: cross-attention head
D4, M4 = 6, 5


def reference_cross_attention(
    p: dict[str, Tensor],
    enc: EncoderOutput,
    n_layers: int,
    n_heads: int,
    fusion: str,
    pad_to: int | None = None,
) -> Tensor:
    """DOSTransformer eq. 2 in the code's pre-LN block (§2.4–2.5), per crystal with its atoms H:

        E ← E + softmax(LN(E) W_Q (LN'(H) W_K)ᵀ/√d) LN'(H) W_V      (L layers)
        E ← E + FFN(LN(E)),  FFN = d → 4d → d, ReLU
        Ŷ_j = φ(LN(E)_j + α g)  (eq. 3; concat: φ([LN(E)_j; g]))

    ``pad_to`` appends zero atoms (the code's unmasked padding), only to show the mask matters.
    """
    out = []
    for b in range(enc.graph.shape[0]):
        atoms = enc.node[enc.batch == b]
        if pad_to is not None:
            atoms = torch.cat([atoms, atoms.new_zeros(pad_to - len(atoms), atoms.shape[1])])
        x = p["energy.weight"]
        for layer in range(n_layers):
            c = f"layers.{layer}"
            mem = layer_norm(p, f"{c}.norm_memory", atoms)
            x = x + attention(
                p, f"{c}.cross_attn", layer_norm(p, f"{c}.norm_cross", x), mem, n_heads
            )
            x = x + ffn(p, f"{c}.ffn", layer_norm(p, f"{c}.norm_ffn", x))
        g = enc.graph[b : b + 1]
        if "graph_proj.weight" in p:
            g = affine(p, "graph_proj", g)
        out.append(readout(p, "readout", layer_norm(p, "norm", x), g, fusion)[0])
    return torch.stack(out)


@pytest.mark.parametrize(
    ("fusion", "n_heads", "out_proj"),
    [("add", 1, False), ("concat", 1, False), ("add", 2, True)],
    ids=["paper", "concat", "two_heads_out_proj"],
)
def test_cross_attention_matches_reference(fusion: str, n_heads: int, out_proj: bool) -> None:
    head = CrossAttentionHead(
        D4,
        D4,
        M4,
        d=D4,
        n_layers=2,
        n_heads=n_heads,
        out_proj=out_proj,
        fusion=fusion,
        alpha_init=0.6,
    )
    randomise(head, 4, scale=2.0)
    batch = hand_batch()
    enc = fake_encoder(batch, D4, D4)
    p = weights(head)
    with torch.no_grad():
        pred, pred_no_batch = head(enc, batch), head(enc, None)
    ref = reference_cross_attention(p, enc, 2, n_heads, fusion)
    torch.testing.assert_close(pred, ref, **TOL)
    torch.testing.assert_close(pred_no_batch, ref, **TOL)  # padding found without the batch
    # the atom padding mask matters: the zero-padded (unmasked) attention differs
    unmasked = reference_cross_attention(p, enc, 2, n_heads, fusion, pad_to=4)
    assert_differs(pred, unmasked)


# ----------------------------------------------------------- row 5: sequence-transformer head
D5, M5, H5 = 8, 5, 2


def reference_seq_transformer(
    p: dict[str, Tensor], enc: EncoderOutput, n_layers: int, causal: bool
) -> Tensor:
    """Xtal2DoS decoder (§3.3), per crystal with atoms H and context h_x:

        z_i = LeakyReLU(W_in [√d s_i; h_x] + b_in)
        Z ← Z + SelfAttn(LN(Z))            (causal: position i sees j ≤ i; code: unmasked)
        Z ← Z + SrcAttn(LN(Z), H)          (the crystal's atoms only)
        Z ← Z + FFN(LN(Z))                 (L layers)
        logit_i = w · LN(Z)_i + b

    (the softmax over positions is the sum_norm target representation's link, not the head's).
    """
    out = []
    for b in range(enc.graph.shape[0]):
        atoms = enc.node[enc.batch == b]
        pos = p["pos.weight"] * math.sqrt(D5)
        ctx = enc.graph[b].expand(pos.shape[0], -1)
        z = leaky(affine(p, "inp", torch.cat([pos, ctx], -1)), 0.01)
        for layer in range(n_layers):
            c = f"layers.{layer}"
            zn = layer_norm(p, f"{c}.norm_self", z)
            z = z + attention(p, f"{c}.self_attn", zn, zn, H5, causal=causal)
            z = z + attention(p, f"{c}.cross_attn", layer_norm(p, f"{c}.norm_cross", z), atoms, H5)
            z = z + ffn(p, f"{c}.ffn", layer_norm(p, f"{c}.norm_ffn", z))
        out.append(affine(p, "out", layer_norm(p, "norm", z)).squeeze(-1))
    return torch.stack(out)


@pytest.mark.parametrize("causal", [False, True], ids=["code", "paper"])
def test_seq_transformer_matches_reference(causal: bool) -> None:
    head = SeqTransformerHead(
        D5, 2 * D5, M5, d_model=D5, n_layers=2, n_heads=H5, d_ff=12, causal=causal
    )
    randomise(head, 5, scale=2.0)
    batch = hand_batch()
    enc = fake_encoder(batch, D5, 2 * D5)
    p = weights(head)
    with torch.no_grad():
        logits, logits_no_batch = head(enc, batch), head(enc, None)
    ref = reference_seq_transformer(p, enc, 2, causal)
    torch.testing.assert_close(logits, ref, **TOL)
    torch.testing.assert_close(logits_no_batch, ref, **TOL)
    assert_differs(logits, reference_seq_transformer(p, enc, 2, not causal))


# ------------------------------------------------------------------------ row 6: RNN head
D6, M6 = 5, 7


def gru_cell(p: dict[str, Tensor], layer: int, x: Tensor, h: Tensor) -> Tensor:
    """r = σ(W_ir x + b_ir + W_hr h + b_hr), u = σ(W_iz x + … ), n = tanh(W_in x + b_in +
    r ⊙ (W_hn h + b_hn)), h' = (1 − u) ⊙ n + u ⊙ h (weights stacked r | z | n)."""
    gi = x @ p[f"gru.weight_ih_l{layer}"].T + p[f"gru.bias_ih_l{layer}"]
    gh = h @ p[f"gru.weight_hh_l{layer}"].T + p[f"gru.bias_hh_l{layer}"]
    ir, iz, inn = gi.chunk(3, -1)
    hr, hz, hn = gh.chunk(3, -1)
    r, u = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
    return (1 - u) * torch.tanh(inn + r * hn) + u * h


def reference_rnn(
    p: dict[str, Tensor], enc: EncoderOutput, chunk: int, n_layers: int, attention_on: bool
) -> Tensor:
    """Xtal2DoS recurrent decoder (§3.3; chunked; Luong dot attention over the crystal's atoms):

    z = W_z g + b_z = h_0 (every layer),  ŷ_0 = 0
    x_t = ReLU(W_x [ŷ_{t−1}; z]),  o_t = GRU(x_t, h_{t−1}),  r_t = W_p ReLU(o_t)
    a_tk = softmax_k(r_t · u_k),  c_t = Σ_k a_tk u_k,  u_k = W_u H_k
    ŷ_t = W_2 ReLU(W_1 [r_t; c_t; x_t])   (without attention: [r_t; x_t])
    """
    out = []
    steps = math.ceil(M6 / chunk)
    for b in range(enc.graph.shape[0]):
        z = affine(p, "latent", enc.graph[b])
        state = [z] * n_layers
        y = torch.zeros(chunk, dtype=DT)
        ys = []
        for _ in range(steps):
            x = torch.relu(affine(p, "inp", torch.cat([y, z])))
            inp = x
            for layer in range(n_layers):
                state[layer] = gru_cell(p, layer, inp, state[layer])
                inp = state[layer]
            r = affine(p, "proj", torch.relu(inp))
            feats = [r, x]
            if attention_on:
                u = affine(p, "node_proj", enc.node[enc.batch == b])  # (n_b, h)
                feats = [r, softmax0(u @ r) @ u, x]
            y = affine(p, "out", torch.relu(affine(p, "compress", torch.cat(feats))))
            ys.append(y)
        out.append(torch.cat(ys)[:M6])
    return torch.stack(out)


@pytest.mark.parametrize(
    ("chunk", "n_layers", "attention_on"),
    [(1, 1, False), (1, 1, True), (3, 2, True)],
    ids=["rnn", "rnn_attn", "chunk_rnn_attn_truncated"],
)
def test_rnn_matches_reference(chunk: int, n_layers: int, attention_on: bool) -> None:
    head = RNNHead(
        D6 + 1, 2 * D6, M6, hidden=D6, n_layers=n_layers, chunk=chunk, attention=attention_on
    )
    randomise(head, 6, scale=2.0)
    batch = hand_batch()
    enc = fake_encoder(batch, D6 + 1, 2 * D6)
    p = weights(head)
    with torch.no_grad():
        pred, pred_no_batch = head(enc, batch), head(enc, None)
    assert pred.shape == (3, M6)
    ref = reference_rnn(p, enc, chunk, n_layers, attention_on)
    torch.testing.assert_close(pred, ref, **TOL)
    torch.testing.assert_close(pred_no_batch, ref, **TOL)
    if attention_on:  # the attention over the atoms matters
        q = dict(p)
        q["node_proj.weight"] = 2.0 * q["node_proj.weight"]
        assert_differs(pred, reference_rnn(q, enc, chunk, n_layers, attention_on))


# ---------------------------------------------------------------------- row 7: ALIGNN
D7, EMB7 = 6, 4  # hidden, embedding widths; code bins: 80 bond / 40 angle Gaussians


def reference_line_graph(batch: Batch, backtracking: bool) -> tuple[Tensor, Tensor]:
    """ALIGNN-DOS §1.2: one line-graph node per bond; for each bond e2 = (j → i), a line-graph
    edge from every bond e1 = (k → j) arriving at its source atom j (ALIGNN/DGL ``line_graph``);
    feature cos θ of the angle at j between k and i (the first bond vector negated), from the
    positions. ``backtracking=False`` drops e1 = the reverse of e2 (k = i, opposite image)."""
    j, i = batch.edge_index
    lat = batch.cell[batch.batch[i]]  # (E, 3, 3), rows = lattice vectors
    shift = batch.edge_shift
    image = (shift[:, None, :] @ lat).squeeze(1)  # n_e L
    pairs, cos = [], []
    for e2 in range(len(j)):
        for e1 in range(len(j)):
            if i[e1] != j[e2]:
                continue
            reverse = j[e1] == i[e2] and bool((shift[e1] + shift[e2] == 0).all())
            if reverse and not backtracking:
                continue
            to_k = batch.pos[j[e1]] + image[e1] - batch.pos[i[e1]]  # from j to k
            to_i = batch.pos[i[e2]] - (batch.pos[j[e2]] + image[e2])  # from j (image) to i
            pairs.append((e1, e2))
            cos.append(to_k @ to_i / (to_k.norm() * to_i.norm()))
    return torch.tensor(pairs).T, torch.stack(cos).clamp(-1.0, 1.0)


def mlp_layer(p: dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    """ALIGNN's Linear–BatchNorm–SiLU."""
    return silu(batch_norm(p, f"{prefix}.1", affine(p, f"{prefix}.0", x)))


def edge_gated_conv(
    p: dict[str, Tensor], c: str, h: Tensor, e: Tensor, edge_index: Tensor
) -> tuple[Tensor, Tensor]:
    """ALIGNN-DOS §1.3 (eqs. 1–3), edge j → i (j = source, i = target):

    m_ji = A h_i + B h_j + C e_ji          (A: ``dst_gate``, B: ``src_gate``, C: ``edge_gate``;
                                            ALIGNN names the gates by the edge end they read)
    η_ji = σ(m_ji) / (Σ_{j'} σ(m_j'i) + 1e-6)
    h_i' = h_i + SiLU(BN(W1 h_i + Σ_j η_ji ⊙ W2 h_j))
    e_ji' = e_ji + SiLU(BN(m_ji))          (when this conv's edge update is built)
    """
    j, i = edge_index
    m = affine(p, f"{c}.dst_gate", h)[i] + affine(p, f"{c}.src_gate", h)[j]
    m = m + affine(p, f"{c}.edge_gate", e)
    gate, w2h = torch.sigmoid(m), affine(p, f"{c}.nbr_update", h)
    x = affine(p, f"{c}.self_update", h)
    for node, edges in enumerate(incoming(i, h.shape[0])):
        if len(edges):
            eta = gate[edges] / (gate[edges].sum(0) + 1e-6)
            x[node] = x[node] + (eta * w2h[j[edges]]).sum(0)
    h_new = h + silu(batch_norm(p, f"{c}.bn_nodes", x))
    if f"{c}.bn_edges.weight" not in p:
        return h_new, e
    return h_new, e + silu(batch_norm(p, f"{c}.bn_edges", m))


def reference_alignn(
    p: dict[str, Tensor], batch: Batch, n_alignn: int, n_gcn: int, order: str, backtracking: bool
) -> tuple[Tensor, Tensor]:
    """Embeddings (atoms Linear–BN–SiLU; bonds RBF(0…8 Å, 80) → 64 → d; angles RBF(−1…1, 40)
    → 64 → d), ALIGNN layers (line graph then crystal graph — paper; code: crystal first), the
    crystal-graph-only convs, mean over atoms."""
    lg, cos = reference_line_graph(batch, backtracking)
    h = mlp_layer(p, "atom_embedding", batch.x)
    u = mlp_layer(
        p,
        "edge_embedding.1",
        mlp_layer(p, "edge_embedding.0", rbf_alignn(batch.edge_dist, 0.0, 8.0, 80)),
    )
    t = mlp_layer(
        p, "angle_embedding.1", mlp_layer(p, "angle_embedding.0", rbf_alignn(cos, -1.0, 1.0, 40))
    )
    for k in range(n_alignn):
        if order == "line_first":
            u, t = edge_gated_conv(p, f"line_convs.{k}", u, t, lg)
            h, u = edge_gated_conv(p, f"crystal_convs.{k}", h, u, batch.edge_index)
        else:
            h, u = edge_gated_conv(p, f"crystal_convs.{k}", h, u, batch.edge_index)
            u, t = edge_gated_conv(p, f"line_convs.{k}", u, t, lg)
    for k in range(n_gcn):
        h, u = edge_gated_conv(p, f"gcn_convs.{k}", h, u, batch.edge_index)
    return h, torch.stack([h[rows].mean(0) for rows in crystal_rows(batch)])


@pytest.mark.parametrize(
    ("order", "backtracking", "precomputed"),
    [
        ("line_first", True, False),
        ("crystal_first", True, False),
        ("line_first", False, False),
        ("line_first", True, True),
    ],
    ids=["paper", "code", "no_backtracking", "paper_line_graph_in_batch"],
)
def test_alignn_matches_reference(order: str, backtracking: bool, precomputed: bool) -> None:
    """``precomputed``: the batch carries the line graph and its cosines (``lg_edge_index``,
    ``lg_cos``, as graphs built with ``line_graph: true``); here the reference's own."""
    enc = ALIGNNEncoder(
        IN_DIM,
        hidden=D7,
        embedding=EMB7,
        alignn_layers=2,
        gcn_layers=1,
        order=order,
        backtracking=backtracking,
    )
    randomise(enc, 7, scale=3.0)
    batch = hand_batch()
    if precomputed:
        batch.lg_edge_index, batch.lg_cos = reference_line_graph(batch, backtracking)
    p = weights(enc)
    node, graph = reference_alignn(p, batch, 2, 1, order, backtracking)
    with torch.no_grad():
        out = enc(batch)
    torch.testing.assert_close(out.node, node, **TOL)
    torch.testing.assert_close(out.graph, graph, **TOL)
    other = "crystal_first" if order == "line_first" else "line_first"
    assert_differs(out.node, reference_alignn(p, batch, 2, 1, other, backtracking)[0])
