r"""Bundled physical toy datasets: ``toy_edos`` (tight-binding eDOS) and ``toy_phdos`` (springs).

Both datasets are generated on first use from the crystal-structure prototypes that ship inside
pymatgen (``pymatgen/analysis/prototypes/aflow_prototypes.json.gz``, the AFLOW prototype library,
288 entries) and cached as one ``.npz`` :class:`~dos_bench.data.records.RecordSet`.  They mimic the
data of the published benchmarks at a tiny fraction of the cost:

* ``toy_edos`` plays the role of the JARVIS-DFT electronic DOS used by ALIGNN-DOS (§3: DOS on a
  fixed energy window around the Fermi level) and of the Materials Project eDOS used by
  DOSTransformer (appendix A.1) and Mat2Spec (Methods, "Data": eDOS relative to the Fermi level /
  band edges, Gaussian-smeared, normalised).
* ``toy_phdos`` plays the role of the DFPT phonon DOS of Petretto et al. used by Mat2Spec
  (Methods: 0-1000 cm^-1, 51 points) and DOSTransformer (A.1).

The *raw* spectra are kept on fine absolute grids shared by every material of a set; the published
representations (300 bins -5..10 eV around E_F; 201 points -5..5 eV; 128 band-edge-aligned points
VBM-4 .. CBM+4 with the gap removed; 51 points 0..1000 cm^-1) are derived from ``energies``,
``spectra`` and the metadata by another module.  Every state lies inside the stored grid, so a
spectrum is exactly zero beyond the grid edges (zero padding is exact).

Structures (shared by both datasets for the same seed and structure parameters)
-------------------------------------------------------------------------------
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
(``symprec = 0.1`` Å); ``prototype`` holds the AFLOW label of the parent prototype.

Electronic model (``toy_edos``)
-------------------------------
An orthogonal :math:`sp^3` tight-binding model, 4 orbitals (s, px, py, pz) per atom.

*On-site energies* from element data: the highest occupied atomic level is placed at minus the
first ionisation energy (Koopmans), :math:`\epsilon_{top} = -I_1`.  For s-valent elements (groups
1, 2 and the d-block, treated as s-like metals) :math:`\epsilon_s = \epsilon_{top}` and
:math:`\epsilon_p = \epsilon_s + 2 + (\chi - 0.8)` eV; for p-block elements
:math:`\epsilon_p = \epsilon_{top}` and :math:`\epsilon_s = \epsilon_p - (1.5 + 3.5(\chi - 1))` eV
(:math:`\chi` Pauling electronegativity).  Thus s lies below p and electronegative elements lie
deeper (F: :math:`\epsilon_p=-17.4`, :math:`\epsilon_s=-29.4` eV; Cs: :math:`\epsilon_s=-3.9` eV).

*Hoppings* are Harrison's universal two-centre integrals (Harrison, *Electronic Structure and the
Properties of Solids*, 1980) with a smooth cutoff and a per-atom bond budget,

.. math::  V_{ll'm} = \eta_{ll'm}\,P_{ij}\,b_{ij},\qquad
           P_{ij} = s_h\,\frac{\hbar^2/m_e}{\max(d, d_{floor})^2}\,f_c(d/d_0),\qquad
           \frac{\hbar^2}{m_e} = 7.62\ \mathrm{eV\,\AA^2},

:math:`\eta_{ss\sigma}=-1.40`, :math:`\eta_{sp\sigma}=1.84`, :math:`\eta_{pp\sigma}=3.24`,
:math:`\eta_{pp\pi}=-0.81`, :math:`s_h` = ``hopping_scale`` (0.5), :math:`d_0 = r_i + r_j`,
:math:`f_c(x)=1` for :math:`x\le x_1` (1.15), :math:`\tfrac12(1+\cos\pi\frac{x-x_1}{x_2-x_1})` up
to :math:`x_2` (1.45) and 0 beyond.  :math:`d_{floor}` (1.8 Å) tempers the very short bonds of
first-row elements.  The bond budget :math:`b_{ij} = \min(1, B/\max(S_i, S_j))`,
:math:`S_i = \sum_j P_{ij}`, :math:`B` = ``hopping_budget`` (4 eV) conserves the total bonding per
atom (Pauling bond order: in highly coordinated cells each bond is weaker); it leaves sp3
semiconductors (Si: :math:`S = 3.2` eV) untouched, keeps close-packed metals' band widths at
~10-14 eV and *bounds every band*: the Slater-Koster block has spectral norm
:math:`c = 4.38` per unit :math:`P`, so by block Gershgorin all eigenvalues lie within
:math:`[\min\epsilon_s - cB, \max\epsilon_p + cB]` over the pool (:func:`edos_window`; the default
grid -48..17 eV is this window plus 6 sigma).  The Slater-Koster table gives the 4x4 blocks
(:math:`\hat r` from atom i to atom j): :math:`E_{ss}=V_{ss\sigma}`,
:math:`E_{s,p_\alpha}=\hat r_\alpha V_{sp\sigma}`,
:math:`E_{p_\alpha,s}=-\hat r_\alpha V_{sp\sigma}`,
:math:`E_{p_\alpha p_\beta}=\hat r_\alpha\hat r_\beta(V_{pp\sigma}-V_{pp\pi})
+\delta_{\alpha\beta}V_{pp\pi}`.
The Bloch Hamiltonian :math:`H_{ia,jb}(\mathbf k) = \epsilon_{ia}\delta_{ij}\delta_{ab} +
\sum_{\mathbf R} t_{ia,jb}(\mathbf R)\,e^{i\mathbf k\cdot\mathbf R}` (all periodic images within
the cutoff) is diagonalised on a Gamma-centred Monkhorst-Pack mesh with
:math:`n_\alpha = \lceil L_k/|\mathbf a_\alpha|\rceil` points along reciprocal vector
:math:`\alpha` (``k_length`` = :math:`L_k` = 32 Å), reduced by time reversal
:math:`E(\mathbf k)=E(-\mathbf k)`.

With these parameters Si (diamond) has a 1.5 eV gap, GaAs 1.7, ZnS 3.0, MgO 3.7, NaCl 5.6, LiF
9.5 eV, while Cu, Al, Fe, Na, Cs are metals.

*Electrons*: valence :math:`N_v` = group (1, 2) for the s-block, group - 10 (3..7) for the
p-block, the number of electrons in the outer s shell for the d-block (1 or 2, at least 1); at
most 7 < 8 per atom.  Every band holds 2 electrons per k-point (no spin polarisation).

*Conventions*: if :math:`N_e` is even and band :math:`n=N_e/2` lies below band :math:`n+1`
everywhere on the mesh by more than ``gap_tol`` (0.1 eV), the material is gapped:
``vbm`` :math:`=\max_k E_n(k)`, ``cbm`` :math:`=\min_k E_{n+1}(k)`, ``band_gap`` = cbm - vbm,
``e_fermi`` = (vbm + cbm)/2 (**mid-gap**).  Otherwise it is a metal: ``e_fermi`` is the filling
level (the level where the k-weighted count of states reaches :math:`N_e`; midway between the last
filled and the first empty level when that count is reached exactly), ``vbm = cbm = e_fermi`` and
``band_gap = 0``.  Energies are absolute (eV, one arbitrary zero for all materials).  Gaps are
those of the discrete mesh (an upper bound of the model's true gap).

*Spectrum*: eigenvalues are broadened with a Gaussian of width ``sigma`` (0.08 eV) onto the
absolute grid ``e_min .. e_max`` with spacing ``de`` (0.02 eV), in **states/eV per cell, spin
included** (spin factor 2): :math:`g(E) = 2\sum_{k,n} w_k\,\delta_\sigma(E-E_{n}(k))`,
:math:`\sum_k w_k = 1`.  The trapezoid integral over the grid equals ``n_states`` = 8 x n_atoms
(up to float32 rounding).

Phonon model (``toy_phdos``)
----------------------------
Harmonic springs.  With :math:`d^{nn}_i` the nearest-neighbour distance of atom i,
:math:`d^{ref}_{ij} = \min(d^{nn}_i, d^{nn}_j)` and :math:`a_{ws} = (V/N)^{1/3}`, a pair carries a
first-shell weight :math:`w^{s}_{ij} = f_c(d/d^{ref}; 1.1, 1.3)` and a weak background weight
:math:`w^{b}_{ij} = \beta f_c(d/\max(d^{ref}, a_{ws}); 1.4, 2.0)` (:math:`\beta` = ``background``
= 0.1; it couples molecules and layers to each other, so that molecular prototypes do not produce
floppy zero-frequency modes).  The stiffness follows the Lindemann melting criterion
(:math:`k\,u^2 \sim k_B T` with the vibration amplitude :math:`u \propto d`), corrected for
ionicity (Pauling) and normalised by the coordination so that the local stiffness does not grow
with the number of neighbours:

.. math:: k_{ij} = \kappa\,\sqrt{T_i T_j}\,\bigl(1 + \lambda(\chi_i-\chi_j)^2\bigr)
          \Bigl(\frac{w^s_{ij}}{d_{ij}^2} + \frac{w^b_{ij}}{(d^{ref}_{ij})^2}\Bigr)
          \frac{z_{ref}}{(z_i+z_j)/2},\qquad z_i = \sum_j (w^s_{ij} + w^b_{ij}),

with :math:`T = \sqrt{T_{melt} T_{boil}}` (a cohesion proxy robust to anomalously low melting
points such as Ga), for non-metals at least ``t_nonmetal`` (2000 K: their covalent/ionic bonds are
much stiffer than the molecular solid's melting point suggests), :math:`\kappa` = ``kappa``
(0.009 eV/K), :math:`\lambda` = ``ionic`` (0.1), :math:`z_{ref}` = 6.  Finally the per-atom
"Einstein" stiffness is capped, :math:`\sum_j k_{ij}/m_i \le E` (``einstein_cap``, 3.8
eV Å^-2 amu^-1), by scaling :math:`k_{ij}` with :math:`\min(1, E/\max(E_i, E_j))` (bond-strength
saturation of the lightest compounds).  Each pair contributes the 3x3 block
:math:`K_{ij} = k_{ij}\,[\hat r\hat r^T + \gamma (I - \hat r\hat r^T)]` (central spring plus a weak
transverse part :math:`\gamma` = ``transverse`` = 0.15 that stabilises under-coordinated
networks); :math:`\Phi_{ij}(\mathbf R) = -K_{ij}`, :math:`\Phi_{ii}(0) = \sum K` (acoustic sum
rule: the three acoustic modes vanish at Gamma).  The dynamical matrix
:math:`D(\mathbf q) = M^{-1/2}\Phi(\mathbf q)M^{-1/2}` (masses in amu) is diagonalised on a
Gamma-centred mesh (``q_length`` = 30 Å); :math:`\tilde\nu = 521.47\sqrt{\max(\lambda, 0)}`
cm^-1 (:math:`\sqrt{\mathrm{eV\,\AA^{-2}\,amu^{-1}}}/(2\pi c)` = 521.47 cm^-1).  By block
Gershgorin on :math:`M^{-1}\Phi`, :math:`\tilde\nu \le 521.47\sqrt{2E}` = 1438 cm^-1
(:func:`phdos_max_frequency`).  Typical values: Si 420, GaAs 180, NaCl 290, MgO 510, Al 310,
Cu 210, Pb 64 cm^-1; diamond-like light compounds 850-1150 cm^-1.

*Spectrum*: Gaussian broadening (``sigma`` = 8 cm^-1) on the grid 0 .. ``f_max`` (1500 cm^-1,
spacing ``df`` = 2 cm^-1), in **modes per cm^-1 per cell**.  The weight that the Gaussians of
low-frequency modes put below 0 is reflected back at 0 (the DOS is folded,
:math:`g(\nu) + g(-\nu)`), so the trapezoid integral over the stored grid is exactly :math:`3N`
(``n_modes``) and nothing is renormalised.

Everything that shapes the data enters :meth:`ToyEDOS.cache_key`, together with
:data:`GENERATOR_VERSION` (bump it whenever the physics changes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import logging
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.records import RecordSet
from dos_bench.io import ConfigError, DataError, memory_cache, save_cache, stable_hash

__all__ = [
    "GENERATOR_VERSION",
    "ELEMENT_POOL",
    "CRYSTAL_SYSTEMS",
    "StructureParams",
    "EDOSParams",
    "PhDOSParams",
    "edos_window",
    "phdos_max_frequency",
    "spring_network",
    "ToyEDOS",
    "ToyPhDOS",
    "ToyStructure",
    "make_toy_structure",
    "structure_from_prototype",
    "prototype_species",
    "structure_bands",
    "structure_phonons",
    "compute_edos",
    "compute_phdos",
    "bloch_matrices",
    "slater_koster_sp",
    "harrison_hoppings",
    "sp_bands",
    "phonon_frequencies",
    "gamma_mesh",
    "broaden",
]

log = logging.getLogger(__name__)

#: Bump whenever the generated data change for identical constructor arguments.
GENERATOR_VERSION = 2  # 2: n_valence column

#: :math:`\hbar^2/m_e` in eV Å^2 (Harrison).
HBAR2_OVER_ME = 7.62
#: Harrison's universal dimensionless hopping coefficients.
HARRISON_ETA = {"sss": -1.40, "sps": 1.84, "pps": 3.24, "ppp": -0.81}
#: :math:`\sqrt{eV\,Å^{-2}\,amu^{-1}}` expressed in cm^-1.
SQRT_EV_A2_AMU_TO_CM1 = 521.4709

#: Elements used to decorate the prototypes (s-block, d-block treated as s-like metals, p-block).
ELEMENT_POOL: tuple[str, ...] = (
    "Li", "Na", "K", "Rb", "Cs", "Be", "Mg", "Ca", "Sr", "Ba",
    "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Y", "Zr", "Nb", "Mo", "Pd", "Ag", "Cd", "Pt", "Au",
    "B", "Al", "Ga", "In", "C", "Si", "Ge", "Sn", "Pb",
    "N", "P", "As", "Sb", "Bi", "O", "S", "Se", "Te", "F", "Cl", "Br", "I",
)  # fmt: skip

#: The seven crystal systems (``SpacegroupAnalyzer.get_crystal_system``, lowercase).
CRYSTAL_SYSTEMS = (
    "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic",
)  # fmt: skip


# ============================================================================ element data
@dataclass(frozen=True)
class ElementData:
    """Per-element parameters of the toy models (derived from pymatgen element data)."""

    symbol: str
    z: int
    group: int
    valence: int  # s+p valence electrons used by the tight-binding model
    chi: float  # Pauling electronegativity
    eps_s: float  # eV
    eps_p: float  # eV
    radius: float  # Slater atomic radius, Å
    mass: float  # amu
    t_melt: float  # K, melting point
    t_boil: float  # K, boiling point
    is_metal: bool


def _element_data(symbol: str) -> ElementData:
    from pymatgen.core import Element

    el = Element(symbol)
    group = int(el.group)
    if group <= 2:
        valence = group
    elif group >= 13:
        valence = group - 10
    else:  # d-block: electrons in the outermost s shell (Pd 4d10 has none: use 1)
        occ_s = [occ for n, l, occ in el.full_electronic_structure if l == "s" and n == el.row]
        valence = max(1, int(sum(occ_s)))
    chi = float(el.X)
    top = -float(el.ionization_energies[0])
    if group >= 13:
        eps_p = top
        eps_s = top - (1.5 + 3.5 * (chi - 1.0))
    else:
        eps_s = top
        eps_p = top + 2.0 + (chi - 0.8)
    return ElementData(
        symbol=symbol,
        z=int(el.Z),
        group=group,
        valence=valence,
        chi=chi,
        eps_s=eps_s,
        eps_p=eps_p,
        radius=float(el.atomic_radius),
        mass=float(el.atomic_mass),
        t_melt=float(el.melting_point),
        t_boil=float(el.boiling_point),
        is_metal=bool(el.is_metal),
    )


@lru_cache(maxsize=1)
def _element_table() -> dict[int, ElementData]:
    """Atomic number -> :class:`ElementData` for every element of :data:`ELEMENT_POOL`."""
    table = {}
    for sym in ELEMENT_POOL:
        d = _element_data(sym)
        table[d.z] = d
    return table


def _element_arrays(numbers: np.ndarray) -> dict[str, np.ndarray]:
    tab = _element_table()
    try:
        rows = [tab[int(z)] for z in numbers]
    except KeyError as exc:
        raise ValueError(f"atomic number {exc.args[0]} is not in the toy element pool") from None
    return {
        "eps_s": np.array([r.eps_s for r in rows]),
        "eps_p": np.array([r.eps_p for r in rows]),
        "radius": np.array([r.radius for r in rows]),
        "mass": np.array([r.mass for r in rows]),
        "t_melt": np.array([r.t_melt for r in rows]),
        "t_boil": np.array([r.t_boil for r in rows]),
        "is_metal": np.array([r.is_metal for r in rows]),
        "chi": np.array([r.chi for r in rows]),
        "valence": np.array([r.valence for r in rows], dtype=np.int64),
    }


@lru_cache(maxsize=1)
def _roles() -> dict[str, dict[int, tuple[int, ...]]]:
    """Elements of the pool usable as cation of valence v / anion missing 8-v electrons."""
    cation: dict[int, list[int]] = {1: [], 2: [], 3: [], 4: []}
    anion: dict[int, list[int]] = {1: [], 2: [], 3: [], 4: []}
    for z, d in sorted(_element_table().items()):
        if d.group <= 13 or d.symbol in ("C", "Si", "Ge", "Sn", "Pb"):
            if d.valence in cation:
                cation[d.valence].append(z)
        if 14 <= d.group <= 17 and d.symbol not in ("Pb", "Bi"):
            anion[8 - d.valence].append(z)
    return {
        "cation": {k: tuple(v) for k, v in cation.items()},
        "anion": {k: tuple(v) for k, v in anion.items()},
    }


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


def _crystal_system(structure: Any) -> str:
    """Lowercase ``SpacegroupAnalyzer(s, symprec=0.1).get_crystal_system()`` (error: triclinic)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with _quiet_spglib():
        try:
            return str(SpacegroupAnalyzer(structure, symprec=0.1).get_crystal_system()).lower()
        except Exception:  # spglib failure on a pathological cell: no symmetry found
            return "triclinic"


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
    system = _crystal_system(s)
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
        crystal_system=_crystal_system(s),
    )


# ============================================================================ generic numerics
def smooth_cutoff(x: np.ndarray, x1: float, x2: float) -> np.ndarray:
    """1 for x <= x1, cosine taper to 0 at x2, 0 beyond."""
    x = np.asarray(x, dtype=np.float64)
    t = np.clip((x - x1) / (x2 - x1), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def gamma_mesh(lattice: np.ndarray, length: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Gamma-centred mesh, :math:`n_\alpha = \lceil L/|a_\alpha| \rceil`, reduced by k -> -k.

    Returns fractional (reciprocal-lattice) coordinates ``(nk, 3)`` and weights summing to one.
    """
    a = np.linalg.norm(lattice, axis=1)
    n = np.maximum(1, np.ceil(length / a - 1e-9)).astype(np.int64)
    grid = np.stack(np.meshgrid(*[np.arange(m) for m in n], indexing="ij"), -1).reshape(-1, 3)
    partner = (-grid) % n
    code = (grid[:, 0] * n[1] + grid[:, 1]) * n[2] + grid[:, 2]
    pcode = (partner[:, 0] * n[1] + partner[:, 1]) * n[2] + partner[:, 2]
    keep = code <= pcode
    weights = np.where(code[keep] == pcode[keep], 1.0, 2.0)
    return grid[keep] / n, weights / weights.sum()


def bloch_matrices(
    kpts: np.ndarray,
    onsite: np.ndarray,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    images: np.ndarray,
    blocks: np.ndarray,
) -> np.ndarray:
    r"""Bloch sums of site blocks.

    :math:`H_{ij}(\mathbf k) = \delta_{ij}O_i + \sum_p B_p\,e^{2\pi i\,\mathbf k\cdot\mathbf n_p}`
    over the pairs p = (i, j, n_p).

    Args:
        kpts: ``(nk, 3)`` fractional k-points.
        onsite: ``(N, b, b)`` on-site blocks.
        pair_i, pair_j: ``(P,)`` site indices; ``images``: ``(P, 3)`` integer lattice translations
            of site j; ``blocks``: ``(P, b, b)`` real blocks coupling i to j + image.  The pair
            list must contain both directions (``B_{ji}(-n) = B_{ij}(n)^T``) for a Hermitian result.

    Returns:
        ``(nk, N b, N b)`` complex Hermitian matrices.
    """
    nk = len(kpts)
    n, b, _ = onsite.shape
    h = np.zeros((nk, n, n, b, b), dtype=np.complex128)
    idx = np.arange(n)
    h[:, idx, idx] = onsite[None]
    if len(pair_i):
        phase = np.exp(2j * np.pi * (kpts @ images.T.astype(np.float64)))  # (nk, P)
        g = pair_i * n + pair_j
        order = np.argsort(g, kind="stable")
        g_sorted = g[order]
        starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
        terms = phase[:, order, None] * blocks[order].reshape(1, len(order), b * b)
        summed = np.add.reduceat(terms, starts, axis=1).reshape(nk, len(starts), b, b)
        gi, gj = np.divmod(g_sorted[starts], n)
        h[:, gi, gj] += summed
    return h.transpose(0, 1, 3, 2, 4).reshape(nk, n * b, n * b)


def slater_koster_sp(unit: np.ndarray, v: dict[str, np.ndarray]) -> np.ndarray:
    """Slater-Koster 4x4 blocks (s, px, py, pz) for bond unit vectors ``(P, 3)`` (i -> j)."""
    p = len(unit)
    out = np.zeros((p, 4, 4))
    out[:, 0, 0] = v["sss"]
    out[:, 0, 1:] = unit * v["sps"][:, None]
    out[:, 1:, 0] = -unit * v["sps"][:, None]
    out[:, 1:, 1:] = (unit[:, :, None] * unit[:, None, :]) * (v["pps"] - v["ppp"])[:, None, None]
    out[:, 1:, 1:] += np.eye(3)[None] * v["ppp"][:, None, None]
    return out


def harrison_hoppings(
    d: np.ndarray, d0: np.ndarray, scale: float, x1: float, x2: float, d_floor: float = 0.0
) -> dict[str, np.ndarray]:
    r""":math:`V = s\,\eta\,(\hbar^2/m_e)/\max(d, d_{floor})^2\,f_c(d/d_0)` (sss, sps, pps, ppp)."""
    base = scale * HBAR2_OVER_ME / np.maximum(d, d_floor) ** 2 * smooth_cutoff(d / d0, x1, x2)
    return {key: eta * base for key, eta in HARRISON_ETA.items()}


def broaden(
    values: np.ndarray, weights: np.ndarray, start: float, step: float, n: int, sigma: float
) -> np.ndarray:
    """Gaussian-broadened density of ``values`` on the grid ``start + step * arange(n)``.

    Each value is deposited on its two neighbouring grid points (linear interpolation, which
    conserves the weight exactly) and the histogram is convolved with a normalised discrete
    Gaussian, so ``step * sum`` of the result equals ``weights.sum()`` as long as the kernel stays
    inside the grid.  Values outside the grid raise ``ValueError``.
    """
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), np.shape(values)).ravel()
    values = np.ravel(values)
    pos = (values - start) / step
    half = int(math.ceil(6.0 * sigma / step))
    if pos.min() < half or pos.max() > n - 1 - half:
        raise ValueError(
            f"values in [{values.min():.3f}, {values.max():.3f}] do not fit the grid "
            f"[{start:.3f}, {start + step * (n - 1):.3f}] with a 6-sigma margin"
        )
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    hist = np.bincount(lo, weights * (1.0 - frac), minlength=n)
    hist += np.bincount(lo + 1, weights * frac, minlength=n)
    x = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    return np.convolve(hist[:n], kernel, mode="same") / step


# ============================================================================ electrons
@dataclass(frozen=True)
class EDOSParams:
    """Physics parameters of the tight-binding eDOS (see the module docstring)."""

    sigma: float = 0.08  # eV, Gaussian broadening
    de: float = 0.02  # eV, grid spacing
    e_min: float = -48.0  # eV, absolute grid start
    e_max: float = 17.0  # eV, absolute grid end
    k_length: float = 32.0  # Å, k-mesh density n = ceil(L / |a|)
    hopping_scale: float = 0.5  # global factor s_h on Harrison's hoppings
    cutoff_x1: float = 1.15  # hoppings full up to x1 * (r_i + r_j)
    cutoff_x2: float = 1.45  # ... and zero beyond x2 * (r_i + r_j)
    gap_tol: float = 0.1  # eV, smaller gaps count as metals
    d_floor: float = 1.8  # Å, hoppings use max(d, d_floor)
    budget: float = 4.0  # eV, max sum of hopping prefactors per atom (bond-order conservation)

    @property
    def grid(self) -> np.ndarray:
        n = int(round((self.e_max - self.e_min) / self.de)) + 1
        return self.e_min + self.de * np.arange(n)


def sp_bands(
    lattice: np.ndarray,
    frac: np.ndarray,
    eps_s: np.ndarray,
    eps_p: np.ndarray,
    radius: np.ndarray,
    kpts: np.ndarray,
    hopping_scale: float = 0.7,
    x1: float = 1.15,
    x2: float = 1.45,
    d_floor: float = 0.0,
    budget: float = np.inf,
) -> np.ndarray:
    r"""Eigenvalues ``(nk, 4N)`` (ascending per k) of the sp3 tight-binding model.

    Hoppings :math:`V_p = \eta\,P_p\,b_p` with the Harrison prefactor
    :math:`P_p = s_h (\hbar^2/m_e)/\max(d, d_{floor})^2 f_c(d/d_0)` and the bond-budget factor
    :math:`b_p = \min(1, B/\max(S_i, S_j))`, :math:`S_i = \sum_{p \ni i} P_p` (the defaults
    ``d_floor=0``, ``budget=inf`` give plain Harrison hoppings).
    """
    n = len(frac)
    r_cut = x2 * 2.0 * float(radius.max()) + 1e-6
    i, j, img, vec = _neighbour_list(lattice, frac, r_cut)
    d = np.linalg.norm(vec, axis=1)
    d0 = radius[i] + radius[j]
    keep = d < x2 * d0
    i, j, img, vec, d, d0 = i[keep], j[keep], img[keep], vec[keep], d[keep], d0[keep]
    pref = (
        hopping_scale * HBAR2_OVER_ME / np.maximum(d, d_floor) ** 2 * smooth_cutoff(d / d0, x1, x2)
    )
    total = np.bincount(i, weights=pref, minlength=n)
    pref = pref * np.minimum(1.0, budget / np.maximum(np.maximum(total[i], total[j]), 1e-300))
    v = {key: eta * pref for key, eta in HARRISON_ETA.items()}
    blocks = slater_koster_sp(vec / d[:, None], v)
    onsite = np.zeros((n, 4, 4))
    onsite[:, 0, 0] = eps_s
    for a in (1, 2, 3):
        onsite[:, a, a] = eps_p
    h = bloch_matrices(kpts, onsite, i, j, img, blocks)
    return np.linalg.eigvalsh(h)


def _fermi_analysis(
    eig: np.ndarray, weights: np.ndarray, n_electrons: int, gap_tol: float
) -> tuple[float, float, float, float, bool]:
    """(e_fermi, vbm, cbm, band_gap, is_metal) with the conventions of the module docstring."""
    if n_electrons % 2 == 0:
        nb = n_electrons // 2
        vbm = float(eig[:, nb - 1].max())
        cbm = float(eig[:, nb].min())
        if cbm - vbm > gap_tol:
            return 0.5 * (vbm + cbm), vbm, cbm, cbm - vbm, False
    flat = eig.ravel()
    w = np.broadcast_to(2.0 * weights[:, None], eig.shape).ravel()
    order = np.argsort(flat, kind="stable")
    e_sorted, cum = flat[order], np.cumsum(w[order])
    tol = 1e-9 * max(1.0, n_electrons)
    idx = int(np.searchsorted(cum, n_electrons - tol))
    if cum[idx] > n_electrons + tol or idx + 1 >= len(e_sorted):
        ef = float(e_sorted[idx])  # partially filled level
    else:
        ef = 0.5 * float(e_sorted[idx] + e_sorted[idx + 1])
    return ef, ef, ef, 0.0, True


def structure_bands(st: ToyStructure, p: EDOSParams, kpts: np.ndarray) -> np.ndarray:
    """Tight-binding eigenvalues ``(nk, 4N)`` (eV) of a toy structure at fractional ``kpts``."""
    el = _element_arrays(st.numbers)
    return sp_bands(
        st.lattice, st.frac, el["eps_s"], el["eps_p"], el["radius"], kpts,
        p.hopping_scale, p.cutoff_x1, p.cutoff_x2, p.d_floor, p.budget,
    )  # fmt: skip


def compute_edos(
    st: ToyStructure, p: EDOSParams | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """eDOS on ``p.grid`` (states/eV/cell, spin included) and its electronic metadata."""
    p = p or EDOSParams()
    kpts, weights = gamma_mesh(st.lattice, p.k_length)
    eig = structure_bands(st, p, kpts)
    n_el = int(_element_arrays(st.numbers)["valence"].sum())
    ef, vbm, cbm, gap, metal = _fermi_analysis(eig, weights, n_el, p.gap_tol)
    dos = broaden(eig, 2.0 * weights[:, None], p.e_min, p.de, len(p.grid), p.sigma)
    meta = {
        "e_fermi": ef,
        "vbm": vbm,
        "cbm": cbm,
        "band_gap": gap,
        "is_metal": metal,
        "n_electrons": n_el,
        "n_valence": n_el,  # the column target_repr=valence_norm reads (ALIGNN-DOS §4 ii)
        "n_states": 8 * len(st.numbers),
        "n_kpoints": len(kpts),
        "e_band_min": float(eig.min()),
        "e_band_max": float(eig.max()),
    }
    return dos, meta


# ============================================================================ phonons
@dataclass(frozen=True)
class PhDOSParams:
    """Physics parameters of the spring-model phDOS (see the module docstring)."""

    sigma: float = 8.0  # cm^-1, Gaussian broadening
    df: float = 2.0  # cm^-1, grid spacing
    f_max: float = 1500.0  # cm^-1, grid end (grid starts at 0)
    q_length: float = 30.0  # Å, q-mesh density n = ceil(L / |a|)
    kappa: float = 0.009  # eV/K: k = kappa * T / d^2 (Lindemann law)
    ionic: float = 0.1  # lambda, Pauling ionicity enhancement
    t_nonmetal: float = 2000.0  # K, floor of the stiffness temperature for non-metals
    transverse: float = 0.15  # gamma, transverse/central stiffness ratio
    z_ref: float = 6.0  # reference coordination
    shell_x1: float = 1.1  # bonds full up to x1 * nearest-neighbour distance
    shell_x2: float = 1.3  # ... and zero beyond x2 * nearest-neighbour distance
    background: float = 0.1  # relative strength of the weak background springs ...
    background_x1: float = 1.4  # ... full up to x1 * max(nearest-neighbour distance, a_ws)
    background_x2: float = 2.0  # ... and zero beyond x2 * max(nearest-neighbour distance, a_ws)
    einstein_cap: float = 3.8  # eV/Å^2/amu, max of sum_j k_ij / m_i per atom

    @property
    def grid(self) -> np.ndarray:
        n = int(round(self.f_max / self.df)) + 1
        return self.df * np.arange(n)


def spring_network(
    lattice: np.ndarray,
    frac: np.ndarray,
    masses: np.ndarray,
    t_stiff: np.ndarray,
    chi: np.ndarray,
    p: PhDOSParams,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bonded pairs and central stiffnesses: (i, j, images, vec, k) with k in eV/Å^2."""
    n = len(frac)
    r = 1.6 * (abs(np.linalg.det(lattice)) / n) ** (1.0 / 3.0)
    for _ in range(10):
        i, j, img, vec = _neighbour_list(lattice, frac, r)
        if len(np.unique(i)) == n:
            break
        r *= 1.5
    d = np.linalg.norm(vec, axis=1)
    dnn = np.full(n, np.inf)
    np.minimum.at(dnn, i, d)
    a_ws = (abs(np.linalg.det(lattice)) / n) ** (1.0 / 3.0)
    r_need = p.background_x2 * max(float(dnn.max()), a_ws) + 1e-6
    if r_need > r:
        i, j, img, vec = _neighbour_list(lattice, frac, r_need)
        d = np.linalg.norm(vec, axis=1)
    d_ref = np.minimum(dnn[i], dnn[j])
    w_shell = smooth_cutoff(d / d_ref, p.shell_x1, p.shell_x2)
    w_bg = p.background * smooth_cutoff(d / np.maximum(d_ref, a_ws), p.background_x1,
                                        p.background_x2)  # fmt: skip
    w = w_shell + w_bg
    keep = w > 0
    i, j, img, vec, d, d_ref = i[keep], j[keep], img[keep], vec[keep], d[keep], d_ref[keep]
    w, w_shell, w_bg = w[keep], w_shell[keep], w_bg[keep]
    z = np.bincount(i, weights=w, minlength=n)
    strength = np.sqrt(t_stiff[i] * t_stiff[j]) * (1.0 + p.ionic * (chi[i] - chi[j]) ** 2)
    k = p.kappa * strength * (w_shell / d**2 + w_bg / d_ref**2) * p.z_ref / (0.5 * (z[i] + z[j]))
    # cap of the per-atom Einstein stiffness sum_j k_ij / m_i (bounds omega_max, see docstring)
    e = np.bincount(i, weights=k, minlength=n) / masses
    k = k * np.minimum(1.0, p.einstein_cap / np.maximum(np.maximum(e[i], e[j]), 1e-300))
    return i, j, img, vec, k


def phonon_frequencies(
    masses: np.ndarray,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    images: np.ndarray,
    vec: np.ndarray,
    k_par: np.ndarray,
    qpts: np.ndarray,
    transverse: float = 0.0,
) -> np.ndarray:
    r"""Frequencies ``(nq, 3N)`` in cm^-1 of the spring model (ascending per q).

    Each pair (both directions listed) carries
    :math:`K = k(\hat r\hat r^T + \gamma(I-\hat r\hat r^T))` (eV/Å^2); masses in amu.
    Negative eigenvalues (round-off) are clamped to 0.
    """
    n = len(masses)
    unit = vec / np.linalg.norm(vec, axis=1)[:, None]
    rr = unit[:, :, None] * unit[:, None, :]
    kb = k_par[:, None, None] * (rr + transverse * (np.eye(3)[None] - rr))
    onsite = np.zeros((n, 3, 3))
    np.add.at(onsite, pair_i, kb)
    msq = 1.0 / np.sqrt(masses)
    onsite *= (msq * msq)[:, None, None]
    blocks = -kb * (msq[pair_i] * msq[pair_j])[:, None, None]
    dyn = bloch_matrices(qpts, onsite, pair_i, pair_j, images, blocks)
    lam = np.linalg.eigvalsh(dyn)
    return SQRT_EV_A2_AMU_TO_CM1 * np.sqrt(np.clip(lam, 0.0, None))


def structure_phonons(st: ToyStructure, p: PhDOSParams, qpts: np.ndarray) -> np.ndarray:
    """Spring-model frequencies ``(nq, 3N)`` (cm^-1) of a toy structure at fractional ``qpts``."""
    el = _element_arrays(st.numbers)
    t_stiff = np.sqrt(el["t_melt"] * el["t_boil"])
    t_stiff = np.where(el["is_metal"], t_stiff, np.maximum(t_stiff, p.t_nonmetal))
    i, j, img, vec, k = spring_network(st.lattice, st.frac, el["mass"], t_stiff, el["chi"], p)
    return phonon_frequencies(el["mass"], i, j, img, vec, k, qpts, p.transverse)


def compute_phdos(
    st: ToyStructure, p: PhDOSParams | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """phDOS on ``p.grid`` (modes/cm^-1/cell, integral 3N) and its metadata."""
    p = p or PhDOSParams()
    qpts, weights = gamma_mesh(st.lattice, p.q_length)
    freq = structure_phonons(st, p, qpts)
    dos = _folded_dos(freq, weights, p)
    meta = {"n_modes": 3 * len(st.numbers), "max_freq": float(freq.max()), "n_qpoints": len(qpts)}
    return dos, meta


def _folded_dos(freq: np.ndarray, weights: np.ndarray, p: PhDOSParams) -> np.ndarray:
    """Broadened phDOS on 0..f_max with the weight below 0 reflected back (exact 3N integral)."""
    n = int(round(p.f_max / p.df)) + 1
    pad = int(math.ceil(6.0 * p.sigma / p.df)) + 2
    ext = broaden(freq, weights[:, None], -pad * p.df, p.df, n + pad, p.sigma)
    dos = ext[pad:].copy()
    dos[1 : pad + 1] += ext[:pad][::-1]  # g(+m df) += g(-m df)
    dos[0] *= 2.0  # g(0) + g(-0)
    return dos


def sk_block_norm() -> float:
    """Largest spectral norm of a Slater-Koster sp block per unit Harrison prefactor.

    In the bond frame the block splits into the sigma part ``[[sss, sps], [-sps, pps]]`` and two
    ``ppp`` entries, so the norm is direction independent.
    """
    eta = HARRISON_ETA
    sigma = np.array([[eta["sss"], eta["sps"]], [-eta["sps"], eta["pps"]]])
    return float(max(np.linalg.norm(sigma, 2), abs(eta["ppp"])))


def edos_window(p: EDOSParams) -> tuple[float, float]:
    r"""Energy window (eV) guaranteed to contain every band of every pool material, +-6 sigma.

    Block Gershgorin bound: each atom's hoppings sum to at most ``budget`` (prefactor units), so
    :math:`\|T(\mathbf k)\| \le c\,B` with :math:`c` = :func:`sk_block_norm`, and every eigenvalue
    lies in :math:`[\min\epsilon_s - cB, \max\epsilon_p + cB]` over the element pool.
    """
    table = _element_table()
    spread = sk_block_norm() * p.budget
    lo = min(d.eps_s for d in table.values()) - spread - 6.0 * p.sigma
    hi = max(d.eps_p for d in table.values()) + spread + 6.0 * p.sigma
    return float(lo), float(hi)


def phdos_max_frequency(p: PhDOSParams) -> float:
    r"""Guaranteed upper bound (cm^-1) of the spring-model frequencies.

    With :math:`\sum_j k_{ij}/m_i \le E` (``einstein_cap``) and :math:`\gamma \le 1`, block
    Gershgorin applied to :math:`M^{-1}\Phi(\mathbf q)` gives :math:`\omega^2 \le 2E`.
    """
    return float(SQRT_EV_A2_AMU_TO_CM1 * math.sqrt(2.0 * p.einstein_cap))


# ============================================================================ datasets
_BLAS_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
             "openblas_set_num_threads64_", "openblas_set_num_threads")  # fmt: skip
_BLAS_GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
             "openblas_get_num_threads64_", "openblas_get_num_threads")  # fmt: skip


def _openblas_handles() -> list[tuple[Any, Any]]:
    """(get, set) thread-count functions of every OpenBLAS loaded in this process (Linux only).

    The toy generators diagonalise many small matrices; OpenBLAS threading only adds contention
    there (and oversubscribes the cores when several workers run), so generation pins it to one
    thread.  Without ``/proc/self/maps`` or OpenBLAS this returns an empty list (no-op).
    """
    import ctypes

    try:
        with open("/proc/self/maps") as fh:
            paths = {
                line.split()[-1] for line in fh if "openblas" in line.lower() and ".so" in line
            }
    except OSError:
        return []
    out = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        get = next((getattr(lib, n) for n in _BLAS_GET if hasattr(lib, n)), None)
        set_ = next((getattr(lib, n) for n in _BLAS_SET if hasattr(lib, n)), None)
        if get is not None and set_ is not None:
            get.restype = ctypes.c_int
            out.append((get, set_))
    return out


@contextlib.contextmanager
def _single_blas_thread() -> Iterator[None]:
    """Temporarily run OpenBLAS with one thread (restored afterwards)."""
    import ctypes

    handles = _openblas_handles()
    old = [int(get()) for get, _ in handles]
    for _, set_ in handles:
        set_(ctypes.c_int(1))
    try:
        yield
    finally:
        for (_, set_), n in zip(handles, old, strict=True):
            set_(ctypes.c_int(n))


def _init_worker() -> None:
    """Pool initializer: one OpenBLAS thread per worker process."""
    import ctypes

    for _, set_ in _openblas_handles():
        set_(ctypes.c_int(1))


def _work_chunk(task: tuple[str, StructureParams, Any, list[int]]) -> list[dict[str, Any]]:
    """Generate the materials ``indices`` (one pool task): structure, float32 spectrum, metadata."""
    kind, sp, pp, indices = task
    out = []
    for idx in indices:
        st = make_toy_structure(sp, idx)
        dos, meta = compute_edos(st, pp) if kind == "edos" else compute_phdos(st, pp)
        out.append({"index": idx, "structure": st, "dos": dos.astype(np.float32), "meta": meta})
    return out


def _chunks(n: int, size: int) -> Iterator[list[int]]:
    for a in range(0, n, size):
        yield list(range(a, min(n, a + size)))


class _ToyDataset:
    """Shared machinery of :class:`ToyEDOS` and :class:`ToyPhDOS`."""

    name = "toy"
    kind = "edos"

    def __init__(
        self,
        n_materials: int,
        seed: int,
        max_atoms: int,
        n_jobs: int,
        progress: bool,
        structure_params: StructureParams,
        physics: EDOSParams | PhDOSParams,
    ) -> None:
        if n_materials < 1:
            raise ValueError(f"n_materials must be >= 1, got {n_materials}")
        if max_atoms < 1:
            raise ValueError(f"max_atoms must be >= 1, got {max_atoms}")
        self.n_materials = int(n_materials)
        self.seed = int(seed)
        self.max_atoms = int(max_atoms)
        self.n_jobs = int(n_jobs) if int(n_jobs) > 0 else (os.cpu_count() or 1)
        self.progress = bool(progress)
        self.structure_params = structure_params
        self.physics = physics

    # ------------------------------------------------------------------ cache
    def cache_key(self) -> dict[str, Any]:
        """Everything that shapes the data (not ``n_jobs`` / ``progress``)."""
        return {
            "name": self.name,
            "generator_version": GENERATOR_VERSION,
            "n_materials": self.n_materials,
            "structure": asdict(self.structure_params),
            "physics": asdict(self.physics),
        }

    def cache_path(self, data_dir: str | Path) -> Path:
        return Path(data_dir) / f"{self.name}-{stable_hash(self.cache_key())}.npz"

    def load(self, data_dir: str | Path) -> RecordSet:
        """Read the cached set from ``data_dir`` or generate it and write it there atomically."""
        path = self.cache_path(data_dir)
        if (kept := memory_cache(path)) is not None:  # read-only data directory, same process
            return kept
        if path.exists():
            log.info("reusing cached %s at %s", self.name, path)
            rs = RecordSet.load(path)
            expect = {"name": self.name, "n_materials": self.n_materials,
                      "generator_version": GENERATOR_VERSION, "seed": self.seed}  # fmt: skip
            for key, val in expect.items():
                if rs.attrs.get(key) != val:
                    raise DataError(
                        f"{path}: cached attribute {key}={rs.attrs.get(key)!r} does not match "
                        f"the requested {val!r}; delete the file to regenerate"
                    )
            return rs
        t0 = time.perf_counter()
        rs = self.generate()
        saved = save_cache(rs, path)  # a read-only data directory: kept in memory, one warning
        log.info(
            "generated %s (%d materials) in %.1f s, %s",
            self.name, len(rs), time.perf_counter() - t0,
            f"saved to {path}" if saved else "kept in memory",
        )  # fmt: skip
        return rs

    # ------------------------------------------------------------------ generation
    def _attrs(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "seed": self.seed,
            "n_materials": self.n_materials,
            "generator_version": GENERATOR_VERSION,
            "max_atoms": self.max_atoms,
            "structure_params": asdict(self.structure_params),
            "physics": asdict(self.physics),
        }

    def _grid(self) -> np.ndarray:
        return self.physics.grid

    def generate(self) -> RecordSet:
        """Generate all materials (``n_jobs`` processes, deterministic for the seed)."""
        from tqdm.auto import tqdm

        n = self.n_materials
        size = max(1, min(32, math.ceil(n / (4 * self.n_jobs))))
        tasks = [(self.kind, self.structure_params, self.physics, c) for c in _chunks(n, size)]
        results: list[dict[str, Any]] = []
        with tqdm(total=n, desc=self.name, unit="mat", disable=not self.progress) as bar:
            if self.n_jobs == 1 or len(tasks) == 1:
                with _single_blas_thread():
                    for t in tasks:
                        part = _work_chunk(t)
                        results.extend(part)
                        bar.update(len(part))
            else:
                _prototypes()  # parse the library once, before the workers fork
                ctx = multiprocessing.get_context()
                with ctx.Pool(min(self.n_jobs, len(tasks)), initializer=_init_worker) as pool:
                    for part in pool.imap(_work_chunk, tasks):
                        results.extend(part)
                        bar.update(len(part))
        return self._assemble(results)

    def _assemble(self, results: Sequence[dict[str, Any]]) -> RecordSet:
        prefix = self.name.replace("_", "-")
        structs = [r["structure"] for r in results]
        n_atoms = np.array([len(s.numbers) for s in structs], dtype=np.int64)
        meta: dict[str, np.ndarray] = {
            "formula": np.array([s.formula for s in structs]),
            "n_species": np.array([s.n_species for s in structs], dtype=np.int64),
            "crystal_system": np.array([s.crystal_system for s in structs]),
            "prototype": np.array([s.prototype for s in structs]),
            "n_atoms": n_atoms,
        }
        for key in results[0]["meta"]:
            meta[key] = np.array([r["meta"][key] for r in results])
        rs = RecordSet(
            ids=np.array([f"{prefix}-{r['index']:06d}" for r in results]),
            lattices=np.stack([s.lattice for s in structs]).astype(np.float64),
            numbers=np.concatenate([s.numbers for s in structs]).astype(np.int16),
            frac_coords=np.concatenate([s.frac for s in structs]).astype(np.float64) % 1.0,
            ptr=np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
            energies=self._grid(),
            spectra=np.stack([r["dos"] for r in results]).astype(np.float32),
            meta=meta,
            attrs=self._attrs(),
        )
        rs.validate(source=self.name)
        return rs


class ToyEDOS(_ToyDataset):
    """Tight-binding electronic DOS of decorated AFLOW prototypes (see the module docstring).

    Spectra: states/eV per cell (spin included, 8 states per atom) on the absolute energy grid
    ``e_min .. e_max`` (eV, spacing ``de``; ``None`` = the guaranteed band window of
    :func:`edos_window`); metadata ``e_fermi``, ``vbm``, ``cbm``, ``band_gap``, ``is_metal``,
    ``n_electrons``, ``n_states``, ``n_kpoints``, ``e_band_min``, ``e_band_max`` plus the
    structural columns ``formula``, ``n_species``, ``crystal_system``, ``prototype``, ``n_atoms``.
    """

    name = "toy_edos"
    kind = "edos"

    def __init__(
        self,
        n_materials: int = 3000,
        seed: int = 0,
        max_atoms: int = 24,
        n_jobs: int = 2,
        progress: bool = True,
        *,
        p_ionic: float = 0.7,
        p_break: float = 0.35,
        scale_jitter: float = 0.03,
        sigma: float = 0.08,
        de: float = 0.02,
        e_min: float | None = None,
        e_max: float | None = None,
        k_length: float = 32.0,
        hopping_scale: float = 0.5,
        hopping_budget: float = 4.0,
        d_floor: float = 1.8,
        cutoff_x1: float = 1.15,
        cutoff_x2: float = 1.45,
        gap_tol: float = 0.1,
    ) -> None:
        physics = EDOSParams(
            sigma=float(sigma), de=float(de), e_min=0.0, e_max=0.0, k_length=float(k_length),
            hopping_scale=float(hopping_scale), budget=float(hopping_budget),
            d_floor=float(d_floor), cutoff_x1=float(cutoff_x1), cutoff_x2=float(cutoff_x2),
            gap_tol=float(gap_tol),
        )  # fmt: skip
        lo, hi = edos_window(physics)
        auto_lo, auto_hi = math.floor(lo - 0.5), math.ceil(hi + 0.5)
        e_min = float(auto_lo if e_min is None else e_min)
        e_max = float(auto_hi if e_max is None else e_max)
        if not physics.de > 0 or e_max <= e_min:
            raise ConfigError(
                f"toy_edos: need de > 0 and e_max > e_min, got {de}, {e_min}, {e_max}"
            )
        physics = dataclasses.replace(physics, e_min=e_min, e_max=e_max)
        if e_min > lo or float(physics.grid[-1]) < hi:
            raise ConfigError(
                f"toy_edos: energy grid [e_min={e_min}, e_max={e_max}] eV must contain the "
                f"guaranteed band window [{lo:.2f}, {hi:.2f}] eV (incl. 6 sigma) of these "
                f"parameters; use e_min <= {auto_lo} and e_max >= {auto_hi} (or null = auto)"
            )
        structure = StructureParams(
            seed=int(seed), max_atoms=int(max_atoms), p_ionic=float(p_ionic),
            p_break=float(p_break), scale_jitter=float(scale_jitter),
        )  # fmt: skip
        super().__init__(n_materials, seed, max_atoms, n_jobs, progress, structure, physics)

    def _attrs(self) -> dict[str, Any]:
        return {
            **super()._attrs(),
            "energy_unit": "eV",
            "dos_unit": "states/eV/cell (spin included)",
            "energy_reference": "absolute; use meta e_fermi / vbm / cbm",
            "spin_factor": 2,
            "orbitals_per_atom": 4,
        }


class ToyPhDOS(_ToyDataset):
    """Spring-model phonon DOS of decorated AFLOW prototypes (see the module docstring).

    Spectra: modes per cm^-1 per cell on ``0 .. f_max`` cm^-1 (spacing ``df``), integrating to
    ``3 n_atoms``; metadata ``n_modes``, ``max_freq``, ``n_qpoints`` plus the structural columns.
    For the same seed (and structure parameters) the structures are identical to those of
    :class:`ToyEDOS`.
    """

    name = "toy_phdos"
    kind = "phdos"

    def __init__(
        self,
        n_materials: int = 3000,
        seed: int = 0,
        max_atoms: int = 24,
        n_jobs: int = 2,
        progress: bool = True,
        *,
        p_ionic: float = 0.7,
        p_break: float = 0.35,
        scale_jitter: float = 0.03,
        sigma: float = 8.0,
        df: float = 2.0,
        f_max: float = 1500.0,
        q_length: float = 30.0,
        kappa: float = 0.009,
        ionic: float = 0.1,
        t_nonmetal: float = 2000.0,
        transverse: float = 0.15,
        background: float = 0.1,
        einstein_cap: float = 3.8,
    ) -> None:
        physics = PhDOSParams(
            sigma=float(sigma), df=float(df), f_max=float(f_max), q_length=float(q_length),
            kappa=float(kappa), ionic=float(ionic), t_nonmetal=float(t_nonmetal),
            transverse=float(transverse), background=float(background),
            einstein_cap=float(einstein_cap),
        )  # fmt: skip
        if not 0.0 <= physics.transverse <= 1.0:
            raise ConfigError(f"toy_phdos: transverse must be in [0, 1], got {transverse}")
        top = phdos_max_frequency(physics) + 6.0 * physics.sigma
        if top > physics.f_max:
            raise ConfigError(
                f"toy_phdos: f_max={f_max} cm^-1 must be >= {top:.0f} cm^-1, the guaranteed "
                f"maximum frequency of einstein_cap={einstein_cap} plus 6 sigma"
            )
        structure = StructureParams(
            seed=int(seed), max_atoms=int(max_atoms), p_ionic=float(p_ionic),
            p_break=float(p_break), scale_jitter=float(scale_jitter),
        )  # fmt: skip
        super().__init__(n_materials, seed, max_atoms, n_jobs, progress, structure, physics)

    def _attrs(self) -> dict[str, Any]:
        return {
            **super()._attrs(),
            "energy_unit": "cm^-1",
            "dos_unit": "modes/cm^-1/cell",
        }
