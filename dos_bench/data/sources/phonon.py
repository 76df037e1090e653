"""Phonon DOS tables of the E3NN line of work (Petretto et al. DFPT, 51 points 0 … 1000 cm⁻¹).

Two published layouts of (almost) the same 1.5k crystals (docs/papers/dostransformer.md §2.2,
docs/papers/mat2spec.md §4.1, docs/data/phonon_sources.md §5):

:class:`PhononE3NN` (``phonon_e3nn``; Mat2Spec Table 1, Xtal2DoS Tables 1 and 3) — the Mat2Spec
data folder (data.caltech.edu record 8975; same content as E3NNorig's zip)::

    <root>/phdos/mpids.csv          one material id per row (``pandas.read_csv`` header line)
    <root>/phdos/ph_dos.npy         1524 × 51, max-normalised (row max = 1), 0 … 1000 cm⁻¹
    <root>/phdos/ph_structures.pkl  pickled list of 1524 pymatgen Structures, same order

  The pickle is read only from the configured path, through the restricted unpickler of
  :mod:`~dos_bench.data.sources.pickles` (pymatgen classes become inert placeholders from which
  the structures are rebuilt; numpy and builtin containers only; anything else is refused with a
  message naming the file). Each row's max is checked (≈ 1, docs/README.md §0 /
  docs/papers/mat2spec.md §4.5); rows that are
  not max-normalised are counted and logged as a warning. The split pickle
  ``phdos/200801_trteva_indices.pkl`` (train, valid, test = 1220/152/152) is read by the split
  module with :func:`~dos_bench.data.sources.pickles.load_index_pickle`.

:class:`PhononTUT` (``phonon_tut``; DOSTransformer Table 1 phonon columns) — the phonon tutorial's
``data.csv`` (1,522 rows), columns ``mp_id, structure, phfreq, phdos, pdos, formula, species``:
``structure`` is the Python ``repr`` of an ASE ``Atoms.todict()`` dict (``numbers``,
``positions``, ``cell``, ``pbc``) in which numpy arrays appear as ``array([...])``; ``phfreq``
and ``phdos`` are 51-value lists (``phdos`` max-normalised); ``pdos`` (partial DOS per element),
``formula`` and ``species`` are not used (formula and species are recomputed from the structure).
The authors ``eval`` these cells; here they are parsed by
:func:`~dos_bench.data.sources.literals.parse_literal`, which accepts literals and
``array(...)`` only and **never executes anything**. A refused or broken cell rejects that row
with a message naming the row (0-based data row = the index used by ``idx_*.txt``, the CSV line
and the mp_id); the other rows still load, a summary is logged, and the source raises only if no
row loaded or ``strict: true``. Every record carries ``source_row`` (its row in the published
table), so index-file splits stay correct when a row is rejected.

Grid: 51 points, 0 … 1000 cm⁻¹ in 20 cm⁻¹ steps (docs/README.md §0; ``NativeRecipe(spacing=20)``).
Metadata: ``formula``, ``n_species``, ``n_atoms``, ``crystal_system`` (lowercase,
``SpacegroupAnalyzer(symprec=0.1)``; DOSTransformer's code wants it capitalised), ``source_row``.
"""

from __future__ import annotations

import csv
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.data.sources.base import CachedSource, FailureLog, IdArrayFolder, progress_iter
from dos_bench.data.sources.literals import parse_literal
from dos_bench.data.sources.pickles import load_structure_pickle
from dos_bench.data.sources.readers import build_recordset, clean_spectrum
from dos_bench.data.sources.structures import ase_dict_to_structure, structure_meta
from dos_bench.io import DataError

log = logging.getLogger(__name__)

__all__ = ["PhononE3NN", "PhononTUT", "phonon_grid"]

_MAX_TOL = 1e-3


def phonon_grid(n_points: int = 51, step: float = 20.0) -> np.ndarray:
    """0 … (n−1)·step cm⁻¹ (51 points, 20 cm⁻¹: docs/README.md §0)."""
    return step * np.arange(n_points)


def _check_max_norm(spectra: np.ndarray, ids: list[str], dataset: str, where: str) -> bool:
    mx = spectra.max(axis=1)
    bad = np.abs(mx - 1.0) > _MAX_TOL
    if bad.any():
        i = int(np.argmax(bad))
        log.warning(
            "%s: %d of %d spectra in %s are not max-normalised (row max != 1 +- %g; e.g. %s "
            "max %.4g); they are kept as published",
            dataset,
            int(bad.sum()),
            len(mx),
            where,
            _MAX_TOL,
            ids[i],
            mx[i],
        )
    return not bool(bad.any())


class PhononE3NN(IdArrayFolder):
    """E3NN/Mat2Spec phonon DOS folder (``phonon_e3nn``, 1,524 materials).

    Args:
        root: the unpacked data folder, relative to the data directory.
        ids, spectra, structures: paths inside ``root`` (defaults = the published names); the
            structure pickle is loaded only from this configured path.
        n_points, step: the grid (51, 20 cm⁻¹).
        negative_tol: negative values down to ``-negative_tol * max`` are set to 0.
        dataset, processed_dir, progress, strict, structure_checks: see :class:`CachedSource`.
    """

    name = "phonon_e3nn"
    kind = "phdos"
    parser_version = 1
    option_names = (*IdArrayFolder.option_names, "n_points", "step")

    def __init__(
        self,
        root: str = "Mat2Spec_DATA",
        ids: str = "phdos/mpids.csv",
        spectra: str = "phdos/ph_dos.npy",
        structures: str = "phdos/ph_structures.pkl",
        n_points: int = 51,
        step: float = 20.0,
        negative_tol: float = 1e-6,
        dataset: str | None = None,
        processed_dir: str = "processed",
        progress: bool = False,
        strict: bool = True,
        structure_checks: Any = None,
    ) -> None:
        super().__init__(
            root, ids, spectra, structures, n_points, negative_tol,
            dataset, processed_dir, progress, strict, structure_checks,
        )  # fmt: skip
        self.n_points, self.step = int(n_points), float(step)

    def build(self, raw: dict[str, Path]) -> RecordSet:
        ids, y = self.ids_and_spectra(raw, f"{self.n_points}-point phonon DOS")
        # a bad structure comes back as its DataError, raised below inside the strict guard
        structures = load_structure_pickle(
            raw["structures"], ids, self.structure_checks, collect_errors=True
        )
        if len(structures) != len(ids):
            raise DataError(
                f"{raw['structures']} holds {len(structures)} structures but {raw['ids']} lists "
                f"{len(ids)} materials"
            )
        grid = phonon_grid(self.n_points, self.step)
        fails = FailureLog(self.strict, self.dataset)
        records = []
        for i, mid in enumerate(progress_iter(ids, self.progress, "phonon_e3nn", len(ids))):
            with fails.guard():
                where = f"{raw['spectra']}: record {mid} (row {i})"
                dos, _ = clean_spectrum(y[i], self.n_points, where, self.negative_tol)
                s = structures[i]
                if isinstance(s, DataError):
                    raise s
                meta = structure_meta(s)
                meta["source_row"] = i
                records.append(DOSRecord(mid, s, grid, dos, meta))
        fails.finish(len(records))
        kept = np.stack([r.dos for r in records])
        maxnorm = _check_max_norm(kept, [r.id for r in records], self.dataset, str(raw["spectra"]))
        attrs = {
            "name": self.name,
            "kind": self.kind,
            "energy_unit": "cm^-1",
            "dos_unit": "max-normalised",
            "max_normalised": maxnorm,
            "n_rows": int(y.shape[0]),
            "n_failed": len(fails.messages),
        }
        return build_recordset(records, attrs, str(raw["spectra"]))


class PhononTUT(CachedSource):
    """Phonon tutorial ``data.csv`` (``phonon_tut``, 1,522 rows; DOSTransformer phonon data).

    Args:
        path: the CSV, relative to the data directory.
        n_points, step: the expected grid (51, 20 cm⁻¹); each row's ``phfreq`` must match it.
        negative_tol: negative values down to ``-negative_tol * max`` are set to 0.
        strict: raise on the first bad row (default ``false``: skip bad rows, log a summary,
            raise only if none loaded).
        dataset, processed_dir, progress, structure_checks: see :class:`CachedSource`.
    """

    name = "phonon_tut"
    kind = "phdos"
    parser_version = 1
    option_names = ("path", "n_points", "step", "negative_tol")
    REQUIRED = ("mp_id", "structure", "phfreq", "phdos")

    def __init__(
        self,
        path: str = "phonon_tut/data.csv",
        n_points: int = 51,
        step: float = 20.0,
        negative_tol: float = 1e-6,
        dataset: str | None = None,
        processed_dir: str = "processed",
        progress: bool = False,
        strict: bool = False,
        structure_checks: Any = None,
    ) -> None:
        super().__init__(
            dataset, processed_dir, progress, strict, structure_checks, negative_tol=negative_tol
        )
        self.path = str(path)
        self.n_points, self.step = int(n_points), float(step)

    def raw_paths(self) -> dict[str, str]:
        return {"csv": self.path}

    def _rows(self, path: Path):
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        try:
            fh = open(path, newline="", encoding="utf-8")
        except OSError as exc:
            raise DataError(f"{path}: cannot open ({exc})") from None
        with fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise DataError(f"{path}: empty file") from None
            except (csv.Error, UnicodeDecodeError) as exc:
                raise DataError(f"{path}: not a CSV file ({exc})") from None
            header = [h.strip() for h in header]
            missing = [c for c in self.REQUIRED if c not in header]
            if missing:
                raise DataError(
                    f"{path}: not the phonon-tutorial data.csv layout: missing columns {missing} "
                    f"(header: {header[:8]}; expected mp_id, structure, phfreq, phdos, pdos, "
                    "formula, species)"
                )
            col = {c: header.index(c) for c in self.REQUIRED}
            i = 0
            start = reader.line_num + 1
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except (csv.Error, UnicodeDecodeError) as exc:
                    raise DataError(
                        f"{path}: CSV error near line {reader.line_num} ({exc})"
                    ) from None
                first, start = start, reader.line_num + 1
                if not any(c.strip() for c in row):
                    continue
                yield i, first, row, col, len(header)
                i += 1

    def build(self, raw: dict[str, Path]) -> RecordSet:
        path = raw["csv"]
        grid = phonon_grid(self.n_points, self.step)
        fails = FailureLog(self.strict, self.dataset)
        records: list[DOSRecord] = []
        seen: dict[str, int] = {}
        n_rows = 0
        for i, line, row, col, width in progress_iter(
            self._rows(path), self.progress, "phonon_tut"
        ):
            n_rows += 1
            with fails.guard():
                mp_id = row[col["mp_id"]].strip() if len(row) > col["mp_id"] else ""
                where = f"{path}: row {i} (mp_id {mp_id or '?'}, line {line})"
                if len(row) != width:
                    raise DataError(f"{where}: has {len(row)} fields, the header has {width}")
                rid = mp_id or f"row-{i}"
                if rid in seen:
                    raise DataError(f"{where}: mp_id {rid} already on row {seen[rid]}")
                d = parse_literal(row[col["structure"]], f"{where} column structure")
                s = ase_dict_to_structure(d, f"{where} column structure", self.structure_checks)
                freq = np.asarray(
                    parse_literal(row[col["phfreq"]], f"{where} column phfreq"), dtype=object
                )
                try:
                    freq = freq.astype(np.float64)
                except (TypeError, ValueError):
                    raise DataError(f"{where}: phfreq is not a list of numbers") from None
                if freq.shape != grid.shape or not np.allclose(freq, grid, atol=1e-6):
                    raise DataError(
                        f"{where}: phfreq has {freq.size} values "
                        f"({freq.min() if freq.size else '-'} ... "
                        f"{freq.max() if freq.size else '-'}), expected the {self.n_points}-point "
                        f"grid 0 ... {grid[-1]:g} cm^-1"
                    )
                dos_v = parse_literal(row[col["phdos"]], f"{where} column phdos")
                dos, _ = clean_spectrum(
                    dos_v, self.n_points, f"{where} column phdos", self.negative_tol
                )
                meta = structure_meta(s)
                meta["source_row"] = i
                records.append(DOSRecord(rid, s, grid, dos, meta))
                seen[rid] = i
        fails.finish(len(records))
        if not records:
            raise DataError(f"{path}: no data rows")
        maxnorm = _check_max_norm(
            np.stack([r.dos for r in records]), [r.id for r in records], self.dataset, str(path)
        )
        log.info("%s: %d of %d rows loaded from %s", self.dataset, len(records), n_rows, path)
        attrs = {
            "name": self.name,
            "kind": self.kind,
            "energy_unit": "cm^-1",
            "dos_unit": "max-normalised",
            "max_normalised": maxnorm,
            "n_rows": n_rows,
            "n_failed": len(fails.messages),
            "failed": fails.messages[:50],
        }
        return build_recordset(records, attrs, str(path))
