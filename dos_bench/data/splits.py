"""Splits: record indices → train / val / test.

Every splitter is a callable ``splitter(rs) -> Split`` built from YAML. The split seed is its own
config value (``split_seed``), independent of the data-generation and training seeds.

Splitters (docs/papers/alignn_dos.md §1.1, docs/papers/dostransformer.md §2.3,
docs/papers/mat2spec.md §4.2, docs/data/phonon_sources.md §5):

* :class:`RandomSplit` — fractions and seed; ``procedure`` reproduces the papers' own shuffles:
  ``simple`` (a numpy permutation), ``mat2spec`` (Mat2Spec/Xtal2DoS: Python ``random.seed(1)``
  shuffle, then scikit-learn ``train_test_split`` twice, the second output of the second call being
  validation), ``dostransformer`` (``train_test_split`` of everything, then of the rest in half)
  and ``alignn`` (ALIGNN ``get_id_train_val_test``, see :func:`alignn_split_indices`).
* :class:`GroupSplit` — out-of-distribution splits by a metadata column: train on some groups,
  validate and test on the others, halved (DOSTransformer A.2 Scenario 1 by species count,
  Scenario 2 by crystal system).
* :class:`~dos_bench.data.split_files.IndexFileSplit`,
  :class:`~dos_bench.data.split_files.IdListSplit` — published index files and id lists
  (:mod:`dos_bench.data.split_files`, with the rules a split file must follow).

Every splitter takes ``train_fraction`` (< 1 keeps a random subset of the training part with
validation and test unchanged: the Mat2Spec data-size study, Fig. 4, r ∈ {1/2, 1/4, 1/8}).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from dos_bench.data.records import RecordSet
from dos_bench.io import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "PARTS",
    "Split",
    "Splitter",
    "RandomSplit",
    "GroupSplit",
    "sklearn_train_test_split",
    "alignn_split_indices",
    "format_split_stats",
]

PARTS = ("train", "val", "test")


@dataclass
class Split:
    """Row indices of each part into the RecordSet (disjoint).

    ``dropped``: per part, how many entries of a published split file were left out because the
    data lacks them (``allow_subset=True`` of the file-based splitters; empty otherwise).
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p in PARTS:
            setattr(self, p, np.asarray(getattr(self, p), dtype=np.int64))
        self.dropped = {str(k): int(v) for k, v in self.dropped.items()}
        seen = np.concatenate([self.train, self.val, self.test])
        if len(np.unique(seen)) != len(seen):
            raise DataError("split parts overlap: an index appears in two parts or twice")

    def part(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def ids(self, rs: RecordSet) -> dict[str, list[str]]:
        return {p: rs.ids[self.part(p)].astype(str).tolist() for p in PARTS}

    def sizes(self) -> dict[str, int]:
        return {p: int(len(self.part(p))) for p in PARTS}


def sklearn_train_test_split(
    n: int, train_size: float | None = None, test_size: float | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(train, test)`` that scikit-learn's ``train_test_split(range(n), ...)`` returns.

    Re-implemented (scikit-learn is not a runtime dependency) from its documented behaviour:
    a float ``test_size`` gives ``ceil(test_size·n)`` test items, a float ``train_size``
    ``floor(train_size·n)`` train items, the missing one is the complement; the permutation is
    ``RandomState(seed).permutation(n)`` with the test items first. The test suite checks this
    against scikit-learn itself.
    """
    if test_size is None and train_size is None:
        test_size = 0.25
    n_test = int(np.ceil(test_size * n)) if test_size is not None else None
    n_train = int(np.floor(train_size * n)) if train_size is not None else None
    if n_test is None:
        n_test = n - n_train
    if n_train is None:
        n_train = n - n_test
    perm = np.random.RandomState(seed).permutation(n)
    return perm[n_test : n_test + n_train], perm[:n_test]


def alignn_split_indices(
    n: int,
    train: float,
    val: float,
    test: float,
    seed: int = 123,
    keep_data_order: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions ``(train, val, test)`` as ALIGNN's ``get_id_train_val_test`` chooses them.

    Restated from usnistgov/alignn ``alignn/data.py`` (``get_id_train_val_test``; checked at the
    current HEAD): the part sizes are truncated, ``n_x = int(x · n)``; the position list
    ``0 … n−1`` is shuffled in place by Python's ``random.shuffle`` after ``random.seed(seed)``
    (ALIGNN's ``split_seed``, default 123) unless ``keep_data_order``; then train is the
    **first** ``n_train`` positions of that list, test the **last** ``n_test`` and validation the
    ``n_val`` positions just before test. Positions in the middle that the truncation leaves
    over belong to no part (2 of 55,659 at 0.7/0.1/0.2: 38,961 / 5,565 / 11,131).

    ``keep_data_order`` was ``False`` by default in ALIGNN's ``config.py`` until May 2023 (i.e.
    when ALIGNN-DOS was trained) and is ``True`` since (docs/papers/alignn_dos.md §1.1). Deviation
    on degenerate
    input only: with ``n_val = n_test = 0`` ALIGNN's slice ``ids[-0:]`` makes validation the
    whole list; here validation is empty.
    """
    n_train, n_val, n_test = int(train * n), int(val * n), int(test * n)
    if n_train + n_val + n_test > n:
        raise ConfigError(f"alignn split of {n} records: {n_train}+{n_val}+{n_test} > {n}")
    ids = list(range(n))
    if not keep_data_order:
        # random.seed(s); random.shuffle(x) draws the same numbers as a private Random(s)
        random.Random(seed).shuffle(ids)
    order = np.asarray(ids, dtype=np.int64)
    return (
        order[:n_train],
        order[n - n_test - n_val : n - n_test],
        order[n - n_test :],
    )


class Splitter:
    """Base class: ``train_fraction`` subsampling of the training part on top of any split.

    Args:
        train_fraction: fraction of the training part kept (1 = all). Validation and test stay
            exactly the same, so runs at different fractions are compared on one test set.
        train_fraction_seed: seed of that subsampling (Mat2Spec used ``random_state=1``).
    """

    def __init__(self, train_fraction: float = 1.0, train_fraction_seed: int = 1) -> None:
        if not 0 < train_fraction <= 1:
            raise ConfigError(f"split.train_fraction must be in (0, 1], got {train_fraction}")
        self.train_fraction = float(train_fraction)
        self.train_fraction_seed = int(train_fraction_seed)

    def __call__(self, rs: RecordSet) -> Split:
        split = self._split(rs)
        if self.train_fraction < 1.0:
            keep, _ = sklearn_train_test_split(
                len(split.train), train_size=self.train_fraction, seed=self.train_fraction_seed
            )
            split = Split(split.train[np.sort(keep)], split.val, split.test, split.dropped)
        if len(split.train) == 0:
            raise ConfigError(f"{type(self).__name__} left the training part empty")
        return split

    def _split(self, rs: RecordSet) -> Split:  # pragma: no cover - abstract
        raise NotImplementedError


class RandomSplit(Splitter):
    """Random split (ALIGNN-DOS §3: 70/10/20; DOSTransformer, Xtal2DoS, Mat2Spec: 80/10/10).

    Args:
        train, val, test: fractions summing to 1.
        seed: the split seed.
        procedure: ``simple``, ``mat2spec``, ``dostransformer`` or ``alignn`` (see the module
            docstring; the last three reproduce the authors' index sets given the same record
            order). ``simple`` rounds the part sizes and gives the remainder to test; ``alignn``
            truncates them and may leave a few records out (:func:`alignn_split_indices`).
        keep_data_order: ``alignn`` only — skip the shuffle (ALIGNN's ``keep_data_order``).
    """

    PROCEDURES = ("simple", "mat2spec", "dostransformer", "alignn")

    def __init__(
        self,
        train: float = 0.8,
        val: float = 0.1,
        test: float = 0.1,
        seed: int = 0,
        procedure: str = "simple",
        train_fraction: float = 1.0,
        train_fraction_seed: int = 1,
        keep_data_order: bool = False,
    ) -> None:
        super().__init__(train_fraction, train_fraction_seed)
        fr = np.array([train, val, test], dtype=np.float64)
        if (fr < 0).any() or abs(fr.sum() - 1.0) > 1e-6:
            raise ConfigError(
                f"split fractions must be >= 0 and sum to 1, got train={train}, val={val}, "
                f"test={test}"
            )
        if procedure not in self.PROCEDURES:
            raise ConfigError(
                f"split.procedure must be one of {self.PROCEDURES}, got {procedure!r}"
            )
        if keep_data_order and procedure != "alignn":
            raise ConfigError("split.keep_data_order applies to procedure=alignn only")
        self.fractions, self.seed, self.procedure = fr, int(seed), procedure
        self.keep_data_order = bool(keep_data_order)

    def _split(self, rs: RecordSet) -> Split:
        n = len(rs)
        if self.procedure == "alignn":
            tr, va, te = alignn_split_indices(
                n, *(float(f) for f in self.fractions), self.seed, self.keep_data_order
            )
            if len(tr) == 0 or (self.fractions[2] > 0 and len(te) == 0):
                raise ConfigError(f"split of {n} records leaves an empty part: {self.fractions}")
            return Split(tr, va, te)
        if self.procedure == "mat2spec":
            # Mat2Spec/Xtal2DoS: random.seed(s); shuffle(range(N)); 80 % train; the rest halved
            # with the second call's *first* output used as test (docs/papers/mat2spec.md §4.2)
            order = list(range(n))
            random.Random(self.seed).shuffle(order)
            order = np.asarray(order)
            tr, rest = sklearn_train_test_split(n, train_size=self.fractions[0], seed=self.seed)
            rest_frac = self.fractions[2] / max(self.fractions[1] + self.fractions[2], 1e-12)
            a, b = sklearn_train_test_split(len(rest), test_size=1 - rest_frac, seed=self.seed)
            return Split(order[tr], order[rest[b]], order[rest[a]])
        if self.procedure == "dostransformer":
            # DOSTransformer: train_test_split(test_size=0.2), then the 20 % in half (val, test)
            tr, rest = sklearn_train_test_split(n, test_size=1 - self.fractions[0], seed=self.seed)
            val_frac = self.fractions[1] / max(self.fractions[1] + self.fractions[2], 1e-12)
            va, te = sklearn_train_test_split(len(rest), test_size=1 - val_frac, seed=self.seed)
            return Split(tr, rest[va], rest[te])
        perm = np.random.default_rng(self.seed).permutation(n)
        n_train = int(round(self.fractions[0] * n))
        n_val = int(round(self.fractions[1] * n))
        if n_train == 0 or (self.fractions[2] > 0 and n - n_train - n_val <= 0):
            raise ConfigError(f"split of {n} records leaves an empty part: {self.fractions}")
        return Split(perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :])


def _norm_group(v) -> str:
    s = str(v).strip().lower()
    try:
        return str(int(float(s)))
    except ValueError:
        return s


class GroupSplit(Splitter):
    """Out-of-distribution split on a metadata column (DOSTransformer A.2, Tables 2–3, 5).

    Records whose group is in ``train_groups`` form the training part; those in ``eval_groups``
    are shuffled and cut into validation and test (``val_fraction`` of them to validation,
    halved in the paper); records in neither list are not used (senary and septenary crystals in
    Scenario 1). A validation subset of the training groups is *not* taken, as in the paper.

    Args:
        column: metadata column (``n_species`` or ``crystal_system``).
        train_groups, eval_groups: group values (compared as lower-case strings; numbers as ints).
        val_fraction: share of the evaluation records that go to validation.
        seed: the split seed.
        procedure: ``simple`` (numpy permutation) or ``dostransformer`` (scikit-learn
            ``train_test_split(test_size=0.5, random_state=seed)``, first output = validation).
        recompute_crystal_system: recompute crystal systems from the structures with spglib
            (through pymatgen ``SpacegroupAnalyzer``) at tolerance ``symprec`` instead of using the
            stored column.
        symprec: spglib symmetry tolerance in Å (0.1, as the bundled and published sources).
    """

    def __init__(
        self,
        column: str,
        train_groups: Sequence,
        eval_groups: Sequence,
        val_fraction: float = 0.5,
        seed: int = 0,
        procedure: str = "simple",
        recompute_crystal_system: bool = False,
        symprec: float = 0.1,
        train_fraction: float = 1.0,
        train_fraction_seed: int = 1,
    ) -> None:
        super().__init__(train_fraction, train_fraction_seed)
        self.column = column
        self.train_groups = [_norm_group(g) for g in train_groups]
        self.eval_groups = [_norm_group(g) for g in eval_groups]
        overlap = set(self.train_groups) & set(self.eval_groups)
        if overlap:
            raise ConfigError(f"split: groups {sorted(overlap)} are both train and eval groups")
        if not 0 < val_fraction < 1:
            raise ConfigError(f"split.val_fraction must be in (0, 1), got {val_fraction}")
        if procedure not in ("simple", "dostransformer"):
            raise ConfigError(
                f"split.procedure must be simple or dostransformer, got {procedure!r}"
            )
        self.val_fraction, self.seed, self.procedure = float(val_fraction), int(seed), procedure
        self.recompute, self.symprec = recompute_crystal_system, float(symprec)

    def groups_of(self, rs: RecordSet) -> np.ndarray:
        if self.column == "crystal_system" and self.recompute:
            from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

            return np.asarray(
                [
                    SpacegroupAnalyzer(rs.structure(i), symprec=self.symprec).get_crystal_system()
                    for i in range(len(rs))
                ]
            )
        if self.column not in rs.meta:
            raise DataError(
                f"dataset {rs.attrs.get('name', '?')} has no metadata column {self.column!r} "
                f"needed by the split (columns: {sorted(rs.meta)})"
            )
        return rs.meta[self.column]

    def _split(self, rs: RecordSet) -> Split:
        g = np.asarray([_norm_group(v) for v in self.groups_of(rs).tolist()])
        train = np.flatnonzero(np.isin(g, self.train_groups))
        ev = np.flatnonzero(np.isin(g, self.eval_groups))
        if len(ev) < 2:
            raise DataError(
                f"split on {self.column}: only {len(ev)} records in the evaluation groups "
                f"{self.eval_groups}; present groups: {sorted(set(g.tolist()))}"
            )
        if self.procedure == "dostransformer":
            va, te = sklearn_train_test_split(
                len(ev), test_size=1 - self.val_fraction, seed=self.seed
            )
        else:
            perm = np.random.default_rng(self.seed).permutation(len(ev))
            n_val = int(round(self.val_fraction * len(ev)))
            va, te = perm[:n_val], perm[n_val:]
        return Split(train, ev[va], ev[te])


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
        totals = [0, 0, 0]
        for g in groups:
            counts = [Counter(str(v) for v in values[split.part(p)].tolist())[g] for p in PARTS]
            totals = [a + b for a, b in zip(totals, counts, strict=True)]
            lines.append(f"{g:<{width}}" + "".join(f"{c:>8}" for c in counts) + f"{sum(counts):>8}")
        lines.append(f"{'all':<{width}}" + "".join(f"{c:>8}" for c in totals) + f"{sum(totals):>8}")
    return "\n".join(lines)


_CS_ORDER = [
    "cubic",
    "hexagonal",
    "tetragonal",
    "trigonal",
    "orthorhombic",
    "monoclinic",
    "triclinic",
]


def _group_order(g: str):
    if g.isdigit():
        return (0, int(g), "")
    if g in _CS_ORDER:
        return (1, _CS_ORDER.index(g), "")
    return (2, 0, g)
