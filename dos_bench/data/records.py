"""The one record type every data source yields, and its columnar container.

A *record* is one crystal with its spectrum: an id, a structure, an energy (or frequency) grid,
the spectrum on that grid and free-form metadata (formula, species count, crystal system, Fermi
energy, band gap, ...).  Sources (toy generators, JARVIS, Materials Project, phonon tables) all
produce a :class:`RecordSet`: the same information stored column-wise in numpy arrays, so that
tens of thousands of crystals load in milliseconds and graph building can run on plain arrays
without constructing pymatgen objects.

All spectra of one :class:`RecordSet` share one grid (``energies``).  Sources whose raw spectra
live on per-material grids resample them before building the set.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.io import DataError, atomic_write

__all__ = ["DOSRecord", "RecordSet"]

_FORMAT_VERSION = 1


@dataclass
class DOSRecord:
    """One crystal and its spectrum.

    Args:
        id: unique material id (``mp-149``, ``JVASP-1002``, ``toy-000123``).
        structure: a :class:`pymatgen.core.Structure`.
        energies: grid of the spectrum, shape ``(M,)`` (eV for eDOS, cm^-1 for phDOS).
        dos: the spectrum on ``energies``, shape ``(M,)``.
        meta: scalar metadata (str, int, float or bool values).
    """

    id: str
    structure: Any
    energies: np.ndarray
    dos: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class RecordSet:
    """Column-wise storage of many :class:`DOSRecord` sharing one grid.

    Attributes:
        ids: ``(N,)`` str.
        lattices: ``(N, 3, 3)`` float64, row vectors in Å.
        numbers: ``(A,)`` int16 atomic numbers of all atoms, structure after structure.
        frac_coords: ``(A, 3)`` float64 fractional coordinates.
        ptr: ``(N + 1,)`` int64 offsets; atoms of structure ``i`` are ``ptr[i]:ptr[i+1]``.
        energies: ``(M,)`` float64 grid shared by all spectra.
        spectra: ``(N, M)`` float32 spectra.
        meta: per-record columns, each an array of length ``N``.
        attrs: dataset-level JSON-serialisable attributes (``kind``: ``"edos"`` or ``"phdos"``,
            ``units``, ``name``, generator parameters, ...).
    """

    ids: np.ndarray
    lattices: np.ndarray
    numbers: np.ndarray
    frac_coords: np.ndarray
    ptr: np.ndarray
    energies: np.ndarray
    spectra: np.ndarray
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_records(
        cls, records: Sequence[DOSRecord], attrs: dict[str, Any] | None = None
    ) -> RecordSet:
        """Stack records that share one grid into a set (validating grids and spectra)."""
        if not records:
            raise DataError("cannot build a RecordSet from zero records")
        energies = np.asarray(records[0].energies, dtype=np.float64)
        lattices, numbers, fracs, ptr, spectra = [], [], [], [0], []
        for r in records:
            e = np.asarray(r.energies, dtype=np.float64)
            if e.shape != energies.shape or not np.allclose(e, energies):
                raise DataError(
                    f"record {r.id}: energy grid of length {e.shape[0]} differs from the "
                    f"set's grid of length {energies.shape[0]}; resample before stacking"
                )
            s = r.structure
            lattices.append(np.asarray(s.lattice.matrix, dtype=np.float64))
            numbers.append(np.asarray(s.atomic_numbers, dtype=np.int16))
            fracs.append(np.asarray(s.frac_coords, dtype=np.float64) % 1.0)
            ptr.append(ptr[-1] + len(s))
            spectra.append(np.asarray(r.dos, dtype=np.float32))
        keys = sorted({k for r in records for k in r.meta})
        meta = {}
        for k in keys:
            col = [r.meta.get(k) for r in records]
            meta[k] = np.asarray(col)
        rs = cls(
            ids=np.asarray([r.id for r in records]),
            lattices=np.stack(lattices),
            numbers=np.concatenate(numbers),
            frac_coords=np.concatenate(fracs),
            ptr=np.asarray(ptr, dtype=np.int64),
            energies=energies,
            spectra=np.stack(spectra),
            meta=meta,
            attrs=dict(attrs or {}),
        )
        rs.validate()
        return rs

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_atoms(self) -> np.ndarray:
        return np.diff(self.ptr)

    def atoms(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lattice (3,3), atomic numbers (n,), fractional coordinates (n,3)) of structure i."""
        a, b = self.ptr[i], self.ptr[i + 1]
        return self.lattices[i], self.numbers[a:b], self.frac_coords[a:b]

    def structure(self, i: int):
        """Structure ``i`` as a :class:`pymatgen.core.Structure`."""
        from pymatgen.core import Lattice, Structure

        lat, z, frac = self.atoms(i)
        return Structure(Lattice(lat), [int(x) for x in z], frac)

    def record(self, i: int) -> DOSRecord:
        meta = {k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in self.meta.items()}
        return DOSRecord(str(self.ids[i]), self.structure(i), self.energies, self.spectra[i], meta)

    def subset(self, index: Sequence[int] | np.ndarray) -> RecordSet:
        """A new set with the records at ``index`` (in that order)."""
        index = np.asarray(index, dtype=np.int64)
        counts = self.n_atoms[index]
        atom_idx = (
            np.concatenate([np.arange(self.ptr[i], self.ptr[i + 1]) for i in index])
            if len(index)
            else np.zeros(0, dtype=np.int64)
        )
        return RecordSet(
            ids=self.ids[index],
            lattices=self.lattices[index],
            numbers=self.numbers[atom_idx],
            frac_coords=self.frac_coords[atom_idx],
            ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            energies=self.energies,
            spectra=self.spectra[index],
            meta={k: v[index] for k, v in self.meta.items()},
            attrs=dict(self.attrs),
        )

    # ------------------------------------------------------------------ checks
    def validate(self, source: str | Path | None = None) -> None:
        """Raise :class:`DataError` naming the first bad record (NaN, negative, wrong length)."""
        where = f"{source}: " if source else ""
        n = len(self)
        if self.spectra.ndim != 2 or self.spectra.shape[0] != n:
            raise DataError(f"{where}spectra have shape {self.spectra.shape}, expected ({n}, M)")
        if self.spectra.shape[1] != self.energies.shape[0]:
            raise DataError(
                f"{where}spectra have {self.spectra.shape[1]} points but the grid has "
                f"{self.energies.shape[0]}"
            )
        if self.ptr.shape != (n + 1,) or self.ptr[-1] != self.numbers.shape[0]:
            raise DataError(f"{where}atom offsets do not match the number of atoms")
        if len(set(self.ids.tolist())) != n:
            seen, dup = set(), None
            for i in self.ids.tolist():
                if i in seen:
                    dup = i
                    break
                seen.add(i)
            raise DataError(f"{where}duplicate record id {dup!r}")
        for k, v in self.meta.items():
            if len(v) != n:
                raise DataError(f"{where}metadata column {k!r} has {len(v)} rows, expected {n}")
        check_spectra(self.spectra, self.ids, where)
        if np.any(self.n_atoms < 1):
            bad = self.ids[int(np.argmin(self.n_atoms))]
            raise DataError(f"{where}record {bad}: structure has no atoms")

    # ------------------------------------------------------------------ disk
    def save(self, path: str | Path) -> Path:
        """Write the set to one ``.npz`` file, atomically (temporary file, then rename)."""
        path = Path(path)
        arrays = {
            "ids": self.ids.astype(str),
            "lattices": self.lattices,
            "numbers": self.numbers,
            "frac_coords": self.frac_coords,
            "ptr": self.ptr,
            "energies": self.energies,
            "spectra": self.spectra,
            "__attrs__": np.asarray(json.dumps({"format": _FORMAT_VERSION, **self.attrs})),
        }
        for k, v in self.meta.items():
            arrays[f"meta/{k}"] = v if v.dtype != object else v.astype(str)
        with atomic_write(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> RecordSet:
        """Read a set written by :meth:`save`; a damaged file raises :class:`DataError`."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                files = set(z.files)
                need = {"ids", "lattices", "numbers", "frac_coords", "ptr", "energies", "spectra"}
                missing = need - files
                if missing:
                    raise DataError(
                        f"{path}: not a dos_bench record file (missing {sorted(missing)})"
                    )
                attrs = json.loads(str(z["__attrs__"])) if "__attrs__" in files else {}
                rs = cls(
                    ids=z["ids"],
                    lattices=z["lattices"],
                    numbers=z["numbers"],
                    frac_coords=z["frac_coords"],
                    ptr=z["ptr"],
                    energies=z["energies"],
                    spectra=z["spectra"],
                    meta={k[5:]: z[k] for k in files if k.startswith("meta/")},
                    attrs=attrs,
                )
        except DataError:
            raise
        except Exception as exc:  # zipfile/numpy raise many types on truncated files
            raise DataError(
                f"{path}: cannot read the cached record file ({type(exc).__name__}: {exc}); "
                "delete it to regenerate"
            ) from exc
        if attrs.get("format") != _FORMAT_VERSION:
            raise DataError(
                f"{path}: record file format {attrs.get('format')} != {_FORMAT_VERSION}"
            )
        rs.attrs.pop("format", None)
        rs.validate(source=path)
        return rs


def check_spectra(spectra: np.ndarray, ids: Sequence[str], where: str = "") -> None:
    """Raise :class:`DataError` naming the first record with a non-finite or negative value."""
    finite = np.isfinite(spectra)
    if not finite.all():
        i = int(np.argmin(finite.all(axis=1)))
        raise DataError(f"{where}record {ids[i]}: spectrum contains NaN or infinite values")
    neg = spectra < 0
    if neg.any():
        i = int(np.argmax(neg.any(axis=1)))
        raise DataError(
            f"{where}record {ids[i]}: spectrum has negative values (min {spectra[i].min():.4g})"
        )
