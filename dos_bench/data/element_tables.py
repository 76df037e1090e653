r"""Continuous per-element attribute tables (complementing the one-hot tables of ``features``).

``alignn_dos_features`` is the five-attribute node input of ALIGNN-DOS (Kaundinya et al.,
§2 "ALIGNN modeling framework"; facts.md §1.2): *electronegativity, electron affinity, number
of valence electrons, first ionization energy and atomic radius*.  The authors' code (ALIGNN)
defaults to the 92-d CGCNN table instead; the paper's five attributes are a subset of the
JARVIS "basic" element features (``X``, ``elec_aff``, ``ns+np+nd+nf valence``,
``first_ion_en``, ``atom_rad``).  They are recomputed here from pymatgen's element data, so
the values differ slightly from JARVIS's tables.

The table is meant to be registered as the atom feature set ``alignn5``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ALIGNN_DOS_ATTRIBUTES", "alignn_dos_features", "alignn_dos_raw_attributes"]

ALIGNN_DOS_ATTRIBUTES: tuple[str, ...] = (
    "electronegativity",
    "electron_affinity",
    "valence_electrons",
    "first_ionization_energy",
    "atomic_radius",
)
"""Column order of :func:`alignn_dos_features`."""

_NOBLE_GAS_Z = (0, 2, 10, 18, 36, 54, 86)
_Z_MAX = 100

_RAW: np.ndarray | None = None
_TABLE: np.ndarray | None = None


def _valence_electrons(z: int) -> int:
    """Electrons outside the preceding noble-gas core, ``Z - Z_core`` (He: 2, noble gases: 8).

    This is Magpie's ``NValence`` (= JARVIS ``nsvalence + npvalence + ndvalence + nfvalence``):
    filled d and f shells outside the core are counted (Zn 12, Ga 13, Pb 28).
    """
    core = max(c for c in _NOBLE_GAS_Z if c < z)
    return z - core


def alignn_dos_raw_attributes() -> np.ndarray:
    r"""The five raw attributes of Z = 1..100, ``(101, 5)`` float64, NaN where missing.

    ===================== ======================================================== =========
    column                pymatgen source                                          unit
    ===================== ======================================================== =========
    electronegativity     ``Element.X`` (Pauling); NaN for He, Ne, Ar              --
    electron affinity     ``Element.electron_affinity``                            eV
    valence electrons     ``Z - Z(preceding noble gas)``, see ``_valence_electrons``  count
    first ionization      ``Element.ionization_energies[0]``                       eV
    atomic radius         ``Element.atomic_radius`` (empirical, Slater 1964);      Å
                          falls back to ``atomic_radius_calculated`` (Clementi
                          1967) for He, Ne, Kr, Xe, Rn; NaN for At, Fr, Cm-Fm
    ===================== ======================================================== =========

    Row 0 is NaN everywhere.
    """
    global _RAW
    if _RAW is None:
        import warnings

        from pymatgen.core import Element

        raw = np.full((_Z_MAX + 1, len(ALIGNN_DOS_ATTRIBUTES)), np.nan)
        with warnings.catch_warnings():  # pymatgen warns for every missing property
            warnings.simplefilter("ignore")
            for z in range(1, _Z_MAX + 1):
                el = Element.from_Z(z)
                ies = el.ionization_energies
                radius = el.atomic_radius
                if radius is None:
                    radius = el.atomic_radius_calculated
                values = (
                    el.X,
                    el.electron_affinity,
                    _valence_electrons(z),
                    ies[0] if ies else None,
                    radius,
                )
                for k, v in enumerate(values):
                    if v is not None and math.isfinite(float(v)):
                        raw[z, k] = float(v)
        _RAW = raw
    return _RAW.copy()


def alignn_dos_features() -> np.ndarray:
    r"""ALIGNN-DOS node attributes, z-scored: shape ``(101, 5)`` float32, row Z (row 0 zeros).

    Columns are :data:`ALIGNN_DOS_ATTRIBUTES` (raw values from
    :func:`alignn_dos_raw_attributes`).  Each column is standardised over Z = 1..100,

    .. math::
        f_{Z,k} = \frac{a_{Z,k} - \mu_k}{\sigma_k},

    with :math:`\mu_k` and :math:`\sigma_k` (population std) taken over the elements that have
    the value.  **Missing values are filled with the column mean**, i.e. with 0 after
    z-scoring: electronegativity of He, Ne, Ar and the atomic radius of At, Fr, Cm, Bk, Cf,
    Es, Fm (after the Clementi fallback).  Row 0 ("no element") is all zeros.

    The paper does not say how the attributes were scaled; z-scoring keeps the five inputs on
    one scale for the first ``Linear + BatchNorm`` layer.

    Returns:
        A copy of the cached table.
    """
    global _TABLE
    if _TABLE is None:
        raw = alignn_dos_raw_attributes()[1:]
        mean = np.nanmean(raw, axis=0)
        std = np.nanstd(raw, axis=0)
        std = np.where(std > 0, std, 1.0)
        z = (raw - mean) / std
        z = np.where(np.isnan(z), 0.0, z)
        table = np.zeros((_Z_MAX + 1, len(ALIGNN_DOS_ATTRIBUTES)), dtype=np.float32)
        table[1:] = z.astype(np.float32)
        _TABLE = table
    return _TABLE.copy()
