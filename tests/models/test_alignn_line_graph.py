"""ALIGNN's line graph built once per crystal with the graphs (issue 14).

The line graph and bond-angle cosines of a ``line_graph`` recipe come from the graph cache
(dos_bench.data.line_graphs); the encoder reads them instead of building them at every step.
Behaviour is unchanged: the forward and the gradients on the same batch equal a reference kept
here — the line graph built on the fly from the batch (the pre-issue-14 path) and the edge-gated
convolution written with plain autograd ops (gather, sigmoid, scatter), as before.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch import Tensor, nn
from torch_geometric.data import Batch

from dos_bench.data.graph_store import GraphSet
from dos_bench.data.graphs import (
    GraphRecipe,
    build_graphs,
    edge_vectors,
    graph_cache_path,
    to_data,
    to_data_list,
)
from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.io import ConfigError, DataError
from dos_bench.models.encoders.alignn import (
    ALIGNNEncoder,
    EdgeGatedConv,
    _gated_aggregate_autograd,
    _GatedAggregate,
    bond_cosines,
    line_graph,
)
from dos_bench.models.heads.direct import DirectHead
from dos_bench.models.model import DOSModel


def _structures() -> list[Structure]:
    rock = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()
    hcp = Structure(
        Lattice.hexagonal(3.21, 5.21), ["Mg", "Mg"], [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
    )
    tri = Structure(
        Lattice.from_parameters(3.9, 4.3, 4.7, 81, 97, 104),
        ["Ti", "O", "N"],
        [[0.02, 0.05, 0.0], [0.51, 0.43, 0.12], [0.27, 0.81, 0.61]],
    )
    one = Structure(Lattice.cubic(2.9), ["Fe"], [[0, 0, 0]])  # bonds to its own images only
    return [rock, hcp, tri, one]


def _records() -> RecordSet:
    grid = np.linspace(0.0, 1.0, 4)
    return RecordSet.from_records(
        [DOSRecord(f"s{i}", s, grid, np.ones(4)) for i, s in enumerate(_structures())]
    )


def _recipe(backtracking: bool = True, line: bool = True) -> GraphRecipe:
    return GraphRecipe(
        cutoff=5.0,
        max_neighbors=8,
        keep_ties=True,
        line_graph=line,
        line_graph_backtracking=backtracking,
    )


def _batch(backtracking: bool = True, dtype: torch.dtype = torch.float64) -> Batch:
    rs = _records()
    b = Batch.from_data_list(to_data_list(rs, build_graphs(rs, _recipe(backtracking)), "cgcnn"))
    for k in ("x", "pos", "cell", "edge_dist", "edge_shift"):
        b[k] = b[k].to(dtype)
    return b


@pytest.mark.parametrize("backtracking", [True, False])
def test_cached_line_graph_is_the_on_the_fly_one(backtracking: bool) -> None:
    b = _batch(backtracking)
    lg = line_graph(b.edge_index, b.num_nodes, b.edge_shift, backtracking)
    # same pairs in the same order, offset by the edge counts when batched
    assert b.lg_edge_index.dtype == torch.int32
    assert torch.equal(b.lg_edge_index.long(), lg)
    vec = edge_vectors(b.pos, b.cell, b.edge_index, b.edge_shift, b.batch)
    torch.testing.assert_close(b.lg_cos.double(), bond_cosines(vec, lg), rtol=0, atol=1e-6)
    assert b.lg_cos.dtype == torch.float32 and b.lg_cos.abs().max() <= 1.0
    # one structure alone (to_data, as dos-predict builds them) has its own line graph
    rs = _records()
    gs = build_graphs(rs, _recipe(backtracking))
    d = to_data(rs, gs, 2, np.eye(100, dtype=np.float32))
    alone = line_graph(d.edge_index, d.num_nodes, d.edge_shift, backtracking)
    assert torch.equal(d.lg_edge_index.long(), alone)


# ---------------------------------------------------------------------- reference computation
def _reference_conv(conv: EdgeGatedConv, h: Tensor, e: Tensor, edge_index: Tensor):
    """The edge-gated convolution as before issue 14: plain autograd ops."""
    src, dst = edge_index[0], edge_index[1]
    m = (
        conv.src_gate(h).index_select(0, src)
        + conv.dst_gate(h).index_select(0, dst)
        + conv.edge_gate(e)
    )
    sigma = torch.sigmoid(m)
    msg = sigma * conv.nbr_update(h).index_select(0, src)
    num = h.new_zeros(h.shape).index_add_(0, dst, msg)
    den = h.new_zeros(h.shape).index_add_(0, dst, sigma)
    h_out = h + nn.functional.silu(conv.bn_nodes(conv.self_update(h) + num / (den + 1e-6)))
    if conv.bn_edges is None:
        return h_out, e
    return h_out, e + nn.functional.silu(conv.bn_edges(m))


def _reference_encoder(enc: ALIGNNEncoder, batch: Batch) -> Tensor:
    """ALIGNNEncoder.forward as before issue 14: the line graph built from the batch."""
    edge_index = batch.edge_index
    h = enc.atom_embedding(batch.x)
    u = enc.edge_embedding(enc.edge_rbf(batch.edge_dist))
    vec = edge_vectors(batch.pos, batch.cell, edge_index, batch.edge_shift, batch.batch)
    lg = line_graph(edge_index, batch.num_nodes, batch.edge_shift, enc.backtracking)
    t = enc.angle_embedding(enc.angle_rbf(bond_cosines(vec, lg)))
    for line_conv, crystal_conv in zip(enc.line_convs, enc.crystal_convs, strict=True):
        if enc.order == "line_first":
            u, t = _reference_conv(line_conv, u, t, lg)
            h, u = _reference_conv(crystal_conv, h, u, edge_index)
        else:
            h, u = _reference_conv(crystal_conv, h, u, edge_index)
            u, t = _reference_conv(line_conv, u, t, lg)
    for conv in enc.gcn_convs:
        h, u = _reference_conv(conv, h, u, edge_index)
    graphs = batch.batch
    pooled = h.new_zeros(batch.num_graphs, h.shape[1]).index_add_(0, graphs, h)
    return pooled / torch.bincount(graphs).unsqueeze(1).to(h.dtype)


@pytest.mark.parametrize(
    ("order", "backtracking"),
    [("line_first", True), ("crystal_first", True), ("line_first", False)],
    ids=["paper", "code", "no_backtracking"],
)
def test_forward_and_gradients_equal_the_reference(order: str, backtracking: bool) -> None:
    batch = _batch(backtracking)
    torch.manual_seed(0)
    enc = ALIGNNEncoder(
        batch.x.shape[1], hidden=16, embedding=8, order=order, backtracking=backtracking
    ).double()
    ref = ALIGNNEncoder(
        batch.x.shape[1], hidden=16, embedding=8, order=order, backtracking=backtracking
    ).double()
    ref.load_state_dict(enc.state_dict())
    weights = torch.randn(batch.num_graphs, 16, dtype=torch.float64)
    got = enc(batch).graph
    want = _reference_encoder(ref, batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    scale = max(p.grad.abs().max() for p in ref.parameters())
    for (name, p), q in zip(enc.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-6 * scale, msg=name)
    # BatchNorm running statistics follow the same updates
    for (name, a), b in zip(enc.named_buffers(), ref.buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7, msg=name)


def test_float32_forward_equals_the_reference_to_1e5() -> None:
    batch = _batch(dtype=torch.float32)
    torch.manual_seed(0)
    enc = ALIGNNEncoder(batch.x.shape[1], hidden=32, embedding=16).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            enc(batch).graph, _reference_encoder(enc, batch), rtol=1e-5, atol=1e-5
        )


def test_gated_aggregation_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    n, e, d = 5, 14, 3
    args = [torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in "spq"]
    args.append(torch.randn(e, d, generator=g, dtype=torch.float64, requires_grad=True))
    src = torch.randint(0, n, (e,), generator=g)
    dst = torch.randint(0, n, (e,), generator=g)
    for pick in (slice(None), 0, 1):  # both outputs, m alone, the aggregate alone

        def f(*a, pick=pick):
            out = _GatedAggregate.apply(*a, src, dst, 1e-6)
            return out if pick == slice(None) else out[pick]

        assert torch.autograd.gradcheck(f, args)


def test_the_traceable_aggregation_equals_the_hand_written_one() -> None:
    """The out-of-place version ``torch.compile`` traces: same values and gradients."""
    g = torch.Generator().manual_seed(1)
    n, e, d = 6, 17, 4
    args = [torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True) for _ in "spq"]
    args.append(torch.randn(e, d, generator=g, dtype=torch.float64, requires_grad=True))
    src, dst = torch.randint(0, n, (e,), generator=g), torch.randint(0, n, (e,), generator=g)
    outs = [f(*args, src, dst, 1e-6) for f in (_GatedAggregate.apply, _gated_aggregate_autograd)]
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    w = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outs[0]]
    grads = [torch.autograd.grad(o, args, w) for o in outs]
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-12)


@pytest.mark.slow
def test_alignn_compiles_and_trains_like_eager() -> None:
    """Under ``torch.compile`` (``compile: true``) the C kernels and the hand-written autograd
    Functions step aside for traceable torch operators: same outputs and gradients as eager."""
    from dos_bench.models.model import compile_model

    batch = _batch(dtype=torch.float64)  # float64: compare without float32 reordering noise

    def encoder() -> ALIGNNEncoder:
        torch.manual_seed(0)
        return ALIGNNEncoder(
            batch.x.shape[1], hidden=16, embedding=8, alignn_layers=1, gcn_layers=1
        ).double()

    eager, compiled = encoder(), compile_model(encoder())
    out = [m(batch).graph for m in (eager, compiled)]
    torch.testing.assert_close(out[1], out[0], rtol=1e-9, atol=1e-10)
    grads = [
        torch.autograd.grad(o.square().sum(), list(m.parameters()))
        for o, m in zip(out, (eager, compiled), strict=True)
    ]
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------------- cache and recipe
def test_line_graph_is_cached_with_the_graphs(tmp_path) -> None:
    rs = _records()
    gs = build_graphs(rs, _recipe())
    assert gs.has_line_graph and gs.lg_src.dtype == np.int16 and gs.lg_cos.dtype == np.float32
    back = GraphSet.load(gs.save(tmp_path / "g.npz"))
    for k in ("lg_ptr", "lg_src", "lg_dst", "lg_cos"):
        np.testing.assert_array_equal(getattr(back, k), getattr(gs, k))
    # a line_graph cache without its line graph is refused, naming the file
    plain = build_graphs(rs, _recipe(line=False))
    assert not plain.has_line_graph
    plain.recipe = gs.recipe
    plain.save(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="bad.npz: graph cache lacks arrays"):
        GraphSet.load(tmp_path / "bad.npz")


def test_cache_key_follows_the_line_graph_settings(tmp_path) -> None:
    key = {"name": "x"}
    paths = {
        graph_cache_path(tmp_path, key, _recipe(line=False)),
        graph_cache_path(tmp_path, key, _recipe(True)),
        graph_cache_path(tmp_path, key, _recipe(False)),
    }
    assert len(paths) == 3
    # recipes without a line graph keep the key (and the cache files) they had before
    assert set(GraphRecipe().key()) == {
        "cutoff", "max_neighbors", "keep_ties", "self_loops", "neighbor_tol", "tie_tol", "version"
    }  # fmt: skip
    assert _recipe().key()["line_graph"]["backtracking"] is True
    with pytest.raises(ConfigError, match="line_graph must be true or false"):
        GraphRecipe(line_graph="yes")


def test_a_line_graph_built_for_other_backtracking_is_refused() -> None:
    def build(backtracking: bool, graph: dict) -> DOSModel:
        enc = ALIGNNEncoder(5, hidden=8, embedding=4, backtracking=backtracking)
        return DOSModel(enc, lambda **kw: DirectHead(**kw, hidden=8), 4, graph=graph)

    build(False, {"line_graph": True, "line_graph_backtracking": False})
    build(False, {"line_graph": False})
    with pytest.raises(ConfigError, match="line_graph_backtracking=True but .*backtracking=False"):
        build(False, {"line_graph": True})
