"""The toy datasets ``toy_edos`` / ``toy_phdos`` as record sets: content, determinism, cache
(dos_bench.data.sources.toy.datasets)."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dos_bench.data.records import RecordSet
from dos_bench.data.sources import toy
from dos_bench.data.sources.toy import (
    CRYSTAL_SYSTEMS,
    PhDOSParams,
    ToyEDOS,
    ToyPhDOS,
    phdos_max_frequency,
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
    with caplog.at_level(logging.INFO, logger="dos_bench.data.sources.toy"):
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
