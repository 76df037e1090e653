"""Atom feature tables and composition vectors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dos_bench.data import features as F
from dos_bench.data.features import (
    ATOM_FEATURE_SETS,
    CGCNN_BLOCKS,
    atom_feature_table,
    cgcnn_block_slices,
    cgcnn_features,
    composition_vectors,
)
from dos_bench.io import ConfigError, DataError

# elements whose property is missing in pymatgen (documented all-zero blocks)
MISSING = {
    "electronegativity": {2, 10, 18},  # He, Ne, Ar
    "covalent_radius": {97, 98, 99, 100},  # Bk, Cf, Es, Fm
    "atomic_volume": {85, 87, 100},  # At, Fr, Fm
}


@pytest.fixture(scope="module")
def table() -> np.ndarray:
    return cgcnn_features()


def category(table: np.ndarray, z: int, name: str) -> int | None:
    block = table[z, cgcnn_block_slices()[name]]
    hits = np.flatnonzero(block)
    return None if hits.size == 0 else int(hits[0])


def test_shape_and_binary(table: np.ndarray) -> None:
    assert table.shape == (101, 92) and table.dtype == np.float32
    assert sum(n for _, n in CGCNN_BLOCKS) == 92
    assert np.all(table[0] == 0)
    assert set(np.unique(table).tolist()) == {0.0, 1.0}


def test_one_hot_blocks(table: np.ndarray) -> None:
    slices = cgcnn_block_slices()
    for z in range(1, 101):
        expected_total = 0
        for name, _ in CGCNN_BLOCKS:
            ones = table[z, slices[name]].sum()
            if z in MISSING.get(name, set()):
                assert ones == 0, (z, name)
            else:
                assert ones == 1, (z, name)
                expected_total += 1
        assert table[z].sum() == expected_total


def test_known_categories(table: np.ndarray) -> None:
    assert category(table, 26, "group") == 7  # Fe: group 8
    assert category(table, 26, "period") == 3  # period 4
    assert category(table, 26, "block") == 2  # d
    assert category(table, 26, "valence_electrons") == 7  # 8 valence electrons
    assert category(table, 57, "group") == 18  # La: lanthanide category
    assert category(table, 92, "group") == 18  # U: actinide category
    assert category(table, 92, "block") == 3  # f
    assert category(table, 30, "valence_electrons") == 11  # Zn: 12
    assert category(table, 8, "valence_electrons") == 5  # O: 6
    assert category(table, 2, "valence_electrons") == 1  # He: 2
    assert category(table, 2, "block") == 0  # He counted as s
    assert category(table, 9, "electronegativity") == 9  # F: 3.98, top bin
    assert category(table, 55, "electronegativity") == 0  # Cs: 0.79, bottom bin
    assert category(table, 17, "electron_affinity") == 9  # Cl: 3.61 eV, top bin
    # log-binned first ionisation energy: ln(24.59) for He is in the top bin, Cs at the bottom
    assert category(table, 2, "first_ionization_energy") == 9
    assert category(table, 55, "first_ionization_energy") == 0


def test_rows_mostly_distinct(table: np.ndarray) -> None:
    assert len({row.tobytes() for row in table[1:]}) >= 95


def test_cached_copy_and_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    a = cgcnn_features()
    a[1, 0] = 42.0  # callers get copies
    assert cgcnn_features()[1, 0] != 42.0
    monkeypatch.setattr(F, "_CGCNN_TABLE", None)
    t0 = time.perf_counter()
    b = cgcnn_features()
    assert time.perf_counter() - t0 < 0.5
    assert F._CGCNN_TABLE is not None
    t0 = time.perf_counter()
    cgcnn_features()
    assert time.perf_counter() - t0 < 0.01  # cached
    np.testing.assert_array_equal(b, cgcnn_features())


def test_feature_sets() -> None:
    assert {"cgcnn", "onehot", "mass_onehot"} <= set(ATOM_FEATURE_SETS)
    onehot = atom_feature_table("onehot")
    assert onehot.shape == (101, 100)
    assert np.all(onehot[0] == 0) and onehot[26, 25] == 1 and onehot[26].sum() == 1
    mass = atom_feature_table("mass_onehot")
    assert mass.shape == (119, 118)
    assert mass[26, 25] == pytest.approx(55.845, abs=1e-3)
    assert mass[1, 0] == pytest.approx(1.008, abs=1e-3)
    assert np.count_nonzero(mass[118]) == 1
    assert atom_feature_table("cgcnn").shape == (101, 92)
    with pytest.raises(ConfigError, match="cgcnn"):
        atom_feature_table("nope")


def test_composition_vectors() -> None:
    # NaCl, Fe2O3 (as FeO1.5 * 2), pure Si
    numbers = np.array([11, 17, 26, 26, 8, 8, 8, 14], dtype=np.int16)
    ptr = np.array([0, 2, 7, 8])
    comp = composition_vectors(numbers, ptr)
    assert comp.shape == (3, 103) and comp.dtype == np.float32
    np.testing.assert_allclose(comp.sum(axis=1), 1.0, rtol=1e-6)
    assert comp[0, 10] == 0.5 and comp[0, 16] == 0.5  # index Z - 1
    assert comp[1, 25] == pytest.approx(0.4) and comp[1, 7] == pytest.approx(0.6)
    assert comp[2, 13] == 1.0 and np.count_nonzero(comp[2]) == 1
    lr = composition_vectors(np.array([103]), np.array([0, 1]))
    assert lr[0, 102] == 1.0


def test_composition_errors() -> None:
    with pytest.raises(DataError, match="outside"):
        composition_vectors(np.array([1, 104]), np.array([0, 2]))
    with pytest.raises(DataError, match="outside"):
        composition_vectors(np.array([0]), np.array([0, 1]))
    with pytest.raises(DataError, match="no atoms"):
        composition_vectors(np.array([1]), np.array([0, 0, 1]))
