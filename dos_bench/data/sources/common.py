"""Helpers shared by the published-dataset sources.

* :class:`CachedSource`: the base class of every source. It resolves the raw files under the data
  directory (a missing file is one :class:`DataError` that names it, says where it was expected and
  how to get it; **training never downloads**), and caches the processed :class:`RecordSet` as
  ``<data_dir>/processed/<name>-<hash>.npz``. The hash covers the source options, the parser
  versions and the size and modification time of every raw file, so editing an option or replacing
  a raw file rebuilds the cache; the cache is written atomically, so an interrupted run never
  leaves a half-written file.
* :func:`parse_literal`: a *safe* parser for the Python-literal cells of the phonon tutorial CSV
  (facts.md §2.2): literals, containers, unary minus and ``array([...], dtype=...)`` only. Nothing
  in a data file is ever executed.
* :class:`RestrictedUnpickler`, :func:`load_structure_pickle`, :func:`load_index_pickle`: pickles
  (Mat2Spec's ``ph_structures.pkl``, the E3NN split pickle) are read only from paths the user
  configured, through an unpickler that resolves a short whitelist of globals (see
  :data:`PICKLE_WHITELIST`) and refuses every other global with a message naming the file.
* :func:`structure_meta`, :func:`valence_electrons`: the metadata columns every source yields.
* :func:`clean_spectrum`: length / finiteness / sign checks for one raw spectrum.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import pickle
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.data.structure_checks import StructureChecks, check_structure, check_symbols
from dos_bench.io import ConfigError, DataError, memory_cache, save_cache, stable_hash

log = logging.getLogger(__name__)

__all__ = [
    "COMMON_VERSION",
    "CachedSource",
    "FailureLog",
    "PICKLE_WHITELIST",
    "RestrictedUnpickler",
    "SYMPREC",
    "ase_dict_to_structure",
    "build_recordset",
    "check_structure",
    "clean_spectrum",
    "jarvis_atoms_to_structure",
    "load_index_pickle",
    "load_index_txt",
    "load_npy",
    "load_structure_pickle",
    "parse_literal",
    "read_id_list",
    "read_json",
    "restricted_pickle_load",
    "structure_meta",
    "valence_electrons",
]

#: version of the helpers below; part of every processed-cache hash (2: structure checks)
COMMON_VERSION = 2

#: symmetry tolerance (Å) of ``SpacegroupAnalyzer`` for the ``crystal_system`` column
SYMPREC = 0.1

_ID_RE = re.compile(r"^(mp|mvc|JVASP|jvasp|agm|toy)-\d+$|^\d+$")


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


class CachedSource:
    """Base class of the published-data sources: raw-file lookup and the processed cache.

    Subclasses set :attr:`name`, :attr:`kind`, :attr:`parser_version`, and implement
    :meth:`options` (everything that changes the output), :meth:`raw_paths` (label → path
    relative to the data directory) and :meth:`build` (raw paths → :class:`RecordSet`).

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
    """

    name: str = "source"
    kind: str = "edos"
    parser_version: int = 1

    def __init__(
        self,
        dataset: str | None = None,
        processed_dir: str = "processed",
        progress: bool = False,
        strict: bool = True,
        structure_checks: Any = None,
    ) -> None:
        self.dataset = dataset or self.name
        self.processed_dir = str(processed_dir)
        self.progress = bool(progress)
        self.strict = bool(strict)
        self.structure_checks = StructureChecks.from_config(
            structure_checks, prefix="dataset.source.structure_checks"
        )

    # ---------------------------------------------------------------- to implement
    def options(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

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
        if (kept := memory_cache(path)) is not None:  # read-only data directory, same process
            return kept
        if path.exists():
            log.info("%s: reusing processed %s", self.dataset, path)
            rs = RecordSet.load(path)
            if rs.attrs.get("n_failed"):
                log.warning(
                    "%s: %s raw records were rejected when %s was built (strict=false)",
                    self.dataset,
                    rs.attrs["n_failed"],
                    path.name,
                )
            return rs
        log.info("%s: parsing raw files %s", self.dataset, {k: str(v) for k, v in raw.items()})
        rs = self.build(raw)
        rs.attrs.setdefault("name", self.name)
        rs.attrs.setdefault("kind", self.kind)
        rs.attrs["source_options"] = self.options()
        rs.validate(source=path.name)
        if save_cache(rs, path):  # a read-only data directory: kept in memory, one warning
            log.info("%s: %d records written to %s", self.dataset, len(rs), path)
        return rs


# ====================================================================================== failures
class IdArrayFolder(CachedSource):
    """Base of the Mat2Spec-style folders: a material-id list, an ``N × n_cols`` ``.npy`` of
    spectra (row ``i`` belongs to id ``i``) and the structures, all under one ``root``
    (Mat2Spec Methods; facts.md §4.1, §5.1). Subclasses read the structures and build records.

    Args:
        root: the unpacked data folder, relative to the data directory.
        ids, spectra, structures: paths inside ``root``.
        n_cols: spectrum length every row must have.
        negative_tol: negative values down to ``-negative_tol * max`` are set to 0.
        dataset, processed_dir, progress, strict, structure_checks: see :class:`CachedSource`.
    """

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
        super().__init__(dataset, processed_dir, progress, strict, structure_checks)
        self.root, self.ids, self.spectra, self.structures = root, ids, spectra, structures
        self.n_cols = int(n_cols)
        self.negative_tol = float(negative_tol)

    def options(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "ids": self.ids,
            "spectra": self.spectra,
            "structures": self.structures,
            "negative_tol": self.negative_tol,
        }

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


# ====================================================================================== readers
def read_json(path: Path, text: str | bytes | None = None) -> Any:
    """Parse JSON from ``path`` (or from ``text`` read from it); errors name the file."""
    try:
        if text is None:
            with open(path, "rb") as fh:
                text = fh.read()
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def load_npy(path: Path) -> np.ndarray:
    """A numeric ``.npy`` array (never with pickles); truncated or wrong files raise."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/EOFError/OSError/UnpicklingError
        raise DataError(
            f"{path}: cannot read as a numeric .npy array ({type(exc).__name__}: {exc}); "
            "the file is damaged, truncated or in another format"
        ) from exc
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise DataError(f"{path}: expected a numeric array, got dtype {getattr(arr, 'dtype', '?')}")
    return arr


def read_id_list(path: Path, n_expected: int | None = None) -> list[str]:
    """Material ids, one per row (first column) of a CSV such as Mat2Spec's ``mpids.csv``.

    The authors read the file with ``pandas.read_csv`` and its default ``header=0`` (``M2S:
    train_Mat2Spec.py``), i.e. the first line is a column header (pandas writes ``0`` for an
    unnamed column). Both conventions are accepted here: the first line is taken as a header if
    it does not look like a material id, or if the file has exactly one more row than
    ``n_expected`` (the spectra rows). Bare integers are read as ``mp-<n>``.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as text ({exc})") from exc
    rows = [ln.split(",")[0].strip().strip('"').strip("'") for ln in lines]
    while rows and not rows[-1]:
        rows.pop()
    if not rows:
        raise DataError(f"{path}: no material ids in the file")
    first_is_id = bool(_ID_RE.match(rows[0]))
    if first_is_id and rows[0].isdigit() and len(rows) > 1 and not rows[1].isdigit():
        first_is_id = False  # pandas' "0" header above mp-... ids
    has_header = not first_is_id
    if n_expected is not None and first_is_id:
        if len(rows) == n_expected + 1:
            has_header = True
    if has_header:
        rows = rows[1:]
    ids = []
    for i, r in enumerate(rows):
        if not r:
            raise DataError(f"{path}: empty material id on data row {i}")
        ids.append(f"mp-{r}" if r.isdigit() else r)
    return ids


def load_index_txt(path: str | Path) -> np.ndarray:
    """One non-negative integer row index per line (TUT ``idx_{train,valid,test}.txt``)."""
    path = Path(path)
    try:
        lines = path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read index file ({exc})") from exc
    out = []
    for i, tok in enumerate(lines):
        try:
            v = int(float(tok))
        except ValueError:
            raise DataError(f"{path}: line {i + 1}: {tok!r} is not an integer row index") from None
        if v < 0 or float(tok) != v:
            raise DataError(f"{path}: line {i + 1}: {tok!r} is not a non-negative integer")
        out.append(v)
    return np.asarray(out, dtype=np.int64)


# ====================================================================================== spectra
def clean_spectrum(
    values: Any,
    n_points: int | None,
    where: str,
    negative_tol: float = 0.0,
) -> tuple[np.ndarray, bool]:
    """Check one raw spectrum: numeric, the right length, finite, not (significantly) negative.

    Args:
        values: a sequence of numbers.
        n_points: required length (``None`` = any length ≥ 2).
        where: file and record, for messages.
        negative_tol: negative values with ``|v| <= negative_tol * max(v)`` (interpolation or
            tetrahedron-method noise) are set to 0; larger ones raise.

    Returns:
        (float64 array, whether small negatives were clipped).
    """
    if isinstance(values, str):
        raise DataError(f"{where}: spectrum is the string {values[:20]!r}, expected numbers")
    try:
        y = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: spectrum is not a list of numbers ({exc})") from None
    if y.ndim != 1:
        raise DataError(f"{where}: spectrum has shape {y.shape}, expected a flat list")
    if n_points is not None and y.shape[0] != n_points:
        raise DataError(
            f"{where}: spectrum has {y.shape[0]} values, expected {n_points} (grid length)"
        )
    if y.shape[0] < 2:
        raise DataError(f"{where}: spectrum has {y.shape[0]} values")
    if not np.isfinite(y).all():
        raise DataError(f"{where}: spectrum contains NaN or infinite values")
    clipped = False
    if (y < 0).any():
        top = max(float(y.max()), 0.0)
        if float(y.min()) < -negative_tol * top or top == 0.0:
            raise DataError(f"{where}: spectrum has negative values (min {y.min():.4g})")
        y = np.maximum(y, 0.0)
        clipped = True
    return y, clipped


# ====================================================================================== structures
# Every reader below ends in check_structure (dos_bench.data.structure_checks): unknown elements,
# disordered sites, overlapping atoms, each one DataError naming ``where`` (file and record).


def structure_from_dict(d: Any, where: str, checks: StructureChecks | None = None) -> Any:
    """``Structure.from_dict`` with errors naming the record, then :func:`check_structure`."""
    from pymatgen.core import Structure

    if not isinstance(d, dict):
        raise DataError(f"{where}: structure is a {type(d).__name__}, expected a pymatgen dict")
    try:
        s = Structure.from_dict(d)
    except Exception as exc:
        raise DataError(
            f"{where}: pymatgen cannot read the structure ({type(exc).__name__}: {exc})"
        ) from None
    return check_structure(s, where, checks)


def jarvis_atoms_to_structure(d: Any, where: str, checks: StructureChecks | None = None) -> Any:
    """A JARVIS ``Atoms`` dict (``lattice_mat``, ``coords``, ``elements``, ``cartesian``;
    facts.md §1.1) as a pymatgen Structure, checked (:func:`check_structure`). An entry of
    ``elements`` that is not a chemical symbol (``"Xx"``) is refused before pymatgen sees it."""
    from pymatgen.core import Lattice, Structure

    if not isinstance(d, dict):
        raise DataError(f"{where}: 'atoms' is a {type(d).__name__}, expected a JARVIS Atoms dict")
    missing = [k for k in ("lattice_mat", "coords", "elements") if k not in d]
    if missing:
        raise DataError(f"{where}: JARVIS Atoms dict lacks {missing}")
    try:
        lat = np.asarray(d["lattice_mat"], dtype=np.float64).reshape(3, 3)
        coords = np.asarray(d["coords"], dtype=np.float64).reshape(-1, 3)
        elements = [str(e).strip() for e in d["elements"]]
        if len(elements) != len(coords):
            raise ValueError(f"{len(elements)} elements but {len(coords)} coordinates")
        check_symbols(elements, f"{where} atoms.elements")  # pymatgen would accept "Xx"
        s = Structure(
            Lattice(lat), elements, coords, coords_are_cartesian=bool(d.get("cartesian", False))
        )
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{where}: pymatgen cannot build the structure ({type(exc).__name__}: {exc})"
        ) from None
    return check_structure(s, where, checks)


def ase_dict_to_structure(d: Any, where: str, checks: StructureChecks | None = None) -> Any:
    """An ASE ``Atoms.todict()`` dict (``numbers``, ``positions`` in Å Cartesian, ``cell`` rows
    = lattice vectors, ``pbc``; other keys such as ``info`` or ``masses`` are ignored) as a
    pymatgen Structure (TUT ``data.csv``, facts.md §2.2), checked (:func:`check_structure`)."""
    from pymatgen.core import Lattice, Structure

    if not isinstance(d, dict):
        raise DataError(f"{where}: structure is a {type(d).__name__}, expected an ASE Atoms dict")
    if not d:
        raise DataError(f"{where}: structure cell is empty")
    missing = [k for k in ("numbers", "positions", "cell") if k not in d]
    if missing:
        raise DataError(f"{where}: ASE Atoms dict lacks {missing} (has {sorted(map(str, d))})")
    cell = d["cell"]
    if isinstance(cell, dict):  # ase.cell.Cell.todict() form
        cell = cell.get("array")
    pbc = d.get("pbc")
    if pbc is not None and not np.all(np.asarray(pbc, dtype=bool)):
        raise DataError(f"{where}: ASE Atoms is not periodic in all directions (pbc={pbc})")
    try:
        lat = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        numbers = np.asarray(d["numbers"]).astype(np.int64).reshape(-1)
        pos = np.asarray(d["positions"], dtype=np.float64).reshape(-1, 3)
        if len(numbers) != len(pos):
            raise ValueError(f"{len(numbers)} numbers but {len(pos)} positions")
        check_symbols([int(z) for z in numbers], f"{where} numbers")
        s = Structure(Lattice(lat), [int(z) for z in numbers], pos, coords_are_cartesian=True)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{where}: pymatgen cannot build the structure ({type(exc).__name__}: {exc})"
        ) from None
    return check_structure(s, where, checks)


def _crystal_system(structure: Any) -> str:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # spglib's error-handling notice
            return str(SpacegroupAnalyzer(structure, symprec=SYMPREC).get_crystal_system()).lower()
    except Exception:  # spglib can fail on pathological cells
        return "unknown"


def structure_meta(structure: Any) -> dict[str, Any]:
    """``formula`` (reduced), ``n_species``, ``n_atoms`` and ``crystal_system``.

    ``crystal_system`` is lowercase, from ``SpacegroupAnalyzer(structure, symprec=0.1)
    .get_crystal_system()`` (0.1 Å, the tolerance used for all sources; DOSTransformer Table 3
    and its OOD split, facts.md §2.3); ``unknown`` if spglib fails.
    """
    comp = structure.composition
    return {
        "formula": comp.reduced_formula,
        "n_species": len(comp.elements),
        "n_atoms": len(structure),
        "crystal_system": _crystal_system(structure),
    }


def _period(z: int) -> int:
    for p, last in enumerate((2, 10, 18, 36, 54, 86, 118), start=1):
        if z <= last:
            return p
    return 7


@cache
def element_valence(symbol: str) -> int:
    """Valence electrons of one element from pymatgen's ``full_electronic_structure``.

    With ``n`` the element's period: s/p block = electrons in the ``n`` s and ``n`` p shells;
    d block = ``n`` s + ``(n−1)`` d; f block = ``n`` s + ``(n−1)`` d + ``(n−2)`` f (Fe 8, Zn 12,
    Ga 3, Pd 10, Ce 4, Pb 4, O 6). This is the chemist's count, an approximation of the VASP
    ``ZVAL`` that JARVIS used (PAW potentials with semicore states count more electrons).
    Elements without tabulated configuration fall back to the group number rule.
    """
    from pymatgen.core import Element

    el = Element(symbol)
    n = _period(el.Z)
    try:
        shells = el.full_electronic_structure
    except Exception:
        g = int(el.group)
        return g - 10 if g > 12 else g
    block = el.block
    total = 0
    for shell_n, orb, count in shells:
        if shell_n == n and orb in ("s", "p"):
            total += count
        elif block in ("d", "f") and shell_n == n - 1 and orb == "d":
            total += count
        elif block == "f" and shell_n == n - 2 and orb == "f":
            total += count
    return total


def valence_electrons(structure: Any) -> int:
    """Total valence electrons of the cell (sum of :func:`element_valence` over sites)."""
    return int(
        sum(
            element_valence(sp.symbol) * amt
            for sp, amt in structure.composition.element_composition.items()
        )
    )


def build_recordset(records: list[DOSRecord], attrs: dict[str, Any], where: str) -> RecordSet:
    """Stack records, filling metadata missing in some records with NaN (numeric) or ''."""
    if not records:
        raise DataError(f"{where}: no records")
    keys = sorted({k for r in records for k in r.meta})
    for k in keys:
        present = [r.meta[k] for r in records if k in r.meta]
        fill: Any = "" if any(isinstance(v, str) for v in present) else float("nan")
        for r in records:
            if k not in r.meta or r.meta[k] is None:
                r.meta[k] = fill
    return RecordSet.from_records(records, attrs)


# ====================================================================================== literals
_DTYPE_NAMES = {
    "bool",
    "bool_",
    "int",
    "float",
    "complex",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
}
_NAME_CONSTANTS = {
    "nan": float("nan"),
    "inf": float("inf"),
    "NaN": float("nan"),
    "Inf": float("inf"),
}
_MAX_DEPTH = 64


class _LiteralWalker:
    """Evaluates an AST that may only contain literals and ``array(literal, dtype=...)``."""

    def __init__(self, where: str, source: str) -> None:
        self.where, self.source = where, source

    def refuse(self, node: ast.AST, why: str) -> DataError:
        try:
            snippet = ast.get_source_segment(self.source, node) or type(node).__name__
        except Exception:
            snippet = type(node).__name__
        if len(snippet) > 60:
            snippet = snippet[:57] + "..."
        return DataError(
            f"{self.where}: refused to evaluate {snippet!r}: {why}; only literals, lists, "
            "tuples, dicts, unary minus and array([...]) are allowed (nothing is executed)"
        )

    def visit(self, node: ast.AST, depth: int = 0) -> Any:
        if depth > _MAX_DEPTH:
            raise self.refuse(node, "nested too deeply")
        d = depth + 1
        if isinstance(node, ast.Constant):
            v = node.value
            if v is Ellipsis:
                raise self.refuse(node, "numpy summarised an array with '...'")
            if isinstance(v, (bool, int, float, complex, str)) or v is None:
                return v
            raise self.refuse(node, f"constant of type {type(v).__name__}")
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = []
            for e in node.elts:
                if isinstance(e, ast.Starred):
                    raise self.refuse(e, "starred expression")
                items.append(self.visit(e, d))
            if isinstance(node, ast.Tuple):
                return tuple(items)
            if isinstance(node, ast.Set):
                try:
                    return set(items)
                except TypeError:
                    raise self.refuse(node, "unhashable set element") from None
            return items
        if isinstance(node, ast.Dict):
            out = {}
            for k, v in zip(node.keys, node.values, strict=False):
                if k is None:
                    raise self.refuse(v, "dict unpacking (**)")
                key = self.visit(k, d)
                try:
                    out[key] = self.visit(v, d)
                except TypeError:
                    raise self.refuse(k, "unhashable dict key") from None
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.visit(node.operand, d)
            if isinstance(v, bool) or not isinstance(v, (int, float, complex)):
                raise self.refuse(node, "unary sign on a non-number")
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Name):
            if node.id in _NAME_CONSTANTS:
                return _NAME_CONSTANTS[node.id]
            raise self.refuse(node, f"name {node.id!r} is not allowed")
        if isinstance(node, ast.Call):
            return self.visit_array(node, d)
        raise self.refuse(node, f"{type(node).__name__} expressions are not allowed")

    def visit_array(self, node: ast.Call, depth: int) -> np.ndarray:
        if not (isinstance(node.func, ast.Name) and node.func.id == "array"):
            raise self.refuse(node, "the only call allowed is the bare name array(...)")
        if len(node.args) != 1 or isinstance(node.args[0], ast.Starred):
            raise self.refuse(node, "array(...) takes exactly one literal argument")
        dtype = None
        for kw in node.keywords:
            if kw.arg != "dtype":
                raise self.refuse(node, f"array(...) keyword {kw.arg or '**'!r} is not allowed")
            v = kw.value
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                name = v.value
            elif isinstance(v, ast.Name):
                name = v.id
            else:
                raise self.refuse(v, "dtype must be a plain name or string")
            if name not in _DTYPE_NAMES:
                raise self.refuse(v, f"dtype {name!r} is not allowed")
            dtype = np.dtype(name)
        value = self.visit(node.args[0], depth)
        try:
            return np.asarray(value, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise self.refuse(node, f"not a rectangular numeric array ({exc})") from None


def parse_literal(text: str, where: str) -> Any:
    """Parse a Python-literal string (as written by ``repr`` of dicts holding numpy arrays).

    Accepted: numbers, strings, ``True/False/None``, ``nan``/``inf``, lists, tuples, sets,
    dicts, unary ``-``/``+`` and calls to the bare name ``array`` with one literal argument and
    an optional ``dtype=`` keyword (a whitelisted dtype name or string). The text is parsed with
    :func:`ast.parse` and walked; **nothing is evaluated or executed**. Anything else (attribute
    access, other calls, names, operators, comprehensions, lambdas, ``...``) raises
    :class:`DataError` naming ``where``.
    """
    if not isinstance(text, str):
        raise DataError(f"{where}: expected text, got {type(text).__name__}")
    src = text.strip()
    if not src:
        raise DataError(f"{where}: empty cell")
    try:
        tree = ast.parse(src, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise DataError(f"{where}: not a Python literal ({type(exc).__name__}: {exc})") from None
    return _LiteralWalker(where, src).visit(tree.body)


# ====================================================================================== pickles
def _np_global(module: str, name: str) -> Any:
    """``numpy.core.X.name`` or ``numpy._core.X.name`` from whichever numpy is installed."""
    import importlib

    sub = module.split(".")[-1]
    try:
        mod = importlib.import_module(f"numpy._core.{sub}")
    except ImportError:  # numpy < 2
        mod = importlib.import_module(f"numpy.core.{sub}")
    return getattr(mod, name)


class _Placeholder:
    """Inert stand-in for a whitelisted pymatgen class.

    It records constructor arguments and the pickled state and does nothing else; structures
    are rebuilt from these records with pymatgen's public constructors
    (:func:`_placeholder_to_structure`), so no pymatgen (or any other) code runs while
    unpickling, and pickles written by old pymatgen versions still load.
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Placeholder:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname} placeholder>"

    def get(self, *keys: str) -> Any:
        st = self.state
        if isinstance(st, tuple) and len(st) == 2 and isinstance(st[1], dict):
            st = {**(st[0] or {}), **st[1]}  # (dict, slots) form
        if isinstance(st, dict):
            for k in keys:
                if k in st:
                    return st[k]
        return None


@cache
def _placeholder_class(module: str, name: str) -> type:
    return type(name, (_Placeholder,), {"qualname": f"{module}.{name}"})


def _safe_codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as used by protocol-2 pickles of bytes (latin-1 text → bytes) only."""
    if not isinstance(obj, str) or encoding.lower().replace("-", "") not in ("latin1", "utf8"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin-1 text")
    return obj.encode(encoding, errors)


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 pickles) restricted to placeholders."""
    if not (isinstance(cls, type) and issubclass(cls, _Placeholder)) or base is not object:
        raise pickle.UnpicklingError("copyreg._reconstructor used with a non-whitelisted class")
    return cls.__new__(cls)


_PYMATGEN_CLASSES = {
    "pymatgen.core.structure": {"Structure", "IStructure"},
    "pymatgen.core.sites": {"PeriodicSite", "Site"},
    "pymatgen.core.lattice": {"Lattice"},
    "pymatgen.core.composition": {"Composition"},
    "pymatgen.core.periodic_table": {"Element", "Species", "Specie", "DummySpecies", "DummySpecie"},
    "pymatgen.electronic_structure.core": {"Magmom", "Spin", "Orbital"},
}
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_BUILTIN_GLOBALS = {
    "set",
    "frozenset",
    "list",
    "dict",
    "tuple",
    "complex",
    "float",
    "int",
    "bool",
    "str",
    "bytes",
    "bytearray",
    "slice",
    "range",
    "object",
}

#: every global a restricted pickle may name (anything else is refused)
PICKLE_WHITELIST: dict[str, list[str]] = {
    "builtins": sorted(_BUILTIN_GLOBALS),
    "collections": ["OrderedDict", "defaultdict"],
    "copyreg": ["_reconstructor"],
    "_codecs": ["encode"],
    **{
        m: sorted(n for mm, n in _NUMPY_GLOBALS if mm == m)
        for m in sorted({m for m, _ in _NUMPY_GLOBALS})
    },
    **{m: sorted(v) for m, v in _PYMATGEN_CLASSES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`PICKLE_WHITELIST` globals.

    numpy arrays and dtypes, builtin containers and scalars are real objects; the pymatgen
    classes (only when ``allow_pymatgen``) become inert placeholders. Every other global —
    ``os.system``, ``subprocess.Popen``, ``builtins.eval``, any class — raises
    ``UnpicklingError`` before anything is called.
    """

    def __init__(self, fh: io.BufferedIOBase, allow_pymatgen: bool = False) -> None:
        super().__init__(fh)
        self.allow_pymatgen = allow_pymatgen

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _BUILTIN_GLOBALS:
            import builtins

            return getattr(builtins, name)
        if module == "collections" and name in ("OrderedDict", "defaultdict"):
            import collections

            return getattr(collections, name)
        if module == "copyreg" and name == "_reconstructor":
            return _safe_reconstructor
        if module == "_codecs" and name == "encode":
            return _safe_codecs_encode
        if (module, name) in _NUMPY_GLOBALS:
            if module == "numpy":
                return getattr(np, name)
            return _np_global(module, name)
        if self.allow_pymatgen and name in _PYMATGEN_CLASSES.get(module, ()):
            return _placeholder_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not in the allowed list")


def restricted_pickle_load(path: str | Path, allow_pymatgen: bool = False) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; refusals raise :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pickle file not found")
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh, allow_pymatgen=allow_pymatgen).load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: refused or unreadable pickle ({exc})") from None
    except Exception as exc:  # EOFError on truncation, TypeError/ValueError on bad opcodes
        raise DataError(
            f"{path}: cannot unpickle ({type(exc).__name__}: {exc}); damaged or not a pickle"
        ) from None


def load_index_pickle(path: str | Path) -> list[np.ndarray]:
    """A pickled list/tuple of integer index arrays, e.g. E3NN's ``200801_trteva_indices.pkl``
    (three int64 arrays in the order train, valid, test; facts.md §4.2, §5.1).

    Only numpy and builtin globals are allowed. Returns int64 1-D arrays.
    """
    path = Path(path)
    obj = restricted_pickle_load(path, allow_pymatgen=False)
    if isinstance(obj, dict):
        obj = list(obj.values())
    if not isinstance(obj, (list, tuple)) or not obj:
        raise DataError(f"{path}: expected a list of index arrays, got {type(obj).__name__}")
    out = []
    for i, a in enumerate(obj):
        arr = np.asarray(a)
        integral = arr.dtype.kind in "iu" or (
            arr.dtype.kind == "f" and bool(np.all(arr == np.round(arr)))
        )
        if arr.ndim != 1 or not integral:
            raise DataError(
                f"{path}: entry {i} is not a 1-D integer array (dtype {arr.dtype}, "
                f"shape {arr.shape})"
            )
        arr = arr.astype(np.int64)
        if (arr < 0).any():
            raise DataError(f"{path}: entry {i} has negative indices")
        out.append(arr)
    return out


def _symbol_of(sp: Any, where: str) -> str:
    if isinstance(sp, str):
        return re.sub(r"[^A-Za-z]", "", sp)
    if isinstance(sp, _Placeholder):
        name = type(sp).__name__
        if name == "Element":
            if sp.args and isinstance(sp.args[0], str):
                return sp.args[0]
            sym = sp.get("_symbol", "symbol", "_value_")
            if isinstance(sym, str):
                return sym
        if name in ("Species", "Specie"):
            el = sp.get("_el", "el")
            if el is not None:
                return _symbol_of(el, where)
            if sp.args:
                return _symbol_of(sp.args[0], where)
        if name in ("DummySpecies", "DummySpecie"):
            raise DataError(f"{where}: structure contains a dummy species")
    raise DataError(f"{where}: cannot read a species from {sp!r}")


def _placeholder_to_structure(obj: Any, where: str, checks: StructureChecks | None = None) -> Any:
    """Rebuild a pymatgen Structure from the placeholders of a pickled Structure, checked
    (:func:`check_structure`; a partially occupied site is rebuilt with its occupancies so that
    ``structure_checks.disordered`` decides)."""
    from pymatgen.core import Lattice, Structure

    if not (isinstance(obj, _Placeholder) and type(obj).__name__ in ("Structure", "IStructure")):
        raise DataError(f"{where}: expected a pymatgen Structure, got {obj!r}")
    try:
        lat = obj.get("_lattice", "lattice")
        matrix = lat.get("_matrix", "matrix") if isinstance(lat, _Placeholder) else None
        if matrix is None:
            raise ValueError("no lattice matrix")
        matrix = np.asarray(matrix, dtype=np.float64).reshape(3, 3)
        sites = obj.get("_sites", "sites")
        if sites is None:
            raise ValueError("no sites")
        species, fracs = [], []
        inv = np.linalg.inv(matrix)
        for k, site in enumerate(sites):
            if not isinstance(site, _Placeholder):
                raise ValueError(f"site {k} is {site!r}")
            comp = site.get("_species", "species")
            data = comp.get("_data", "_elmap") if isinstance(comp, _Placeholder) else comp
            if not isinstance(data, dict) or not data:
                raise ValueError(f"site {k} has no species")
            occ = {_symbol_of(sp, where): float(v) for sp, v in data.items()}
            check_symbols(list(occ), f"{where} site {k}")
            if len(occ) == 1 and abs(next(iter(occ.values())) - 1.0) <= 1e-6:
                species.append(next(iter(occ)))
            else:  # disordered: check_structure refuses or orders it
                species.append(occ)
            frac = site.get("_frac_coords", "_fcoords", "frac_coords")
            if frac is None:
                cart = site.get("_coords", "coords")
                if cart is None:
                    raise ValueError(f"site {k} has no coordinates")
                frac = np.asarray(cart, dtype=np.float64) @ inv
            fracs.append(np.asarray(frac, dtype=np.float64).reshape(3))
        s = Structure(Lattice(matrix), species, np.asarray(fracs))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{where}: pymatgen cannot rebuild the pickled structure ({type(exc).__name__}: {exc})"
        ) from None
    return check_structure(s, where, checks)


def load_structure_pickle(
    path: str | Path,
    ids: list[str] | None = None,
    checks: StructureChecks | None = None,
    collect_errors: bool = False,
) -> list[Any]:
    """A pickled list of pymatgen Structures (Mat2Spec ``phdos/ph_structures.pkl``, facts.md
    §4.1), read with :class:`RestrictedUnpickler` (pymatgen classes as placeholders) and rebuilt
    as real, checked Structures. Errors name the file and the record (``ids[i]`` when given).

    With ``collect_errors`` a bad entry does not raise: its place in the list holds the
    :class:`DataError`, for the caller to raise inside its per-record ``strict`` guard (a broken
    or refused file as a whole still raises)."""
    path = Path(path)
    obj = restricted_pickle_load(path, allow_pymatgen=True)
    if isinstance(obj, dict):
        obj = list(obj.values())
    if not isinstance(obj, (list, tuple)):
        raise DataError(f"{path}: expected a list of pymatgen Structures, got {type(obj).__name__}")
    out = []
    for i, item in enumerate(obj):
        rec = ids[i] if ids is not None and i < len(ids) else f"#{i}"
        try:
            out.append(_placeholder_to_structure(item, f"{path}: record {rec} (entry {i})", checks))
        except DataError as exc:
            if not collect_errors:
                raise
            out.append(exc)
    return out


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
