r"""The electronic model of ``toy_edos``: an :math:`sp^3` tight-binding eDOS.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dos_bench.data.sources.toy.elements import _element_arrays, _element_table
from dos_bench.data.sources.toy.numerics import bloch_matrices, broaden, gamma_mesh, smooth_cutoff
from dos_bench.data.sources.toy.structures import ToyStructure, _neighbour_list

__all__ = [
    "HARRISON_ETA",
    "HBAR2_OVER_ME",
    "EDOSParams",
    "compute_edos",
    "edos_window",
    "harrison_hoppings",
    "sk_block_norm",
    "slater_koster_sp",
    "sp_bands",
    "structure_bands",
]

#: :math:`\hbar^2/m_e` in eV Å^2 (Harrison).
HBAR2_OVER_ME = 7.62
#: Harrison's universal dimensionless hopping coefficients.
HARRISON_ETA = {"sss": -1.40, "sps": 1.84, "pps": 3.24, "ppp": -0.81}


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
