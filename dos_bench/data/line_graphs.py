r"""ALIGNN line graphs and bond-angle cosines, built once per crystal with the crystal graphs.

The line graph :math:`\mathcal L(G)` of a crystal graph has one node per bond (edge of
:math:`G`) and an edge :math:`e_1 \to e_2` for every pair of bonds with

.. math::
    e_1 = (k \to j),\quad e_2 = (j \to i),\qquad \text{target}(e_1) = \text{source}(e_2) = j,

i.e. for each bond :math:`e_2` all bonds arriving at its source atom :math:`j` (ALIGNN, DGL
``line_graph``; the edge convention of :mod:`dos_bench.data.graphs`: ``src`` = neighbour,
``dst`` = centre).  Its feature is the cosine of the angle at :math:`j` between :math:`k` and
:math:`i`; with :math:`\mathbf r_e` the centre-to-neighbour vectors,

.. math::
    \cos\theta_{e_1 e_2} = \operatorname{clamp}\Big(
        -\frac{\mathbf r_{e_1}\cdot\mathbf r_{e_2}}{\lVert\mathbf r_{e_1}\rVert\,
        \lVert\mathbf r_{e_2}\rVert},\,-1,\,1\Big)

(0 for a zero-length bond, a self loop).  ``backtracking=False`` drops the pairs of a bond with
its own reverse (:math:`k = i` and opposite periodic images), whose cosine is +1.

The pairs of every structure are sorted by :math:`e_2`, and within one :math:`e_2` by the
stable order of the edges by target atom: the order of
:func:`dos_bench.models.encoders.alignn.line_graph` on the same edges, which builds the line
graph of a batch on the fly when the graphs carry none.  The cosines are computed in float64
from the Cartesian positions and stored in float32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from dos_bench.data.graph_store import GraphSet

__all__ = ["LINE_GRAPH_VERSION", "build_line_graphs", "line_graph_pairs"]

LINE_GRAPH_VERSION = 1
"""Part of the graph-cache key of recipes with ``line_graph``: bumped when the pairs or the
cosines change."""

_CHUNK_PAIRS = 1 << 22  # line-graph pairs built at once (bounds the temporary int64 arrays)


def line_graph_pairs(
    src: np.ndarray,
    dst: np.ndarray,
    n_atoms: int,
    shift: np.ndarray | None = None,
    backtracking: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Line-graph edges ``(e1, e2)`` of one graph (or several with disjoint atom indices).

    Vectorised: the edges are grouped by target atom (stable ``argsort``), and for each
    :math:`e_2` the ``in_degree(source(e2))`` edges of its source atom are enumerated.

    Args:
        src, dst: ``(E,)`` source (neighbour) and target (centre) atom of every edge.
        n_atoms: number of atoms.
        shift: ``(E, 3)`` periodic image of every edge's source; needed when not
            ``backtracking``.
        backtracking: keep the pairs of a bond with its own reverse.

    Returns:
        ``e1, e2``: ``(T,)`` int64 edge indices, sorted by ``e2``.
    """
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    by_target = np.argsort(dst, kind="stable")
    in_deg = np.bincount(dst, minlength=n_atoms)
    first = np.cumsum(in_deg) - in_deg  # position of atom a's first incoming edge
    counts = in_deg[src]  # number of e1 for every e2
    total = int(counts.sum())
    e2 = np.repeat(np.arange(src.size, dtype=np.int64), counts)
    group_start = np.cumsum(counts) - counts
    e1 = by_target[np.repeat(first[src] - group_start, counts) + np.arange(total)]
    if not backtracking:
        if shift is None:
            raise ValueError("line_graph_pairs(backtracking=False) needs shift")
        same_bond = (src[e1] == dst[e2]) & np.all(shift[e1] + shift[e2] == 0, axis=1)
        keep = ~same_bond
        e1, e2 = e1[keep], e2[keep]
    return e1, e2


def _unit_vectors(gs: GraphSet, cart: np.ndarray, lattices: np.ndarray, a: int, b: int):
    """Centre-to-neighbour unit vectors (float64) of the edges of structures ``a:b``."""
    ea, eb = int(gs.edge_ptr[a]), int(gs.edge_ptr[b])
    owner = np.repeat(np.arange(a, b), np.diff(gs.edge_ptr[a : b + 1]))
    atom0 = gs.atom_ptr[owner]
    src = gs.src[ea:eb].astype(np.int64) + atom0
    dst = gs.dst[ea:eb].astype(np.int64) + atom0
    shift = gs.shift[ea:eb].astype(np.float64)
    vec = cart[src] + np.einsum("ej,ejk->ek", shift, lattices[owner]) - cart[dst]
    norm = np.linalg.norm(vec, axis=1, keepdims=True)
    return vec / np.maximum(norm, 1e-12)


def build_line_graphs(
    gs: GraphSet, cart: np.ndarray, lattices: np.ndarray, backtracking: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The line graphs and bond-angle cosines of every structure of ``gs``.

    Args:
        gs: the crystal graphs.
        cart: ``(n_atoms, 3)`` float64 Cartesian positions of all atoms (Å).
        lattices: ``(N, 3, 3)`` lattices, rows are lattice vectors (Å).
        backtracking: keep the pairs of a bond with its own reverse (ALIGNN default).

    Returns:
        ``lg_ptr (N + 1,)`` int64, ``lg_src``, ``lg_dst`` ``(T,)`` local edge indices (int16, or
        int32 above 32767 edges in a structure), ``lg_cos (T,)`` float32: the ``lg_*`` fields of
        :class:`~dos_bench.data.graph_store.GraphSet`.
    """
    n = len(gs)
    n_edges = gs.num_edges
    if n == 0:
        empty = np.zeros(0, np.int16)
        return np.zeros(1, np.int64), empty, empty.copy(), np.zeros(0, np.float32)
    # pairs per structure without dropping backtracking pairs: sum over edges of the in-degree
    # of their source atom; structures are grouped into chunks of about _CHUNK_PAIRS pairs
    owner = np.repeat(np.arange(n), n_edges)
    src_g = gs.src.astype(np.int64) + gs.atom_ptr[owner]
    dst_g = gs.dst.astype(np.int64) + gs.atom_ptr[owner]
    in_deg = np.bincount(dst_g, minlength=int(gs.atom_ptr[-1]))
    pairs = np.bincount(owner, weights=in_deg[src_g], minlength=n).astype(np.int64)
    bounds = [0]
    acc = 0
    for i, p in enumerate(pairs.tolist()):
        if acc and acc + p > _CHUNK_PAIRS:
            bounds.append(i)
            acc = 0
        acc += p
    bounds.append(n)
    parts_src, parts_dst, parts_cos, per_struct = [], [], [], []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        ea, eb = int(gs.edge_ptr[a]), int(gs.edge_ptr[b])
        atoms0 = int(gs.atom_ptr[a])
        e1, e2 = line_graph_pairs(
            src_g[ea:eb] - atoms0,
            dst_g[ea:eb] - atoms0,
            int(gs.atom_ptr[b]) - atoms0,
            gs.shift[ea:eb].astype(np.int64),
            backtracking,
        )
        unit = _unit_vectors(gs, cart, lattices, a, b)
        cos = np.clip(-np.einsum("tk,tk->t", unit[e1], unit[e2]), -1.0, 1.0)
        struct = owner[ea:eb][e2]  # structure of every pair (pairs never cross structures)
        local0 = gs.edge_ptr[struct] - ea
        parts_src.append(e1 - local0)
        parts_dst.append(e2 - local0)
        parts_cos.append(cos.astype(np.float32))
        per_struct.append(np.bincount(struct - a, minlength=b - a))
    max_edges = int(n_edges.max())
    idx_dtype = np.int16 if max_edges <= np.iinfo(np.int16).max else np.int32
    lg_ptr = np.concatenate([[0], np.cumsum(np.concatenate(per_struct))]).astype(np.int64)
    return (
        lg_ptr,
        np.concatenate(parts_src).astype(idx_dtype),
        np.concatenate(parts_dst).astype(idx_dtype),
        np.concatenate(parts_cos),
    )
