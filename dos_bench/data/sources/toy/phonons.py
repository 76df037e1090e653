r"""The phonon model of ``toy_phdos``: harmonic springs, a Lindemann-law stiffness.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dos_bench.data.sources.toy.elements import _element_arrays
from dos_bench.data.sources.toy.numerics import bloch_matrices, broaden, gamma_mesh, smooth_cutoff
from dos_bench.data.sources.toy.structures import ToyStructure, _neighbour_list

__all__ = [
    "SQRT_EV_A2_AMU_TO_CM1",
    "PhDOSParams",
    "compute_phdos",
    "phdos_max_frequency",
    "phonon_frequencies",
    "spring_network",
    "structure_phonons",
]

#: :math:`\sqrt{eV\,Å^{-2}\,amu^{-1}}` expressed in cm^-1.
SQRT_EV_A2_AMU_TO_CM1 = 521.4709


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


def phdos_max_frequency(p: PhDOSParams) -> float:
    r"""Guaranteed upper bound (cm^-1) of the spring-model frequencies.

    With :math:`\sum_j k_{ij}/m_i \le E` (``einstein_cap``) and :math:`\gamma \le 1`, block
    Gershgorin applied to :math:`M^{-1}\Phi(\mathbf q)` gives :math:`\omega^2 \le 2E`.
    """
    return float(SQRT_EV_A2_AMU_TO_CM1 * math.sqrt(2.0 * p.einstein_cap))
