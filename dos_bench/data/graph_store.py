"""The column-wise store of crystal graphs (:class:`GraphSet`) and its cache-file format.

One :class:`GraphSet` holds the edges of every structure of a record set in a few flat arrays
(offsets, source, target, distance, periodic image) and, for recipes with ``line_graph`` (ALIGNN),
the line graph with its bond-angle cosines (:mod:`dos_bench.data.line_graphs`), saved as one
uncompressed ``.npz`` with a format tag and :data:`GRAPH_VERSION`; :meth:`GraphSet.load` checks the
file before anything uses it. How the edges are chosen and the edge convention:
:mod:`dos_bench.data.graphs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from dos_bench.io import DataError, atomic_write

if TYPE_CHECKING:
    from dos_bench.data.records import RecordSet

__all__ = ["GRAPH_VERSION", "Edges", "GraphSet", "LineEdges"]

GRAPH_VERSION = 1
"""Bumped whenever the graph construction changes what it produces (invalidates caches)."""

_FORMAT = "dos_bench.graphs"
_ARRAYS = ("atom_ptr", "edge_ptr", "src", "dst", "dist", "shift")
_LG_ARRAYS = ("lg_ptr", "lg_src", "lg_dst", "lg_cos")  # present with a line_graph recipe


# ---------------------------------------------------------------------------------------- storage
class Edges(NamedTuple):
    """The edges of one structure (views into a :class:`GraphSet`), local atom indices."""

    src: np.ndarray
    dst: np.ndarray
    dist: np.ndarray
    shift: np.ndarray


class LineEdges(NamedTuple):
    """The line graph of one structure (views into a :class:`GraphSet`): local edge indices of
    the source bond ``e1`` and the target bond ``e2`` of every pair, and its bond-angle cosine."""

    src: np.ndarray
    dst: np.ndarray
    cos: np.ndarray


@dataclass(eq=False)
class GraphSet:
    """Column-wise crystal graphs of a whole :class:`~dos_bench.data.records.RecordSet`.

    Attributes:
        atom_ptr: ``(N + 1,)`` int64 atom offsets of the record set the graphs were built from
            (used to check that graphs and records belong together).
        edge_ptr: ``(N + 1,)`` int64; the edges of structure ``i`` are
            ``edge_ptr[i]:edge_ptr[i+1]``.
        src: ``(E,)`` int16 (int32 for structures above 32767 atoms) local index of the
            neighbour ``j`` (message source, ``edge_index[0]``).
        dst: ``(E,)`` same dtype, local index of the centre ``i`` (``edge_index[1]``).
        dist: ``(E,)`` float32 distances in Å.
        shift: ``(E, 3)`` int8 (int16/int32 if out of range) periodic image of the neighbour,
            in lattice vectors: ``r = pos[src] + shift @ lattice - pos[dst]``.
        recipe: :meth:`GraphRecipe.key` of the recipe that built the graphs.
        lg_ptr: ``(N + 1,)`` int64 line-graph offsets (``None`` unless the recipe asks for the
            line graph): the pairs of structure ``i`` are ``lg_ptr[i]:lg_ptr[i+1]``.
        lg_src, lg_dst: ``(T,)`` int16 (int32 above 32767 edges in a structure) local index of
            the bond ``e1 = (k -> j)`` and of the bond ``e2 = (j -> i)`` of every line-graph
            edge ``e1 -> e2`` (sorted by ``lg_dst`` within a structure).
        lg_cos: ``(T,)`` float32 cosine of the bond angle at the shared atom ``j``
            (:func:`dos_bench.data.line_graphs.build_line_graphs`).
    """

    atom_ptr: np.ndarray
    edge_ptr: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    dist: np.ndarray
    shift: np.ndarray
    recipe: dict[str, Any]
    lg_ptr: np.ndarray | None = None
    lg_src: np.ndarray | None = None
    lg_dst: np.ndarray | None = None
    lg_cos: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.edge_ptr.shape[0] - 1)

    @property
    def num_edges(self) -> np.ndarray:
        """``(N,)`` number of edges per structure."""
        return np.diff(self.edge_ptr)

    def edges(self, i: int) -> Edges:
        """The edges of structure ``i`` (local indices; views, do not modify)."""
        a, b = int(self.edge_ptr[i]), int(self.edge_ptr[i + 1])
        return Edges(self.src[a:b], self.dst[a:b], self.dist[a:b], self.shift[a:b])

    @property
    def has_line_graph(self) -> bool:
        return self.lg_ptr is not None

    def line_graph(self, i: int) -> LineEdges:
        """The line graph of structure ``i`` (local edge indices; views, do not modify)."""
        if self.lg_ptr is None or self.lg_src is None or self.lg_dst is None:
            raise DataError("these graphs were built without line graphs (recipe line_graph)")
        assert self.lg_cos is not None
        a, b = int(self.lg_ptr[i]), int(self.lg_ptr[i + 1])
        return LineEdges(self.lg_src[a:b], self.lg_dst[a:b], self.lg_cos[a:b])

    def _arrays(self) -> tuple[str, ...]:
        return _ARRAYS + (_LG_ARRAYS if self.has_line_graph else ())

    def nbytes(self) -> int:
        """Bytes of all arrays in memory (about the size of the saved file)."""
        return sum(getattr(self, k).nbytes for k in self._arrays())

    # ------------------------------------------------------------------ disk
    def save(self, path: str | Path) -> Path:
        """Write the graphs to one uncompressed ``.npz`` file atomically."""
        path = Path(path)
        meta = json.dumps({"format": _FORMAT, "version": GRAPH_VERSION, "recipe": self.recipe})
        with atomic_write(path) as tmp:
            with open(tmp, "wb") as fh:
                arrays = {k: getattr(self, k) for k in self._arrays()}
                np.savez(fh, __meta__=np.asarray(meta), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GraphSet:
        """Read graphs written by :meth:`save`.

        Raises:
            DataError: naming ``path``, for a missing, truncated, foreign or inconsistent file.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: graph cache file not found")
        hint = "delete it to rebuild the graphs"
        try:
            with np.load(path, allow_pickle=False) as z:
                files = set(z.files)
                if "__meta__" not in files:
                    raise DataError(f"{path}: not a dos_bench graph cache file; {hint}")
                meta = json.loads(str(z["__meta__"]))
                if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                    raise DataError(f"{path}: not a dos_bench graph cache file; {hint}")
                if meta.get("version") != GRAPH_VERSION:
                    raise DataError(
                        f"{path}: graph cache version {meta.get('version')} != {GRAPH_VERSION}; "
                        f"{hint}"
                    )
                recipe = meta.get("recipe") or {}
                names = _ARRAYS + (_LG_ARRAYS if recipe.get("line_graph") else ())
                missing = sorted(set(names) - files)
                if missing:
                    raise DataError(f"{path}: graph cache lacks arrays {missing}; {hint}")
                arrays = {k: z[k] for k in names}
        except DataError:
            raise
        except Exception as exc:  # zipfile / numpy / json raise many types on damaged files
            raise DataError(
                f"{path}: cannot read the graph cache ({type(exc).__name__}: {exc}); {hint}"
            ) from exc
        gs = cls(**arrays, recipe=recipe)
        problem = gs._check()
        if problem:
            raise DataError(f"{path}: corrupt graph cache ({problem}); {hint}")
        return gs

    def _check(self) -> str | None:
        """A description of the first inconsistency, or None."""
        n = len(self)
        e = self.src.shape[0]
        if self.atom_ptr.shape != (n + 1,) or self.edge_ptr.ndim != 1 or n < 0:
            return "offset arrays of different lengths"
        if self.dst.shape != (e,) or self.dist.shape != (e,) or self.shift.shape != (e, 3):
            return "edge arrays of different lengths"
        if self.edge_ptr[0] != 0 or self.edge_ptr[-1] != e or np.any(np.diff(self.edge_ptr) < 0):
            return "edge offsets do not match the number of edges"
        if self.atom_ptr[0] != 0 or np.any(np.diff(self.atom_ptr) < 1):
            return "bad atom offsets"
        if e:
            n_atoms = np.repeat(np.diff(self.atom_ptr), np.diff(self.edge_ptr))
            if (
                self.src.min() < 0
                or self.dst.min() < 0
                or np.any(self.src >= n_atoms)
                or np.any(self.dst >= n_atoms)
            ):
                return "edge index out of range"
            if not np.all(np.isfinite(self.dist)) or self.dist.min() < 0:
                return "invalid distances"
        if self.has_line_graph:
            return self._check_line_graph()
        return None

    def _check_line_graph(self) -> str | None:
        n = len(self)
        lg_ptr, src, dst, cos = self.lg_ptr, self.lg_src, self.lg_dst, self.lg_cos
        if lg_ptr is None or src is None or dst is None or cos is None:
            return "incomplete line graph"
        t = src.shape[0]
        if lg_ptr.shape != (n + 1,) or dst.shape != (t,) or cos.shape != (t,):
            return "line-graph arrays of different lengths"
        if lg_ptr[0] != 0 or lg_ptr[-1] != t or np.any(np.diff(lg_ptr) < 0):
            return "line-graph offsets do not match the number of line-graph edges"
        if t:
            n_edges = np.repeat(self.num_edges, np.diff(lg_ptr))
            if src.min() < 0 or dst.min() < 0 or np.any(src >= n_edges) or np.any(dst >= n_edges):
                return "line-graph edge index out of range"
            if not np.all(np.abs(cos) <= 1.0):
                return "invalid bond-angle cosines"
        return None

    def check_matches(self, rs: RecordSet, where: str = "") -> None:
        """Raise :class:`DataError` unless these graphs were built for ``rs``'s structures."""
        if len(self) != len(rs) or not np.array_equal(self.atom_ptr, rs.ptr):
            raise DataError(
                f"{where}graphs ({len(self)} structures, {int(self.atom_ptr[-1])} atoms) do not "
                f"match the record set ({len(rs)} structures, {int(rs.ptr[-1])} atoms)"
            )
