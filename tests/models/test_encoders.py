"""Crystal encoders (ALIGNN, GATGNN, UniMP, E3NN): shapes, invariances, gradients, line graph.

Invariance tests run in float64: models are cast with ``.double()`` and positions, cells and
edge lengths are recomputed in float64 from the record set (``to_data_list`` stores float32),
so the tolerance is ``rtol=1e-6, atol=1e-8`` (observed errors are ~1e-12).  BatchNorm running
statistics are first moved away from their initial values by a few train-mode passes, then the
models are compared in eval mode.

k-nearest-neighbour graphs are built with ``keep_ties=True`` here: without it, which of several
equidistant neighbours is kept depends on the atom order and orientation, so the *graph* (not
the encoder) would break permutation and rotation invariance for symmetric crystals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch import nn
from torch_geometric.data import Batch

from dos_bench.data.element_tables import (
    ALIGNN_DOS_ATTRIBUTES,
    alignn_dos_features,
    alignn_dos_raw_attributes,
)
from dos_bench.data.graphs import GraphRecipe, build_graphs, edge_vectors, to_data_list
from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.io import ConfigError
from dos_bench.models.encoders.alignn import ALIGNNEncoder, bond_cosines, line_graph
from dos_bench.models.encoders.e3nn import E3NNEncoder
from dos_bench.models.encoders.gatgnn import GATGNNEncoder
from dos_bench.models.encoders.unimp import UniMPEncoder

RTOL, ATOL = 1e-6, 1e-8  # float64 comparisons


# ------------------------------------------------------------------------------------ crystals
def fcc_al() -> Structure:
    frac = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return Structure(Lattice.cubic(4.05), ["Al"] * 4, frac)


def fcc_al_primitive() -> Structure:
    h = 4.05 / 2
    return Structure(Lattice([[0, h, h], [h, 0, h], [h, h, 0]]), ["Al"], [[0, 0, 0]])


def rock_salt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def wurtzite() -> Structure:
    return Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]],
    )


def triclinic() -> Structure:
    lat = Lattice.from_parameters(4.1, 4.7, 5.3, 81.0, 96.0, 104.0)
    frac = [[0.02, 0.05, 0.01], [0.48, 0.53, 0.11], [0.27, 0.81, 0.62], [0.71, 0.22, 0.43]]
    return Structure(lat, ["Li", "Fe", "O", "O"], frac)


STRUCTURES = [fcc_al(), rock_salt(), wurtzite(), triclinic()]


def random_orthogonal(seed: int, proper: bool) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if (np.linalg.det(q) > 0) != proper:
        q[:, 0] *= -1
    return q


def rotated(s: Structure, q: np.ndarray) -> Structure:
    """Same crystal, rotated: lattice rows a_i -> Q a_i, same fractional coordinates."""
    return Structure(Lattice(s.lattice.matrix @ q.T), s.species, s.frac_coords)


def permuted(s: Structure, perm: np.ndarray) -> Structure:
    return Structure(s.lattice, [s.species[i] for i in perm], s.frac_coords[perm])


def translated(s: Structure, shift: np.ndarray) -> Structure:
    return Structure(s.lattice, s.species, s.frac_coords + shift, to_unit_cell=True)


# ------------------------------------------------------------------------------------- batches
def make_batch(
    structures: list[Structure],
    recipe: GraphRecipe,
    features: str,
    dtype: torch.dtype = torch.float64,
) -> Batch:
    """PyG batch; positions, cells, edge lengths recomputed in ``dtype`` from the records."""
    grid = np.linspace(0.0, 1.0, 3)
    rs = RecordSet.from_records(
        [DOSRecord(f"s{i}", s, grid, np.zeros(3)) for i, s in enumerate(structures)]
    )
    gs = build_graphs(rs, recipe, progress=False)
    data = to_data_list(rs, gs, features)
    for i, d in enumerate(data):
        a, b = int(rs.ptr[i]), int(rs.ptr[i + 1])
        lat = torch.from_numpy(rs.lattices[i])
        d.pos = (torch.from_numpy(rs.frac_coords[a:b]) @ lat).to(dtype)
        d.cell = lat.reshape(1, 3, 3).to(dtype)
        d.x, d.comp, d.edge_shift = d.x.to(dtype), d.comp.to(dtype), d.edge_shift.to(dtype)
        d.edge_dist = edge_vectors(d.pos, d.cell, d.edge_index, d.edge_shift).norm(dim=-1)
    return Batch.from_data_list(data)


@dataclass
class Spec:
    """How to build one encoder and the graphs it expects."""

    make: Callable[[], nn.Module]
    recipe: GraphRecipe
    features: str
    node_dim: int
    graph_dim: int


KNN16 = GraphRecipe(cutoff=8.0, max_neighbors=16, keep_ties=True)  # ALIGNN-DOS
KNN12 = GraphRecipe(cutoff=8.0, max_neighbors=12, keep_ties=True)  # Mat2Spec / Xtal2DoS (+ties)
RADIUS4 = GraphRecipe(cutoff=4.0, max_neighbors=None, self_loops=True)  # TUT E3NN

# Paper defaults: shapes, parameter counts (pinned) and one float32 forward pass.
DEFAULTS: dict[str, tuple[Spec, int]] = {
    "alignn": (Spec(lambda: ALIGNNEncoder(92), KNN16, "cgcnn", 256, 256), 4_025_472),
    "gatgnn": (Spec(lambda: GATGNNEncoder(92), KNN12, "cgcnn", 128, 128), 289_713),
    "unimp": (Spec(lambda: UniMPEncoder(92), KNN12, "cgcnn", 512, 1024), 1_820_544),
    "e3nn": (Spec(lambda: E3NNEncoder(118), RADIUS4, "mass_onehot", 64, 64), 2_536_184),
}

# Narrow versions (same code paths, default depths and options) for the float64 invariance
# and gradient tests, which would take minutes at full width on 2 CPU cores; "*_code" and
# "*_variant" are the authors'-code options.
SPECS: dict[str, Spec] = {
    "alignn": Spec(lambda: ALIGNNEncoder(92, hidden=32, embedding=16), KNN16, "cgcnn", 32, 32),
    "alignn_code": Spec(
        lambda: ALIGNNEncoder(
            92,
            hidden=32,
            embedding=16,
            order="crystal_first",
            backtracking=False,
            alignn_layers=2,
            gcn_layers=1,
            atom_embedding_dim=16,
        ),
        KNN16,
        "cgcnn",
        32,
        32,
    ),
    "gatgnn": Spec(lambda: GATGNNEncoder(92, hidden=32), KNN12, "cgcnn", 32, 32),
    "gatgnn_code": Spec(
        lambda: GATGNNEncoder(92, hidden=32, n_layers=3, pool_reduce="sum"),
        KNN12,
        "cgcnn",
        32,
        32,
    ),
    "unimp": Spec(lambda: UniMPEncoder(92, hidden=64, channels=8), KNN12, "cgcnn", 64, 128),
    "unimp_code": Spec(
        lambda: UniMPEncoder(92, hidden=64, channels=8, beta=False, aggregate_at="neighbour"),
        KNN12,
        "cgcnn",
        64,
        128,
    ),
    "e3nn": Spec(
        lambda: E3NNEncoder(118, em_dim=16, mul=8, out_scalars=16, radial_neurons=16),
        RADIUS4,
        "mass_onehot",
        16,
        16,
    ),
    "e3nn_variant": Spec(
        lambda: E3NNEncoder(
            118,
            em_dim=16,
            mul=8,
            out_scalars=16,
            radial_neurons=16,
            lmax=2,
            shared_embedding=False,
            pooling="sum",
            out_act="relu",
        ),
        RADIUS4,
        "mass_onehot",
        16,
        16,
    ),
}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return SPECS[name].make()


@pytest.fixture(scope="module")
def eval_models() -> dict[str, nn.Module]:
    """Every encoder in float64 with non-trivial BatchNorm statistics, in eval mode."""
    out = {}
    for name, spec in SPECS.items():
        model = build(name).double()
        batch = make_batch(STRUCTURES, spec.recipe, spec.features)
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(batch)
        out[name] = model.eval()
    return out


def encode(model: nn.Module, name: str, structures: list[Structure]):
    spec = SPECS[name]
    with torch.no_grad():
        return model(make_batch(structures, spec.recipe, spec.features))


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", list(DEFAULTS))
def test_defaults_shapes_and_parameter_counts(name: str) -> None:
    spec, n_params = DEFAULTS[name]
    torch.manual_seed(0)
    model = spec.make().eval()
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert (model.node_dim, model.graph_dim) == (spec.node_dim, spec.graph_dim)
    batch = make_batch(STRUCTURES, spec.recipe, spec.features, dtype=torch.float32)
    with torch.no_grad():
        out = model(batch)
    n = sum(len(s) for s in STRUCTURES)
    assert out.node.shape == (n, spec.node_dim) and out.node.dtype == torch.float32
    assert out.graph.shape == (len(STRUCTURES), spec.graph_dim)
    assert torch.equal(out.batch, batch.batch)
    assert torch.isfinite(out.node).all() and torch.isfinite(out.graph).all()


@pytest.mark.parametrize("name", list(SPECS))
def test_shapes(eval_models, name: str) -> None:
    spec, model = SPECS[name], eval_models[name]
    out = encode(model, name, STRUCTURES)
    n = sum(len(s) for s in STRUCTURES)
    assert (model.node_dim, model.graph_dim) == (spec.node_dim, spec.graph_dim)
    assert out.node.shape == (n, spec.node_dim)
    assert out.graph.shape == (len(STRUCTURES), spec.graph_dim)
    assert torch.isfinite(out.node).all() and torch.isfinite(out.graph).all()


@pytest.mark.parametrize("name", list(SPECS))
def test_permutation_invariance(eval_models, name: str) -> None:
    model = eval_models[name]
    rng = np.random.default_rng(1)
    perms = [rng.permutation(len(s)) for s in STRUCTURES]
    ref = encode(model, name, STRUCTURES)
    out = encode(model, name, [permuted(s, p) for s, p in zip(STRUCTURES, perms, strict=True)])
    close(out.graph, ref.graph)
    # node embeddings follow the atoms: new atom k of a crystal is old atom perm[k]
    offsets = np.cumsum([0] + [len(s) for s in STRUCTURES])
    index = torch.from_numpy(np.concatenate([o + p for o, p in zip(offsets, perms, strict=False)]))
    close(out.node, ref.node[index])


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "improper"])
@pytest.mark.parametrize("name", list(SPECS))
def test_rotation_invariance(eval_models, name: str, proper: bool) -> None:
    model = eval_models[name]
    q = random_orthogonal(2, proper)
    ref = encode(model, name, STRUCTURES)
    out = encode(model, name, [rotated(s, q) for s in STRUCTURES])
    close(out.graph, ref.graph)
    close(out.node, ref.node)


@pytest.mark.parametrize("name", list(SPECS))
def test_translation_invariance(eval_models, name: str) -> None:
    model = eval_models[name]
    shift = np.array([0.37, -0.81, 0.55])
    ref = encode(model, name, STRUCTURES)
    out = encode(model, name, [translated(s, shift) for s in STRUCTURES])
    close(out.graph, ref.graph)


@pytest.mark.parametrize("name", list(SPECS))
def test_batch_composition_invariance(eval_models, name: str) -> None:
    model = eval_models[name]
    ref = encode(model, name, STRUCTURES)
    for i, s in enumerate(STRUCTURES):
        close(encode(model, name, [s]).graph[0], ref.graph[i])
    # and in another company, in another position
    out = encode(model, name, [STRUCTURES[3], STRUCTURES[0], STRUCTURES[3]])
    close(out.graph[1], ref.graph[0])


@pytest.mark.parametrize("name", ["alignn", "unimp", "e3nn", "gatgnn_code"])
def test_supercell_invariance(eval_models, name: str) -> None:
    """Mean-pooled (or weighted-average) embeddings do not change for a 2x1x1 supercell."""
    model = eval_models[name]
    s = STRUCTURES[2]
    close(encode(model, name, [s * (2, 1, 1)]).graph, encode(model, name, [s]).graph)


def test_gatgnn_code_pooling_scales_with_cell_size(eval_models) -> None:
    """Mat2Spec's softmax weights followed by a *mean* make g scale as 1/n (documented)."""
    model = eval_models["gatgnn"]
    s = STRUCTURES[2]
    close(encode(model, "gatgnn", [s * (2, 1, 1)]).graph, encode(model, "gatgnn", [s]).graph / 2)


@pytest.mark.parametrize("name", list(SPECS))
def test_gradients_reach_every_parameter(name: str) -> None:
    spec = SPECS[name]
    model = build(name).train()
    batch = make_batch(STRUCTURES, spec.recipe, spec.features, dtype=torch.float32)
    out = model(batch)
    g = torch.Generator().manual_seed(0)
    loss = (out.graph * torch.randn(out.graph.shape, generator=g)).sum() + (
        out.node * torch.randn(out.node.shape, generator=g)
    ).sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


def test_e3nn_self_loops_are_safe() -> None:
    """Zero-length self edges: finite outputs and finite gradients w.r.t. positions."""
    model = build("e3nn").double().eval()
    batch = make_batch(STRUCTURES, RADIUS4, "mass_onehot")
    assert (batch.edge_dist == 0).sum() == batch.num_nodes
    batch.pos.requires_grad_(True)
    out = model(batch)
    out.graph.sum().backward()
    assert torch.isfinite(out.graph).all() and torch.isfinite(batch.pos.grad).all()


# --------------------------------------------------------------------------- ALIGNN line graph
def _fcc_batch(structure: Structure) -> Batch:
    return make_batch([structure], GraphRecipe(cutoff=3.0, max_neighbors=None), "cgcnn")


@pytest.mark.parametrize("structure", [fcc_al(), fcc_al_primitive()], ids=["conv", "prim"])
def test_line_graph_fcc_by_hand(structure: Structure) -> None:
    """fcc, 12 nearest neighbours: each bond meets the 12 bonds of its source atom.

    Angles between two nearest-neighbour directions of fcc: cos = 1 (the same neighbour:
    the bond and its own reverse), 0.5 (x4), 0 (x2), -0.5 (x4), -1 (x1) per bond.
    """
    b = _fcc_batch(structure)
    n_bonds = 12 * len(structure)
    assert b.edge_index.shape[1] == n_bonds
    lg = line_graph(b.edge_index, b.num_nodes, b.edge_shift, backtracking=True)
    assert lg.shape == (2, n_bonds * 12)
    # every line-graph edge joins e1 = (k -> j) to e2 = (j -> i)
    assert torch.equal(b.edge_index[1, lg[0]], b.edge_index[0, lg[1]])
    vec = edge_vectors(b.pos, b.cell, b.edge_index, b.edge_shift, b.batch)
    cos = bond_cosines(vec, lg)
    values, counts = torch.unique(torch.round(cos * 1e6) / 1e6, return_counts=True)
    assert values.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert counts.tolist() == [n_bonds * c for c in (1, 4, 2, 4, 1)]
    # without backtracking exactly the bond-with-its-own-reverse pairs (cos = +1) go; in the
    # one-atom cell all bonds are i -> i, so images (not atom indices) decide
    lg_nb = line_graph(b.edge_index, b.num_nodes, b.edge_shift, backtracking=False)
    assert lg_nb.shape == (2, n_bonds * 11)
    assert bond_cosines(vec, lg_nb).max() < 0.5 + 1e-6


def test_line_graph_matches_brute_force() -> None:
    b = make_batch(STRUCTURES[2:], GraphRecipe(cutoff=4.0, max_neighbors=6), "cgcnn")
    src, dst = b.edge_index.tolist()
    shift = b.edge_shift.tolist()

    def same_bond(e1: int, e2: int) -> bool:  # e1 is e2 reversed (same atoms and image)
        opposite = all(a == -c for a, c in zip(shift[e1], shift[e2], strict=True))
        return src[e1] == dst[e2] and opposite

    edges = range(len(src))
    pairs = {(e1, e2) for e2 in edges for e1 in edges if dst[e1] == src[e2]}
    no_back = {(e1, e2) for e1, e2 in pairs if not same_bond(e1, e2)}
    assert len(no_back) < len(pairs)
    for backtracking, expected in ((True, pairs), (False, no_back)):
        lg = line_graph(b.edge_index, b.num_nodes, b.edge_shift, backtracking)
        got = set(map(tuple, lg.t().tolist()))
        assert len(got) == lg.shape[1] and got == expected
        assert torch.all(lg[1, 1:] >= lg[1, :-1])  # sorted by target bond


def test_bond_cosine_known_angle() -> None:
    # bonds e1 = (k -> j) and e2 = (j -> i); vectors are centre -> neighbour
    r_e1 = torch.tensor([[1.0, 0.0, 0.0]])  # from j to k
    r_e2 = -torch.tensor([[0.5, np.sqrt(3) / 2, 0.0]])  # from i to j: j -> i is at 60 deg
    cos = bond_cosines(torch.cat([r_e1, r_e2]), torch.tensor([[0], [1]]))
    assert cos.item() == pytest.approx(0.5)


def test_invalid_options_fail_early() -> None:
    with pytest.raises(ConfigError, match="order"):
        ALIGNNEncoder(92, order="sideways")
    with pytest.raises(ConfigError, match="aggregate_at"):
        UniMPEncoder(92, aggregate_at="nowhere")
    with pytest.raises(ConfigError, match="pool_reduce"):
        GATGNNEncoder(92, pool_reduce="max")
    with pytest.raises(ConfigError, match="mass_onehot"):
        E3NNEncoder(92)


# ------------------------------------------------------------------- ALIGNN-DOS element table
def test_alignn_dos_element_table() -> None:
    table = alignn_dos_features()
    assert table.shape == (101, 5) and table.dtype == np.float32
    assert len(ALIGNN_DOS_ATTRIBUTES) == 5
    assert np.all(table[0] == 0) and np.all(np.isfinite(table))
    np.testing.assert_allclose(table[1:].mean(axis=0), 0.0, atol=1e-5)  # filled with the mean
    raw = alignn_dos_raw_attributes()
    valence = raw[:, ALIGNN_DOS_ATTRIBUTES.index("valence_electrons")]
    assert [valence[z] for z in (1, 2, 8, 10, 26, 31, 82)] == [1, 2, 6, 8, 8, 13, 28]
    assert raw[17, 0] == pytest.approx(3.16) and raw[1, 0] == pytest.approx(2.2)
    assert np.isnan(raw[2, 0])  # He electronegativity: missing, filled with the mean
    assert table[2, 0] == 0.0
    order = np.argsort(raw[1:, 0])  # z-scoring keeps the order of the present values
    present = ~np.isnan(raw[1:, 0][order])
    assert np.all(np.diff(table[1:, 0][order][present]) >= 0)


def test_graph_network_edge_update_is_the_papers_concatenation() -> None:
    """The per-atom split of ψ_edge's first layer computes ψ_edge([h_j, h_i, b_ij]) exactly
    (DOSTransformer A.3), so published-style checkpoints and the formula stay valid; so does the
    last layer's sum taken before ψ_edge's output layer (values and gradients)."""
    from types import SimpleNamespace

    from dos_bench.models.encoders.graph_network import GraphNetworkEncoder

    torch.manual_seed(0)
    enc = GraphNetworkEncoder(12, hidden=16, n_layers=2).double()
    n, n_edges = 30, 200
    b = SimpleNamespace(
        x=torch.randn(n, 12, dtype=torch.float64),
        edge_index=torch.randint(0, n, (2, n_edges)),
        edge_dist=torch.rand(n_edges, dtype=torch.float64) * 8,
        batch=torch.arange(n) // 10,
        num_graphs=3,
    )
    src, dst = b.edge_index
    h, e = enc.node_enc(b.x), enc.edge_enc(enc.rbf(b.edge_dist))
    for edge_mlp, node_mlp in zip(enc.edge_mlps, enc.node_mlps, strict=True):
        m = edge_mlp(torch.cat([h[src], h[dst], e], dim=-1))  # the atoms sum the update m
        h = h + node_mlp(torch.cat([h, torch.zeros_like(h).index_add_(0, dst, m)], dim=-1))
        e = e + m
    out = enc(b).node
    torch.testing.assert_close(out, h, rtol=1e-12, atol=1e-12)
    params = list(enc.parameters())
    probe = torch.randn_like(h)
    grads = torch.autograd.grad((out * probe).sum(), params)
    expected = torch.autograd.grad((h * probe).sum(), params)
    for g, r in zip(grads, expected, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
