"""Structures of the published data: readers of the three structure formats, and the metadata
columns every source (and the toy generator) derives from a structure.

* :func:`structure_from_dict` (pymatgen dicts), :func:`jarvis_atoms_to_structure` (JARVIS
  ``Atoms`` dicts), :func:`ase_dict_to_structure` (ASE ``Atoms.todict()``): each ends in
  :func:`~dos_bench.data.structure_checks.check_structure`.
* :func:`crystal_system`, :func:`structure_meta`: ``formula``, ``n_species``, ``n_atoms``,
  ``crystal_system``.
* :func:`element_valence`, :func:`valence_electrons`: the ``n_valence`` column.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import Any

import numpy as np

from dos_bench.data.structure_checks import StructureChecks, check_structure, check_symbols
from dos_bench.io import DataError

__all__ = [
    "SYMPREC",
    "ase_dict_to_structure",
    "crystal_system",
    "element_valence",
    "jarvis_atoms_to_structure",
    "structure_from_dict",
    "structure_meta",
    "valence_electrons",
]

#: symmetry tolerance (Å) of ``SpacegroupAnalyzer`` for the ``crystal_system`` column
SYMPREC = 0.1


# ====================================================================================== readers
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
    docs/papers/alignn_dos.md §1.1) as a pymatgen Structure, checked (:func:`check_structure`). An
    entry of
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
    pymatgen Structure (TUT ``data.csv``, docs/papers/dostransformer.md §2.2), checked
    (:func:`check_structure`)."""
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


# ====================================================================================== metadata
def crystal_system(structure: Any) -> str:
    """Lowercase ``SpacegroupAnalyzer(structure, symprec=SYMPREC).get_crystal_system()``, or
    ``"unknown"`` when spglib fails on the cell.

    The one crystal-system function of the published sources and the toy generator. A failure
    falls back to ``unknown``, not ``triclinic``: a failed symmetry search says nothing about the
    cell's symmetry, and calling it triclinic would silently put it into the triclinic group of
    a crystal-system split; ``unknown`` is in no split's groups and shows up in the split
    statistics. spglib has not failed on any toy cell (none among 100,000 generated structures:
    seeds 0-3 and 42, 20,000 each), so the toy data are the same as with the generator's former
    ``triclinic`` fallback and :data:`~dos_bench.data.sources.toy.GENERATOR_VERSION` is unchanged.
    """
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
    and its OOD split, docs/papers/dostransformer.md §2.3); ``unknown`` if spglib fails.
    """
    comp = structure.composition
    return {
        "formula": comp.reduced_formula,
        "n_species": len(comp.elements),
        "n_atoms": len(structure),
        "crystal_system": crystal_system(structure),
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
