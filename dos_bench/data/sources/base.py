"""Base classes of the published-data sources: raw-file lookup, shared options, bad-record log.

* :class:`CachedSource`: the base class of every published-data source. It holds the keyword
  arguments every source takes (``negative_tol``, ``dataset``, ``processed_dir``, ``progress``,
  ``strict``, ``structure_checks``), resolves the raw files under the data directory (a missing
  file is one :class:`DataError` that names it, says where it was expected and how to get it;
  **training never downloads**), and caches the processed :class:`RecordSet` as
  ``<data_dir>/processed/<name>-<hash>.npz`` (:class:`~dos_bench.data.sources.cache.RecordCache`).
  The hash covers the source options, the parser versions and the size and modification time of
  every raw file, so editing an option or replacing a raw file rebuilds the cache.
* :class:`IdArrayFolder`: the Mat2Spec-style folders (id list + ``.npy`` of spectra + structures).
* :class:`FailureLog`: per-record errors collected when ``strict`` is off.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.records import RecordSet
from dos_bench.data.sources.cache import RecordCache
from dos_bench.data.sources.readers import load_npy, read_id_list
from dos_bench.data.structure_checks import StructureChecks
from dos_bench.io import ConfigError, DataError, stable_hash

log = logging.getLogger(__name__)

__all__ = [
    "COMMON_VERSION",
    "CachedSource",
    "FailureLog",
    "IdArrayFolder",
    "as_bool_or_auto",
    "first_key",
    "missing_file_error",
    "progress_iter",
]

#: version of the shared parsing helpers; part of every processed-cache hash (2: structure checks)
COMMON_VERSION = 2


# ====================================================================================== raw files
def missing_file_error(dataset: str, rel: str | Path, path: Path, record: str | None = None):
    """The one message for a raw file that is not there (never downloads)."""
    what = f" (record {record})" if record else ""
    return DataError(
        f"dataset {dataset}: raw file {str(rel)!r}{what} is missing; expected it at {path}. "
        f"Run `dos-data download {dataset}` or place the file there by hand "
        "(training never downloads)."
    )


def _fingerprint(path: Path) -> list[Any]:
    """Size and modification time of a file, or of every file below a directory."""
    if path.is_file():
        st = path.stat()
        return [path.name, st.st_size, st.st_mtime_ns]
    entries = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = Path(root, f)
            st = p.stat()
            entries.append((str(p.relative_to(path)), st.st_size, st.st_mtime_ns))
    entries.sort()
    return [path.name, len(entries), stable_hash(entries, n=16)]


class CachedSource(RecordCache):
    """Base class of the published-data sources: raw-file lookup and the processed cache.

    Subclasses set :attr:`name`, :attr:`kind`, :attr:`parser_version` and :attr:`option_names`
    (the attributes that change the output; :meth:`options` returns them, extend it for derived
    values such as a grid) and implement :meth:`raw_paths` (label → path relative to the data
    directory) and :meth:`build` (raw paths → :class:`RecordSet`). Their constructors keep
    explicit keyword signatures (Hydra instantiates them, so every config key stays visible) and
    hand the shared keywords below to ``super().__init__``.

    Args (common to every subclass):
        dataset: dataset name used in messages and the ``dos-data download <dataset>`` hint
            (defaults to the source name; the YAMLs pass ``${dataset.name}``).
        processed_dir: folder under the data directory for processed caches.
        progress: show progress bars while parsing.
        strict: raise on the first bad record (default) or skip bad records, log a summary and
            raise only if none loaded.
        structure_checks: options of the structure checks (``min_distance``, ``disordered``,
            ``isolated_atoms``; :class:`~dos_bench.data.structure_checks.StructureChecks`); a
            failed check is a bad record like any other. The YAMLs pull them in from
            ``conf/structure_checks/default.yaml``.
        negative_tol: negative spectrum values down to ``-negative_tol * max`` are set to 0
            (interpolation noise); larger ones raise (see
            :func:`~dos_bench.data.sources.readers.clean_spectrum`).
    """

    name: str = "source"
    kind: str = "edos"
    parser_version: int = 1
    #: attributes whose values :meth:`options` returns (and so the processed-cache hash covers)
    option_names: tuple[str, ...] = ()

    def __init__(
        self,
        dataset: str | None = None,
        processed_dir: str = "processed",
        progress: bool = False,
        strict: bool = True,
        structure_checks: Any = None,
        *,
        negative_tol: float = 0.0,
    ) -> None:
        self.dataset = dataset or self.name
        self.processed_dir = str(processed_dir)
        self.progress = bool(progress)
        self.strict = bool(strict)
        self.structure_checks = StructureChecks.from_config(
            structure_checks, prefix="dataset.source.structure_checks"
        )
        self.negative_tol = float(negative_tol)

    # ---------------------------------------------------------------- to implement
    def options(self) -> dict[str, Any]:
        """Everything that changes the output: the :attr:`option_names` attributes."""
        return {key: getattr(self, key) for key in self.option_names}

    def raw_paths(self) -> dict[str, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, raw: dict[str, Path]) -> RecordSet:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---------------------------------------------------------------- public API
    def cache_key(self) -> dict[str, Any]:
        """Everything that determines the processed records except the raw files themselves."""
        return {
            "source": self.name,
            "parser_version": self.parser_version,
            "common_version": COMMON_VERSION,
            "strict": self.strict,
            "structure_checks": self.structure_checks.key(),
            **self.options(),
        }

    def resolve(self, data_dir: str | Path) -> dict[str, Path]:
        """Absolute raw paths; a missing one raises :class:`DataError` (no download)."""
        data_dir = Path(data_dir)
        out = {}
        for label, rel in self.raw_paths().items():
            out[label] = self._find(data_dir, rel)
        return out

    def _find(self, data_dir: Path, rel: str) -> Path:
        path = data_dir / rel
        if not path.exists():
            raise missing_file_error(self.dataset, rel, path)
        return path

    def processed_path(self, data_dir: str | Path, raw: dict[str, Path]) -> Path:
        files = {k: _fingerprint(p) for k, p in sorted(raw.items())}
        h = stable_hash({"key": self.cache_key(), "files": files})
        return Path(data_dir) / self.processed_dir / f"{self.name}-{h}.npz"

    def load(self, data_dir: str | Path) -> RecordSet:
        """The processed records: from the cache if present, else parsed and cached.

        ``attrs["structure_checks"]`` carries the structure-check options to graph building
        (``isolated_atoms`` is checked there, against the model's cutoff).
        """
        rs = self._load(data_dir)
        rs.attrs["structure_checks"] = self.structure_checks.as_dict()
        return rs

    def _load(self, data_dir: str | Path) -> RecordSet:
        raw = self.resolve(data_dir)
        path = self.processed_path(data_dir, raw)
        return self._cached(path, lambda: self._build_records(raw, path))

    def _build_records(self, raw: dict[str, Path], path: Path) -> RecordSet:
        log.info("%s: parsing raw files %s", self.dataset, {k: str(v) for k, v in raw.items()})
        rs = self.build(raw)
        rs.attrs.setdefault("name", self.name)
        rs.attrs.setdefault("kind", self.kind)
        rs.attrs["source_options"] = self.options()
        rs.validate(source=path.name)
        return rs

    def _reused(self, rs: RecordSet, path: Path) -> None:
        log.info("%s: reusing processed %s", self.dataset, path)
        if rs.attrs.get("n_failed"):
            log.warning(
                "%s: %s raw records were rejected when %s was built (strict=false)",
                self.dataset,
                rs.attrs["n_failed"],
                path.name,
            )

    def _made(self, rs: RecordSet, path: Path, saved: bool, seconds: float) -> None:
        if saved:
            log.info("%s: %d records written to %s", self.dataset, len(rs), path)


# ====================================================================================== folders
class IdArrayFolder(CachedSource):
    """Base of the Mat2Spec-style folders: a material-id list, an ``N × n_cols`` ``.npy`` of
    spectra (row ``i`` belongs to id ``i``) and the structures, all under one ``root``
    (Mat2Spec Methods; docs/papers/mat2spec.md §4.1, docs/data/phonon_sources.md §5.1). Subclasses
    read the structures and build records.

    Args:
        root: the unpacked data folder, relative to the data directory.
        ids, spectra, structures: paths inside ``root``.
        n_cols: spectrum length every row must have.
        negative_tol, dataset, processed_dir, progress, strict, structure_checks: see
            :class:`CachedSource`.
    """

    option_names = ("root", "ids", "spectra", "structures", "negative_tol")

    def __init__(
        self,
        root: str,
        ids: str,
        spectra: str,
        structures: str,
        n_cols: int,
        negative_tol: float,
        dataset: str | None = None,
        processed_dir: str = "processed",
        progress: bool = False,
        strict: bool = True,
        structure_checks: Any = None,
    ) -> None:
        super().__init__(
            dataset, processed_dir, progress, strict, structure_checks, negative_tol=negative_tol
        )
        self.root, self.ids, self.spectra, self.structures = root, ids, spectra, structures
        self.n_cols = int(n_cols)

    def raw_paths(self) -> dict[str, str]:
        r = Path(self.root)
        return {
            "ids": str(r / self.ids),
            "spectra": str(r / self.spectra),
            "structures": str(r / self.structures),
        }

    def ids_and_spectra(self, raw: dict[str, Path], what: str) -> tuple[list[str], np.ndarray]:
        """The id list and the spectra array, checked against each other and ``n_cols``.

        Args:
            raw: the resolved raw paths.
            what: what one row is, for the message (e.g. "128-bin spectrum").
        """
        y = load_npy(raw["spectra"])
        if y.ndim != 2 or y.shape[1] != self.n_cols:
            raise DataError(
                f"{raw['spectra']}: array has shape {y.shape}, expected (N, {self.n_cols}) "
                f"(one {what} per material)"
            )
        ids = read_id_list(raw["ids"], n_expected=y.shape[0])
        if len(ids) != y.shape[0]:
            raise DataError(
                f"{raw['ids']} lists {len(ids)} material ids but {raw['spectra']} has "
                f"{y.shape[0]} spectra rows"
            )
        return ids, y


class FailureLog:
    """Collects per-record :class:`DataError` s when ``strict`` is off.

    Usage::

        fails = FailureLog(strict, "phonon_tut")
        for row in rows:
            with fails.guard():
                ...  # raise DataError naming the record
        fails.finish(n_loaded)
    """

    def __init__(self, strict: bool, dataset: str) -> None:
        self.strict, self.dataset = strict, dataset
        self.messages: list[str] = []
        self._failed = False

    @contextmanager
    def guard(self) -> Iterator[FailureLog]:
        self._failed = False
        try:
            yield self
        except DataError as exc:
            if self.strict:
                raise
            self._failed = True
            self.messages.append(str(exc))

    @property
    def failed(self) -> bool:
        """True if the last guarded block failed."""
        return self._failed

    def finish(self, n_loaded: int) -> None:
        """Log a summary; raise if nothing loaded."""
        if not self.messages:
            return
        shown = "\n  ".join(self.messages[:20])
        more = f"\n  ... and {len(self.messages) - 20} more" if len(self.messages) > 20 else ""
        if n_loaded == 0:
            raise DataError(
                f"dataset {self.dataset}: no record could be loaded; "
                f"{len(self.messages)} failures:\n  {shown}{more}"
            )
        log.warning(
            "%s: skipped %d bad records (strict=false), loaded %d:\n  %s%s",
            self.dataset,
            len(self.messages),
            n_loaded,
            shown,
            more,
        )


# ====================================================================================== misc
def as_bool_or_auto(value: Any, key: str) -> bool | str:
    """``true``/``false``/``auto`` (booleans or strings) for options such as
    ``valence_normalised``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("auto", "true", "false"):
        v = value.lower()
        return "auto" if v == "auto" else v == "true"
    raise ConfigError(f"dataset.source.{key} must be auto, true or false, got {value!r}")


def progress_iter(it: Iterable[Any], enabled: bool, desc: str, total: int | None = None):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, total=total, leave=False)


def first_key(d: dict[str, Any], keys: Iterable[str]) -> Any:
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    return None
