"""The toy models checked by hand: Bloch sums, tight binding, springs, meshes, broadening,
known materials (dos_bench.data.sources.toy.{numerics,electrons,phonons})."""

from __future__ import annotations

import numpy as np
import pytest

from dos_bench.data.sources import toy
from dos_bench.data.sources.toy import (
    SQRT_EV_A2_AMU_TO_CM1,
    EDOSParams,
    PhDOSParams,
    ToyEDOS,
    bloch_matrices,
    broaden,
    compute_edos,
    gamma_mesh,
    harrison_hoppings,
    phonon_frequencies,
    sp_bands,
    structure_from_prototype,
    structure_phonons,
)


# ============================================================================ physics by hand
def test_bloch_sum_simple_cubic_s_band() -> None:
    """One s orbital, nearest-neighbour hopping t: E(k) = eps + 2t (cos kx + cos ky + cos kz)."""
    eps, t = -3.0, -0.7
    images = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    zeros = np.zeros(6, dtype=np.int64)
    kpts = np.random.default_rng(0).random((20, 3))
    h = bloch_matrices(kpts, np.full((1, 1, 1), eps), zeros, zeros, images, np.full((6, 1, 1), t))
    expect = eps + 2 * t * np.cos(2 * np.pi * kpts).sum(1)
    np.testing.assert_allclose(np.linalg.eigvalsh(h)[:, 0], expect, atol=1e-12)
    # band width 12 |t|
    g, r = np.array([[0.0, 0, 0]]), np.array([[0.5, 0.5, 0.5]])
    e_g = np.linalg.eigvalsh(bloch_matrices(g, np.full((1, 1, 1), eps), zeros, zeros, images,
                                            np.full((6, 1, 1), t)))  # fmt: skip
    e_r = np.linalg.eigvalsh(bloch_matrices(r, np.full((1, 1, 1), eps), zeros, zeros, images,
                                            np.full((6, 1, 1), t)))  # fmt: skip
    assert abs(e_r - e_g).item() == pytest.approx(12 * abs(t))


def test_sp_tight_binding_simple_cubic_analytic() -> None:
    """sp3 model on a simple-cubic lattice (nearest neighbours only) at Gamma and R.

    At Gamma and R the s-p coupling vanishes; s: eps_s +- 6 V_sss, p (3-fold):
    eps_p +- (2 V_pps + 4 V_ppp); the s band is 12 |V_sss| wide.
    """
    a, eps_s, eps_p = 2.6, -8.0, -4.0
    lattice = np.eye(3) * a
    frac = np.zeros((1, 3))
    radius = np.array([a / 2])  # d0 = a: nearest neighbours at d/d0 = 1, second at 1.414
    kw = {"hopping_scale": 0.5, "x1": 1.15, "x2": 1.4}
    kpts = np.array([[0.0, 0, 0], [0.5, 0.5, 0.5]])
    eig = sp_bands(lattice, frac, np.array([eps_s]), np.array([eps_p]), radius, kpts, **kw)
    v = harrison_hoppings(np.array([a]), np.array([a]), 0.5, 1.15, 1.4)
    sss, pps, ppp = v["sss"][0], v["pps"][0], v["ppp"][0]
    np.testing.assert_allclose(eig[0], np.sort([eps_s + 6 * sss] + [eps_p + 2 * pps + 4 * ppp] * 3))
    np.testing.assert_allclose(eig[1], np.sort([eps_s - 6 * sss] + [eps_p - 2 * pps - 4 * ppp] * 3))
    # the s level is the non-degenerate one; its Gamma -> R spread is the band width 12 |V_sss|
    s_level = [e[np.argmax(np.abs(e - np.median(e)))] for e in eig]
    assert s_level[1] - s_level[0] == pytest.approx(12 * abs(sss))
    assert sss == pytest.approx(-1.40 * 0.5 * 7.62 / a**2)


def test_phonons_simple_cubic_analytic() -> None:
    """One atom, central nearest-neighbour springs k: omega_max = sqrt(4k/m) at the zone edge."""
    k, m = 2.0, 30.0
    images = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    vec = images * 3.0
    zeros = np.zeros(6, dtype=np.int64)
    q = np.array([[0.0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0.5], [0.25, 0, 0]])
    f = phonon_frequencies(np.array([m]), zeros, zeros, images, vec, np.full(6, k), q)
    w_max = SQRT_EV_A2_AMU_TO_CM1 * np.sqrt(4 * k / m)
    np.testing.assert_allclose(f[0], 0.0, atol=1e-6)  # acoustic modes vanish at Gamma
    np.testing.assert_allclose(f[1], [0.0, 0.0, w_max], atol=1e-6)  # X: longitudinal only
    np.testing.assert_allclose(f[2], [w_max] * 3, rtol=1e-12)  # R
    # dispersion omega = sqrt(4k/m) |sin(q a / 2)|
    assert f[3, 2] == pytest.approx(w_max * np.sin(np.pi / 4))
    # 521.47 cm^-1 = sqrt(eV / (Å^2 amu)) / (2 pi c)
    hz = np.sqrt(1.602176634e-19 / (1e-20 * 1.66053906660e-27)) / (2 * np.pi * 2.99792458e10)
    assert SQRT_EV_A2_AMU_TO_CM1 == pytest.approx(hz, rel=1e-5)


def test_acoustic_modes_vanish_at_gamma_for_generated_structure() -> None:
    st = toy.make_toy_structure(toy.StructureParams(seed=0), 11)
    f = structure_phonons(st, PhDOSParams(), np.zeros((1, 3)))[0]
    assert np.all(f[:3] < 0.5) and f[-1] > 10


def test_known_materials() -> None:
    """Diamond Si and rocksalt NaCl are insulators (NaCl wider), fcc Cu is a metal."""
    si = compute_edos(structure_from_prototype("A_cF8_227_a", ["Si"]))[1]
    nacl = compute_edos(structure_from_prototype("AB_cF8_225_a_b", ["Cl", "Na"]))[1]
    cu = compute_edos(structure_from_prototype("A_cF4_225_a", ["Cu"]))[1]
    assert not si["is_metal"] and 0.5 < si["band_gap"] < 3.0
    assert not nacl["is_metal"] and nacl["band_gap"] > si["band_gap"] + 2
    assert cu["is_metal"] and cu["band_gap"] == 0.0
    assert si["n_electrons"] == 8 and nacl["n_electrons"] == 8 and cu["n_electrons"] == 1


def test_mesh_and_broadening_conserve_weight() -> None:
    k, w = gamma_mesh(np.eye(3) * 10.0, 30.0)  # 3 x 3 x 3, reduced by k -> -k
    assert len(k) == 14 and w.sum() == pytest.approx(1.0)
    k, w = gamma_mesh(np.eye(3) * 10.0, 20.0)  # 2 x 2 x 2: every point is its own partner
    assert len(k) == 8 and np.allclose(w, 1 / 8)
    vals = np.random.default_rng(1).uniform(-3, 3, 500)
    g = broaden(vals, 0.01, -5.0, 0.02, 501, 0.08)
    assert (g >= 0).all() and g.sum() * 0.02 == pytest.approx(5.0)
    with pytest.raises(ValueError):
        broaden(np.array([4.99]), 1.0, -5.0, 0.02, 501, 0.08)


def test_edos_window_bounds_default_grid() -> None:
    lo, hi = toy.edos_window(EDOSParams())
    grid = ToyEDOS(n_materials=1).physics.grid
    assert grid[0] <= lo and grid[-1] >= hi
