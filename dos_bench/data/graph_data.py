r"""Crystal graphs as PyTorch Geometric ``Data`` objects, and edge vectors of a batch.

:func:`to_data_list` turns a record set and its :class:`~dos_bench.data.graph_store.GraphSet`
into one ``Data`` per structure (atom features, positions, cell, edges, composition, target);
:func:`edge_vectors` recomputes the centre-to-neighbour vectors of a batch differentiably (the
edge convention is in :mod:`dos_bench.data.graphs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dos_bench.io import DataError

if TYPE_CHECKING:
    import torch
    from torch_geometric.data import Data

    from dos_bench.data.graph_store import GraphSet
    from dos_bench.data.records import RecordSet

__all__ = ["edge_vectors", "to_data", "to_data_list"]


def _cartesian(rs: RecordSet, a: int = 0, b: int | None = None) -> np.ndarray:
    """Cartesian positions (float64) of the atoms of structures ``a:b``."""
    b = len(rs) if b is None else b
    counts = np.diff(rs.ptr[a : b + 1])
    owner = np.repeat(np.arange(a, b), counts)
    frac = rs.frac_coords[rs.ptr[a] : rs.ptr[b]]
    return np.einsum("aj,ajk->ak", frac, rs.lattices[owner])


def _check_table(rs: RecordSet, table: np.ndarray, a: int = 0, b: int | None = None) -> None:
    b = len(rs) if b is None else b
    z = rs.numbers[rs.ptr[a] : rs.ptr[b]]
    if z.size and (z.min() < 1 or z.max() >= table.shape[0]):
        bad = int(np.argmax((z < 1) | (z >= table.shape[0]))) + int(rs.ptr[a])
        rec = int(np.searchsorted(rs.ptr, bad, side="right") - 1)
        raise DataError(
            f"record {rs.ids[rec]}: atomic number {int(rs.numbers[bad])} has no row in the atom "
            f"feature table (rows 1..{table.shape[0] - 1})"
        )


def _check_y(rs: RecordSet, y: np.ndarray | None) -> np.ndarray | None:
    if y is None:
        return None
    y = np.array(y, dtype=np.float32)  # a copy: Data objects must not alias the caller's array
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] != len(rs):
        raise DataError(f"targets have shape {y.shape}, expected ({len(rs)}, L)")
    return y


def to_data(
    rs: RecordSet,
    gs: GraphSet,
    i: int,
    atom_table: np.ndarray,
    comp: np.ndarray | None = None,
    y: np.ndarray | None = None,
) -> Data:
    """The PyG ``Data`` of structure ``i`` (see :func:`to_data_list` for the fields).

    Args:
        rs, gs: records and their graphs.
        i: record index.
        atom_table: ``(n_Z, d)`` atom feature table (e.g. from
            :func:`~dos_bench.data.features.atom_feature_table`).
        comp: composition vectors, either all of them ``(N, 103)`` or this structure's
            ``(103,)``; computed when None.
        y: this structure's target ``(L,)``, optional.
    """
    import torch
    from torch_geometric.data import Data

    from dos_bench.data.features import composition_vectors

    i = int(i)
    a, b = int(rs.ptr[i]), int(rs.ptr[i + 1])
    if len(gs) != len(rs) or gs.atom_ptr[i + 1] - gs.atom_ptr[i] != b - a:
        raise DataError(f"record {rs.ids[i]}: the graphs do not match the record set")
    _check_table(rs, atom_table, i, i + 1)
    z = rs.numbers[a:b].astype(np.int64)
    if comp is None:
        comp_i = composition_vectors(rs.numbers[a:b], np.array([0, b - a]))
    elif comp.ndim == 2 and comp.shape[0] == len(rs):
        comp_i = comp[i : i + 1]
    else:
        comp_i = np.asarray(comp).reshape(1, -1)
    e = gs.edges(i)
    fields: dict[str, Any] = {
        "x": torch.from_numpy(np.asarray(atom_table, dtype=np.float32)[z]),
        "z": torch.from_numpy(z),
        "pos": torch.from_numpy(_cartesian(rs, i, i + 1).astype(np.float32)),
        "cell": torch.from_numpy(rs.lattices[i].astype(np.float32)).reshape(1, 3, 3),
        "edge_index": torch.from_numpy(np.stack([e.src, e.dst]).astype(np.int64)),
        "edge_dist": torch.from_numpy(e.dist.astype(np.float32)),
        "edge_shift": torch.from_numpy(e.shift.astype(np.float32)),
        "comp": torch.from_numpy(np.asarray(comp_i, dtype=np.float32)),
        "idx": i,
    }
    if y is not None:
        fields["y"] = torch.from_numpy(np.asarray(y, dtype=np.float32).reshape(1, -1))
    if gs.has_line_graph:
        from dos_bench.data.crystal_graph import CrystalGraph

        lg = gs.line_graph(i)
        fields["lg_edge_index"] = torch.from_numpy(np.stack([lg.src, lg.dst]).astype(np.int32))
        fields["lg_cos"] = torch.from_numpy(lg.cos.astype(np.float32))
        return CrystalGraph(**fields)
    return Data(**fields)


def to_data_list(
    rs: RecordSet,
    gs: GraphSet,
    atom_features: str = "cgcnn",
    y: np.ndarray | None = None,
) -> list[Data]:
    """PyG ``Data`` objects of all structures, built in one vectorised pass.

    Every tensor is a slice of one dataset-wide tensor (cheap to build, kept in memory by the
    datamodule, no disk reads per epoch).  Batching with ``torch_geometric.loader.DataLoader``
    concatenates ``cell`` to ``(B, 3, 3)``, ``comp`` to ``(B, 103)``, ``y`` to ``(B, L)``,
    ``idx`` to ``(B,)`` and offsets ``edge_index`` by the node counts.

    Args:
        rs, gs: records and their graphs (``gs`` must come from ``rs``).
        atom_features: name of the atom feature table (:data:`ATOM_FEATURE_SETS`).
        y: ``(N, L)`` targets (e.g. ``rs.spectra`` or a transformed version), optional.

    Shapes (per structure with ``n`` atoms and ``E`` edges):
        - ``x``: ``(n, d)`` float32 atom features; ``z``: ``(n,)`` int64 atomic numbers
        - ``pos``: ``(n, 3)`` float32 Cartesian positions in Å
        - ``cell``: ``(1, 3, 3)`` float32 lattice, rows are lattice vectors in Å
        - ``edge_index``: ``(2, E)`` int64, row 0 neighbour (source), row 1 centre (target)
        - ``edge_dist``: ``(E,)`` float32 Å; ``edge_shift``: ``(E, 3)`` float32 image of the
          neighbour in lattice vectors
        - ``comp``: ``(1, 103)`` float32 element fractions; ``idx``: record index (int)
        - ``y``: ``(1, L)`` float32 if ``y`` is given
        - with a ``line_graph`` recipe (a :class:`~dos_bench.data.crystal_graph.CrystalGraph`):
          ``lg_edge_index`` ``(2, T)`` int32 line-graph edges ``e1 -> e2`` between bonds
          (offset by the edge counts when batched), ``lg_cos`` ``(T,)`` float32 bond-angle
          cosines (:mod:`dos_bench.data.line_graphs`)
    """
    import torch
    from torch_geometric.data import Data

    from dos_bench.data.features import atom_feature_table, composition_vectors

    gs.check_matches(rs)
    table = atom_feature_table(atom_features)
    _check_table(rs, table)
    yy = _check_y(rs, y)
    n = len(rs)
    ptr = rs.ptr.tolist()
    eptr = gs.edge_ptr.tolist()
    z_np = rs.numbers.astype(np.int64)
    x = torch.from_numpy(table[z_np])
    z = torch.from_numpy(z_np)
    pos = torch.from_numpy(_cartesian(rs).astype(np.float32))
    cell = torch.from_numpy(rs.lattices.astype(np.float32))
    comp = torch.from_numpy(composition_vectors(rs.numbers, rs.ptr))
    src = torch.from_numpy(gs.src.astype(np.int64))
    dst = torch.from_numpy(gs.dst.astype(np.int64))
    dist = torch.from_numpy(gs.dist.astype(np.float32, copy=False))
    shift = torch.from_numpy(gs.shift.astype(np.float32))
    yt = None if yy is None else torch.from_numpy(yy)
    cls: type[Data] = Data
    if gs.has_line_graph:
        from dos_bench.data.crystal_graph import CrystalGraph

        cls = CrystalGraph
        lgptr = gs.lg_ptr.tolist()
        lg_index = torch.from_numpy(np.stack([gs.lg_src, gs.lg_dst]).astype(np.int32))
        lg_cos = torch.from_numpy(gs.lg_cos.astype(np.float32, copy=False))
    out = []
    for i in range(n):
        a, b = ptr[i], ptr[i + 1]
        ea, eb = eptr[i], eptr[i + 1]
        fields: dict[str, Any] = {
            "x": x[a:b],
            "z": z[a:b],
            "pos": pos[a:b],
            "cell": cell[i : i + 1],
            "edge_index": torch.stack([src[ea:eb], dst[ea:eb]]),
            "edge_dist": dist[ea:eb],
            "edge_shift": shift[ea:eb],
            "comp": comp[i : i + 1],
            "idx": i,
        }
        if yt is not None:
            fields["y"] = yt[i : i + 1]
        if cls is not Data:
            fields["lg_edge_index"] = lg_index[:, lgptr[i] : lgptr[i + 1]]
            fields["lg_cos"] = lg_cos[lgptr[i] : lgptr[i + 1]]
        out.append(cls(**fields))
    return out


def edge_vectors(
    pos: torch.Tensor,
    cell: torch.Tensor,
    edge_index: torch.Tensor,
    edge_shift: torch.Tensor,
    batch: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Edge vectors from the centre to the neighbour, in a batch of periodic graphs.

    .. math::
        \mathbf{r}_e = \mathbf{x}_{j} + \mathbf{n}_e L_{b(j)} - \mathbf{x}_{i},
        \qquad j = \text{edge\_index}[0, e],\; i = \text{edge\_index}[1, e]

    so ``edge_vectors(...).norm(dim=-1)`` equals ``edge_dist`` (up to float32 rounding).
    Differentiable with respect to ``pos`` and ``cell``.

    Args:
        pos: Cartesian positions.
        cell: lattices (rows are lattice vectors) of the graphs in the batch.
        edge_index: (source = neighbour, target = centre).
        edge_shift: periodic image of the neighbour in lattice vectors.
        batch: graph of every node; None for a single graph.

    Shapes:
        - pos: ``(n, 3)``; cell: ``(B, 3, 3)`` (or ``(3, 3)`` for one graph)
        - edge_index: ``(2, E)``; edge_shift: ``(E, 3)``; batch: ``(n,)``
        - output: ``(E, 3)``
    """
    import torch

    src, dst = edge_index[0], edge_index[1]
    shift = edge_shift.to(pos.dtype)
    if batch is None:
        offset = shift @ cell.reshape(3, 3).to(pos.dtype)
    else:
        cell_e = cell.reshape(-1, 3, 3).to(pos.dtype)[batch[dst]]
        offset = torch.bmm(shift.unsqueeze(1), cell_e).squeeze(1)
    return pos[src] + offset - pos[dst]
