"""The PyG ``Data`` class of a crystal graph that carries its ALIGNN line graph.

``lg_edge_index`` indexes the crystal graph's *edges* (the nodes of the line graph), so batching
must offset it by the number of edges of the graphs before it, not by their number of atoms as
PyG does for every ``*index`` attribute of a plain ``Data``.
"""

from __future__ import annotations

from typing import Any

from torch_geometric.data import Data

__all__ = ["CrystalGraph"]


class CrystalGraph(Data):
    """A crystal graph with ``lg_edge_index`` ``(2, T)`` (line-graph edges between bonds) and
    ``lg_cos`` ``(T,)`` (their bond-angle cosines); see :mod:`dos_bench.data.line_graphs`."""

    def __inc__(self, key: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        if key == "lg_edge_index":
            return self.edge_index.size(1)
        return super().__inc__(key, value, *args, **kwargs)
