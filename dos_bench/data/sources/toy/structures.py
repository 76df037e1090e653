r"""Structures of the toy datasets: decorated AFLOW prototypes (shared by both datasets).

The prototypes ship inside pymatgen (``pymatgen/analysis/prototypes/aflow_prototypes.json.gz``,
the AFLOW prototype library, 288 entries); for the same seed and structure parameters both
datasets hold the same structures.

Material ``i`` draws everything from ``np.random.default_rng(SeedSequence([seed, i]))``, so the
data do not depend on the number of worker processes:

1. a target species count :math:`k \in \{1..5\}` (probabilities 0.14, 0.36, 0.26, 0.16, 0.08);
2. a prototype with at most ``max_atoms`` atoms, at least ``k`` atoms and at most ``k`` species;
3. *ordered substitutions* until the cell has ``k`` species.  The prototype's sites are grouped
   into Wyckoff orbits (spglib ``equivalent_atoms`` at ``symprec=0.1``).  A substitution either
   moves one whole orbit of a species occupying several orbits to a new species (keeps the group)
   or, with probability ``p_break`` (or when no such orbit exists), gives a random proper subset
   of one orbit a new species (breaks symmetry; this produces most monoclinic/triclinic cells).
   If no further split is possible the cell keeps fewer species than the target;
4. a decoration with elements from :data:`ELEMENT_POOL` (51 s-, p- and d-block elements).  With
   probability ``p_ionic`` the elements are chosen *charge balanced* (octet rule): species are
   split into cations of valence :math:`v \in \{1,2,3,4\}` and anions missing
   :math:`8-v \in \{1,2,3,4\}` electrons with :math:`\sum_{cat} c\,v = \sum_{an} c\,(8-v)`
   (counts ``c`` per cell), cations at least 0.5 less electronegative than every anion, e.g. NaCl,
   MgF2, Al2O3, Mg2Si; these tend to open a gap.  Otherwise (or if no balanced assignment exists)
   distinct random elements are drawn (mostly metals);
5. an isotropic rescaling of the lattice: with :math:`\rho_i = \min_j d_{ij}/(r_i+r_j)` (Slater
   atomic radii of pymatgen, all periodic images) the lattice is scaled so that
   :math:`\mathrm{mean}_i\,\rho_i = e^{\xi}`, :math:`\xi \sim N(0, \text{scale\_jitter}^2)`
   ("pressure" jitter, 3 %, so that repeated decorations are not identical), and
   :math:`\min_i \rho_i \ge 0.85`: typical bonds have the length of the sum of the atomic radii.

The crystal system stored in the metadata is
``SpacegroupAnalyzer(structure, symprec=0.1).get_crystal_system()`` of the *final* structure
(``symprec = 0.1`` Å; :func:`~dos_bench.data.sources.structures.crystal_system`, the function of
every source); ``prototype`` holds the AFLOW label of the parent prototype.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.sources.structures import crystal_system
from dos_bench.data.sources.toy.elements import _element_arrays, _element_table, _roles
from dos_bench.io import DataError

__all__ = [
    "CRYSTAL_SYSTEMS",
    "StructureParams",
    "ToyStructure",
    "make_toy_structure",
    "prototype_species",
    "structure_from_prototype",
]

#: The seven crystal systems (``SpacegroupAnalyzer.get_crystal_system``, lowercase).
CRYSTAL_SYSTEMS = (
    "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic",
)  # fmt: skip


# ============================================================================ prototypes
@dataclass(frozen=True)
class _Prototype:
    label: str
    lattice: np.ndarray  # (3, 3) rows, Å
    frac: np.ndarray  # (n, 3)
    species: np.ndarray  # (n,) species label 0..k-1
    n_species: int
    symbols: tuple[str, ...]  # the prototype's own element of each species label


def _prototype_file() -> Path:
    """``aflow_prototypes.json.gz`` inside the installed ``pymatgen.analysis.prototypes`` package.

    Located with :func:`importlib.util.find_spec`, without importing the package (its
    ``__init__`` parses the whole library with bibtex provenance, which takes seconds).
    """
    import importlib.util

    spec = importlib.util.find_spec("pymatgen.analysis.prototypes")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("pymatgen.analysis.prototypes not found: is pymatgen installed?")
    return Path(list(spec.submodule_search_locations)[0]) / "aflow_prototypes.json.gz"


@lru_cache(maxsize=1)
def _prototypes() -> tuple[_Prototype, ...]:
    """All AFLOW prototypes shipped with pymatgen (ordered structures only)."""
    path = _prototype_file()
    try:
        with gzip.open(path, "rt") as fh:
            entries = json.load(fh)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the pymatgen prototype library ({exc})") from exc
    from pymatgen.core import Structure

    out = []
    for e in entries:
        s = Structure.from_dict(e["snl"])
        if not s.is_ordered:
            continue
        syms = [sp.symbol for sp in s.species]
        order = {sym: k for k, sym in enumerate(dict.fromkeys(syms))}
        out.append(
            _Prototype(
                label=str(e["tags"]["aflow"]),
                lattice=np.array(s.lattice.matrix, dtype=np.float64),
                frac=np.array(s.frac_coords, dtype=np.float64) % 1.0,
                species=np.array([order[x] for x in syms], dtype=np.int64),
                n_species=len(order),
                symbols=tuple(order),
            )
        )
    return tuple(out)


@contextlib.contextmanager
def _quiet_spglib() -> Iterator[None]:
    """Silence spglib's DeprecationWarning about its legacy error handling (used by pymatgen)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"spglib(\..*)?")
        yield


@cache
def _orbits(index: int) -> np.ndarray:
    """Wyckoff orbits (spglib ``equivalent_atoms``, symprec 0.1) of prototype ``index``."""
    import spglib

    p = _prototypes()[index]
    with _quiet_spglib():
        ds = spglib.get_symmetry_dataset((p.lattice, p.frac, p.species + 1), symprec=0.1)
    if ds is None:
        return np.arange(len(p.species))
    return np.asarray(ds.equivalent_atoms, dtype=np.int64)


# ============================================================================ structures
@dataclass(frozen=True)
class StructureParams:
    """Parameters of the structure generator (shared by both toy datasets)."""

    seed: int = 0
    max_atoms: int = 24
    p_ionic: float = 0.7
    p_break: float = 0.35
    species_weights: tuple[float, ...] = (0.14, 0.36, 0.26, 0.16, 0.08)
    min_bond_ratio: float = 0.85
    scale_jitter: float = 0.03


@dataclass
class ToyStructure:
    """One generated crystal (plain arrays) and its descriptive metadata."""

    lattice: np.ndarray  # (3, 3) rows, Å
    numbers: np.ndarray  # (n,) atomic numbers
    frac: np.ndarray  # (n, 3)
    prototype: str
    formula: str
    n_species: int
    crystal_system: str

    def to_pymatgen(self) -> Any:
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), [int(z) for z in self.numbers], self.frac)


def _split_species(
    labels: np.ndarray, orbit: np.ndarray, target: int, p_break: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Ordered substitutions: give new species labels to orbits / parts of orbits."""
    labels = labels.copy()
    orbit = orbit.copy()
    while labels.max() + 1 < target:
        new = int(labels.max()) + 1
        # (a) whole orbits of species that occupy more than one orbit
        movable = []
        for lab in np.unique(labels):
            orbs = np.unique(orbit[labels == lab])
            if len(orbs) > 1:
                movable.extend(int(o) for o in orbs)
        # (b) orbits with at least two atoms (a proper subset gets the new species)
        orb_ids, counts = np.unique(orbit, return_counts=True)
        splittable = [int(o) for o, c in zip(orb_ids, counts, strict=True) if c > 1]
        if not movable and not splittable:
            break
        if splittable and (not movable or rng.random() < p_break):
            o = splittable[int(rng.integers(len(splittable)))]
            members = np.flatnonzero(orbit == o)
            size = int(rng.integers(1, len(members)))
            chosen = rng.choice(members, size=size, replace=False)
            labels[chosen] = new
            orbit[chosen] = orbit.max() + 1
        else:
            o = movable[int(rng.integers(len(movable)))]
            labels[orbit == o] = new
    return labels, orbit


def _charge_balanced(
    counts: np.ndarray, rng: np.random.Generator, min_dchi: float = 0.5
) -> list[int] | None:
    """Elements (atomic numbers) per species obeying the octet rule, or None if impossible.

    Anions are drawn first; cations only among elements at least ``min_dchi`` less
    electronegative (Pauling) than every anion of the compound.
    """
    k = len(counts)
    # code 0..3: cation of valence 1..4; code 4..7: anion missing 1..4 electrons
    codes = np.array(np.meshgrid(*[np.arange(8)] * k, indexing="ij")).reshape(k, -1).T
    is_anion = codes >= 4
    amount = np.where(is_anion, -(codes - 3), codes + 1)  # +v for cations, -(8-v) for anions
    ok = (amount @ counts == 0) & is_anion.any(axis=1) & (~is_anion).any(axis=1)
    sols = codes[ok]
    roles = _roles()
    table = _element_table()
    for _ in range(8):
        if len(sols) == 0:
            return None
        pick = int(rng.integers(len(sols)))
        sol = sols[pick]
        chosen: dict[int, int] = {}
        for s in np.flatnonzero(sol >= 4):
            pool = [z for z in roles["anion"][int(sol[s]) - 3] if z not in chosen.values()]
            if not pool:
                break
            chosen[int(s)] = int(pool[int(rng.integers(len(pool)))])
        chi_max = min((table[z].chi for z in chosen.values()), default=np.inf) - min_dchi
        for s in np.flatnonzero(sol < 4):
            pool = [z for z in roles["cation"][int(sol[s]) + 1]
                    if z not in chosen.values() and table[z].chi <= chi_max]  # fmt: skip
            if not pool:
                break
            chosen[int(s)] = int(pool[int(rng.integers(len(pool)))])
        if len(chosen) == k:
            return [chosen[s] for s in range(k)]
        sols = np.delete(sols, pick, axis=0)
    return None


def _neighbour_list(
    lattice: np.ndarray, frac: np.ndarray, r: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All pairs with 0 < |r_j + R - r_i| <= r: (i, j, integer images (P, 3), vectors (P, 3))."""
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice(lattice), ["H"] * len(frac), frac)
    ci, pj, off, _ = s.get_neighbor_list(r, exclude_self=True)
    ci = np.asarray(ci, dtype=np.int64)
    pj = np.asarray(pj, dtype=np.int64)
    off = np.rint(np.asarray(off, dtype=np.float64)).astype(np.int64).reshape(-1, 3)
    vec = (frac[pj] + off - frac[ci]) @ lattice
    return ci, pj, off, vec


def _rescale(
    lattice: np.ndarray, frac: np.ndarray, radius: np.ndarray, min_ratio: float, target: float = 1.0
) -> float:
    """Length factor: mean over atoms of min_j d_ij/(r_i+r_j) -> ``target``, min >= min_ratio."""
    n = len(frac)
    r = 1.6 * (abs(np.linalg.det(lattice)) / n) ** (1.0 / 3.0)
    for _ in range(10):
        i, j, _, vec = _neighbour_list(lattice, frac, r)
        if len(np.unique(i)) == n:
            break
        r *= 1.5
    ratio = np.linalg.norm(vec, axis=1) / (radius[i] + radius[j])
    per_atom = np.full(n, np.inf)
    np.minimum.at(per_atom, i, ratio)
    return float(max(target / per_atom.mean(), min_ratio / per_atom.min()))


def make_toy_structure(params: StructureParams, index: int) -> ToyStructure:
    """Generate material ``index`` (deterministic in ``(params.seed, index)``)."""
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, index]))
    protos = _prototypes()
    weights = np.asarray(params.species_weights, dtype=np.float64)
    target = int(rng.choice(np.arange(1, len(weights) + 1), p=weights / weights.sum()))
    eligible = [
        k
        for k, p in enumerate(protos)
        if len(p.species) <= params.max_atoms and p.n_species <= target <= len(p.species)
    ]
    if not eligible:
        raise ValueError(f"no prototype with <= {params.max_atoms} atoms fits {target} species")
    pi = eligible[int(rng.integers(len(eligible)))]
    proto = protos[pi]
    labels, _ = _split_species(proto.species, _orbits(pi), target, params.p_break, rng)
    n_lab = int(labels.max()) + 1
    counts = np.bincount(labels, minlength=n_lab)

    elements = None
    if n_lab >= 2 and rng.random() < params.p_ionic:
        elements = _charge_balanced(counts, rng)
    if elements is None:
        pool = np.array(sorted(_element_table()))
        elements = [int(z) for z in rng.choice(pool, size=n_lab, replace=False)]
    numbers = np.asarray(elements, dtype=np.int64)[labels]

    radius = _element_arrays(numbers)["radius"]
    target = float(np.exp(params.scale_jitter * rng.standard_normal()))
    scale = _rescale(proto.lattice, proto.frac, radius, params.min_bond_ratio, target)
    lattice = proto.lattice * scale

    from pymatgen.core import Composition, Lattice, Structure

    s = Structure(Lattice(lattice), [int(z) for z in numbers], proto.frac)
    system = crystal_system(s)
    return ToyStructure(
        lattice=lattice,
        numbers=numbers,
        frac=proto.frac.copy(),
        prototype=proto.label,
        formula=Composition(s.composition).reduced_formula,
        n_species=n_lab,
        crystal_system=system,
    )


def prototype_species(label: str) -> tuple[str, ...]:
    """The elements of the AFLOW prototype ``label`` as shipped with pymatgen, in label order."""
    for p in _prototypes():
        if p.label == label:
            return p.symbols
    raise ValueError(f"unknown AFLOW prototype label {label!r}")


def structure_from_prototype(
    label: str, elements: Sequence[str], target: float = 1.0, min_ratio: float = 0.85
) -> ToyStructure:
    r"""Decorate the AFLOW prototype ``label``: its i-th species becomes ``elements[i]``.

    Species are numbered in order of first appearance in the prototype's site list (see
    :func:`prototype_species`; e.g. rocksalt ``AB_cF8_225_a_b`` is ``("Cl", "Na")``).

    The lattice is rescaled exactly as in :func:`make_toy_structure` (mean per-atom
    :math:`\min_j d_{ij}/(r_i + r_j)` equal to ``target``), e.g.
    ``structure_from_prototype("A_cF8_227_a", ["Si"])`` is diamond Si with 2.2 Å bonds.
    """
    from pymatgen.core import Composition, Element, Lattice, Structure

    matches = [p for p in _prototypes() if p.label == label]
    if not matches:
        raise ValueError(f"unknown AFLOW prototype label {label!r}")
    proto = matches[0]
    if len(elements) != proto.n_species:
        raise ValueError(f"{label} has {proto.n_species} species, got elements {list(elements)}")
    numbers = np.array([Element(e).Z for e in elements], dtype=np.int64)[proto.species]
    radius = _element_arrays(numbers)["radius"]
    lattice = proto.lattice * _rescale(proto.lattice, proto.frac, radius, min_ratio, target)
    s = Structure(Lattice(lattice), [int(z) for z in numbers], proto.frac)
    return ToyStructure(
        lattice=lattice,
        numbers=numbers,
        frac=proto.frac.copy(),
        prototype=label,
        formula=Composition(s.composition).reduced_formula,
        n_species=proto.n_species,
        crystal_system=crystal_system(s),
    )
