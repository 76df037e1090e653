"""Materials Project electronic DOS: the Mat2Spec/Xtal2DoS data folder and pymatgen DOS documents.

:class:`Mat2SpecEDOS` (``mp_edos_128``) — the eDOS folder published with Mat2Spec on
data.caltech.edu record 8975 and used unchanged by Xtal2DoS (docs/papers/xtal2dos.md §3.1,
docs/papers/mat2spec.md §4.1)::

    <root>/label_edos/mpids.csv           one material id per row (first column)
    <root>/label_edos/total_dos_128.npy   N × 128 float, states/eV
    <root>/materials_with_edos/dos_<mpid>.json   key "structure" = pymatgen Structure dict

The 128 values are bin averages over 4 eV below the VBM and 4 eV above the CBM with the gap
removed (Mat2Spec Methods; docs/papers/mat2spec.md §4.1), so the grid is the bin centres
``−4 + 0.0625·(k + ½)`` eV relative to the band edges (docs/papers/mat2spec.md §4.5). ``mpids.csv``
is read by
the authors with ``pandas.read_csv`` (default ``header=0``), i.e. with a header line; files with
and without a header are accepted (:func:`~dos_bench.data.sources.readers.read_id_list`). The
row count of ``mpids.csv`` must equal that of the ``.npy``. Use ``NativeRecipe(spacing=0.0625)``.
Metadata: ``formula``, ``n_species``, ``n_atoms``, ``crystal_system``; ``band_gap`` when the
structure JSON carries a numeric ``band_gap`` key (NaN otherwise). ``e_fermi``/``vbm``/``cbm``
are not derivable (the grid is already aligned to the band edges).

:class:`MPDosDocuments` (the raw source of ``mp_edos_201`` and ``mp_edos_128_from_dos``) —
pymatgen ``Dos``/``CompleteDos`` documents as returned by mp-api
(``MPRester.get_dos_by_material_id`` → ``CompleteDos``; ``.as_dict()``). Accepted layouts under
``path`` (relative to the data directory):

* a folder of ``<material_id>.json`` (or ``.json.gz``) files, each either a ``CompleteDos``/``Dos``
  dict (``@class``, ``efermi``, ``energies``, ``densities``; the structure inside a
  ``CompleteDos``, or a top-level ``structure`` key) or a wrapper
  ``{"material_id": ..., "dos": <Dos or CompleteDos dict>, "structure": <Structure dict>, ...}``;
* one JSON-lines file (``.jsonl``/``.jsonl.gz``, one wrapper per line) or one JSON file holding a
  list of wrappers — what a downloader writes: ``{material_id, dos, structure}`` plus optional
  MP summary fields ``is_magnetic``, ``ordering``, ``band_gap``, ``vbm``, ``cbm``, ``efermi``.

Processing of each document: ``Dos.from_dict`` (the total DOS of a ``CompleteDos`` document;
projected DOS are not needed and not parsed), spins summed, energies shifted by the document's
Fermi level and linearly interpolated onto one common grid relative to E_F (default −12 … +14 eV
in 0.02 eV steps — finer than the 0.05/0.0625 eV of the paper grids and wide enough for
CBM + 4 eV of gaps up to ~10 eV; zero outside the calculated range). Stored metadata:
``e_fermi = 0`` (grid relative to E_F), ``e_fermi_abs`` (the document's E_F, eV; the target of
DOSTransformer's Fermi-energy probe, docs/papers/dostransformer.md §2.6), ``vbm``/``cbm`` relative
to E_F and
``band_gap``, ``is_magnetic``, ``spin_polarised``, ``spin_imbalance``.

* Band edges (``band_edges: dos``, default) come from ``Dos.get_cbm_vbm(tol=gap_tol,
  abs_tol=False)``: the DOS threshold is ``gap_tol`` × the mean DOS (pymatgen's relative
  tolerance; default 1e-3). Metals (gap 0) get ``vbm = cbm = 0``. With ``band_edges: document``
  the wrapper's ``vbm``/``cbm`` (absolute, eV) minus the DOS's Fermi level are used instead
  (they come from MP's band-structure calculation, so they may differ slightly).
* ``is_magnetic``: the wrapper's ``is_magnetic`` (bool) if present, else its ``ordering``
  (``NM`` → False, ``FM``/``AFM``/``FiM`` → True), else from the DOS: spin-polarised and
  ∫_{E ≤ E_F} |DOS↑ − DOS↓| dE > ``magnetic_tol`` states per cell (default 0.05). An
  antiferromagnet has equal total spin channels, so only the ``ordering`` key detects it.
* ``non_magnetic_only: true`` drops magnetic materials (DOSTransformer A.1.2 and Mat2Spec used
  non-magnetic materials only; docs/papers/dostransformer.md §2.1, docs/papers/mat2spec.md §4.1)
  and logs how many.

``mp_edos_201.yaml`` applies ``GridRecipe(start=-5, step=0.05, n_points=201, reference=e_fermi,
savgol_window=17, savgol_order=1)`` (DOSTransformer A.1.2; docs/papers/dostransformer.md §2.1) and
``mp_edos_128_from_dos.yaml`` ``BandEdgeRecipe(window=4, n_bins=128)`` (Mat2Spec Methods) to the
same processed records.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.data.sources.base import (
    CachedSource,
    FailureLog,
    IdArrayFolder,
    missing_file_error,
    progress_iter,
)
from dos_bench.data.sources.readers import build_recordset, clean_spectrum, read_json
from dos_bench.data.sources.structures import structure_from_dict, structure_meta
from dos_bench.io import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["Mat2SpecEDOS", "MPDosDocuments", "mat2spec_edos_grid"]

_DOS_CLASSES = ("Dos", "CompleteDos", "LobsterCompleteDos")


def mat2spec_edos_grid(n_bins: int = 128, window: float = 4.0) -> np.ndarray:
    """Bin centres of the Mat2Spec grid: ``−w + (k + ½)·2w/n`` (docs/papers/mat2spec.md §4.5)."""
    spacing = 2 * window / n_bins
    return -window + (np.arange(n_bins) + 0.5) * spacing


# ====================================================================================== Mat2Spec
class Mat2SpecEDOS(IdArrayFolder):
    """The Mat2Spec/Xtal2DoS 128-bin eDOS folder (``mp_edos_128``).

    Args:
        root: the unpacked data folder, relative to the data directory.
        ids, spectra, structures: paths inside ``root`` (defaults = the published names).
        structure_pattern: file name of one structure JSON (``{id}`` is replaced).
        n_bins, window: the published grid (128 bins, ±4 eV).
        negative_tol: negative values down to ``-negative_tol * max`` are set to 0.
        dataset, processed_dir, progress, strict, structure_checks: see :class:`CachedSource`.
    """

    name = "mp_edos_128"
    kind = "edos"
    parser_version = 1
    option_names = (*IdArrayFolder.option_names, "structure_pattern", "n_bins", "window")

    def __init__(
        self,
        root: str = "Mat2Spec_DATA",
        ids: str = "label_edos/mpids.csv",
        spectra: str = "label_edos/total_dos_128.npy",
        structures: str = "materials_with_edos",
        structure_pattern: str = "dos_{id}.json",
        n_bins: int = 128,
        window: float = 4.0,
        negative_tol: float = 1e-6,
        dataset: str | None = None,
        processed_dir: str = "processed",
        progress: bool = False,
        strict: bool = True,
        structure_checks: Any = None,
    ) -> None:
        super().__init__(
            root, ids, spectra, structures, n_bins, negative_tol,
            dataset, processed_dir, progress, strict, structure_checks,
        )  # fmt: skip
        if "{id}" not in structure_pattern:
            raise ConfigError(
                f"dataset.source.structure_pattern must contain '{{id}}', got {structure_pattern!r}"
            )
        self.structure_pattern = structure_pattern
        self.n_bins, self.window = int(n_bins), float(window)

    def build(self, raw: dict[str, Path]) -> RecordSet:
        ids, y = self.ids_and_spectra(raw, f"{self.n_bins}-bin spectrum")
        grid = mat2spec_edos_grid(self.n_bins, self.window)
        fails = FailureLog(self.strict, self.dataset)
        records = []
        for i, mid in enumerate(progress_iter(ids, self.progress, "mp_edos_128", len(ids))):
            with fails.guard():
                where = f"{raw['spectra']}: record {mid} (row {i})"
                dos, _ = clean_spectrum(y[i], self.n_bins, where, self.negative_tol)
                f = raw["structures"] / self.structure_pattern.format(id=mid)
                if not f.is_file():
                    raise missing_file_error(
                        self.dataset, Path(self.root) / self.structures / f.name, f, record=mid
                    )
                doc = read_json(f)
                if not isinstance(doc, dict) or "structure" not in doc:
                    raise DataError(
                        f"{f}: record {mid}: no 'structure' key (keys: "
                        f"{sorted(doc)[:8] if isinstance(doc, dict) else type(doc)})"
                    )
                s = structure_from_dict(
                    doc["structure"], f"{f}: record {mid}", self.structure_checks
                )
                meta = structure_meta(s)
                gap = doc.get("band_gap")
                meta["band_gap"] = float(gap) if isinstance(gap, (int, float)) else float("nan")
                records.append(DOSRecord(mid, s, grid, dos, meta))
        fails.finish(len(records))
        attrs = {
            "name": self.name,
            "kind": self.kind,
            "energy_unit": "eV",
            "energy_reference": "band edges (gap removed)",
            "dos_unit": "states/eV",
            "n_failed": len(fails.messages),
        }
        return build_recordset(records, attrs, str(raw["spectra"]))


# ====================================================================================== DOS docs
def _open_text(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None


def _is_doc_file(p: Path) -> bool:
    n = p.name.lower()
    return p.is_file() and (n.endswith(".json") or n.endswith(".json.gz"))


def _stem(p: Path) -> str:
    n = p.name
    for suf in (".json.gz", ".json"):
        if n.lower().endswith(suf):
            return n[: -len(suf)]
    return p.stem


class MPDosDocuments(CachedSource):
    """Materials Project eDOS from pymatgen ``Dos``/``CompleteDos`` documents (see module doc).

    Args:
        path: a folder of ``<material_id>.json[.gz]`` documents, or one ``.jsonl[.gz]`` /
            ``.json`` file of ``{material_id, dos, structure}`` wrappers.
        e_min, e_max, step: the common grid relative to E_F (eV).
        non_magnetic_only: drop magnetic materials (DOSTransformer, Mat2Spec).
        magnetic_tol: ∫_{E≤E_F} |up − down| dE above which a spin-polarised DOS is magnetic
            (states per cell).
        gap_tol: relative DOS threshold of ``Dos.get_cbm_vbm`` (× mean DOS).
        band_edges: ``dos`` (from the DOS) or ``document`` (the wrapper's ``vbm``/``cbm``).
        negative_tol: negative densities down to ``-negative_tol * max`` are set to 0
            (tetrahedron-method noise); larger ones raise.
        dataset, processed_dir, progress, strict, structure_checks: see :class:`CachedSource`.
    """

    name = "mp_dos"
    kind = "edos"
    parser_version = 1
    option_names = (
        "path", "non_magnetic_only", "magnetic_tol", "gap_tol", "band_edges", "negative_tol",
    )  # fmt: skip

    def __init__(
        self,
        path: str = "mp_dos",
        e_min: float = -12.0,
        e_max: float = 14.0,
        step: float = 0.02,
        non_magnetic_only: bool = True,
        magnetic_tol: float = 0.05,
        gap_tol: float = 1e-3,
        band_edges: str = "dos",
        negative_tol: float = 0.01,
        dataset: str | None = None,
        processed_dir: str = "processed",
        progress: bool = False,
        strict: bool = True,
        structure_checks: Any = None,
    ) -> None:
        super().__init__(
            dataset, processed_dir, progress, strict, structure_checks, negative_tol=negative_tol
        )
        if not (e_max > e_min and step > 0):
            raise ConfigError(
                f"dataset.source grid needs e_max > e_min and step > 0, got "
                f"{e_min}, {e_max}, {step}"
            )
        if band_edges not in ("dos", "document"):
            raise ConfigError(
                f"dataset.source.band_edges must be 'dos' or 'document', got {band_edges!r}"
            )
        self.path = str(path)
        self.e_min, self.e_max, self.step = float(e_min), float(e_max), float(step)
        self.non_magnetic_only = bool(non_magnetic_only)
        self.magnetic_tol, self.gap_tol = float(magnetic_tol), float(gap_tol)
        self.band_edges = band_edges

    def options(self) -> dict[str, Any]:
        return {**super().options(), "grid": [self.e_min, self.e_max, self.step]}

    def raw_paths(self) -> dict[str, str]:
        return {"documents": self.path}

    @property
    def grid(self) -> np.ndarray:
        n = int(round((self.e_max - self.e_min) / self.step)) + 1
        return self.e_min + self.step * np.arange(n)

    # ---------------------------------------------------------------- reading documents
    def _documents(self, path: Path) -> Iterator[tuple[str, Any, str]]:
        """Yield ``(where, document, default_id)``."""
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if _is_doc_file(p))
            if not files:
                raise DataError(f"{path}: folder holds no .json / .json.gz DOS documents")
            for f in files:
                yield str(f), read_json(f, _open_text(f)), _stem(f)
            return
        text = _open_text(path)
        name = path.name.lower()
        if name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
            for ln, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                where = f"{path}: line {ln}"
                try:
                    doc = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise DataError(f"{where}: not valid JSON ({exc})") from None
                yield where, doc, f"line{ln}"
            return
        data = read_json(path, text)
        if isinstance(data, dict) and ("dos" in data or data.get("@class") in _DOS_CLASSES):
            data = [data]
        if not isinstance(data, list):
            raise DataError(
                f"{path}: expected a folder of DOS documents, a .jsonl file or a JSON list of "
                f"{{material_id, dos, structure}} documents; got a JSON {type(data).__name__}"
            )
        for i, doc in enumerate(data):
            yield f"{path}: entry {i}", doc, f"entry{i}"

    @staticmethod
    def _split(doc: Any, where: str, default_id: str) -> tuple[str, dict, Any, dict]:
        if not isinstance(doc, dict):
            raise DataError(f"{where}: document is a {type(doc).__name__}, expected a JSON object")
        if doc.get("@class") in _DOS_CLASSES:
            dos, extras = doc, {}
        elif isinstance(doc.get("dos"), dict):
            dos, extras = doc["dos"], doc
        else:
            raise DataError(
                f"{where}: not a pymatgen Dos/CompleteDos document nor a {{material_id, dos, "
                f"structure}} wrapper (keys: {sorted(doc)[:8]})"
            )
        mid = doc.get("material_id") or doc.get("task_id") or dos.get("material_id") or default_id
        structure = doc.get("structure") or dos.get("structure")
        return str(mid), dos, structure, extras

    # ---------------------------------------------------------------- one document
    def _parse(self, mid: str, dos_d: dict, s_d: Any, extras: dict, where: str):
        from pymatgen.electronic_structure.core import Spin
        from pymatgen.electronic_structure.dos import Dos

        where = f"{where}: record {mid}"
        if s_d is None:
            raise DataError(
                f"{where}: no structure (put it in the CompleteDos document or in a sidecar "
                "'structure' key)"
            )
        try:
            dos = Dos.from_dict(dos_d)
            energies = np.asarray(dos.energies, dtype=np.float64)
            efermi = float(dos.efermi)
            dens = {sp: np.asarray(v, dtype=np.float64) for sp, v in dos.densities.items()}
        except Exception as exc:
            raise DataError(
                f"{where}: pymatgen cannot read the DOS ({type(exc).__name__}: {exc})"
            ) from None
        if energies.ndim != 1 or energies.size < 2 or not np.isfinite(energies).all():
            raise DataError(f"{where}: DOS energies are missing or not finite")
        if np.any(np.diff(energies) <= 0):
            raise DataError(f"{where}: DOS energies are not strictly increasing")
        if not np.isfinite(efermi):
            raise DataError(f"{where}: Fermi level is not finite")
        if Spin.up not in dens:
            raise DataError(f"{where}: DOS has no spin-up densities")
        clean = {}
        for sp, v in dens.items():
            clean[sp], _ = clean_spectrum(
                v, energies.size, f"{where} densities[{int(sp)}]", self.negative_tol
            )
        total = sum(clean.values())
        structure = structure_from_dict(s_d, where, self.structure_checks)
        rel = energies - efermi
        spectrum = np.interp(self.grid, rel, total, left=0.0, right=0.0)

        # magnetism
        polarised = Spin.down in clean
        imbalance = 0.0
        if polarised:
            occ = rel <= 0
            diff = np.abs(clean[Spin.up] - clean[Spin.down])
            imbalance = float(np.trapezoid(diff[occ], rel[occ])) if occ.sum() > 1 else 0.0
        if isinstance(extras.get("is_magnetic"), bool):
            magnetic = extras["is_magnetic"]
        elif isinstance(extras.get("ordering"), str):
            magnetic = extras["ordering"].strip().upper() not in ("NM", "", "UNKNOWN")
        else:
            magnetic = polarised and imbalance > self.magnetic_tol

        # band edges relative to E_F
        if self.band_edges == "document":
            vbm_a, cbm_a = extras.get("vbm"), extras.get("cbm")
            if not all(isinstance(x, (int, float)) for x in (vbm_a, cbm_a)):
                gap = extras.get("band_gap")
                if isinstance(gap, (int, float)) and gap == 0:
                    vbm_a = cbm_a = efermi
                else:
                    raise DataError(
                        f"{where}: band_edges=document but the document has no numeric 'vbm'/'cbm'"
                    )
            vbm, cbm = float(vbm_a) - efermi, float(cbm_a) - efermi
        else:
            vbm, cbm = self._band_edges(energies, total, efermi)
        gap = max(cbm - vbm, 0.0)
        if gap <= 0.0:
            vbm = cbm = 0.0
        meta = structure_meta(structure)
        meta.update(
            e_fermi=0.0,
            e_fermi_abs=efermi,
            vbm=vbm,
            cbm=cbm,
            band_gap=gap,
            is_magnetic=bool(magnetic),
            spin_polarised=bool(polarised),
            spin_imbalance=imbalance,
        )
        covers = rel[0] <= -5.0 and rel[-1] >= 5.0
        return DOSRecord(mid, structure, self.grid, spectrum, meta), covers

    def _band_edges(self, energies: np.ndarray, total: np.ndarray, efermi: float):
        """(VBM, CBM) relative to E_F from the spin-summed DOS.

        The threshold is pymatgen's relative one, ``gap_tol × mean(DOS)``. A DOS above it at
        E_F (linear interpolation) is a metal: (0, 0). Otherwise ``Dos.get_cbm_vbm`` is used;
        where pymatgen's edge interpolation fails (it can when E_F falls exactly on a grid
        point) the edges are the threshold crossings nearest to E_F, linearly interpolated.
        """
        from pymatgen.electronic_structure.core import Spin
        from pymatgen.electronic_structure.dos import Dos

        thr = self.gap_tol * float(total.mean())
        if float(np.interp(efermi, energies, total)) > thr:
            return 0.0, 0.0
        try:
            cbm_a, vbm_a = Dos(efermi, energies, {Spin.up: total}).get_cbm_vbm(
                tol=self.gap_tol, abs_tol=False
            )
        except (ValueError, IndexError):
            occ = total > thr
            below = np.nonzero(occ & (energies < efermi))[0]
            above = np.nonzero(occ & (energies > efermi))[0]
            if not below.size or not above.size:
                return 0.0, 0.0
            i, j = below[-1], above[0]
            vbm_a = _crossing(energies[i], energies[i + 1], total[i], total[i + 1], thr)
            cbm_a = _crossing(energies[j - 1], energies[j], total[j - 1], total[j], thr)
        return float(vbm_a) - efermi, float(cbm_a) - efermi

    def build(self, raw: dict[str, Path]) -> RecordSet:
        path = raw["documents"]
        fails = FailureLog(self.strict, self.dataset)
        records: list[DOSRecord] = []
        n_magnetic = n_short = 0
        seen: dict[str, str] = {}
        for where, doc, default_id in progress_iter(self._documents(path), self.progress, "mp_dos"):
            with fails.guard():
                mid, dos_d, s_d, extras = self._split(doc, where, default_id)
                if mid in seen:
                    raise DataError(f"{where}: material {mid} appears twice (also {seen[mid]})")
                seen[mid] = where
                rec, covers = self._parse(mid, dos_d, s_d, extras, where)
                n_short += not covers
                if self.non_magnetic_only and rec.meta["is_magnetic"]:
                    n_magnetic += 1
                    continue
                records.append(rec)
        fails.finish(len(records))
        if self.non_magnetic_only:
            log.info(
                "%s: dropped %d magnetic materials (non_magnetic_only=true), kept %d",
                self.dataset,
                n_magnetic,
                len(records),
            )
        if n_short:
            log.warning(
                "%s: %d DOS documents do not cover -5 ... +5 eV around E_F; the grid is "
                "zero-filled there",
                self.dataset,
                n_short,
            )
        if not records:
            raise DataError(
                f"{path}: all {n_magnetic} materials are magnetic; none left with "
                "non_magnetic_only=true"
            )
        attrs = {
            "name": self.name,
            "kind": self.kind,
            "energy_unit": "eV",
            "energy_reference": "fermi",
            "dos_unit": "states/eV (spins summed, per cell)",
            "n_dropped_magnetic": n_magnetic,
            "n_failed": len(fails.messages),
            "gap_tol": self.gap_tol,
        }
        return build_recordset(records, attrs, str(path))


def _crossing(e0: float, e1: float, y0: float, y1: float, thr: float) -> float:
    """Energy where the straight line through (e0, y0), (e1, y1) crosses ``thr``."""
    if y1 == y0:
        return 0.5 * (e0 + e1)
    t = min(max((thr - y0) / (y1 - y0), 0.0), 1.0)
    return e0 + t * (e1 - e0)
