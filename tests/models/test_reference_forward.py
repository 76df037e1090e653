"""Reference forward passes written from the published equations, against dos_bench's modules.

Each reference below is a few lines of plain torch per layer, written from the equations (not
from any implementation), and reads dos_bench's parameters as plain tensors by name:

* Graph network (DOSTransformer seed paper §3 / appendix A.3; the authors' code
  ``embedder_eDOS/DOSTransformer.py``, classes ``EdgeModel``/``NodeModel``/``Processor`` and the
  residual loop in ``DOSTransformer.forward``; docs/papers/dostransformer.md §2.4–2.5)::

      h⁰ = φ_node(x),  b⁰ = φ_edge(RBF(d))
      m_ij = ψ_edge([h_j, h_i, b_ij])                (the edge update)
      h_i ← h_i + ψ_node([h_i, Σ_j m_ij]),  b_ij ← b_ij + m_ij
      g = Σ_i h_i

* Mat2Spec head (Mat2Spec Methods, Algorithm 1; the authors' ``Mat2Spec_Codes/Mat2Spec/
  Mat2Spec.py`` ``feat_forward``/``label_forward``/``forward`` and ``train_Mat2Spec.py``, where
  ``net(data)`` sees the raw ``data.y`` and only the loss sees the normalised label;
  docs/papers/mat2spec.md §4.4).

Everything runs in eval mode (dropout off); the Mat2Spec sampling path is checked in train mode
with dropout 0 and fixed noise.
"""

from __future__ import annotations

import functools

import pytest
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from dos_bench.data.transforms import Standard, SumNorm
from dos_bench.io import ConfigError
from dos_bench.models.encoders.graph_network import GraphNetworkEncoder
from dos_bench.models.heads.mat2spec import Mat2SpecHead
from dos_bench.models.model import DOSModel, EncoderOutput
from dos_bench.training.module import DOSLitModule

TOL = {"rtol": 1e-5, "atol": 1e-5}
IN_DIM, D, N_LAYERS = 5, 8, 2  # tiny widths; RBF at the code settings (41 centres 0…8 Å, 0.2 Å)
RBF_NUM, RBF_STOP, RBF_WIDTH = 41, 8.0, 0.2


# ---------------------------------------------------------------------------- helpers
def randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter (LayerNorm gains, PReLU slopes included) to a random value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=g) - 0.5)


def weights(module: torch.nn.Module) -> dict[str, Tensor]:
    """dos_bench's parameters, copied as plain tensors."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def affine(p: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    """``W x + c`` with ``W = p[name.weight]`` (``c`` if present)."""
    y = x @ p[f"{name}.weight"].T
    return y + p[f"{name}.bias"] if f"{name}.bias" in p else y


def prelu(p: dict[str, Tensor], name: str, x: Tensor) -> Tensor:
    return torch.where(x >= 0, x, p[f"{name}.weight"] * x)


def layer_norm(p: dict[str, Tensor], name: str, x: Tensor, eps: float = 1e-5) -> Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * p[f"{name}.weight"] + p[f"{name}.bias"]


def linear_stack(p: dict[str, Tensor], prefix: str) -> list[str]:
    """Names of the linear layers under ``prefix`` (``prefix.<i>``), in order."""
    idx = sorted(
        {int(k.split(".")[1]) for k in p if k.startswith(prefix + ".") and p[k].dim() == 2}
    )
    return [f"{prefix}.{i}" for i in idx]


def incidence(index: Tensor, n_rows: int) -> Tensor:
    """``A[r, e] = 1`` iff ``index[e] == r``: ``A @ m`` sums the rows of ``m`` per target."""
    return (torch.arange(n_rows)[:, None] == index[None, :]).float()


# ------------------------------------------------------------------------- crystals
def hand_batch(with_y: bool = False, n_points: int = 6) -> Batch:
    """Three small crystals with explicit, deliberately non-symmetric directed edges
    (``edge_index[0]`` = neighbour j, ``edge_index[1]`` = centre i): a duplicate edge (two
    periodic images), a self-loop, and an atom with no incoming edge (crystal 3, atom 1)."""
    g = torch.Generator().manual_seed(3)
    graphs = []
    for n, edges in (
        (2, [(0, 1), (1, 0), (0, 1), (0, 0)]),
        (3, [(0, 1), (1, 2), (2, 0), (0, 2), (1, 0)]),
        (2, [(1, 0), (1, 0)]),
    ):
        e = torch.tensor(edges, dtype=torch.long).T
        data = Data(
            x=torch.randn(n, IN_DIM, generator=g),
            edge_index=e,
            edge_dist=1.0 + 5.0 * torch.rand(e.shape[1], generator=g),
            num_nodes=n,
        )
        if with_y:  # native-unit spectrum (states/eV), far from its normalised version
            data.y = 20.0 * torch.rand(1, n_points, generator=g) + 1.0
        graphs.append(data)
    return Batch.from_data_list(graphs)


# ------------------------------------------------------------------- graph network
def reference_graph_network(p: dict[str, Tensor], batch: Batch) -> tuple[Tensor, Tensor]:
    """DOSTransformer A.3 with the authors' residuals, from the equations in the docstring."""
    centres = torch.linspace(0.0, RBF_STOP, RBF_NUM)
    rbf = torch.exp(-((batch.edge_dist[:, None] - centres) ** 2) / RBF_WIDTH**2)

    def encoder(name: str, x: Tensor) -> Tensor:  # Linear–PReLU–Linear
        return affine(p, f"{name}.2", prelu(p, f"{name}.1", affine(p, f"{name}.0", x)))

    def psi(name: str, x: Tensor) -> Tensor:  # Linear(·→2d)–LayerNorm–PReLU–Linear(2d→d)
        z = layer_norm(p, f"{name}.1", affine(p, f"{name}.0", x))
        return affine(p, f"{name}.3", prelu(p, f"{name}.2", z))

    h, b = encoder("node_enc", batch.x), encoder("edge_enc", rbf)
    j, i = batch.edge_index
    to_centre = incidence(i, h.shape[0])
    for layer in range(N_LAYERS):
        m = psi(f"edge_mlps.{layer}", torch.cat([h[j], h[i], b], dim=-1))  # edge update
        h = h + psi(f"node_mlps.{layer}", torch.cat([h, to_centre @ m], dim=-1))
        b = b + m
    return h, incidence(batch.batch, batch.num_graphs) @ h


def small_graph_network(seed: int = 0) -> GraphNetworkEncoder:
    enc = GraphNetworkEncoder(IN_DIM, hidden=D, n_layers=N_LAYERS, rbf_num=RBF_NUM)
    randomise(enc, seed)
    return enc.eval()


@pytest.mark.parametrize("seed", [0, 1])
def test_graph_network_matches_reference(seed: int) -> None:
    enc = small_graph_network(seed)
    batch = hand_batch()
    node, graph = reference_graph_network(weights(enc), batch)
    with torch.no_grad():
        out = enc(batch)
    torch.testing.assert_close(out.node, node, **TOL)
    torch.testing.assert_close(out.graph, graph, **TOL)


def test_graph_network_aggregates_the_edge_update_not_the_bond() -> None:
    """With ψ_edge's output layer zeroed the edge update is 0, so every atom aggregates 0 and
    the atoms evolve exactly as in a graph without edges (summing the updated bond, b + 0 = b,
    would not)."""
    enc = small_graph_network()
    with torch.no_grad():
        for mlp in enc.edge_mlps:
            mlp[-1].weight.zero_()
            mlp[-1].bias.zero_()
    batch = hand_batch()
    bare = batch.clone()
    bare.edge_index = batch.edge_index[:, :0]
    bare.edge_dist = batch.edge_dist[:0]
    with torch.no_grad():
        torch.testing.assert_close(enc(batch).node, enc(bare).node, **TOL)


# ------------------------------------------------------------------------ Mat2Spec
K, LAT, L = 3, 4, 6  # feature Gaussians, Gaussian dimension, label length
GRAPH = 7
M2S_SIZES = {
    "n_components": K,
    "latent_dim": LAT,
    "feat_hidden": (9, 10, 9),
    "label_hidden": (10, 9),
    "mix_hidden": 5,
    "translator_hidden": (11, 12),
    "predictor_hidden": 5,
    "projector_hidden": 6,
    "proj_dim": 7,
}


def small_m2s(seed: int = 0, **kw) -> Mat2SpecHead:
    head = Mat2SpecHead(GRAPH, L, **{**M2S_SIZES, **kw})
    randomise(head, seed)
    return head


def reference_mat2spec(
    p: dict[str, Tensor],
    g: Tensor,
    y: Tensor,
    eps_f: Tensor | None = None,
    eps_l: Tensor | None = None,
) -> dict[str, Tensor]:
    """Mat2Spec Methods / Algorithm 1 with the code's label branch (docs/papers/mat2spec.md §4.4).

    ``y`` is the label vector as the network sees it (the authors' raw ``data.y``); ``eps_*``
    are the reparameterisation noises (``None``: the Gaussian means).
    """
    relu = torch.relu
    b = g.shape[0]
    # feature branch: u = MLP(g); K Gaussians and their mixing probabilities
    u = g
    for name in linear_stack(p, "feat_mlp"):
        u = relu(affine(p, name, u))
    mu_f = affine(p, "feat_mu", u).reshape(b, K, LAT)
    logvar_f = affine(p, "feat_logvar", u).reshape(b, K, LAT)
    pi_f = torch.softmax(affine(p, "feat_mix", u), dim=-1)
    zk = mu_f if eps_f is None else mu_f + eps_f * torch.exp(0.5 * logvar_f)
    z_f = (pi_f[:, :, None] * zk).sum(1)
    # label branch: L shared Gaussians from the rows of I_L; mixing weights from the label
    v = torch.eye(L)
    for name in linear_stack(p, "label_mlp"):
        v = relu(affine(p, name, v))
    mu_l, logvar_l = affine(p, "label_mu", v), affine(p, "label_logvar", v)
    first, second = linear_stack(p, "label_mix")
    pi_l = torch.softmax(affine(p, second, relu(affine(p, first, y))), dim=-1)
    zj = mu_l.expand(b, L, LAT)
    if eps_l is not None:
        zj = zj + eps_l * torch.exp(0.5 * logvar_l)
    z_l = (pi_l[:, :, None] * zj).sum(1)

    def translate(z: Tensor) -> Tensor:  # f_d([g; z]) = LeakyReLU(W2 ReLU(W1 [g; z]))
        t1, t2 = linear_stack(p, "translator")
        return torch.nn.functional.leaky_relu(
            affine(p, t2, relu(affine(p, t1, torch.cat([g, z], -1))))
        )

    def two_or_one(prefix: str, h: Tensor) -> Tensor:  # paper: 2-layer MLP; code: one linear
        if f"{prefix}.weight" in p:
            return affine(p, prefix, h)
        a, c = linear_stack(p, prefix)
        return affine(p, c, relu(affine(p, a, h)))

    h_f, h_l = translate(z_f), translate(z_l)
    return {
        "pred": two_or_one("predictor", h_f),
        "pred_label": two_or_one("predictor", h_l),
        "proj_feat": two_or_one("projector", h_f),
        "proj_label": two_or_one("projector", h_l),
        "mu_f": mu_f,
        "logvar_f": logvar_f,
        "pi_f": pi_f,
        "mu_l": mu_l,
        "logvar_l": logvar_l,
        "pi_l": pi_l,
    }


def fake_enc(b: int = 3, seed: int = 1) -> EncoderOutput:
    gen = torch.Generator().manual_seed(seed)
    return EncoderOutput(torch.zeros(b, 1), torch.arange(b), torch.randn(b, GRAPH, generator=gen))


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_mat2spec_head_matches_reference_eval(variant: str) -> None:
    head = small_m2s(predictor=variant, projector=variant).eval()
    enc = fake_enc()
    y = 20.0 * torch.rand(3, L) + 1.0
    with torch.no_grad():
        out = head(enc, None, y)
    ref = reference_mat2spec(weights(head), enc.graph, y)
    assert set(out) == set(ref)
    for k, v in ref.items():
        torch.testing.assert_close(out[k], v, **TOL, msg=lambda m, k=k: f"{k}: {m}")


def test_mat2spec_head_matches_reference_with_fixed_noise(monkeypatch) -> None:
    """Train mode (dropout 0): z = Σ_k π_k(μ_k + ε_k σ_k), one ε per material and component."""
    head = small_m2s(dropout=0.0).train()
    enc = fake_enc()
    y = 20.0 * torch.rand(3, L) + 1.0
    gen = torch.Generator().manual_seed(9)
    eps_f, eps_l = torch.randn(3, K, LAT, generator=gen), torch.randn(3, L, LAT, generator=gen)
    queue = [eps_f, eps_l]

    def fixed_noise(*shape, **kw) -> Tensor:
        shape = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        eps = queue.pop(0)
        assert tuple(eps.shape) == shape
        return eps.clone()

    monkeypatch.setattr(torch, "randn", fixed_noise)
    with torch.no_grad():
        out = head(enc, None, y)
    monkeypatch.undo()
    assert not queue
    ref = reference_mat2spec(weights(head), enc.graph, y, eps_f, eps_l)
    for k, v in ref.items():
        torch.testing.assert_close(out[k], v, **TOL, msg=lambda m, k=k: f"{k}: {m}")


# --------------------------------------------------- Mat2Spec through the LightningModule
class _Recorder(torch.nn.Module):
    """A loss that keeps the model outputs it was given."""

    def forward(self, pred: Tensor, target: Tensor, out: dict[str, Tensor]) -> Tensor:
        self.out, self.target = out, target
        return pred.sum() * 0.0


def m2s_lit(transform, **head_kw) -> tuple[DOSLitModule, Batch]:
    torch.manual_seed(0)
    batch = hand_batch(with_y=True, n_points=L)
    model = DOSModel(
        GraphNetworkEncoder(IN_DIM, hidden=GRAPH, n_layers=1),
        functools.partial(Mat2SpecHead, **{**M2S_SIZES, **head_kw}),
        out_dim=L,
    )
    randomise(model.head, 2)
    transform.fit(20.0 * torch.rand(10, L) + 1.0)
    lit = DOSLitModule(model, transform, _Recorder(), lambda ps: torch.optim.SGD(ps, lr=0.1))
    return lit.eval(), batch


@pytest.mark.parametrize("transform", [Standard, SumNorm], ids=["standard", "sum_norm"])
def test_mat2spec_label_branch_sees_the_native_spectrum(transform) -> None:
    """The authors' ``net(data)`` feeds the raw ``data.y`` to the mixing-weight MLP
    (``Mat2Spec.py`` ``forward``/``label_forward``; ``train_Mat2Spec.py`` normalises a copy
    of ``data.y`` for the loss only): dos_bench's label branch sees ``batch.y`` in native units,
    while the loss still gets the encoded target."""
    lit, batch = m2s_lit(transform())
    with torch.no_grad():
        lit._shared_step(batch)
        g = lit.model.encoder(batch).graph
    out, seen_target = lit.loss_fn.out, lit.loss_fn.target
    y = batch.y.float()
    z, _ = lit.target_transform.encode(y, batch)
    torch.testing.assert_close(seen_target, z)  # the loss is on the representation
    ref = reference_mat2spec(weights(lit.model.head), g, y)
    torch.testing.assert_close(out["pi_l"], ref["pi_l"], **TOL)
    link = lit.target_transform.link
    torch.testing.assert_close(out["pred_label"], link(ref["pred_label"]), **TOL)
    torch.testing.assert_close(out["pred"], link(ref["pred"]), **TOL)
    # and not the normalised spectrum
    wrong = reference_mat2spec(weights(lit.model.head), g, z)
    assert (out["pi_l"] - wrong["pi_l"]).abs().max() > 1e-3


def test_mat2spec_label_input_representation_keeps_the_encoded_target() -> None:
    """``label_input="representation"`` (for representations whose length differs from the
    grid, e.g. an autoencoder latent) feeds the encoded target instead."""
    lit, batch = m2s_lit(Standard(), label_input="representation")
    with torch.no_grad():
        lit._shared_step(batch)
        g = lit.model.encoder(batch).graph
    z, _ = lit.target_transform.encode(batch.y.float(), batch)
    ref = reference_mat2spec(weights(lit.model.head), g, z)
    torch.testing.assert_close(lit.loss_fn.out["pi_l"], ref["pi_l"], **TOL)


def test_mat2spec_label_input_is_validated() -> None:
    with pytest.raises(ConfigError, match="label_input"):
        small_m2s(label_input="normalised")
    head = small_m2s().eval()
    with pytest.raises(ValueError, match="label_input"):
        head(fake_enc(), None, torch.rand(3, L + 2))  # native grid ≠ label length
