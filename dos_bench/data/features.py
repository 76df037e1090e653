"""Per-element atom feature tables and per-structure composition vectors.

Atom feature tables are plain ``(n_Z, d)`` float32 arrays indexed by atomic number (row 0 is
all zeros and stands for "no element"), so features of all atoms of a dataset are one fancy
index: ``table[numbers]``.  Models select a table by name through :data:`ATOM_FEATURE_SETS`
(or :func:`atom_feature_table`, which raises a :class:`~dos_bench.io.ConfigError` listing the
choices for an unknown name).

==============  ========  ====================================================================
name            shape     description
==============  ========  ====================================================================
``cgcnn``       (101, 92) binned one-hot element properties after CGCNN (:func:`cgcnn_features`)
``onehot``      (101,100) one-hot of Z: row Z has a 1 in column Z - 1 (Z = 1..100)
``mass_onehot`` (119,118) one-hot of Z scaled by the atomic mass in u: row Z has
                          ``mass(Z)`` in column Z - 1 (Z = 1..118), as the E3NN phonon-DOS
                          models use
==============  ========  ====================================================================

Tables are computed once per process from pymatgen's element data and cached in module-level
variables; nothing is read from or written to disk.  The getters return copies, so callers may
modify what they get.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from dos_bench.io import ConfigError, DataError

__all__ = [
    "ATOM_FEATURE_SETS",
    "CGCNN_BLOCKS",
    "N_COMPOSITION",
    "atom_feature_table",
    "cgcnn_block_slices",
    "cgcnn_features",
    "composition_vectors",
    "mass_onehot_features",
    "onehot_features",
]

N_COMPOSITION = 103
"""Length of a composition vector: element fractions of H (Z=1) ... Lr (Z=103)."""

CGCNN_BLOCKS: tuple[tuple[str, int], ...] = (
    ("group", 19),
    ("period", 7),
    ("electronegativity", 10),
    ("covalent_radius", 10),
    ("valence_electrons", 12),
    ("first_ionization_energy", 10),
    ("electron_affinity", 10),
    ("block", 4),
    ("atomic_volume", 10),
)
"""The one-hot blocks of the ``cgcnn`` table in column order: (property, number of categories)."""

# Bin ranges of the continuous properties: (low, high, transform).  The range is cut into
# ``n`` equal-width bins on the transformed scale; values outside [low, high] go to the first
# or last bin.  The ranges cover the pymatgen values of Z = 1..100 (rounded outwards), and
# match the ranges CGCNN quotes.
_BINS: dict[str, tuple[float, float, str]] = {
    "electronegativity": (0.5, 4.0, "linear"),  # Pauling; data range 0.70 (Fr) .. 3.98 (F)
    "covalent_radius": (25.0, 250.0, "linear"),  # pm, Cordero 2008; 28 (He) .. 260 (Fr)
    "first_ionization_energy": (1.3, 3.3, "log"),  # ln(eV); 3.89 eV (Cs) .. 24.6 eV (He)
    "electron_affinity": (-3.0, 3.7, "linear"),  # eV; -1.72 (Bk) .. 3.61 (Cl)
    "atomic_volume": (1.5, 4.3, "log"),  # ln(cm^3/mol); 4.39 (B, clipped) .. 70.9 (Cs)
}

_NOBLE_GAS_CORES = (0, 2, 10, 18, 36, 54, 86)

_CGCNN_TABLE: np.ndarray | None = None
_ONEHOT_TABLE: np.ndarray | None = None
_MASS_ONEHOT_TABLE: np.ndarray | None = None


def cgcnn_block_slices() -> dict[str, slice]:
    """Column slice of every block of the ``cgcnn`` table, keyed by property name."""
    out, start = {}, 0
    for name, n in CGCNN_BLOCKS:
        out[name] = slice(start, start + n)
        start += n
    return out


def _bin_index(value: float | None, name: str, n: int) -> int | None:
    """Bin of ``value`` for property ``name`` (None for a missing value)."""
    if value is None or not math.isfinite(value):
        return None
    lo, hi, scale = _BINS[name]
    if scale == "log":
        if value <= 0:
            return None
        value = math.log(value)
    i = int(math.floor((value - lo) / (hi - lo) * n))
    return min(max(i, 0), n - 1)


def _valence_electrons(z: int, group: int, lanthanide_or_actinide: bool) -> int:
    """Valence electron count used for the 12 ``valence_electrons`` categories (1..12)."""
    if z == 2:
        return 2
    if lanthanide_or_actinide:
        core = max(c for c in _NOBLE_GAS_CORES if c < z)
        return min(z - core, 12)
    return group if group <= 12 else group - 10


def _element_properties(z: int, covalent_radii: dict[str, float]) -> dict[str, object]:
    """Raw properties of element ``z`` from pymatgen (None where pymatgen has no value)."""
    import warnings

    from pymatgen.core import Element

    el = Element.from_Z(z)
    f_block = bool(el.is_lanthanoid or el.is_actinoid)
    with warnings.catch_warnings():  # pymatgen warns about every missing property
        warnings.simplefilter("ignore")
        x = float(el.X)
        ies = el.ionization_energies
        ea = el.electron_affinity
        mv = el.molar_volume
    radius = covalent_radii.get(el.symbol)
    return {
        "group": 18 if f_block else int(el.group) - 1,
        "period": int(el.row) - 1,
        "electronegativity": x,
        "covalent_radius": None if radius is None else 100.0 * float(radius),
        "valence_electrons": _valence_electrons(z, int(el.group), f_block) - 1,
        "first_ionization_energy": float(ies[0]) if ies and ies[0] is not None else None,
        "electron_affinity": None if ea is None else float(ea),
        "block": "spdf".index("s" if z == 2 else el.block),
        "atomic_volume": None if mv is None else float(mv),
    }


def cgcnn_features() -> np.ndarray:
    r"""CGCNN-style 92-dimensional binned one-hot atom features, shape ``(101, 92)`` float32.

    The feature design follows T. Xie and J. C. Grossman, "Crystal Graph Convolutional Neural
    Networks for an Accurate and Interpretable Prediction of Material Properties", Phys. Rev.
    Lett. 120, 145301 (2018), Supplementary Table S2.  The values are **recomputed here from
    pymatgen's element data**; they are *not* the original CGCNN ``atom_init.json``, so a
    model trained with one does not transfer to the other.

    Row ``Z`` (Z = 1..100) is the concatenation of one-hot blocks (see :data:`CGCNN_BLOCKS`,
    :func:`cgcnn_block_slices`); row 0 is all zeros.

    ======================== ===== ==========================================================
    property                 n     categories / bins (pymatgen source)
    ======================== ===== ==========================================================
    group                    19    groups 1..18 (``Element.group``); category 19 for all
                                   lanthanides La-Lu and actinides Ac-Lr
                                   (``is_lanthanoid`` / ``is_actinoid``)
    period                   7     ``Element.row`` 1..7 (f-block in rows 6 and 7)
    electronegativity        10    Pauling ``Element.X``, linear bins over [0.5, 4.0]
    covalent radius          10    Cordero 2008 covalent radius (pymatgen ``CovalentRadius``)
                                   in pm, linear bins over [25, 250]
    valence electrons        12    1..12, see below
    first ionization energy  10    ln(``ionization_energies[0]`` / eV), bins over [1.3, 3.3]
    electron affinity        10    ``electron_affinity`` in eV, linear bins over [-3.0, 3.7]
    block                    4     s, p, d, f (``Element.block``; He counted as s)
    atomic volume            10    ln(``molar_volume`` / cm^3 mol^-1), bins over [1.5, 4.3]
    ======================== ===== ==========================================================

    Continuous properties use ``n`` equal-width bins on the stated range (natural-log scale
    where marked); a value outside the range goes to the nearest end bin (only boron's atomic
    volume, ln 4.39 = 1.48, falls outside).  **Missing values give an all-zero block**, no
    dedicated bin: electronegativity of He, Ne, Ar; covalent radius of Bk, Cf, Es, Fm (Z >
    96); atomic volume of At, Fr, Fm.  Every row therefore has 9 ones minus its missing
    properties.

    Valence electrons are counted as the electrons outside the preceding noble-gas core
    without completely filled inner d10 / f14 shells, which for s-, p- and d-block elements is
    the group number (groups 1-12) or group - 10 (groups 13-18), He = 2; for lanthanides and
    actinides it is Z minus the noble-gas core, clipped to 12 (the last category means "12 or
    more").  The electronic configuration from pymatgen is not used because of anomalous
    ground states such as Pd [Kr]4d10.

    Returns:
        A copy of the cached table.  The first call takes about 0.3 s, mostly importing
        pymatgen's covalent-radius table (and scipy.spatial with it); later calls only copy.
    """
    global _CGCNN_TABLE
    if _CGCNN_TABLE is None:
        from pymatgen.core.molecule_structure_comparator import CovalentRadius

        radii = dict(CovalentRadius.radius)
        slices = cgcnn_block_slices()
        table = np.zeros((101, sum(n for _, n in CGCNN_BLOCKS)), dtype=np.float32)
        for z in range(1, 101):
            props = _element_properties(z, radii)
            for name, n in CGCNN_BLOCKS:
                value = props[name]
                if name in _BINS:
                    idx = _bin_index(value, name, n)  # type: ignore[arg-type]
                else:  # categorical property, already a 0-based category
                    idx = int(value)  # type: ignore[call-overload]
                if idx is not None:
                    table[z, slices[name].start + idx] = 1.0
        _CGCNN_TABLE = table
    return _CGCNN_TABLE.copy()


def onehot_features() -> np.ndarray:
    """One-hot encoding of Z = 1..100: shape ``(101, 100)``, row Z has a 1 in column Z - 1."""
    global _ONEHOT_TABLE
    if _ONEHOT_TABLE is None:
        _ONEHOT_TABLE = np.eye(101, dtype=np.float32)[:, 1:]
    return _ONEHOT_TABLE.copy()


def mass_onehot_features() -> np.ndarray:
    """One-hot of Z = 1..118 scaled by the atomic mass (u): shape ``(119, 118)``.

    Row Z has ``Element.from_Z(Z).atomic_mass`` in column Z - 1 and zeros elsewhere; this is
    the node input of the E3NN phonon-DOS models (Chen et al., Adv. Sci. 2021).
    """
    global _MASS_ONEHOT_TABLE
    if _MASS_ONEHOT_TABLE is None:
        from pymatgen.core import Element

        masses = np.array([float(Element.from_Z(z).atomic_mass) for z in range(1, 119)])
        table = np.zeros((119, 118), dtype=np.float32)
        table[np.arange(1, 119), np.arange(118)] = masses
        _MASS_ONEHOT_TABLE = table
    return _MASS_ONEHOT_TABLE.copy()


def _alignn5() -> np.ndarray:
    """ALIGNN-DOS §2 five element attributes (see :mod:`dos_bench.data.element_tables`)."""
    from dos_bench.data.element_tables import alignn_dos_features

    return alignn_dos_features()


ATOM_FEATURE_SETS: dict[str, Callable[[], np.ndarray]] = {
    "cgcnn": cgcnn_features,
    "onehot": onehot_features,
    "mass_onehot": mass_onehot_features,
    "alignn5": _alignn5,
}
"""Atom feature tables by name; each value returns an ``(n_Z, d)`` float32 table."""


def atom_feature_table(name: str) -> np.ndarray:
    """The ``(n_Z, d)`` table registered as ``name`` in :data:`ATOM_FEATURE_SETS`."""
    try:
        fn = ATOM_FEATURE_SETS[name]
    except KeyError:
        raise ConfigError(
            f"atom_features={name!r} is not a known atom feature set; "
            f"choose one of {sorted(ATOM_FEATURE_SETS)}"
        ) from None
    return fn()


def composition_vectors(numbers: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Element fractions of every structure, shape ``(N, 103)`` float32.

    Column ``Z - 1`` holds the fraction of atoms with atomic number Z (H ... Lr), so every row
    sums to 1.

    Args:
        numbers: ``(A,)`` atomic numbers of all atoms, structure after structure.
        ptr: ``(N + 1,)`` offsets; atoms of structure ``i`` are ``numbers[ptr[i]:ptr[i+1]]``.

    Raises:
        DataError: an atomic number outside 1..103, or a structure without atoms.
    """
    numbers = np.asarray(numbers)
    ptr = np.asarray(ptr, dtype=np.int64)
    n = ptr.shape[0] - 1
    counts = np.diff(ptr)
    if np.any(counts < 1):
        raise DataError(f"structure {int(np.argmin(counts))} has no atoms")
    if numbers.shape[0] != ptr[-1]:
        raise DataError(f"{numbers.shape[0]} atomic numbers but offsets end at {ptr[-1]}")
    if numbers.size and (numbers.min() < 1 or numbers.max() > N_COMPOSITION):
        bad = int(np.argmax((numbers < 1) | (numbers > N_COMPOSITION)))
        raise DataError(
            f"atomic number {int(numbers[bad])} of atom {bad} is outside 1..{N_COMPOSITION}"
        )
    owner = np.repeat(np.arange(n, dtype=np.int64), counts)
    flat = owner * N_COMPOSITION + (numbers.astype(np.int64) - 1)
    hist = np.bincount(flat, minlength=n * N_COMPOSITION).reshape(n, N_COMPOSITION)
    return (hist / counts[:, None]).astype(np.float32)
