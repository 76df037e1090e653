"""Tests of the physical toy datasets ``toy_edos`` / ``toy_phdos`` (dos_bench.data.toy)."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dos_bench.data import toy
from dos_bench.data.records import RecordSet
from dos_bench.data.toy import (
    CRYSTAL_SYSTEMS,
    SQRT_EV_A2_AMU_TO_CM1,
    EDOSParams,
    PhDOSParams,
    ToyEDOS,
    ToyPhDOS,
    bloch_matrices,
    broaden,
    compute_edos,
    gamma_mesh,
    harrison_hoppings,
    phdos_max_frequency,
    phonon_frequencies,
    sp_bands,
    structure_from_prototype,
    structure_phonons,
)
from dos_bench.io import ConfigError, DataError

N_SMALL = 200


@pytest.fixture(scope="module")
def edos() -> RecordSet:
    return ToyEDOS(n_materials=N_SMALL, seed=0, n_jobs=2, progress=False).generate()


@pytest.fixture(scope="module")
def phdos() -> RecordSet:
    return ToyPhDOS(n_materials=N_SMALL, seed=0, n_jobs=2, progress=False).generate()


def _integral(rs: RecordSet) -> np.ndarray:
    return np.trapezoid(rs.spectra.astype(np.float64), rs.energies, axis=1)


# ============================================================================ eDOS set
def test_edos_spectra_finite_nonnegative_and_normalised(edos: RecordSet) -> None:
    assert len(edos) == N_SMALL
    assert np.isfinite(edos.spectra).all() and (edos.spectra >= 0).all()
    n_atoms = edos.meta["n_atoms"]
    np.testing.assert_array_equal(n_atoms, edos.n_atoms)
    np.testing.assert_array_equal(edos.meta["n_states"], 8 * n_atoms)
    np.testing.assert_allclose(_integral(edos), edos.meta["n_states"], rtol=1e-2)
    # the grid is shared, uniform, and holds every band
    de = np.diff(edos.energies)
    np.testing.assert_allclose(de, 0.02, atol=1e-9)
    assert edos.meta["e_band_min"].min() > edos.energies[0]
    assert edos.meta["e_band_max"].max() < edos.energies[-1]
    assert str(edos.ids[7]) == "toy-edos-000007"


def test_edos_attrs_and_metadata(edos: RecordSet) -> None:
    a = edos.attrs
    assert a["name"] == "toy_edos" and a["kind"] == "edos"
    assert a["energy_unit"] == "eV" and "states/eV" in a["dos_unit"]
    assert a["spin_factor"] == 2 and a["orbitals_per_atom"] == 4
    assert a["seed"] == 0 and a["n_materials"] == N_SMALL
    assert a["generator_version"] == toy.GENERATOR_VERSION
    for key in ("formula", "n_species", "crystal_system", "prototype", "n_atoms", "e_fermi",
                "vbm", "cbm", "band_gap", "is_metal", "n_electrons", "n_states"):  # fmt: skip
        assert key in edos.meta, key
    assert edos.meta["is_metal"].dtype == bool
    assert set(edos.meta["crystal_system"].tolist()) <= set(CRYSTAL_SYSTEMS)
    # formula / species count agree with the stored structures
    for i in range(0, N_SMALL, 37):
        s = edos.structure(i)
        assert s.composition.reduced_formula == edos.meta["formula"][i]
        assert len(s.composition.elements) == edos.meta["n_species"][i]


def test_edos_metals_and_gapped_both_present(edos: RecordSet) -> None:
    m = edos.meta
    metal = m["is_metal"]
    assert 0.2 <= metal.mean() <= 0.8, metal.mean()
    gap, ef, vbm, cbm = m["band_gap"], m["e_fermi"], m["vbm"], m["cbm"]
    # metals: no gap, band edges at the Fermi level; odd electron counts are always metallic
    assert (gap[metal] == 0).all()
    np.testing.assert_array_equal(vbm[metal], ef[metal])
    np.testing.assert_array_equal(cbm[metal], ef[metal])
    assert metal[m["n_electrons"] % 2 == 1].all()
    # insulators: gap above the tolerance, E_F mid-gap, (almost) no states at E_F
    ins = ~metal
    assert (gap[ins] > 0.1).all()
    np.testing.assert_allclose(cbm[ins] - vbm[ins], gap[ins])
    np.testing.assert_allclose(ef[ins], 0.5 * (vbm[ins] + cbm[ins]))
    wide = np.flatnonzero(ins & (gap > 1.5))
    assert len(wide) > 5
    at_ef = [np.interp(ef[i], edos.energies, edos.spectra[i]) for i in wide]
    assert max(at_ef) < 1e-3
    # metals have states at E_F
    at_ef_metal = [np.interp(ef[i], edos.energies, edos.spectra[i]) for i in np.flatnonzero(metal)]
    assert np.median(at_ef_metal) > 0.1


def test_species_and_crystal_system_coverage(edos: RecordSet) -> None:
    frac = {k: (edos.meta["n_species"] == k).mean() for k in range(1, 6)}
    for k in (1, 2, 3, 4):
        assert frac[k] >= 0.05, frac
    assert frac[5] > 0, frac
    assert len(set(edos.meta["crystal_system"].tolist())) >= 5
    assert (edos.n_atoms <= 24).all()


def test_edos_and_phdos_share_structures(edos: RecordSet, phdos: RecordSet) -> None:
    np.testing.assert_array_equal(edos.lattices, phdos.lattices)
    np.testing.assert_array_equal(edos.numbers, phdos.numbers)
    np.testing.assert_array_equal(edos.meta["crystal_system"], phdos.meta["crystal_system"])


# ============================================================================ phDOS set
def test_phdos_spectra_normalised_and_realistic(phdos: RecordSet) -> None:
    a = phdos.attrs
    assert a["name"] == "toy_phdos" and a["kind"] == "phdos" and a["energy_unit"] == "cm^-1"
    assert str(phdos.ids[0]) == "toy-phdos-000000"
    assert np.isfinite(phdos.spectra).all() and (phdos.spectra >= 0).all()
    assert phdos.energies[0] == 0.0
    np.testing.assert_array_equal(phdos.meta["n_modes"], 3 * phdos.n_atoms)
    np.testing.assert_allclose(_integral(phdos), 3 * phdos.n_atoms, rtol=1e-2)
    # frequencies in a realistic range: 99 % of the spectral weight below 1200 cm^-1
    below = phdos.spectra[:, phdos.energies <= 1200].sum(1) / phdos.spectra.sum(1)
    assert below.min() > 0.99
    assert np.median(phdos.meta["max_freq"]) < 1000
    assert phdos.meta["max_freq"].max() <= phdos_max_frequency(PhDOSParams()) + 1e-6


# ============================================================================ determinism
def test_deterministic_for_seed_and_independent_of_jobs() -> None:
    a = ToyEDOS(n_materials=24, seed=5, n_jobs=1, progress=False).generate()
    b = ToyEDOS(n_materials=24, seed=5, n_jobs=2, progress=False).generate()
    c = ToyEDOS(n_materials=24, seed=6, n_jobs=1, progress=False).generate()
    for name in ("ids", "lattices", "numbers", "frac_coords", "ptr", "energies", "spectra"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for k in a.meta:
        np.testing.assert_array_equal(a.meta[k], b.meta[k])
    assert a.spectra.shape == c.spectra.shape
    assert not np.array_equal(a.spectra, c.spectra)
    assert not np.array_equal(a.meta["formula"], c.meta["formula"])


def test_phdos_deterministic() -> None:
    a = ToyPhDOS(n_materials=12, seed=2, n_jobs=1, progress=False).generate()
    b = ToyPhDOS(n_materials=12, seed=2, n_jobs=1, progress=False).generate()
    np.testing.assert_array_equal(a.spectra, b.spectra)
    np.testing.assert_array_equal(a.lattices, b.lattices)


# ============================================================================ cache
def test_cache_roundtrip_reuse_and_no_tmp_files(tmp_path: Path, caplog) -> None:
    ds = ToyPhDOS(n_materials=10, seed=1, n_jobs=1, progress=False)
    path = ds.cache_path(tmp_path)
    assert path.parent == tmp_path and path.name.startswith("toy_phdos-")
    with caplog.at_level(logging.INFO, logger="dos_bench.data.toy"):
        first = ds.load(tmp_path)
        mtime = os.stat(path).st_mtime_ns
        caplog.clear()
        second = ds.load(tmp_path)
    assert "reusing cached toy_phdos" in caplog.text
    assert os.stat(path).st_mtime_ns == mtime
    np.testing.assert_array_equal(first.spectra, second.spectra)
    assert second.attrs["kind"] == "phdos"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no .tmp leftovers
    # the key changes with anything that shapes the data, not with n_jobs / progress
    assert ToyPhDOS(n_materials=10, seed=1, n_jobs=2).cache_path(tmp_path) == path
    assert ToyPhDOS(n_materials=10, seed=2).cache_path(tmp_path) != path
    assert ToyPhDOS(n_materials=10, seed=1, sigma=5.0).cache_path(tmp_path) != path
    assert ToyEDOS(n_materials=10, seed=1).cache_path(tmp_path).name.startswith("toy_edos-")


def test_corrupted_cache_raises_data_error_naming_file(tmp_path: Path) -> None:
    ds = ToyEDOS(n_materials=5, seed=0, n_jobs=1, progress=False)
    path = ds.cache_path(tmp_path)
    path.write_bytes(b"this is not an npz file \x00\x01\x02" * 10)
    with pytest.raises(DataError, match=path.name):
        ds.load(tmp_path)


def test_bad_grids_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="e_max"):
        ToyEDOS(e_max=0.0)
    with pytest.raises(ConfigError, match="f_max"):
        ToyPhDOS(f_max=800.0)


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


# ============================================================================ default size
@pytest.mark.slow
def test_default_size_covers_all_crystal_systems() -> None:
    rs = ToyEDOS(n_jobs=2, progress=False).generate()
    assert len(rs) == 3000
    systems = Counter(rs.meta["crystal_system"].tolist())
    assert set(systems) == set(CRYSTAL_SYSTEMS), systems
    assert systems["triclinic"] / len(rs) >= 0.02
    for k in (1, 2, 3, 4):
        assert (rs.meta["n_species"] == k).mean() >= 0.05
    assert (rs.meta["n_species"] == 5).any()
    metal = rs.meta["is_metal"].mean()
    assert 0.2 <= metal <= 0.8
    np.testing.assert_allclose(_integral(rs), rs.meta["n_states"], rtol=1e-2)
