"""Periodic crystal graphs: hand-checkable fcc Al, conventions, cache and PyG batching."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from dos_bench.data import graph_store
from dos_bench.data import graphs as G
from dos_bench.data.graphs import (
    GraphRecipe,
    GraphSet,
    build_graphs,
    edge_vectors,
    graph_cache_path,
    load_or_build_graphs,
    to_data,
    to_data_list,
)
from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.io import ConfigError, DataError

A_AL = 4.05
NN1 = A_AL / math.sqrt(2)  # 2.8638 Å, 12 first neighbours
NN2 = A_AL  # 6 second neighbours


def make_rs(structures: list[Structure], spectrum_len: int = 1) -> RecordSet:
    grid = np.linspace(0.0, 1.0, spectrum_len)
    return RecordSet.from_records(
        [DOSRecord(f"s{i}", s, grid, np.zeros(spectrum_len)) for i, s in enumerate(structures)]
    )


def fcc_conventional() -> Structure:
    frac = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return Structure(Lattice.cubic(A_AL), ["Al"] * 4, frac)


def fcc_primitive() -> Structure:
    h = A_AL / 2
    return Structure(Lattice([[0, h, h], [h, 0, h], [h, h, 0]]), ["Al"], [[0, 0, 0]])


def random_structure(seed: int, n: int = 5) -> Structure:
    rng = np.random.default_rng(seed)
    lat = Lattice.from_parameters(*rng.uniform(3.5, 5.5, 3), *rng.uniform(70, 110, 3))
    return Structure(lat, rng.choice(["Na", "Cl", "O", "Fe"], n).tolist(), rng.random((n, 3)))


@pytest.fixture(scope="module")
def fcc_rs() -> RecordSet:
    return make_rs([fcc_conventional(), fcc_primitive()])


@pytest.fixture(scope="module")
def mixed_rs() -> RecordSet:
    structures = [random_structure(s, n) for s, n in [(0, 5), (1, 7), (2, 3), (3, 9)]]
    return make_rs([fcc_conventional(), *structures, fcc_primitive()], spectrum_len=4)


def degrees(gs: GraphSet, i: int, n_atoms: int) -> np.ndarray:
    return np.bincount(gs.edges(i).dst.astype(np.int64), minlength=n_atoms)


# ------------------------------------------------------------------------------ fcc Al by hand
@pytest.mark.parametrize("i", [0, 1], ids=["conventional", "primitive"])
def test_fcc_first_shell(fcc_rs: RecordSet, i: int) -> None:
    gs = build_graphs(fcc_rs, GraphRecipe(cutoff=3.0, max_neighbors=None), progress=False)
    e = gs.edges(i)
    assert np.all(degrees(gs, i, fcc_rs.n_atoms[i]) == 12)
    np.testing.assert_allclose(e.dist, NN1, rtol=1e-6)
    assert NN1 == pytest.approx(2.8638, abs=1e-4)


@pytest.mark.parametrize("i", [0, 1], ids=["conventional", "primitive"])
def test_fcc_two_shells(fcc_rs: RecordSet, i: int) -> None:
    gs = build_graphs(fcc_rs, GraphRecipe(cutoff=4.5, max_neighbors=None), progress=False)
    e = gs.edges(i)
    n = fcc_rs.n_atoms[i]
    assert np.all(degrees(gs, i, n) == 18)
    for c in range(n):
        d = np.sort(e.dist[e.dst == c])
        np.testing.assert_allclose(d[:12], NN1, rtol=1e-6)
        np.testing.assert_allclose(d[12:], NN2, rtol=1e-6)


@pytest.mark.parametrize("i", [0, 1], ids=["conventional", "primitive"])
def test_fcc_k_nearest(fcc_rs: RecordSet, i: int) -> None:
    n = fcc_rs.n_atoms[i]
    gs = build_graphs(fcc_rs, GraphRecipe(cutoff=8.0, max_neighbors=12), progress=False)
    assert np.all(degrees(gs, i, n) == 12)
    np.testing.assert_allclose(gs.edges(i).dist, NN1, rtol=1e-6)
    # k = 14 without ties: the 12 first neighbours plus 2 of the 6 second neighbours
    gs = build_graphs(fcc_rs, GraphRecipe(cutoff=8.0, max_neighbors=14), progress=False)
    assert np.all(degrees(gs, i, n) == 14)
    e = gs.edges(i)
    assert np.sum(np.isclose(e.dist, NN2)) == 2 * n
    # k = 14 with the ALIGNN tie rule keeps the whole second shell
    ties = GraphRecipe(cutoff=8.0, max_neighbors=14, keep_ties=True)
    gs = build_graphs(fcc_rs, ties, progress=False)
    assert np.all(degrees(gs, i, n) == 18)
    e = gs.edges(i)
    assert np.sum(np.isclose(e.dist, NN1)) == 12 * n
    assert np.sum(np.isclose(e.dist, NN2)) == 6 * n


def test_fcc_self_loops(fcc_rs: RecordSet) -> None:
    gs = build_graphs(fcc_rs, GraphRecipe(3.0, None, self_loops=True), progress=False)
    for i in range(2):
        e = gs.edges(i)
        n = fcc_rs.n_atoms[i]
        assert np.all(degrees(gs, i, n) == 13)
        loops = e.src == e.dst
        loops &= np.all(e.shift == 0, axis=1)
        assert loops.sum() == n
        assert np.all(e.dist[loops] == 0)
        # each centre's self loop comes first
        first = np.searchsorted(e.dst, np.arange(n))
        assert np.all(loops[first])


def test_edge_order_and_dtypes(mixed_rs: RecordSet) -> None:
    gs = build_graphs(mixed_rs, GraphRecipe(), progress=False)
    assert gs.src.dtype == np.int16 and gs.dst.dtype == np.int16
    assert gs.dist.dtype == np.float32 and gs.shift.dtype == np.int8
    assert gs.edge_ptr.dtype == np.int64 and len(gs) == len(mixed_rs)
    for i in range(len(mixed_rs)):
        e = gs.edges(i)
        assert np.all(np.diff(e.dst.astype(int)) >= 0)  # grouped by centre
        for c in np.unique(e.dst):
            assert np.all(np.diff(e.dist[e.dst == c]) >= 0)  # by distance within a centre


# ------------------------------------------------------------------------------ conventions
def test_edge_direction_convention() -> None:
    """Centre 0 at the origin, neighbour 1 at x = 3 Å: the edge 1 -> 0 has vector (+3, 0, 0)."""
    s = Structure(Lattice.cubic(10.0), ["Na", "Cl"], [[0, 0, 0], [0.3, 0, 0]])
    rs = make_rs([s])
    gs = build_graphs(rs, GraphRecipe(cutoff=4.0, max_neighbors=None), progress=False)
    e = gs.edges(0)
    assert sorted(zip(e.src.tolist(), e.dst.tolist(), strict=True)) == [(0, 1), (1, 0)]
    (data,) = to_data_list(rs, gs, "onehot")
    vec = edge_vectors(data.pos, data.cell, data.edge_index, data.edge_shift)
    by_edge = {(int(a), int(b)): v for a, b, v in zip(*data.edge_index, vec, strict=True)}
    np.testing.assert_allclose(by_edge[(1, 0)].numpy(), [3.0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(by_edge[(0, 1)].numpy(), [-3.0, 0, 0], atol=1e-5)

    # across the boundary: atoms at x = 0.5 Å and 9.5 Å are 1 Å apart through the image
    s = Structure(Lattice.cubic(10.0), ["Na", "Cl"], [[0.05, 0, 0], [0.95, 0, 0]])
    rs = make_rs([s])
    gs = build_graphs(rs, GraphRecipe(cutoff=2.0, max_neighbors=None), progress=False)
    e = gs.edges(0)
    k = int(np.flatnonzero((e.src == 1) & (e.dst == 0))[0])
    assert e.shift[k].tolist() == [-1, 0, 0]  # neighbour 1 seen in the image at x = -0.5 Å
    (data,) = to_data_list(rs, gs, "onehot")
    vec = edge_vectors(data.pos, data.cell, data.edge_index, data.edge_shift)
    np.testing.assert_allclose(vec[k].numpy(), [-1.0, 0, 0], atol=1e-5)


def test_edge_vectors_match_distances(mixed_rs: RecordSet) -> None:
    gs = build_graphs(mixed_rs, GraphRecipe(cutoff=6.0, max_neighbors=None), progress=False)
    data = to_data_list(mixed_rs, gs, "cgcnn")
    for i, d in enumerate(data):
        vec = edge_vectors(d.pos, d.cell, d.edge_index, d.edge_shift)
        torch.testing.assert_close(vec.norm(dim=1), d.edge_dist, rtol=1e-5, atol=1e-5)
        # float64 numpy reference of the documented formula r = pos[src] + shift @ L - pos[dst]
        lat, _, frac = mixed_rs.atoms(i)
        pos = frac @ lat
        e = gs.edges(i)
        ref = pos[e.src] + e.shift @ lat - pos[e.dst]
        np.testing.assert_allclose(vec.numpy(), ref, atol=1e-4)


def test_matches_pymatgen_neighbor_list(mixed_rs: RecordSet) -> None:
    gs = build_graphs(mixed_rs, GraphRecipe(cutoff=5.0, max_neighbors=None), progress=False)
    for i in range(len(mixed_rs)):
        centre, nbr, image, dist = mixed_rs.structure(i).get_neighbor_list(5.0)
        ref = sorted(
            (int(c), int(j), *np.rint(s).astype(int).tolist())
            for c, j, s in zip(centre, nbr, image, strict=True)
        )
        e = gs.edges(i)
        mine = sorted(
            (int(c), int(j), *s.tolist())
            for c, j, s in zip(e.dst, e.src, e.shift.astype(int), strict=True)
        )
        assert mine == ref


@pytest.mark.parametrize("keep_ties", [False, True])
def test_k_nearest_matches_reference(mixed_rs: RecordSet, keep_ties: bool) -> None:
    k = 10
    gs = build_graphs(mixed_rs, GraphRecipe(7.0, k, keep_ties=keep_ties), progress=False)
    for i in range(len(mixed_rs)):
        centre, _, _, dist = mixed_rs.structure(i).get_neighbor_list(7.0)
        e = gs.edges(i)
        for c in range(mixed_rs.n_atoms[i]):
            ref = np.sort(dist[centre == c])
            if keep_ties:
                ref = ref[ref <= ref[k - 1] + G.TIE_TOL]
            else:
                ref = ref[:k]
            np.testing.assert_allclose(e.dist[e.dst == c], ref, rtol=1e-6)


def test_rotation_and_translation_invariance() -> None:
    s = random_structure(7, n=6)
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = Structure(Lattice(s.lattice.matrix @ q.T), s.species, s.frac_coords + [0.31, -0.2, 0.77])
    rs = make_rs([s, rot])
    gs = build_graphs(rs, GraphRecipe(cutoff=8.0, max_neighbors=12), progress=False)
    np.testing.assert_allclose(np.sort(gs.edges(0).dist), np.sort(gs.edges(1).dist), rtol=1e-5)


def test_chunking_does_not_change_graphs(
    mixed_rs: RecordSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = GraphRecipe(cutoff=8.0, max_neighbors=12)
    whole = build_graphs(mixed_rs, recipe, progress=False)
    monkeypatch.setattr(G, "_CHUNK_PAIRS", 50)
    chunked = build_graphs(mixed_rs, recipe, progress=False)
    for k in graph_store._ARRAYS:
        np.testing.assert_array_equal(getattr(whole, k), getattr(chunked, k))


@pytest.mark.parametrize("k", [None, 8])
def test_ungrouped_neighbour_output(
    mixed_rs: RecordSet, monkeypatch: pytest.MonkeyPatch, k: int | None
) -> None:
    """If find_points_in_spheres ever stops grouping pairs by centre, results are unchanged."""
    import pymatgen.optimization.neighbors as nb

    rs = mixed_rs.subset([1, 2, 3, 4])
    recipe = GraphRecipe(cutoff=6.0, max_neighbors=k)
    ref = build_graphs(rs, recipe, progress=False)
    original = nb.find_points_in_spheres

    def reversed_output(*args, **kwargs):
        return tuple(a[::-1].copy() for a in original(*args, **kwargs))

    monkeypatch.setattr(nb, "find_points_in_spheres", reversed_output)
    gs = build_graphs(rs, recipe, progress=False)
    for name in ("edge_ptr", "dst", "dist"):
        np.testing.assert_array_equal(getattr(gs, name), getattr(ref, name))
    if k is None:  # equidistant images (+n / -n of one atom) may swap places at a k cut
        for i in range(len(rs)):
            a, b = gs.edges(i), ref.edges(i)
            edges_a = sorted(map(tuple, np.column_stack([a.dst, a.src, a.shift]).tolist()))
            edges_b = sorted(map(tuple, np.column_stack([b.dst, b.src, b.shift]).tolist()))
            assert edges_a == edges_b


def test_large_shifts_fall_back_to_int16() -> None:
    s = Structure(Lattice([[3, 0, 0], [0, 3, 0], [0, 0, 0.05]]), ["H"], [[0, 0, 0]])
    gs = build_graphs(make_rs([s]), GraphRecipe(8.0, None), progress=False)
    assert gs.shift.dtype == np.int16
    assert np.abs(gs.shift[:, 2]).max() == 160
    assert G._int_dtype(127, (np.int8, np.int16)) is np.int8
    assert G._int_dtype(128, (np.int8, np.int16)) is np.int16
    assert G._int_dtype(40000, (np.int16, np.int32)) is np.int32


def test_recipe_validation_and_key() -> None:
    with pytest.raises(ConfigError):
        GraphRecipe(cutoff=0.0)
    with pytest.raises(ConfigError):
        GraphRecipe(max_neighbors=0)
    key = GraphRecipe().key()
    assert key["version"] == G.GRAPH_VERSION
    assert {"cutoff", "max_neighbors", "keep_ties", "self_loops"} <= set(key)
    assert GraphRecipe(max_neighbors=12).key() != GraphRecipe(max_neighbors=16).key()


# ------------------------------------------------------------------------------ cache
def test_save_load_round_trip(mixed_rs: RecordSet, tmp_path: Path) -> None:
    gs = build_graphs(mixed_rs, GraphRecipe(), progress=False)
    path = gs.save(tmp_path / "g.npz")
    back = GraphSet.load(path)
    for k in graph_store._ARRAYS:
        a, b = getattr(gs, k), getattr(back, k)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert back.recipe == gs.recipe
    assert [p.name for p in tmp_path.iterdir()] == ["g.npz"]  # no temporary files left


def test_load_or_build_reuses_cache(
    mixed_rs: RecordSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recipe = GraphRecipe(cutoff=6.0, max_neighbors=12)
    key = {"source": "test", "n": len(mixed_rs)}
    with caplog.at_level(logging.INFO, logger="dos_bench.data.graphs"):
        first = load_or_build_graphs(mixed_rs, recipe, tmp_path, key, progress=False)
    path = graph_cache_path(tmp_path, key, recipe)
    assert path.exists() and path.name.startswith("graphs-") and path.suffix == ".npz"
    assert "building graphs for 6 structures" in caplog.text and str(path) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="dos_bench.data.graphs"):
        second = load_or_build_graphs(mixed_rs, recipe, tmp_path, key, progress=False)
    assert f"reusing cached graphs at {path}" in caplog.text
    for k in graph_store._ARRAYS:
        np.testing.assert_array_equal(getattr(first, k), getattr(second, k))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]

    # the file name follows the recipe and the dataset key
    assert graph_cache_path(tmp_path, key, GraphRecipe(cutoff=5.0)) != path
    assert graph_cache_path(tmp_path, key, GraphRecipe(6.0, 12, keep_ties=True)) != path
    assert graph_cache_path(tmp_path, {**key, "n": 1}, recipe) != path

    # a cache of other structures under the same key is refused
    with pytest.raises(DataError, match="do not match"):
        load_or_build_graphs(mixed_rs.subset([0, 1]), recipe, tmp_path, key, progress=False)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign_npz", "empty"])
def test_corrupt_cache_raises(mixed_rs: RecordSet, tmp_path: Path, damage: str) -> None:
    recipe = GraphRecipe(cutoff=5.0)
    key = {"source": "test"}
    gs = load_or_build_graphs(mixed_rs, recipe, tmp_path, key, progress=False)
    path = graph_cache_path(tmp_path, key, recipe)
    blob = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not an npz file at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with open(path, "wb") as fh:
            np.savez(fh, src=gs.src, something=np.zeros(3))
    with pytest.raises(DataError) as err:
        load_or_build_graphs(mixed_rs, recipe, tmp_path, key, progress=False)
    assert str(path) in str(err.value) and "delete" in str(err.value)
    with pytest.raises(DataError, match=str(path)):
        GraphSet.load(path)
    assert path.read_bytes() != blob  # never silently rebuilt


def test_inconsistent_arrays_raise(mixed_rs: RecordSet, tmp_path: Path) -> None:
    gs = build_graphs(mixed_rs, GraphRecipe(), progress=False)
    gs.src[0] = 999  # out of range for a small structure
    path = gs.save(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="out of range"):
        GraphSet.load(path)
    with pytest.raises(DataError, match="not found"):
        GraphSet.load(tmp_path / "missing.npz")


# ------------------------------------------------------------------------------ PyG
def test_to_data_fields(mixed_rs: RecordSet) -> None:
    from dos_bench.data.features import cgcnn_features, composition_vectors

    gs = build_graphs(mixed_rs, GraphRecipe(), progress=False)
    y = np.arange(len(mixed_rs) * 4, dtype=np.float32).reshape(-1, 4)
    data = to_data_list(mixed_rs, gs, "cgcnn", y=y)
    comp = composition_vectors(mixed_rs.numbers, mixed_rs.ptr)
    table = cgcnn_features()
    for i, d in enumerate(data):
        n, e = int(mixed_rs.n_atoms[i]), int(gs.num_edges[i])
        assert d.x.shape == (n, 92) and d.x.dtype == torch.float32
        assert d.z.dtype == torch.long and d.z.tolist() == mixed_rs.atoms(i)[1].tolist()
        assert d.pos.shape == (n, 3) and d.cell.shape == (1, 3, 3)
        assert d.edge_index.shape == (2, e) and d.edge_index.dtype == torch.long
        assert d.edge_dist.shape == (e,) and d.edge_shift.shape == (e, 3)
        assert d.edge_shift.dtype == torch.float32
        assert d.comp.shape == (1, 103) and d.y.shape == (1, 4) and d.idx == i
        single = to_data(mixed_rs, gs, i, table, comp=comp, y=y[i])
        for key in ("x", "z", "pos", "cell", "edge_index", "edge_dist", "edge_shift", "comp", "y"):
            torch.testing.assert_close(getattr(single, key), getattr(d, key))
        alone = to_data(mixed_rs, gs, i, table)  # composition computed on the fly
        torch.testing.assert_close(alone.comp, d.comp)


def test_data_list_rejects_mismatch(mixed_rs: RecordSet, fcc_rs: RecordSet) -> None:
    gs = build_graphs(fcc_rs, GraphRecipe(), progress=False)
    with pytest.raises(DataError, match="do not match"):
        to_data_list(mixed_rs, gs)
    with pytest.raises(DataError, match="targets"):
        to_data_list(fcc_rs, gs, y=np.zeros((5, 2)))
    md = make_rs([Structure(Lattice.cubic(4.0), ["Md"], [[0, 0, 0]])])  # Z = 101
    with pytest.raises(DataError, match="atomic number 101"):
        to_data_list(md, build_graphs(md, GraphRecipe(), progress=False), "onehot")


def test_pyg_batching(mixed_rs: RecordSet) -> None:
    from torch_geometric.loader import DataLoader

    gs = build_graphs(mixed_rs, GraphRecipe(cutoff=6.0, max_neighbors=12), progress=False)
    y = np.random.default_rng(0).random((len(mixed_rs), 4))
    data = to_data_list(mixed_rs, gs, "cgcnn", y=y)
    batch = next(iter(DataLoader(data, batch_size=4, shuffle=False)))
    n = int(mixed_rs.n_atoms[:4].sum())
    e = int(gs.num_edges[:4].sum())
    assert batch.num_graphs == 4
    assert batch.cell.shape == (4, 3, 3) and batch.comp.shape == (4, 103)
    assert batch.y.shape == (4, 4) and batch.idx.tolist() == [0, 1, 2, 3]
    assert batch.x.shape == (n, 92) and batch.edge_index.shape == (2, e)
    # edge_index is offset by the node counts: every edge stays inside its own graph
    assert torch.equal(batch.batch[batch.edge_index[0]], batch.batch[batch.edge_index[1]])
    torch.testing.assert_close(batch.cell[2], torch.tensor(mixed_rs.lattices[2]).float())
    vec = edge_vectors(batch.pos, batch.cell, batch.edge_index, batch.edge_shift, batch.batch)
    torch.testing.assert_close(vec.norm(dim=1), batch.edge_dist, rtol=1e-5, atol=1e-5)
    # differentiable with respect to positions (forces / equivariant models)
    pos = batch.pos.clone().requires_grad_(True)
    edge_vectors(pos, batch.cell, batch.edge_index, batch.edge_shift, batch.batch).sum().backward()
    assert pos.grad is not None
