"""Elements of the toy generator: the decoration pool and the per-element model parameters.

The parameters come from pymatgen's element data: valence (s+p electrons of the tight-binding
model), Pauling electronegativity, on-site energies from the first ionisation energy (Koopmans),
Slater atomic radius, mass, melting and boiling points (see :mod:`~.electrons` and
:mod:`~.phonons` for how the models use them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["ELEMENT_POOL", "ElementData"]

#: Elements used to decorate the prototypes (s-block, d-block treated as s-like metals, p-block).
ELEMENT_POOL: tuple[str, ...] = (
    "Li", "Na", "K", "Rb", "Cs", "Be", "Mg", "Ca", "Sr", "Ba",
    "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn",
    "Y", "Zr", "Nb", "Mo", "Pd", "Ag", "Cd", "Pt", "Au",
    "B", "Al", "Ga", "In", "C", "Si", "Ge", "Sn", "Pb",
    "N", "P", "As", "Sb", "Bi", "O", "S", "Se", "Te", "F", "Cl", "Br", "I",
)  # fmt: skip


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
