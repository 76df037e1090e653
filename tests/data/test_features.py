"""Atom feature tables and composition vectors.

The published tables (``cgcnn``, ``matscholar200[_raw]``, ``jarvis_basic``, ``alignn5_jarvis``)
are compared with the packages' own data files, located here through the distributions' file
lists (``importlib.metadata``) and read independently of :mod:`dos_bench.data.element_tables`.
They need the ``tables`` extra (part of ``dev``).
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dos_bench.data import element_tables as ET
from dos_bench.data import features as F
from dos_bench.data.features import (
    ATOM_FEATURE_SETS,
    CGCNN_BLOCKS,
    atom_feature_table,
    atom_table_fingerprint,
    cgcnn_block_slices,
    cgcnn_features,
    cgcnn_pymatgen_features,
    composition_vectors,
)
from dos_bench.io import ConfigError, DataError

# elements whose property is missing in pymatgen (documented all-zero blocks)
MISSING = {
    "electronegativity": {2, 10, 18},  # He, Ne, Ar
    "covalent_radius": {97, 98, 99, 100},  # Bk, Cf, Es, Fm
    "atomic_volume": {85, 87, 100},  # At, Fr, Fm
}
PACKAGE_TABLES = ("cgcnn", "matscholar200", "matscholar200_raw", "jarvis_basic", "alignn5_jarvis")


def dist_file(dist: str, name: str) -> Path:
    """A data file of an installed distribution, found through its RECORD file list."""
    hits = [f for f in importlib.metadata.files(dist) or [] if f.name == name]
    assert len(hits) == 1, f"{dist} ships {len(hits)} files named {name}"
    return Path(hits[0].locate())


def z_of_symbol() -> dict[str, int]:
    from pymatgen.core.periodic_table import Element

    return {el.symbol: el.Z for el in Element}


@pytest.fixture
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(F, "_CACHE", {})
    monkeypatch.setattr(ET, "_CACHE", {})


# ------------------------------------------------------------------------------ cgcnn (original)
def test_cgcnn_is_the_package_atom_init() -> None:
    ref = json.loads(dist_file("jarvis-tools", "atom_init.json").read_text())
    table = cgcnn_features()
    assert table.shape == (101, 92) and table.dtype == np.float32
    assert np.all(table[0] == 0)
    assert sorted(int(k) for k in ref) == list(range(1, 101))
    for key, vec in ref.items():
        np.testing.assert_array_equal(table[int(key)], np.asarray(vec, dtype=np.float32))
    assert np.array_equal(atom_feature_table("cgcnn"), table)
    # matminer ships the same file under another name
    mm = json.loads(dist_file("matminer", "cgcnn_atom_feature.json").read_text())
    assert mm == ref


def test_cgcnn_differs_from_the_pymatgen_recomputation() -> None:
    original, recomputed = cgcnn_features(), cgcnn_pymatgen_features()
    assert original.shape == recomputed.shape
    assert not any(np.array_equal(original[z], recomputed[z]) for z in range(1, 101))
    assert atom_table_fingerprint("cgcnn") != atom_table_fingerprint("cgcnn_pymatgen")
    # same layout: one 1 per row in the always-defined blocks of both tables
    for name in ("group", "period", "block"):
        assert np.all(original[1:, cgcnn_block_slices()[name]].sum(axis=1) == 1), name


# ------------------------------------------------------------------------------ Matscholar-200
def test_matscholar200_is_dostransformers_scaling_of_the_package_file() -> None:
    from sklearn.preprocessing import scale

    ref = json.loads(dist_file("matminer", "matscholar_els.json").read_text())
    z_of = z_of_symbol()
    assert len(ref) == 103 and sorted(z_of[s] for s in ref) == list(range(1, 104))
    by_z = {z_of[s]: np.asarray(v, dtype=np.float64) for s, v in ref.items()}

    raw = atom_feature_table("matscholar200_raw")
    assert raw.shape == (104, 200) and raw.dtype == np.float32 and np.all(raw[0] == 0)
    for z, vec in by_z.items():
        np.testing.assert_array_equal(raw[z], vec.astype(np.float32))

    # DOSTransformer data/mat2graph.py: H ... Fm in Z order, sklearn.preprocessing.scale
    expected = scale(np.vstack([by_z[z] for z in range(1, 101)]))
    table = atom_feature_table("matscholar200")
    assert table.shape == (101, 200) and table.dtype == np.float32 and np.all(table[0] == 0)
    np.testing.assert_allclose(table[1:], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(table[1:].std(axis=0), 1.0, atol=1e-4)


# ------------------------------------------------------------------------------ JARVIS
def test_jarvis_basic_equals_jarvis_node_attributes() -> None:
    from jarvis.core.specie import BASIC_FEATURES, get_node_attributes

    elements = json.loads(dist_file("jarvis-tools", "Elements.json").read_text())
    table = atom_feature_table("jarvis_basic")
    assert table.shape == (104, len(BASIC_FEATURES)) == (104, 11)
    assert np.all(table[0] == 0)
    for sym, props in elements.items():
        z = props["Z"]
        expected = [props[k] for k in BASIC_FEATURES]
        np.testing.assert_array_equal(table[z], np.asarray(expected, dtype=np.float32))
        np.testing.assert_allclose(table[z], get_node_attributes(sym, "basic"), rtol=1e-6)
    assert table[26, list(BASIC_FEATURES).index("Z")] == 26


def test_alignn5_jarvis_is_the_papers_subset_of_jarvis_basic() -> None:
    from jarvis.core.specie import BASIC_FEATURES, Specie

    keys = [k for group in ET.ALIGNN_DOS_JARVIS_KEYS for k in group]
    assert set(keys) <= set(BASIC_FEATURES)
    raw = ET.alignn_dos_jarvis_raw_attributes()
    assert raw.shape == (101, 5) and np.all(np.isnan(raw[0]))
    for sym in ("H", "O", "Fe", "Zn", "Pb", "U"):
        sp = Specie(sym)
        groups = ET.ALIGNN_DOS_JARVIS_KEYS
        expected = [sum(sp.element_property(k) for k in group) for group in groups]
        np.testing.assert_allclose(raw[sp.Z], expected, rtol=1e-12)
    table = atom_feature_table("alignn5_jarvis")
    assert table.shape == (101, 5) and table.dtype == np.float32 and np.all(table[0] == 0)
    np.testing.assert_allclose(table[1:].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(table[1:].std(axis=0), 1.0, atol=1e-4)
    zs = (raw[1:] - raw[1:].mean(axis=0)) / raw[1:].std(axis=0)
    np.testing.assert_allclose(table[1:], zs, rtol=1e-5, atol=1e-5)
    assert not np.allclose(table, atom_feature_table("alignn5"))  # pymatgen values differ


# ------------------------------------------------------------------------------ cgcnn_file:
def test_cgcnn_file_from_a_dataset_folder(tmp_path: Path) -> None:
    from pymatgen.core import Lattice, Structure

    from dos_bench.data.datamodule import DOSDataModule
    from dos_bench.data.graphs import GraphRecipe, build_graphs, to_data_list
    from dos_bench.data.records import DOSRecord, RecordSet

    folder = tmp_path / "Mat2Spec_DATA"
    folder.mkdir()
    rng = np.random.default_rng(0)
    vectors = {str(z): rng.integers(0, 2, 7).tolist() for z in range(1, 31)}
    path = folder / "atom_init.json"
    path.write_text(json.dumps(vectors))
    spec = f"cgcnn_file:{path}"

    assert spec in ATOM_FEATURE_SETS
    table = atom_feature_table(spec)
    assert table.shape == (31, 7) and table.dtype == np.float32 and np.all(table[0] == 0)
    for key, vec in vectors.items():
        np.testing.assert_array_equal(table[int(key)], vec)

    # the dataset's copy of the original file gives the original table (and its fingerprint)
    original = folder / "original_atom_init.json"
    original.write_text(dist_file("jarvis-tools", "atom_init.json").read_text())
    assert np.array_equal(atom_feature_table(f"cgcnn_file:{original}"), cgcnn_features())
    assert atom_table_fingerprint(f"cgcnn_file:{original}") == atom_table_fingerprint("cgcnn")

    # end to end: the datamodule accepts the value and the graphs carry the file's rows
    DOSDataModule(source=None, recipe=None, split=None, atom_features=spec)
    s = Structure(Lattice.cubic(4.0), ["Fe", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    grid = np.linspace(0, 1, 4)
    rs = RecordSet.from_records([DOSRecord("x-1", s, grid, np.ones(4))])
    data = to_data_list(rs, build_graphs(rs, GraphRecipe(), progress=False), atom_features=spec)
    np.testing.assert_array_equal(data[0].x.numpy(), table[[26, 8]])


BAD_ATOM_INIT = {  # content, what the message says
    "invalid_json": ('{"1": [0, 1],', "not a valid JSON"),
    "not_an_object": ("[[0, 1], [1, 0]]", "expected a JSON object"),
    "empty": ("{}", "expected a JSON object"),
    "bad_key": ('{"1": [0, 1], "H": [1, 0]}', "'H' is not an atomic number"),
    "zero_key": ('{"0": [0, 1], "1": [1, 0]}', "'0' is not an atomic number"),
    "duplicate_z": ('{"1": [0, 1], "01": [1, 0]}', "appears twice"),
    "ragged": ('{"1": [0, 1], "2": [1, 0, 1]}', "has 3 values, the others 2"),
    "not_numbers": ('{"1": [0, 1], "2": ["a", 0]}', "'2' is not a non-empty list"),
    "not_a_list": ('{"1": [0, 1], "2": 3}', "'2' is not a non-empty list"),
    "non_finite": ('{"1": [0, 1], "2": [NaN, 0]}', "finite numbers"),
    "gap": ('{"1": [0, 1], "3": [1, 0]}', "atomic numbers [2] are missing"),
}


@pytest.mark.parametrize("case", sorted(BAD_ATOM_INIT))
def test_malformed_atom_init_gives_one_error_naming_the_file(tmp_path: Path, case: str) -> None:
    content, says = BAD_ATOM_INIT[case]
    path = tmp_path / "atom_init.json"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        atom_feature_table(f"cgcnn_file:{path}")
    assert str(path) in str(err.value) and says in str(err.value)


def test_cgcnn_file_missing_or_empty_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "atom_init.json"
    with pytest.raises(DataError, match="not found") as err:
        atom_feature_table(f"cgcnn_file:{missing}")
    assert str(missing) in str(err.value)
    with pytest.raises(ConfigError, match="path"):
        atom_feature_table("cgcnn_file:  ")


# ------------------------------------------------------------------------------ missing extra
@pytest.mark.parametrize(
    ("name", "dist"),
    [
        ("cgcnn", "jarvis-tools"),
        ("jarvis_basic", "jarvis-tools"),
        ("alignn5_jarvis", "jarvis-tools"),
        ("matscholar200", "matminer"),
        ("matscholar200_raw", "matminer"),
    ],
)
def test_missing_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, fresh_caches: None, name: str, dist: str
) -> None:
    monkeypatch.setitem(sys.modules, "jarvis", None)  # find_spec / import see no package
    monkeypatch.setitem(sys.modules, "matminer", None)
    with pytest.raises(ConfigError) as err:
        atom_feature_table(name)
    msg = str(err.value)
    assert "dos_bench[tables]" in msg and dist in msg and repr(name) in msg


def test_default_config_needs_no_optional_package(
    monkeypatch: pytest.MonkeyPatch, fresh_caches: None
) -> None:
    from dos_bench.bench_utils import compose

    monkeypatch.setitem(sys.modules, "jarvis", None)
    monkeypatch.setitem(sys.modules, "matminer", None)
    cfg = compose([])
    assert cfg.model.atom_features == "cgcnn_pymatgen"
    assert atom_feature_table(cfg.data.atom_features).shape == (101, 92)
    for name in ("onehot", "mass_onehot", "alignn5"):
        atom_feature_table(name)


# ------------------------------------------------------------------------------ configs
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], "cgcnn_pymatgen"),
        (["model=mat2spec"], "cgcnn"),
        (["model=gatgnn"], "cgcnn"),
        (["model=xtal2dos"], "cgcnn"),
        (["model=rnn_attn"], "cgcnn"),
        (["model=chunk_rnn_attn"], "cgcnn"),
        (["model=dostransformer"], "matscholar200"),
        (["model=e3nn"], "mass_onehot"),
        (["model=d_alignn"], "alignn5"),
        (["experiment=dostransformer_table1"], "matscholar200"),
        (["experiment=dostransformer_table1", "setting=dost_s2"], "matscholar200"),
        (["experiment=dostransformer_table1", "setting=dost_phonon"], "mass_onehot"),
        (["experiment=dostransformer_table1", "setting=dost_s1", "model=mlp"], "matscholar200"),
        (["experiment=dostransformer_table1", "setting=dost_phonon", "model=mlp"], "mass_onehot"),
        (["experiment=dostransformer_table1", "setting=dost_eid", "model=e3nn"], "mass_onehot"),
        (["experiment=mat2spec_table1", "method=gatgnn"], "cgcnn"),
        (["model=mat2spec", "model.atom_features=cgcnn_file:/d/atom_init.json"], None),
    ],
)
def test_configs_select_the_papers_tables(overrides: list[str], expected: str | None) -> None:
    from dos_bench.bench_utils import compose

    cfg = compose(overrides)
    expected = expected or overrides[-1].split("=", 1)[1]
    assert cfg.model.atom_features == expected
    assert cfg.data.atom_features == expected
    assert expected in ATOM_FEATURE_SETS


# ------------------------------------------------------------------------------ registry
def test_feature_sets() -> None:
    assert {"cgcnn", "cgcnn_pymatgen", "onehot", "mass_onehot", *PACKAGE_TABLES} <= set(
        ATOM_FEATURE_SETS
    )
    onehot = atom_feature_table("onehot")
    assert onehot.shape == (101, 100)
    assert np.all(onehot[0] == 0) and onehot[26, 25] == 1 and onehot[26].sum() == 1
    mass = atom_feature_table("mass_onehot")
    assert mass.shape == (119, 118)
    assert mass[26, 25] == pytest.approx(55.845, abs=1e-3)
    assert mass[1, 0] == pytest.approx(1.008, abs=1e-3)
    assert np.count_nonzero(mass[118]) == 1
    for name in ATOM_FEATURE_SETS:
        t = atom_feature_table(name)
        assert t.dtype == np.float32 and t.ndim == 2 and np.all(t[0] == 0), name
        assert np.all(np.isfinite(t)), name
    with pytest.raises(ConfigError, match="cgcnn_pymatgen") as err:
        atom_feature_table("nope")
    assert "cgcnn_file:" in str(err.value)
    assert "nope" not in ATOM_FEATURE_SETS


def test_fingerprint_depends_on_the_values_only() -> None:
    prints = {name: atom_table_fingerprint(name) for name in ATOM_FEATURE_SETS}
    assert len(set(prints.values())) == len(prints)  # every name is a different table
    assert atom_table_fingerprint("cgcnn") == prints["cgcnn"]


# ------------------------------------------------------------------------------ cgcnn_pymatgen
@pytest.fixture(scope="module")
def table() -> np.ndarray:
    return cgcnn_pymatgen_features()


def category(table: np.ndarray, z: int, name: str) -> int | None:
    block = table[z, cgcnn_block_slices()[name]]
    hits = np.flatnonzero(block)
    return None if hits.size == 0 else int(hits[0])


def test_shape_and_binary(table: np.ndarray) -> None:
    assert table.shape == (101, 92) and table.dtype == np.float32
    assert sum(n for _, n in CGCNN_BLOCKS) == 92
    assert np.all(table[0] == 0)
    assert set(np.unique(table).tolist()) == {0.0, 1.0}
    assert np.array_equal(atom_feature_table("cgcnn_pymatgen"), table)


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


def test_cached_copy_and_fast(fresh_caches: None) -> None:
    for name in ("cgcnn", "cgcnn_pymatgen", "matscholar200"):
        a = atom_feature_table(name)
        a[1, 0] = 42.0  # callers get copies
        assert atom_feature_table(name)[1, 0] != 42.0
        assert name in F._CACHE
        t0 = time.perf_counter()
        b = atom_feature_table(name)
        assert time.perf_counter() - t0 < 0.05  # cached: a copy only
        np.testing.assert_array_equal(b, atom_feature_table(name))


# ------------------------------------------------------------------------------ composition
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
