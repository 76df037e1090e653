"""One set of checks for every crystal structure that enters dos_bench.

Used by every published-data source (through :func:`check_structure`, called by the structure
readers of :mod:`dos_bench.data.sources.structures`) and by ``dos-predict`` (through
:func:`read_structure_file`). Each failed check is one :class:`~dos_bench.io.DataError` whose
message starts with ``where`` (the file and the record) and says what is wrong:

* **unknown elements** — a symbol that is not in the periodic table (JARVIS ``elements`` entry
  ``"Xx"``, a CIF ``_atom_site_type_symbol`` ``Qq``, an ASE atomic number 0 or 250). pymatgen
  reads unknown symbols as ``DummySpecies``, so without this check they travel on until something
  asks for their atomic number;
* **disordered sites** (partial occupancy): ``disordered: refuse`` (default) names the site and
  its occupancies; ``disordered: majority`` replaces every site by its species of largest
  occupancy (ties: the lower atomic number), ignoring vacancies (no site is removed). This is a
  deliberately simple, documented choice; pymatgen's ``OrderDisorderedStructureTransformation``
  (an Ewald-energy search over orderings, usually in a supercell) is far too expensive to run on
  every record;
* **overlapping atoms** — two atoms (periodic images included, so also an atom and its own image
  in a tiny cell) closer than ``min_distance`` (default 0.5 Å). The shortest real interatomic
  distance is the H–H bond of H₂ (0.74 Å; O–H is 0.96 Å), so 0.5 Å only catches what is certainly
  wrong: duplicated atoms (~0 Å), Cartesian coordinates read as fractional, wrong length units.
  Such pairs otherwise become 0 Å graph edges. ``min_distance: 0`` disables the check;
* **isolated atoms** — an atom with no neighbour within the model's graph cutoff gets no message
  in a graph network. The cutoff belongs to the model (``model.graph.cutoff``), so this check runs
  where graphs are built (:func:`dos_bench.data.graphs.check_isolated`), with the policy
  ``isolated_atoms: error | warn`` carried here.

The options live in one YAML file, ``conf/structure_checks/default.yaml``, pulled into every
published dataset as ``dataset.source.structure_checks`` and into ``predict.yaml`` as
``structure_checks``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.io import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "DISORDER_POLICIES",
    "ISOLATED_POLICIES",
    "StructureChecks",
    "check_structure",
    "check_symbols",
    "order_by_majority",
    "read_structure_file",
]

DISORDER_POLICIES = ("refuse", "majority")
ISOLATED_POLICIES = ("error", "warn")


@dataclass(frozen=True)
class StructureChecks:
    """The options of the structure checks (see the module docstring).

    Args:
        min_distance: Å; atoms closer than this (periodic images included) are refused; 0 = off.
        disordered: ``refuse`` or ``majority``.
        isolated_atoms: ``error`` or ``warn`` (applied when graphs are built).
        prefix: how the options are named in messages (``structure_checks``).
    """

    min_distance: float = 0.5
    disordered: str = "refuse"
    isolated_atoms: str = "error"
    prefix: str = "structure_checks"

    def __post_init__(self) -> None:
        md = self.min_distance
        number = isinstance(md, (int, float)) and not isinstance(md, bool)
        if not number or not np.isfinite(md) or md < 0:
            raise ConfigError(
                f"{self.prefix}.min_distance must be a number of Å >= 0 (0 = off), got {md!r}"
            )
        if self.disordered not in DISORDER_POLICIES:
            raise ConfigError(
                f"{self.prefix}.disordered must be one of {list(DISORDER_POLICIES)}, "
                f"got {self.disordered!r}"
            )
        if self.isolated_atoms not in ISOLATED_POLICIES:
            raise ConfigError(
                f"{self.prefix}.isolated_atoms must be one of {list(ISOLATED_POLICIES)}, "
                f"got {self.isolated_atoms!r}"
            )

    @classmethod
    def from_config(cls, value: Any, prefix: str = "structure_checks") -> StructureChecks:
        """From None (defaults), a mapping (YAML node) or a :class:`StructureChecks`."""
        if value is None:
            return cls(prefix=prefix)
        if isinstance(value, StructureChecks):
            return value
        if isinstance(value, Mapping):
            d = {str(k): v for k, v in dict(value).items()}
            unknown = sorted(set(d) - {"min_distance", "disordered", "isolated_atoms"})
            if unknown:
                raise ConfigError(
                    f"{prefix}: unknown option(s) {unknown}; allowed: min_distance, disordered, "
                    "isolated_atoms"
                )
            return cls(prefix=prefix, **d)
        raise ConfigError(f"{prefix} must be a mapping of options, got {type(value).__name__}")

    def key(self) -> dict[str, Any]:
        """The options that change the parsed records (for processed-cache keys)."""
        return {"min_distance": float(self.min_distance), "disordered": self.disordered}

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("prefix")
        return d


# ---------------------------------------------------------------------------------- elements
def check_symbols(symbols: list[Any], where: str) -> None:
    """Raise naming the first entry of ``symbols`` that is not an element of the periodic table.

    Entries are element symbols (``"Fe"``) or atomic numbers (ints).
    """
    from pymatgen.core import Element

    for i, sym in enumerate(symbols):
        if isinstance(sym, (int, np.integer)) and not isinstance(sym, bool):
            if not 1 <= int(sym) <= 118:
                raise DataError(f"{where}: unknown element: atomic number {int(sym)} at site {i}")
            continue
        text = str(sym).strip()
        if not Element.is_valid_symbol(text):
            raise DataError(
                f"{where}: unknown element {text!r} at site {i} (not a symbol of the periodic "
                "table)"
            )


def _unknown_species(structure: Any) -> tuple[int, str] | None:
    from pymatgen.core.periodic_table import DummySpecies, Element

    for i, site in enumerate(structure):
        for sp in site.species:
            if isinstance(sp, DummySpecies):
                return i, str(sp.symbol)
            el = sp if isinstance(sp, Element) else getattr(sp, "element", None)
            if not isinstance(el, Element):
                return i, str(getattr(sp, "symbol", sp))
    return None


# ---------------------------------------------------------------------------------- disorder
def _occupancies(site: Any) -> str:
    return ", ".join(f"{sp}:{occ:.3g}" for sp, occ in site.species.items())


def order_by_majority(structure: Any) -> Any:
    """Each site as its species of largest occupancy (ties: lower atomic number); site
    properties are dropped, lattice and coordinates kept, no site removed."""
    from pymatgen.core import Structure

    species = [
        max(site.species.items(), key=lambda kv: (kv[1], -int(kv[0].Z)))[0] for site in structure
    ]
    return Structure(structure.lattice, species, structure.frac_coords)


# ---------------------------------------------------------------------------------- distances
def _closest_pair(structure: Any, r: float) -> tuple[int, int, float, int] | None:
    """(i, j, distance, number of pairs) of the closest pair within ``r`` Å, or None."""
    from pymatgen.optimization.neighbors import find_points_in_spheres

    cart = np.ascontiguousarray(structure.cart_coords, dtype=np.float64)
    lat = np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64)
    c, p, _img, d = find_points_in_spheres(
        cart, cart, float(r), np.ones(3, dtype=np.int64), lat, 1e-8
    )
    keep = ~((c == p) & (d < 1e-6)) & (d < r)  # an atom's own unshifted copy is not a pair
    if not keep.any():
        return None
    c, p, d = c[keep], p[keep], d[keep]
    k = int(np.argmin(d))
    i, j = sorted((int(c[k]), int(p[k])))
    return i, j, float(d[k]), int(keep.sum())


# ---------------------------------------------------------------------------------- the check
def check_structure(structure: Any, where: str, checks: StructureChecks | None = None) -> Any:
    """The structure, checked (and ordered with ``disordered: majority``).

    Checks, in order: a usable, non-empty structure with a finite, non-degenerate lattice and
    finite coordinates; every species an element of the periodic table; no partial occupancy
    (or ordered by majority); no two atoms closer than ``min_distance`` (periodic images
    included). Raises :class:`DataError` starting with ``where``.
    """
    checks = checks or StructureChecks()
    try:
        n = len(structure)
        ordered = structure.is_ordered
        vol = float(structure.volume)
        frac = np.asarray(structure.frac_coords, dtype=np.float64)
    except Exception as exc:
        raise DataError(f"{where}: not a usable structure ({type(exc).__name__}: {exc})") from None
    if n < 1:
        raise DataError(f"{where}: structure has no atoms")
    if not np.isfinite(vol) or vol < 1e-3:
        raise DataError(f"{where}: structure has a degenerate lattice (volume {vol:.4g} Å^3)")
    if not np.isfinite(frac).all():
        raise DataError(f"{where}: structure has non-finite coordinates")
    bad = _unknown_species(structure)
    if bad is not None:
        raise DataError(
            f"{where}: unknown element {bad[1]!r} at site {bad[0]} (not a symbol of the periodic "
            "table)"
        )
    if not ordered:
        i = next(k for k, site in enumerate(structure) if not site.is_ordered)
        n_dis = sum(not site.is_ordered for site in structure)
        if checks.disordered == "refuse":
            raise DataError(
                f"{where}: site {i} is disordered (partial occupancy {_occupancies(structure[i])}"
                f"; {n_dis} of {n} sites disordered). Graph models need one element per site; "
                f"{checks.prefix}.disordered=majority keeps the majority species of each site"
            )
        structure = order_by_majority(structure)
        log.debug("%s: %d disordered sites replaced by their majority species", where, n_dis)
    if checks.min_distance > 0:
        pair = _closest_pair(structure, checks.min_distance)
        if pair is not None:
            i, j, d, n_pairs = pair
            what = (
                f"atom {i} ({structure[i].specie}) is {d:.2f} Å from its own periodic image"
                if i == j
                else f"atoms {i} ({structure[i].specie}) and {j} ({structure[j].specie}) are "
                f"{d:.2f} Å apart"
            )
            more = f"; {n_pairs // 2 or 1} such pairs" if n_pairs > 2 else ""
            raise DataError(
                f"{where}: {what} (< {checks.prefix}.min_distance {checks.min_distance:g} Å"
                f"{more}): overlapping atoms"
            )
    return structure


# ---------------------------------------------------------------------------------- files
_CIF_SUFFIXES = (".cif", ".mcif")


def _cif_listed_overlap(path: Path, checks: StructureChecks) -> str | None:
    """For a CIF pymatgen could not read: the first pair of *listed* ``_atom_site`` entries that
    overlap (closer than ``min_distance``, periodic images included) with total occupancy > 1 —
    what pymatgen merges into one site and then rejects as "occupancy > 1"."""
    from pymatgen.core import Lattice
    from pymatgen.io.cif import CifFile, str2float

    try:
        cif = CifFile.from_file(path)
    except Exception:
        return None
    r = max(float(checks.min_distance), 1e-3)
    for block in cif.data.values():
        d = block.data
        try:
            lat = Lattice.from_parameters(
                *(str2float(d[f"_cell_length_{x}"]) for x in "abc"),
                *(str2float(d[f"_cell_angle_{x}"]) for x in ("alpha", "beta", "gamma")),
            )
            xyz = np.array(
                [[str2float(v) for v in d[f"_atom_site_fract_{x}"]] for x in "xyz"], dtype=float
            ).T
        except Exception:
            continue
        labels = list(d.get("_atom_site_label") or d.get("_atom_site_type_symbol") or [])
        occ = [str2float(v) for v in d.get("_atom_site_occupancy", ["1"] * len(xyz))]
        if len(labels) != len(xyz) or len(occ) != len(xyz):
            continue
        cart = lat.get_cartesian_coords(xyz % 1.0)
        from pymatgen.optimization.neighbors import find_points_in_spheres

        c, p, _img, dist = find_points_in_spheres(
            np.ascontiguousarray(cart),
            np.ascontiguousarray(cart),
            r,
            np.ones(3, dtype=np.int64),
            np.ascontiguousarray(lat.matrix),
            1e-8,
        )
        keep = (c < p) & (dist < r)
        for k in np.argsort(dist[keep], kind="stable"):
            i, j, dd = int(c[keep][k]), int(p[keep][k]), float(dist[keep][k])
            if occ[i] + occ[j] > 1.0 + 1e-3:
                return (
                    f"atoms {i} ({labels[i]}) and {j} ({labels[j]}) of the _atom_site loop are "
                    f"{dd:.2f} Å apart (< {checks.prefix}.min_distance {checks.min_distance:g} Å)"
                    f" with total occupancy {occ[i] + occ[j]:g} > 1: overlapping atoms"
                )
    return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def read_structure_file(path: str | Path, checks: StructureChecks | None = None) -> Any:
    """Read one structure file (CIF, POSCAR, any format of ``Structure.from_file``) and check it.

    An unreadable file raises :class:`DataError` naming it and saying why (for a CIF whose listed
    atoms overlap, which pymatgen reports only as "Invalid CIF file with no structures", the
    overlapping pair); a readable one goes through :func:`check_structure`.
    """
    from pymatgen.core import Structure

    checks = checks or StructureChecks()
    path = Path(path)
    where = str(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structure = Structure.from_file(path)
        except Exception as exc:  # noqa: BLE001 - any parser error becomes one DataError
            reason = None
            if path.suffix.lower() in _CIF_SUFFIXES:
                reason = _cif_listed_overlap(path, checks)
            if reason is None:
                hints = [
                    _first_line(str(w.message))
                    for w in caught
                    if "occupanc" in str(w.message).lower() or "element" in str(w.message).lower()
                ]
                why = f"{type(exc).__name__}: {_first_line(str(exc))}"
                why += f"; pymatgen: {hints[0]}" if hints else ""
                reason = f"cannot read this structure ({why})"
            raise DataError(f"{where}: {reason}") from None
    return check_structure(structure, where, checks)
