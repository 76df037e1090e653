"""Splits: record indices → train / val / test.

Every splitter is a callable ``splitter(rs) -> Split`` built from YAML. The split seed is its own
config value (``split_seed``), independent of the data-generation and training seeds.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from dos_bench.data.records import RecordSet
from dos_bench.io import ConfigError

__all__ = ["Split", "RandomSplit", "format_split_stats"]

PARTS = ("train", "val", "test")


@dataclass
class Split:
    """Row indices of each part into the RecordSet (disjoint)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        for p in PARTS:
            setattr(self, p, np.asarray(getattr(self, p), dtype=np.int64))
        seen = np.concatenate([self.train, self.val, self.test])
        if len(np.unique(seen)) != len(seen):
            raise ValueError("split parts overlap")

    def part(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def ids(self, rs: RecordSet) -> dict[str, list[str]]:
        return {p: rs.ids[self.part(p)].astype(str).tolist() for p in PARTS}

    def sizes(self) -> dict[str, int]:
        return {p: int(len(self.part(p))) for p in PARTS}


class RandomSplit:
    """Shuffle with ``seed`` and cut into fractions (ALIGNN-DOS §3: 70/10/20; others 80/10/10).

    Args:
        train, val, test: fractions summing to 1 (±1e-6).
        seed: the split seed.
    """

    def __init__(self, train: float = 0.8, val: float = 0.1, test: float = 0.1, seed: int = 0):
        fr = np.array([train, val, test], dtype=np.float64)
        if (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6:
            raise ConfigError(
                f"split fractions must be >= 0 and sum to 1, got train={train}, val={val}, "
                f"test={test}"
            )
        self.fractions, self.seed = fr, int(seed)

    def __call__(self, rs: RecordSet) -> Split:
        n = len(rs)
        perm = np.random.default_rng(self.seed).permutation(n)
        n_train = int(round(self.fractions[0] * n))
        n_val = int(round(self.fractions[1] * n))
        if n_train == 0 or (self.fractions[2] > 0 and n - n_train - n_val <= 0):
            raise ConfigError(f"split of {n} records leaves an empty part: {self.fractions}")
        return Split(perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :])


def format_split_stats(rs: RecordSet, split: Split, columns=("n_species", "crystal_system")) -> str:
    """Counts per part and per group, in the layout of DOSTransformer Tables 2–3."""
    lines = []
    sizes = split.sizes()
    lines.append(
        f"split sizes: train {sizes['train']}, val {sizes['val']}, test {sizes['test']} "
        f"(total {sum(sizes.values())} of {len(rs)})"
    )
    for col in columns:
        if col not in rs.meta:
            continue
        values = rs.meta[col]
        groups = sorted({str(v) for v in values.tolist()}, key=_group_order)
        width = max([len(col)] + [len(g) for g in groups]) + 2
        lines.append(f"{col:<{width}}" + "".join(f"{p:>8}" for p in PARTS) + f"{'total':>8}")
        for g in groups:
            counts = [
                Counter(str(v) for v in values[split.part(p)].tolist())[g] for p in PARTS
            ]
            lines.append(
                f"{g:<{width}}" + "".join(f"{c:>8}" for c in counts) + f"{sum(counts):>8}"
            )
    return "\n".join(lines)


_CS_ORDER = ["cubic", "hexagonal", "tetragonal", "trigonal", "orthorhombic", "monoclinic",
             "triclinic"]


def _group_order(g: str):
    if g.isdigit():
        return (0, int(g), "")
    if g in _CS_ORDER:
        return (1, _CS_ORDER.index(g), "")
    return (2, 0, g)
