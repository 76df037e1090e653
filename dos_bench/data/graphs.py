r"""Periodic crystal graphs: neighbour search, a compact column-wise cache, PyG ``Data`` objects.

Edge convention
---------------
Graphs follow PyTorch Geometric's default ``flow="source_to_target"``: an edge ``e`` carries a
message from its **source** ``j = edge_index[0, e]`` (the neighbour) to its **target**
``i = edge_index[1, e]`` (the centre), so aggregation by target collects, at every atom, the
messages of its neighbours.  The integer periodic image ``shift[e] = n`` (in lattice vectors)
belongs to the neighbour:

.. math::
    \mathbf{r}_e = \mathbf{x}_j + \mathbf{n}\,L - \mathbf{x}_i, \qquad
    d_e = \lVert \mathbf{r}_e \rVert,

with Cartesian positions :math:`\mathbf{x} = \mathbf{f}\,L` (fractional coordinates ``f``
times the lattice ``L`` with lattice vectors as rows, Å).  :math:`\mathbf{r}_e` is the vector
**from the centre to the neighbour** (what :func:`edge_vectors` returns).  Both directions of
every bond are present (``j -> i`` with image ``n`` and ``i -> j`` with image ``-n``) unless a
``max_neighbors`` cut keeps only one of them (k-nearest graphs are not symmetric).

Neighbour selection
-------------------
All pairs within ``cutoff`` come from pymatgen's cython routine
:func:`pymatgen.optimization.neighbors.find_points_in_spheres` (the engine of
``Structure.get_neighbor_list``), called on plain numpy arrays.  An atom is not its own
neighbour (the zero-distance self pair is dropped), but its periodic images are.  With
``max_neighbors = k`` each centre keeps its ``k`` nearest neighbours; with ``keep_ties`` it keeps
every neighbour not farther than its ``k``-th nearest (within :data:`TIE_TOL`), the ALIGNN rule,
so the degree may exceed ``k``.  A centre with fewer than ``k`` neighbours inside the cutoff
keeps them all (the cutoff is never enlarged).  ``self_loops`` adds one edge ``i -> i`` with
zero shift and distance per atom, on top of the ``k`` neighbours.

Without ``keep_ties``, which of several equidistant candidates for the k-th place is kept (the
images ``+n`` and ``-n`` of one atom always tie) follows the output order of
``find_points_in_spheres``: deterministic for a given structure and pymatgen version, and
independent of how many structures are built together, but otherwise arbitrary.

Within a structure, edges are ordered by centre (``dst`` ascending), then by distance.

The graphs are stored column-wise (:mod:`dos_bench.data.graph_store`) and turned into PyTorch
Geometric ``Data`` objects by :mod:`dos_bench.data.graph_data`; both are re-exported here, the
one import point of the graph layer.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dos_bench.data.graph_data import _cartesian, edge_vectors, to_data, to_data_list
from dos_bench.data.graph_store import GRAPH_VERSION, Edges, GraphSet
from dos_bench.data.line_graphs import LINE_GRAPH_VERSION, build_line_graphs
from dos_bench.io import ConfigError, DataError, memory_cache, save_cache, stable_hash

if TYPE_CHECKING:
    from dos_bench.data.records import RecordSet


__all__ = [
    "GRAPH_VERSION",
    "NEIGHBOR_TOL",
    "TIE_TOL",
    "Edges",
    "GraphRecipe",
    "GraphSet",
    "build_graphs",
    "check_isolated",
    "edge_vectors",
    "isolated_atoms",
    "graph_cache_path",
    "load_or_build_graphs",
    "to_data",
    "to_data_list",
]

log = logging.getLogger(__name__)

NEIGHBOR_TOL = 1e-8
"""``tol`` of ``find_points_in_spheres`` (pairs with d^2 < cutoff^2 + tol are neighbours)."""

TIE_TOL = 1e-4
"""Å; with ``keep_ties``, neighbours up to the k-th distance + TIE_TOL are kept."""

_SELF_TOL = 1e-6  # Å; an atom's own (unshifted) copy is found at ~1e-15 Å
_CHUNK_PAIRS = 1 << 19  # candidate pairs buffered before one vectorised k-nearest selection
_DIST_QUANTUM = 1e-9  # Å; resolution of the integer sort key
_N_BINS = 32  # distance shells of the k-nearest pre-selection (cutoff / 32 wide)


# ---------------------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class GraphRecipe:
    """Everything that decides which edges a crystal graph has.

    Args:
        cutoff: neighbour search radius in Å.
        max_neighbors: keep at most this many nearest neighbours per atom (``None``: all
            neighbours within ``cutoff``).
        keep_ties: ALIGNN rule: keep every neighbour not farther than the ``max_neighbors``-th
            one (ties included), so an atom may have more than ``max_neighbors`` edges.
        self_loops: add an edge from every atom to itself (zero shift, zero distance).
        line_graph: also build the ALIGNN line graph and its bond-angle cosines, once per
            crystal, into the graph cache (:mod:`dos_bench.data.line_graphs`), so that the model
            does not build them at every step.
        line_graph_backtracking: keep the line-graph pairs of a bond with its own reverse
            (ALIGNN/DGL default); must equal the ALIGNN encoder's ``backtracking``.
    """

    cutoff: float = 8.0
    max_neighbors: int | None = 12
    keep_ties: bool = False
    self_loops: bool = False
    line_graph: bool = False
    line_graph_backtracking: bool = True

    def __post_init__(self) -> None:
        if not (isinstance(self.cutoff, (int, float)) and self.cutoff > 0):
            raise ConfigError(f"graph cutoff must be a positive number of Å, got {self.cutoff!r}")
        if self.max_neighbors is not None and (
            isinstance(self.max_neighbors, bool)
            or not isinstance(self.max_neighbors, (int, np.integer))
            or self.max_neighbors < 1
        ):
            raise ConfigError(
                f"graph max_neighbors must be a positive integer or None, "
                f"got {self.max_neighbors!r}"
            )
        for name in ("line_graph", "line_graph_backtracking"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ConfigError(
                    f"graph {name} must be true or false, got {getattr(self, name)!r}"
                )

    def key(self) -> dict[str, Any]:
        """Everything that shapes the graph, for cache keys (includes :data:`GRAPH_VERSION`;
        the line-graph settings and :data:`LINE_GRAPH_VERSION` only for recipes with
        ``line_graph``, so the keys of the other recipes are those of before)."""
        key = {
            **asdict(self),
            "cutoff": float(self.cutoff),
            "max_neighbors": None if self.max_neighbors is None else int(self.max_neighbors),
            "neighbor_tol": NEIGHBOR_TOL,
            "tie_tol": TIE_TOL,
            "version": GRAPH_VERSION,
        }
        del key["line_graph"], key["line_graph_backtracking"]
        if self.line_graph:
            key["line_graph"] = {
                "backtracking": bool(self.line_graph_backtracking),
                "version": LINE_GRAPH_VERSION,
            }
        return key


# ---------------------------------------------------------------------------------------- build
def _select(
    centre: np.ndarray,
    dist: np.ndarray,
    is_self: np.ndarray,
    n_centres: int,
    recipe: GraphRecipe,
) -> np.ndarray:
    """Indices of the kept candidate pairs, ordered by (centre, distance).

    ``centre`` are chunk-global centre indices in ``[0, n_centres)``, grouped (ascending) as
    ``find_points_in_spheres`` returns them.  Fully vectorised, without sorting all pairs:

    1. histogram the candidates of every centre in :data:`_N_BINS` distance shells
       (``np.bincount`` on ``centre * n_shells + shell``; self pairs go to an extra shell that
       is never kept) and find the shell holding each centre's k-th neighbour;
    2. keep the candidates up to that shell (one more with ``keep_ties``, so that ties within
       :data:`TIE_TOL` across a shell boundary survive): about k + a few per centre;
    3. stable-sort only those by the integer key ``centre * span + round(dist / 1e-9 Å)``
       (``span`` exceeds every distance, so the key orders by centre first; exact ties keep
       the order of ``find_points_in_spheres``, so results do not depend on the chunking),
       rank them within their centre (position minus the position of the centre's first
       candidate) and keep rank < k, or, with ``keep_ties``, every candidate not farther than
       the k-th one + :data:`TIE_TOL`.
    """
    k = recipe.max_neighbors
    if k is None:
        sub = np.flatnonzero(~is_self)
    else:
        n_shells = _N_BINS + 1
        shell = np.minimum(dist * (_N_BINS / recipe.cutoff), _N_BINS - 1).astype(np.int64)
        shell[is_self] = _N_BINS
        hist = np.bincount(centre * n_shells + shell, minlength=n_centres * n_shells)
        cum = np.cumsum(hist.reshape(n_centres, n_shells)[:, :_N_BINS], axis=1)
        reached = cum >= k
        # shell of the k-th neighbour; all shells for centres with fewer than k neighbours
        kshell = np.where(reached[:, -1], np.argmax(reached, axis=1), _N_BINS - 1)
        if recipe.keep_ties:
            kshell = np.minimum(kshell + 1, _N_BINS - 1)
        sub = np.flatnonzero(shell <= kshell[centre])
    # exact integer key: centre first, then distance in units of _DIST_QUANTUM; the stable
    # sort leaves (near-)ties in find_points_in_spheres order, independent of the chunking
    q = np.rint(dist[sub] * (1.0 / _DIST_QUANTUM)).astype(np.int64)
    span = int(np.ceil((float(recipe.cutoff) + 1.0) / _DIST_QUANTUM))
    order = sub[np.argsort(centre[sub] * span + q, kind="stable")]
    if k is None or order.size == 0:
        return order
    c = centre[order]
    counts = np.bincount(c, minlength=n_centres)
    start = np.cumsum(counts) - counts
    rank = np.arange(order.size) - start[c]
    if not recipe.keep_ties:
        return order[rank < k]
    # ALIGNN rule: distance of each centre's k-th neighbour (infinite if it has fewer)
    kth = np.full(n_centres, np.inf)
    has_k = counts >= k
    kth[has_k] = dist[order[start[has_k] + k - 1]]
    return order[dist[order] <= kth[c] + TIE_TOL]


def _int_dtype(max_abs: int, candidates: tuple[type, ...]) -> type:
    for dt in candidates:
        if max_abs <= np.iinfo(dt).max:
            return dt
    return np.int64


class _Chunk:
    """Raw ``find_points_in_spheres`` output of consecutive structures, selected at once."""

    def __init__(self, first: int) -> None:
        self.first = first  # index of the first structure
        self.centre: list[np.ndarray] = []
        self.nbr: list[np.ndarray] = []
        self.dist: list[np.ndarray] = []
        self.image: list[np.ndarray] = []
        self.pairs = 0

    def add(self, c: np.ndarray, j: np.ndarray, s: np.ndarray, d: np.ndarray) -> None:
        self.centre.append(c)
        self.nbr.append(j)
        self.image.append(s)
        self.dist.append(d)
        self.pairs += c.size

    def select(self, ptr: np.ndarray, recipe: GraphRecipe) -> tuple[np.ndarray, ...]:
        """(src, dst, dist, shift, edges per structure) of the structures in this chunk."""
        first, end = self.first, self.first + len(self.centre)
        atoms = np.diff(ptr[first : end + 1])
        n_centres = int(atoms.sum())
        pairs = np.array([c.size for c in self.centre], dtype=np.int64)
        pair_ptr = np.concatenate([[0], np.cumsum(pairs)])
        if self.pairs:
            c_loc = np.concatenate(self.centre)
            j = np.concatenate(self.nbr)
            d = np.concatenate(self.dist)
        else:
            c_loc = j = np.zeros(0, dtype=np.int64)
            d = np.zeros(0)
        atom0 = np.concatenate([[0], np.cumsum(atoms)[:-1]])
        c = c_loc + np.repeat(atom0, pairs)  # chunk-global centre index
        if c.size > 1 and np.any(c[1:] < c[:-1]):  # not grouped: never seen, but be safe
            g = np.argsort(c, kind="stable")
            c, c_loc, j, d = c[g], c_loc[g], j[g], d[g]
            images = np.concatenate(self.image)[g]
            self.image = [images[pair_ptr[i] : pair_ptr[i + 1]] for i in range(len(pairs))]
        is_self = (c_loc == j) & (d < _SELF_TOL)
        keep = _select(c, d, is_self, n_centres, recipe)
        # kept edges are ordered by structure: gather the images structure by structure
        per_struct = np.bincount(
            np.searchsorted(pair_ptr, keep, side="right") - 1, minlength=len(pairs)
        )
        cut = np.concatenate([[0], np.cumsum(per_struct)])
        shift = np.concatenate(
            [np.zeros((0, 3))]
            + [
                self.image[i][keep[cut[i] : cut[i + 1]] - pair_ptr[i]]
                for i in range(len(pairs))
                if per_struct[i]
            ]
        )
        src, dst, dist = j[keep], c_loc[keep], d[keep]
        if recipe.self_loops:
            loop_c = np.arange(n_centres, dtype=np.int64)
            loop_loc = loop_c - np.repeat(atom0, atoms)
            # stable sort by centre puts each self loop first among its centre's edges
            order = np.argsort(np.concatenate([loop_c, c[keep]]), kind="stable")
            src = np.concatenate([loop_loc, src])[order]
            dst = np.concatenate([loop_loc, dst])[order]
            dist = np.concatenate([np.zeros(n_centres), dist])[order]
            shift = np.concatenate([np.zeros((n_centres, 3)), shift])[order]
            per_struct = per_struct + atoms
        return src, dst, dist, shift, per_struct


def build_graphs(rs: RecordSet, recipe: GraphRecipe, progress: bool = True) -> GraphSet:
    """Build the crystal graphs of every structure of ``rs``.

    The only per-structure Python work is one call of ``find_points_in_spheres`` on a slice
    of the precomputed Cartesian coordinates; self-pair removal and the k-nearest selection
    run vectorised over chunks of about :data:`_CHUNK_PAIRS` candidate pairs.

    Args:
        rs: the record set (lattices, fractional coordinates, atom offsets are used).
        recipe: cutoff, neighbour count, tie and self-loop rules.
        progress: show a tqdm progress bar over structures.

    Returns:
        A :class:`GraphSet` with one graph per structure, in the order of ``rs``.
    """
    from pymatgen.optimization.neighbors import find_points_in_spheres
    from tqdm.auto import tqdm

    n = len(rs)
    ptr = np.asarray(rs.ptr, dtype=np.int64)
    lattices = np.ascontiguousarray(rs.lattices, dtype=np.float64)
    cart = np.ascontiguousarray(_cartesian(rs))
    pbc = np.ones(3, dtype=np.int64)
    r = float(recipe.cutoff)
    bounds = ptr.tolist()

    parts: list[tuple[np.ndarray, ...]] = []
    chunk = _Chunk(0)
    for i in tqdm(range(n), disable=not progress, desc="graphs", unit="struct", leave=False):
        xyz = cart[bounds[i] : bounds[i + 1]]
        chunk.add(*find_points_in_spheres(xyz, xyz, r, pbc, lattices[i], NEIGHBOR_TOL))
        if chunk.pairs >= _CHUNK_PAIRS:
            parts.append(chunk.select(ptr, recipe))
            chunk = _Chunk(i + 1)
    if chunk.centre or not parts:
        parts.append(chunk.select(ptr, recipe))

    src, dst, dist, shift, num_edges = (np.concatenate(p) for p in zip(*parts, strict=True))
    shift = np.rint(shift)
    max_atoms = int(np.diff(ptr).max()) if n else 0
    idx_dtype = _int_dtype(max_atoms, (np.int16, np.int32))
    shift_dtype = _int_dtype(int(np.abs(shift).max()) if shift.size else 0, (np.int8, np.int16))
    gs = GraphSet(
        atom_ptr=ptr.copy(),
        edge_ptr=np.concatenate([[0], np.cumsum(num_edges)]).astype(np.int64),
        src=src.astype(idx_dtype),
        dst=dst.astype(idx_dtype),
        dist=dist.astype(np.float32),
        shift=shift.astype(shift_dtype),
        recipe=recipe.key(),
    )
    if recipe.line_graph:
        gs.lg_ptr, gs.lg_src, gs.lg_dst, gs.lg_cos = build_line_graphs(
            gs, cart, lattices, backtracking=recipe.line_graph_backtracking
        )
    return gs


def graph_cache_path(cache_dir: str | Path, dataset_key: dict, recipe: GraphRecipe) -> Path:
    """``cache_dir/graphs-<hash of dataset key and recipe key>.npz``."""
    h = stable_hash({"dataset": dataset_key, "recipe": recipe.key()})
    return Path(cache_dir) / f"graphs-{h}.npz"


def isolated_atoms(rs: RecordSet, gs: GraphSet) -> np.ndarray:
    """Global indices (into ``rs.numbers``) of the atoms without any neighbour edge.

    Self loops (zero shift, same atom) do not count; an atom's own periodic images do. Every
    selection rule keeps at least one edge of an atom that has a neighbour within the cutoff,
    so these are exactly the atoms with no other atom (or image) within ``cutoff``.
    """
    owner = np.repeat(np.arange(len(gs)), gs.num_edges)
    real = ~((gs.src == gs.dst) & ~np.any(gs.shift != 0, axis=1))
    centre = gs.dst[real].astype(np.int64) + gs.atom_ptr[owner[real]]
    degree = np.bincount(centre, minlength=int(gs.atom_ptr[-1]))
    return np.flatnonzero(degree == 0)


def check_isolated(
    rs: RecordSet,
    gs: GraphSet,
    recipe: GraphRecipe,
    policy: str = "error",
    where: str = "",
    option: str = "dataset.source.structure_checks.isolated_atoms",
    remedy: str = "Remove the record or raise model.graph.cutoff",
) -> np.ndarray:
    """Refuse (``policy="error"``) or log (``"warn"``) atoms with no neighbour within the cutoff.

    Such an atom receives no message in a graph network, so its representation ignores the
    crystal. With ``recipe.self_loops`` (the E3NN recipes) the atom keeps its self-interaction,
    so it is only logged whatever the policy. The message names the record, the atom index, its
    element and the cutoff. Returns the global indices of the isolated atoms.
    """
    iso = isolated_atoms(rs, gs)
    if iso.size == 0:
        return iso
    from pymatgen.core import Element

    rec = np.searchsorted(rs.ptr, iso, side="right") - 1
    records = list(dict.fromkeys(str(rs.ids[r]) for r in rec))
    a, r0 = int(iso[0]), int(rec[0])
    first = (
        f"record {rs.ids[r0]}: atom {a - int(rs.ptr[r0])} "
        f"({Element.from_Z(int(rs.numbers[a])).symbol}) has no neighbour within the graph cutoff "
        f"{recipe.cutoff:g} Å (model.graph.cutoff)"
    )
    shown = ", ".join(records[:10])
    if len(records) > 10:
        shown += f" and {len(records) - 10} more"
    count = f"{iso.size} isolated atom(s) in {len(records)} record(s): {shown}"
    if recipe.self_loops or policy == "warn":
        why = "graphs with self_loops" if recipe.self_loops else f"{option}=warn"
        log.warning("%s%s; %s; kept (%s)", where, first, count, why)
        return iso
    raise DataError(
        f"{where}{first}, so it would receive no message ({count}). {remedy}; "
        f"{option}=warn keeps it"
    )


def load_or_build_graphs(
    rs: RecordSet,
    recipe: GraphRecipe,
    cache_dir: str | Path,
    dataset_key: dict,
    progress: bool = True,
) -> GraphSet:
    """Graphs of ``rs`` from the cache in ``cache_dir``, built and saved there if absent, then
    checked for isolated atoms (:func:`check_isolated`, policy
    ``rs.attrs["structure_checks"]["isolated_atoms"]`` as set by the published-data sources;
    ``warn`` for record sets without it, e.g. the bundled toy data).

    Args and Raises: see :func:`_load_or_build_graphs`; also :class:`DataError` naming the record
    and the atom for an isolated atom under the ``error`` policy.
    """
    gs = _load_or_build_graphs(rs, recipe, cache_dir, dataset_key, progress)
    checks = rs.attrs.get("structure_checks") or {}
    name = dataset_key.get("name") if isinstance(dataset_key, dict) else None
    check_isolated(
        rs,
        gs,
        recipe,
        policy=str(checks.get("isolated_atoms", "warn")),
        where=f"dataset {name}: " if name else "",
    )
    return gs


def _load_or_build_graphs(
    rs: RecordSet,
    recipe: GraphRecipe,
    cache_dir: str | Path,
    dataset_key: dict,
    progress: bool = True,
) -> GraphSet:
    """Graphs of ``rs`` from the cache in ``cache_dir``, built and saved there if absent.

    Args:
        rs: the record set.
        recipe: the graph recipe.
        cache_dir: directory of the cache files (created if needed).
        dataset_key: JSON-serialisable description of the dataset (source, version, filters,
            ...); together with :meth:`GraphRecipe.key` it names the cache file.
        progress: show a progress bar while building.

    Raises:
        DataError: the cache file exists but is unreadable or belongs to other structures;
            the message names the file and asks to delete it (it is never rebuilt silently).
    """
    path = graph_cache_path(cache_dir, dataset_key, recipe)
    if (kept := memory_cache(path)) is not None:  # read-only cache directory, same process
        return kept
    if path.exists():
        log.info("reusing cached graphs at %s", path)
        gs = GraphSet.load(path)
        gs.check_matches(rs, where=f"{path}: ")
        return gs
    log.info(
        "building graphs for %d structures (cutoff %g Å, max_neighbors %s) -> %s",
        len(rs),
        recipe.cutoff,
        recipe.max_neighbors,
        path,
    )
    gs = build_graphs(rs, recipe, progress=progress)
    save_cache(gs, path)  # a read-only cache directory: kept in memory, one warning
    return gs
