"""JARVIS-DFT electronic DOS (``edos_pdos``), the data set of ALIGNN-DOS (Kaundinya et al.).

Format (docs/papers/alignn_dos.md §1.1, ``JT: jarvis/db/figshare.py``):
``jarvis.db.figshare.data("edos_pdos")``
downloads the figshare file https://ndownloader.figshare.com/files/29216859, a zip archive
holding ``edos-up_pdos-elast_interp-8-18-2021.json`` ("Interpolated electronic total dos spin-up
dataset 55k"). The JSON is a list of dicts with

* ``jid`` — the JARVIS id (``JVASP-1002``),
* ``atoms`` — a JARVIS Atoms dict: ``lattice_mat`` (3×3, rows = lattice vectors, Å), ``coords``,
  ``elements``, ``cartesian`` (whether ``coords`` are Cartesian),
* ``edos_up`` — 300 floats, or the string ``"na"`` when no DOS was computed (such records are
  dropped, as in ``ALIGNN: generate_sample_data_edos.py``; the count is logged),
* ``pdos_elast`` — 200 phonon-DOS floats or ``"na"`` (not used here).

Either the ``.zip`` (read in place) or the extracted ``.json`` is accepted; if the configured one
is absent, the other name (with or without ``.zip``) is tried.

Grid (ALIGNN-DOS §3 "Discretized representation"): −5 … 10 eV in 0.05 eV steps relative to the
Fermi level, 300 values, so ``np.arange(-5, 10, 0.05)`` = −5 … 9.95 eV (docs/papers/alignn_dos.md
§1.1 [?]
endpoint). Every record gets ``e_fermi = 0.0`` (the grid is already relative to E_F), so both
``NativeRecipe`` and ``GridRecipe(reference='e_fermi')`` work.

Valence normalisation — what the documents say and what ``valence_normalised`` does
-------------------------------------------------------------------------------------
ALIGNN-DOS §3 (ii) says the DOS intensities "were normalized by the total number of valence
electrons in the crystal, thereby bounding the target DOS values to lie in the range [0,1]".
docs/papers/alignn_dos.md §1.1 notes that the 50-entry sample shipped with ALIGNN
(``alignn/examples/sample_data_multi_prop/id_prop.csv``, written straight from ``edos_up``) already
lies in [0, 0.36]. Checking that sample against its POSCARs: the integral of ``edos_up`` over
−5 … 0 eV is 0.08 – 0.52 (median 0.22) for cells holding 8 – 288 valence electrons. A raw
spin-up DOS in states/eV per cell would integrate there to a sizeable fraction of N_val/2, ≫ 1
for such cells; a DOS divided by N_val integrates to at most ≈ 0.5 below E_F (all occupied
spin-up states = N_val/2), and 0.22 × N_val (median ≈ 12 states) is a plausible number of
spin-up states in the top 5 eV of a valence band. So the published ``edos_up`` *is already*
divided by the valence-electron count and must not be divided again.

``valence_normalised`` declares whether the published values are already divided:

* ``true``  — trust that they are (``attrs['valence_normalised'] = True``);
* ``false`` — they are raw states/eV per cell (spin up);
* ``auto``  — decide from the data: the median over records of ∫_{−5}^{0} edos_up dE must be
  ≤ 1.0 (normalised: ≤ 0.5 up to smearing; raw: ≈ N_val/2 · (fraction of the valence band in the
  window), ≫ 1 for all but the smallest cells) **and** every value must be ≤ 1 (the paper's
  bound). The conclusion and the statistics are logged and stored in
  ``attrs['valence_check']``.

The spectra are always stored **as published** (this source never rescales them). The
``n_valence`` metadata column holds the valence-electron count from pymatgen
(:func:`~dos_bench.data.sources.structures.element_valence`: chemist's count from
``full_electronic_structure`` — an approximation of the VASP ``ZVAL`` JARVIS used), for a
``valence_norm`` target representation, which should be a no-op when
``attrs['valence_normalised']`` is true.

Metadata: ``formula``, ``n_species``, ``n_atoms``, ``crystal_system`` (lowercase,
``SpacegroupAnalyzer(symprec=0.1)``), ``e_fermi`` (0.0), ``n_valence``. Band edges (``vbm``,
``cbm``, ``band_gap``) are not in the file and are not derived here.

:class:`JarvisLeaderboardPhDOS` (``jarvis_phdos``) reuses this file for the *structures* of the
JARVIS-Leaderboard phonon-DOS benchmark, whose targets come from the leaderboard's own benchmark
file (66 points, −300 … 1000 cm⁻¹; see :mod:`dos_bench.data.sources.jarvis_leaderboard`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.data.sources.base import (
    CachedSource,
    FailureLog,
    as_bool_or_auto,
    missing_file_error,
    progress_iter,
)
from dos_bench.data.sources.jarvis_leaderboard import GRID_NOTE, read_benchmark, split_spectrum
from dos_bench.data.sources.readers import build_recordset, clean_spectrum, read_json_file
from dos_bench.data.sources.structures import (
    jarvis_atoms_to_structure,
    structure_meta,
    valence_electrons,
)
from dos_bench.io import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "JARVIS_EDOS_FILE",
    "JARVIS_EDOS_URL",
    "JarvisEDOS",
    "JarvisLeaderboardPhDOS",
    "read_json_file",
]

JARVIS_EDOS_URL = "https://ndownloader.figshare.com/files/29216859"
JARVIS_EDOS_FILE = "edos-up_pdos-elast_interp-8-18-2021.json"

#: median ∫_{-5}^{0} edos_up dE above which ``auto`` concludes the data are raw
AUTO_OCC_THRESHOLD = 1.0


class JarvisEDOS(CachedSource):
    """JARVIS-DFT ``edos_pdos`` spin-up total eDOS on the ALIGNN-DOS 300-point grid.

    Args:
        path: the figshare zip or the extracted JSON, relative to the data directory.
        member: JSON file inside the zip (default: the only ``.json`` member).
        valence_normalised: ``auto``, ``true`` or ``false`` (see the module docstring).
        start, step, n_points: the published grid (ALIGNN-DOS §3: −5 eV, 0.05 eV, 300).
        negative_tol: negative values down to ``-negative_tol * max`` are set to 0; larger ones
            raise.
        dataset, processed_dir, progress, strict, structure_checks: see :class:`CachedSource`.
    """

    name = "jarvis_edos"
    kind = "edos"
    parser_version = 1
    option_names = ("path", "member", "valence_normalised", "negative_tol")

    def __init__(
        self,
        path: str = f"jarvis/{JARVIS_EDOS_FILE}.zip",
        member: str | None = None,
        valence_normalised: bool | str = "auto",
        start: float = -5.0,
        step: float = 0.05,
        n_points: int = 300,
        negative_tol: float = 1e-3,
        dataset: str | None = None,
        processed_dir: str = "processed",
        progress: bool = False,
        strict: bool = True,
        structure_checks: Any = None,
    ) -> None:
        super().__init__(
            dataset, processed_dir, progress, strict, structure_checks, negative_tol=negative_tol
        )
        self.path = str(path)
        self.member = member
        self.valence_normalised = as_bool_or_auto(valence_normalised, "valence_normalised")
        self.start, self.step, self.n_points = float(start), float(step), int(n_points)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "grid": [self.start, self.step, self.n_points]}

    def raw_paths(self) -> dict[str, str]:
        return {"edos_pdos": self.path}

    def _find(self, data_dir: Path, rel: str) -> Path:
        path = data_dir / rel
        if path.exists():
            return path
        alt = path.with_suffix("") if path.suffix == ".zip" else Path(f"{path}.zip")
        if alt.exists():
            log.info("%s: %s not found, using %s", self.dataset, path, alt)
            return alt
        raise missing_file_error(self.dataset, rel, path)

    @property
    def grid(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.n_points)

    # ---------------------------------------------------------------- parsing
    def _read_entries(self, path: Path) -> list[Any]:
        data = read_json_file(path, self.member, "dataset.source.member")
        if not isinstance(data, list):
            raise DataError(
                f"{path}: expected a JSON list of records with keys jid, atoms, edos_up "
                f"(JARVIS edos_pdos), got a {type(data).__name__}"
            )
        return data

    def build(self, raw: dict[str, Path]) -> RecordSet:
        path = raw["edos_pdos"]
        entries = self._read_entries(path)
        grid = self.grid
        fails = FailureLog(self.strict, self.dataset)
        records: list[DOSRecord] = []
        n_na = n_clipped = 0
        for i, entry in enumerate(progress_iter(entries, self.progress, "jarvis_edos")):
            with fails.guard():
                if not isinstance(entry, dict):
                    raise DataError(f"{path}: entry {i} is a {type(entry).__name__}, not a dict")
                jid = entry.get("jid")
                if not isinstance(jid, str) or not jid:
                    raise DataError(f"{path}: entry {i} has no 'jid' string")
                where = f"{path}: record {jid} (entry {i})"
                if "edos_up" not in entry:
                    raise DataError(f"{where}: no 'edos_up' key")
                e = entry["edos_up"]
                if isinstance(e, str) and e.strip().lower() == "na":
                    n_na += 1
                    continue
                y, clipped = clean_spectrum(e, self.n_points, f"{where} edos_up", self.negative_tol)
                n_clipped += clipped
                s = jarvis_atoms_to_structure(entry.get("atoms"), where, self.structure_checks)
                meta = structure_meta(s)
                meta.update(e_fermi=0.0, n_valence=float(valence_electrons(s)))
                records.append(DOSRecord(jid, s, grid, y, meta))
        fails.finish(len(records))
        log.info(
            "%s: %d records, %d dropped with edos_up == 'na'%s",
            self.dataset,
            len(records),
            n_na,
            f", {n_clipped} with tiny negatives set to 0" if n_clipped else "",
        )
        if not records:
            raise DataError(f"{path}: no record has an edos_up spectrum")
        spectra = np.stack([r.dos for r in records])
        nval = np.asarray([r.meta["n_valence"] for r in records], dtype=np.float64)
        normalised, check = self._decide_normalisation(grid, spectra, nval)
        attrs = {
            "name": self.name,
            "kind": self.kind,
            "energy_unit": "eV",
            "energy_reference": "fermi",
            "dos_unit": (
                "states/eV/valence electron (spin up)" if normalised else "states/eV/cell (spin up)"
            ),
            "valence_normalised": bool(normalised),
            "valence_check": check,
            "n_dropped_na": n_na,
            "n_failed": len(fails.messages),
            "raw_file": path.name,
        }
        return build_recordset(records, attrs, str(path))

    def _decide_normalisation(
        self, grid: np.ndarray, spectra: np.ndarray, nval: np.ndarray
    ) -> tuple[bool, dict[str, Any]]:
        occ_mask = grid <= 0
        occ = np.trapezoid(spectra[:, occ_mask], grid[occ_mask], axis=1)
        stats = {
            "median_occupied_integral": float(np.median(occ)),
            "max_occupied_integral": float(np.max(occ)),
            "fraction_occupied_integral_above_0.6": float(np.mean(occ > 0.6)),
            "max_value": float(spectra.max()),
            "median_n_valence": float(np.nanmedian(nval)),
            "median_raw_hypothesis_states": float(np.nanmedian(occ * nval)),
        }
        auto_says = bool(
            stats["median_occupied_integral"] <= AUTO_OCC_THRESHOLD and stats["max_value"] <= 1.0
        )
        stats["auto_conclusion"] = auto_says
        if self.valence_normalised == "auto":
            decided = auto_says
            log.info(
                "%s: valence_normalised=auto -> %s: median integral of edos_up over -5..0 eV is "
                "%.3f (<= %.1f expected for a DOS divided by the valence-electron count, "
                "~N_val/2 x band fraction for a raw one; median N_val %.0f) and max value %.3f "
                "(%s 1). Spectra are stored as published.%s",
                self.dataset,
                "already valence-normalised" if decided else "raw (not normalised)",
                stats["median_occupied_integral"],
                AUTO_OCC_THRESHOLD,
                stats["median_n_valence"],
                stats["max_value"],
                "<=" if stats["max_value"] <= 1 else ">",
                "" if decided else " Use target_repr=valence_norm to divide by n_valence.",
            )
        else:
            decided = bool(self.valence_normalised)
            if decided != auto_says:
                log.warning(
                    "%s: valence_normalised=%s but the data look %s (median occupied integral "
                    "%.3f, max value %.3f)",
                    self.dataset,
                    decided,
                    "normalised" if auto_says else "raw",
                    stats["median_occupied_integral"],
                    stats["max_value"],
                )
        return decided, json.loads(json.dumps(stats))


class JarvisLeaderboardPhDOS(JarvisEDOS):
    """JARVIS-Leaderboard phonon DOS (``AI-Spectra-ph_dos-edos_pdos``): targets from the
    benchmark file, structures from the JARVIS ``edos_pdos`` file by ``jid``.

    The benchmark ``edos_pdos_ph_dos.json(.zip)`` (read by
    :mod:`~dos_bench.data.sources.jarvis_leaderboard`) holds, per part (train / val / test:
    11,395 / 1,424 / 1,424), ``jid -> "v1;...;v66"``: max-normalised phonon DOS on −300 … 1000
    cm⁻¹ in 20 cm⁻¹ steps (grid: :data:`~dos_bench.data.sources.jarvis_leaderboard.GRID_NOTE`;
    the leaderboard file has no grid of its own). One record is yielded per benchmark id, in
    the order of ``parts`` and of the file, with metadata ``leaderboard_part`` (the part it came
    from) besides the usual ``formula``, ``n_species``, ``n_atoms``, ``crystal_system``. The
    structure is the ``atoms`` of the JARVIS record with that ``jid`` (parsed like
    :class:`JarvisEDOS`; only the ids the benchmark needs are parsed). Spectra are stored as
    published (the same values the leaderboard scores against).

    Errors (one :class:`DataError` naming the benchmark file, the part and the jid; with
    ``strict: false`` the record is skipped and a summary logged): a benchmark id with no record
    in the JARVIS file, a spectrum of the wrong length, a non-numeric, NaN or negative value, an
    id listed twice.

    Args:
        path, member: the JARVIS ``edos_pdos`` file (as :class:`JarvisEDOS`).
        benchmark: the benchmark zip (or extracted JSON), relative to the data directory.
        benchmark_member: JSON member of the benchmark zip (default: the only ``.json``).
        parts: benchmark parts to load (default all three; the split picks train/val/test).
        start, step, n_points: the grid (cm⁻¹).
        negative_tol: negative values down to ``-negative_tol * max`` are set to 0 (0: none).
        dataset, processed_dir, progress, strict, structure_checks: see :class:`CachedSource`.
    """

    name = "jarvis_phdos"
    kind = "phdos"
    parser_version = 1
    option_names = ("path", "member", "benchmark", "benchmark_member", "parts", "negative_tol")

    def __init__(
        self,
        path: str = f"jarvis/{JARVIS_EDOS_FILE}.zip",
        member: str | None = None,
        benchmark: str = "jarvis_leaderboard/edos_pdos_ph_dos.json.zip",
        benchmark_member: str | None = None,
        parts: list[str] | tuple[str, ...] = ("train", "val", "test"),
        start: float = -300.0,
        step: float = 20.0,
        n_points: int = 66,
        negative_tol: float = 0.0,
        dataset: str | None = None,
        processed_dir: str = "processed",
        progress: bool = False,
        strict: bool = True,
        structure_checks: Any = None,
    ) -> None:
        super().__init__(
            path=path,
            member=member,
            start=start,
            step=step,
            n_points=n_points,
            negative_tol=negative_tol,
            dataset=dataset,
            processed_dir=processed_dir,
            progress=progress,
            strict=strict,
            structure_checks=structure_checks,
        )
        self.benchmark = str(benchmark)
        self.benchmark_member = benchmark_member
        self.parts = [str(p) for p in parts]
        if not self.parts or len(set(self.parts)) != len(self.parts):
            raise ConfigError(
                f"dataset.source.parts must list distinct benchmark parts, got {list(parts)}"
            )

    def raw_paths(self) -> dict[str, str]:
        return {"edos_pdos": self.path, "benchmark": self.benchmark}

    def build(self, raw: dict[str, Path]) -> RecordSet:
        bpath, jpath = raw["benchmark"], raw["edos_pdos"]
        bench = read_benchmark(bpath, self.benchmark_member)
        absent = [p for p in self.parts if p not in bench]
        if absent:
            raise DataError(
                f"{bpath}: benchmark has no part(s) {absent} (parts: {sorted(bench)}); "
                "check dataset.source.parts"
            )
        wanted = {jid for p in self.parts for jid in bench[p]}
        by_jid: dict[str, Any] = {}
        for entry in self._read_entries(jpath):
            jid = entry.get("jid") if isinstance(entry, dict) else None
            if isinstance(jid, str) and jid in wanted and jid not in by_jid:
                by_jid[jid] = entry
        grid = self.grid
        fails = FailureLog(self.strict, self.dataset)
        records: list[DOSRecord] = []
        seen: dict[str, str] = {}
        n_clipped = n_not_max1 = 0
        counts = dict.fromkeys(self.parts, 0)
        todo = [(p, jid, v) for p in self.parts for jid, v in bench[p].items()]
        for part, jid, value in progress_iter(todo, self.progress, "jarvis_phdos", len(todo)):
            with fails.guard():
                where = f"{bpath}: {part} id {jid}"
                if jid in seen:
                    raise DataError(f"{where}: id also listed in part {seen[jid]!r}")
                seen[jid] = part
                raw_y = split_spectrum(value, where)
                y, clipped = clean_spectrum(raw_y, self.n_points, where, self.negative_tol)
                entry = by_jid.get(jid)
                if entry is None:
                    raise DataError(
                        f"{where}: no structure — {jpath} has no record with jid {jid!r}"
                    )
                s = jarvis_atoms_to_structure(
                    entry.get("atoms"), f"{jpath}: record {jid}", self.structure_checks
                )
                n_clipped += clipped
                n_not_max1 += not np.isclose(y.max(), 1.0, atol=1e-6)
                meta = structure_meta(s)
                meta["leaderboard_part"] = part
                records.append(DOSRecord(jid, s, grid, y, meta))
                counts[part] += 1
        fails.finish(len(records))
        log.info(
            "%s: %d records (%s) from %s, structures from %s%s",
            self.dataset,
            len(records),
            ", ".join(f"{p} {n}" for p, n in counts.items()),
            bpath.name,
            jpath.name,
            f", {n_clipped} with tiny negatives set to 0" if n_clipped else "",
        )
        if n_not_max1:
            log.warning(
                "%s: %d spectra do not have maximum 1 (the benchmark is max-normalised)",
                self.dataset,
                n_not_max1,
            )
        attrs = {
            "name": self.name,
            "kind": self.kind,
            "energy_unit": "cm^-1",
            "energy_reference": "absolute",
            "dos_unit": "max-normalised",
            "grid_source": GRID_NOTE,
            "n_per_part": counts,
            "n_not_max_normalised": int(n_not_max1),
            "n_failed": len(fails.messages),
            "raw_file": bpath.name,
            "structures_file": jpath.name,
        }
        return build_recordset(records, attrs, str(bpath))
