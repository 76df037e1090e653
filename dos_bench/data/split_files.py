"""Splits read from published files: index files and id lists (docs/data/phonon_sources.md §5,
§5.3).

* :class:`IndexFileSplit` — published index files: a pickle of three index arrays (train, valid,
  test: E3NN/Mat2Spec ``200801_trteva_indices.pkl``) or one-index-per-line text files (the phonon
  tutorial's ``idx_{train,valid,test}.txt`` used by DOSTransformer).
* :class:`IdListSplit` — published id lists: a JSON file (or the JSON inside a ``.zip``) mapping
  train / val / test to lists of material ids or to dicts keyed by id (the JARVIS-Leaderboard
  phonon-DOS benchmark ``edos_pdos_ph_dos.json.zip``).

A file-based split must fit the data: an index outside the dataset, a row or id that did not
load, parts that overlap or a part left empty is one :class:`~dos_bench.io.DataError` raised before
training. With ``allow_subset=True`` indices and ids the data lacks are dropped instead, logged
(one warning per part) and counted in :attr:`~dos_bench.data.splits.Split.dropped` (written to
``splits.json``); overlaps and empty parts stay errors. The other splitters and the
:class:`~dos_bench.data.splits.Split` they all return: :mod:`dos_bench.data.splits`.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.records import RecordSet
from dos_bench.data.splits import PARTS, Split, Splitter
from dos_bench.io import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["IdListSplit", "IndexFileSplit"]


_SUBSET_HINT = "split.allow_subset=true applies the file to the records present"


def _check_disjoint(where: Sequence[str], parts: Sequence[Sequence], what: str) -> None:
    """One :class:`DataError` for an entry listed twice in a part or in two parts of a file."""
    first: dict[Any, int] = {}
    for k, values in enumerate(parts):
        for v in values:
            v = v.item() if hasattr(v, "item") else v
            if v not in first:
                first[v] = k
                continue
            j = first[v]
            if j == k:
                raise DataError(
                    f"{where[k]}: {what} {v!r} appears twice in the {PARTS[k]} part (a split "
                    "file must list each entry once; the parts must not overlap)"
                )
            other = f" ({where[j]})" if where[j] != where[k] else ""
            raise DataError(
                f"{where[k]}: {what} {v!r} of the {PARTS[k]} part is also in the {PARTS[j]} "
                f"part{other}; the parts of a split file must not overlap"
            )


def _file_split(
    where: Sequence[str],
    kept: Sequence[np.ndarray],
    listed: Sequence[int],
    dropped: dict[str, int],
    size: str,
    what: str,
) -> Split:
    """The :class:`Split` of a published file, refusing a part that is (or became) empty."""
    for part, src, k, n0 in zip(PARTS, where, kept, listed, strict=True):
        if len(k):
            continue
        if n0 == 0:
            raise DataError(
                f"{src}: the {part} part lists no {what}; every part of a split file must be "
                "non-empty"
            )
        raise DataError(
            f"{src}: the {part} part is empty on a dataset of {size}: none of its {n0} {what} "
            "is present (split.allow_subset drops the missing ones, but a part may not be empty)"
        )
    return Split(*kept, dropped=dropped)


class IndexFileSplit(Splitter):
    """Published index files (docs/data/phonon_sources.md §5): row indices into the dataset's
    record order.

    The indices must fit the data: an index beyond the dataset (or, for records that carry the
    ``source_row`` of the published table, one pointing at a row that did not load), parts that
    overlap, or a part left empty raise :class:`DataError` before any training.

    Args:
        path: a pickle of three index arrays in the order train, valid, test (E3NN's
            ``200801_trteva_indices.pkl``, despite its name), loaded with a restricted unpickler
            that accepts only numpy arrays and built-in containers; only from this configured
            path.
        train, val, test: alternatively, three text files with one index per line (the phonon
            tutorial's ``idx_train.txt``, ``idx_valid.txt``, ``idx_test.txt``).
        base_dir: directory that relative paths are resolved against.
        allow_subset: drop indices outside the dataset or at rows that did not load (logged, one
            warning per part, and counted in :attr:`Split.dropped`) instead of raising; overlaps
            and empty parts remain errors.
    """

    def __init__(
        self,
        path: str | None = None,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        base_dir: str | None = None,
        allow_subset: bool = False,
        train_fraction: float = 1.0,
        train_fraction_seed: int = 1,
    ) -> None:
        super().__init__(train_fraction, train_fraction_seed)
        texts = (train, val, test)
        if (path is None) == all(t is None for t in texts) or (
            path is None and any(t is None for t in texts)
        ):
            raise ConfigError(
                "split=index_file needs either split.path (a pickle of three index arrays) or "
                "all of split.train, split.val, split.test (text files), not both"
            )
        base = Path(base_dir) if base_dir else Path(".")
        self.path = base / path if path else None
        self.texts = tuple(base / t for t in texts) if path is None else None
        self.allow_subset = bool(allow_subset)

    def load_indices(self) -> list[np.ndarray]:
        from dos_bench.data.sources.pickles import load_index_pickle
        from dos_bench.data.sources.readers import load_index_txt

        if self.path is not None:
            arrays = load_index_pickle(self.path)
            if len(arrays) != 3:
                raise DataError(f"{self.path}: expected 3 index arrays, found {len(arrays)}")
            return [np.asarray(a, dtype=np.int64) for a in arrays]
        return [np.asarray(load_index_txt(p), dtype=np.int64) for p in self.texts]

    def _split(self, rs: RecordSet) -> Split:
        arrays = self.load_indices()
        where = [str(self.path)] * 3 if self.path is not None else [str(t) for t in self.texts]
        _check_disjoint(where, arrays, "index")
        n = len(rs)
        if "source_row" in rs.meta:
            # indices are rows of the published table; records that failed to load shift
            # positions, so rows are mapped to positions through the records' source_row
            rows = rs.meta["source_row"].astype(np.int64)
            n_rows = max(int(rows.max()) + 1, int(rs.attrs.get("n_rows") or 0))
            pos = np.full(n_rows, -1, dtype=np.int64)
            pos[rows] = np.arange(n)
            size = f"{n} records" if n_rows == n else f"{n} records of {n_rows} published rows"
        else:
            n_rows, pos, size = n, np.arange(n, dtype=np.int64), f"{n} records"
        kept, dropped = [], {}
        for a, src, part in zip(arrays, where, PARTS, strict=True):
            inside = (a >= 0) & (a < n_rows)
            outside = a[~inside]
            mapped = pos[a[inside]]
            unloaded = a[inside][mapped < 0]
            if not self.allow_subset and outside.size:
                raise DataError(
                    f"{src}: {part} index {int(outside.max())} is out of range for a dataset of "
                    f"{size} ({outside.size} of the {a.size} {part} indices are; published row "
                    f"order; {_SUBSET_HINT})"
                )
            if not self.allow_subset and unloaded.size:
                raise DataError(
                    f"{src}: {part} index {int(unloaded[0])} points at a published row that did "
                    f"not load ({unloaded.size} of the {a.size} {part} indices do; dataset of "
                    f"{size}; {_SUBSET_HINT})"
                )
            if self.allow_subset:
                dropped[part] = int(outside.size + unloaded.size)
                if dropped[part]:
                    log.warning(
                        "%s: split.allow_subset drops %d of the %d %s indices (%d beyond a "
                        "dataset of %s, %d at rows that did not load); %d kept",
                        src,
                        dropped[part],
                        a.size,
                        part,
                        outside.size,
                        size,
                        unloaded.size,
                        a.size - dropped[part],
                    )
            kept.append(mapped[mapped >= 0])
        return _file_split(where, kept, [a.size for a in arrays], dropped, size, "indices")


class IdListSplit(Splitter):
    """Published id lists: a JSON object whose train / val / test entries list material ids.

    Each entry is either a list of ids or a dict keyed by id (its values are ignored): the
    JARVIS-Leaderboard phonon-DOS benchmark ``benchmarks/AI/Spectra/edos_pdos_ph_dos.json.zip``
    holds ``{"train": {jid: "v1;v2;...", ...}, "val": {...}, "test": {...}}`` with 11,395 / 1,424 /
    1,424 JARVIS ids (docs/data/phonon_sources.md §5.3). Ids are matched against the records'
    ``ids``; the parts keep
    the file's order. Unknown ids (unless ``allow_subset``), overlapping parts and empty parts
    raise :class:`DataError` before any training.

    Args:
        path: a ``.json`` file, or a ``.zip`` holding it.
        member: the JSON member of the zip (``None``: the only ``.json`` inside).
        train_key, val_key, test_key: the keys of the three parts in the JSON object.
        base_dir: directory that a relative ``path`` is resolved against.
        allow_subset: drop ids that are not among the records (logged, one warning per part, and
            counted in :attr:`Split.dropped`) instead of raising; overlaps and empty parts remain
            errors.
        train_fraction, train_fraction_seed: see :class:`Splitter`.
    """

    def __init__(
        self,
        path: str,
        member: str | None = None,
        train_key: str = "train",
        val_key: str = "val",
        test_key: str = "test",
        base_dir: str | None = None,
        allow_subset: bool = False,
        train_fraction: float = 1.0,
        train_fraction_seed: int = 1,
    ) -> None:
        super().__init__(train_fraction, train_fraction_seed)
        if not isinstance(path, str) or not path:
            raise ConfigError(
                f"split=id_list needs split.path (a JSON file or a .zip holding one), got {path!r}"
            )
        keys = (train_key, val_key, test_key)
        if not all(isinstance(k, str) and k for k in keys) or len(set(keys)) != 3:
            raise ConfigError(
                "split.train_key, split.val_key, split.test_key must be three different "
                f"non-empty strings, got {list(keys)}"
            )
        self.path = (Path(base_dir) if base_dir else Path(".")) / path
        self.member = member
        self.keys = keys
        self.allow_subset = bool(allow_subset)

    def _read(self) -> tuple[str, Any]:
        from dos_bench.data.sources.readers import read_json

        path = self.path
        if not path.is_file():
            raise DataError(f"{path}: split id file not found (split.path, split.base_dir)")
        if not zipfile.is_zipfile(path):
            if path.suffix.lower() == ".zip":
                raise DataError(f"{path}: not a zip archive (damaged or wrong format)")
            if self.member is not None:
                raise DataError(
                    f"{path}: split.member={self.member!r} is set but the file is not a zip archive"
                )
            return str(path), read_json(path)
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                if self.member is not None:
                    if self.member not in names:
                        raise DataError(
                            f"{path}: zip has no member {self.member!r} (members: {names[:5]})"
                        )
                    member = self.member
                else:
                    js = [n for n in names if n.lower().endswith(".json")]
                    if len(js) != 1:
                        raise DataError(
                            f"{path}: expected one .json member in the zip, found {js or names}; "
                            "set split.member"
                        )
                    member = js[0]
                text = zf.read(member)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(f"{path}: damaged zip archive ({exc})") from None
        where = f"{path}!{member}"
        return where, read_json(Path(where), text)

    def load_ids(self) -> tuple[str, list[list[str]]]:
        """``(file description, [train ids, val ids, test ids])`` as listed in the file."""
        where, data = self._read()
        if not isinstance(data, dict):
            raise DataError(
                f"{where}: expected a JSON object with keys {list(self.keys)}, got a "
                f"{type(data).__name__}"
            )
        out = []
        for part, key in zip(PARTS, self.keys, strict=True):
            if key not in data:
                raise DataError(
                    f"{where}: no {part} part: key {key!r} is missing (keys: {sorted(data)[:10]}; "
                    f"set split.{part}_key)"
                )
            entry = data[key]
            if isinstance(entry, dict):
                ids = list(entry)
            elif isinstance(entry, list):
                ids = []
                for i, v in enumerate(entry):
                    if isinstance(v, bool) or not isinstance(v, (str, int)):
                        raise DataError(
                            f"{where}: {part} entry {i} ({key!r}) is {v!r}, expected a material id"
                        )
                    ids.append(str(v))
            else:
                raise DataError(
                    f"{where}: the {part} part ({key!r}) must be a list of ids or an object keyed "
                    f"by id, got a {type(entry).__name__}"
                )
            out.append(ids)
        return where, out

    def _split(self, rs: RecordSet) -> Split:
        where, lists = self.load_ids()
        _check_disjoint([where] * 3, lists, "id")
        position = {mid: i for i, mid in enumerate(rs.ids.astype(str).tolist())}
        size = f"{len(rs)} records"
        kept, dropped = [], {}
        for part, key, ids in zip(PARTS, self.keys, lists, strict=True):
            missing = [m for m in ids if m not in position]
            if missing and not self.allow_subset:
                raise DataError(
                    f"{where}: {len(missing)} of the {len(ids)} {part} ids ({key!r}) are not among "
                    f"the {size} of the dataset (first missing: {missing[0]}); {_SUBSET_HINT}"
                )
            if self.allow_subset:
                dropped[part] = len(missing)
                if missing:
                    log.warning(
                        "%s: split.allow_subset drops %d of the %d %s ids not among the %s "
                        "(first: %s); %d kept",
                        where,
                        len(missing),
                        len(ids),
                        part,
                        size,
                        missing[0],
                        len(ids) - len(missing),
                    )
            kept.append(np.asarray([position[m] for m in ids if m in position], dtype=np.int64))
        return _file_split([where] * 3, kept, [len(x) for x in lists], dropped, size, "ids")
