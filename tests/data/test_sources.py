"""Published-data sources on tiny fixtures written in the exact published layouts."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dos_bench.data.records import RecordSet
from dos_bench.data.sources import (
    JarvisEDOS,
    Mat2SpecEDOS,
    MPDosDocuments,
    PhononE3NN,
    PhononTUT,
    load_index_pickle,
    load_index_txt,
    parse_literal,
)
from dos_bench.data.sources.common import (
    PICKLE_WHITELIST,
    element_valence,
    load_structure_pickle,
    read_id_list,
    restricted_pickle_load,
)
from dos_bench.data.spectra import BandEdgeRecipe, GridRecipe, NativeRecipe
from dos_bench.io import DataError

_spec = importlib.util.spec_from_file_location(
    "dos_sources_fixtures", Path(__file__).with_name("fixtures.py")
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)

SPLITS = Path(__file__).parents[3] / "shared" / "data" / "published_splits"
JARVIS_ZIP = "jarvis/edos-up_pdos-elast_interp-8-18-2021.json.zip"
META = {"formula", "n_species", "crystal_system", "n_atoms"}
SYSTEMS = {
    "cubic",
    "hexagonal",
    "tetragonal",
    "trigonal",
    "orthorhombic",
    "monoclinic",
    "triclinic",
}


def _no_tmp_left(root: Path) -> None:
    left = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert not left, left


def _check_common(rs: RecordSet, kind: str) -> None:
    assert META <= set(rs.meta)
    assert set(rs.meta["crystal_system"].tolist()) <= SYSTEMS
    assert (rs.meta["n_atoms"] == rs.n_atoms).all()
    for k in ("name", "kind", "energy_unit", "dos_unit"):
        assert k in rs.attrs
    assert rs.attrs["kind"] == kind


# =========================================================================== JARVIS
@pytest.mark.parametrize("as_zip", [True, False])
def test_jarvis_parses_zip_and_json(tmp_path, as_zip, caplog):
    rel = JARVIS_ZIP if as_zip else JARVIS_ZIP[: -len(".zip")]
    expected = F.write_jarvis(tmp_path / rel, as_zip=as_zip)
    caplog.set_level(logging.INFO)
    # the default path names the zip; the extracted JSON is found as well
    rs = JarvisEDOS().load(tmp_path)
    assert len(rs) == 5 and "JVASP-1002" not in rs.ids  # the "na" record is dropped
    assert "1 dropped with edos_up == 'na'" in caplog.text
    assert rs.energies.shape == (300,)
    assert rs.energies[0] == pytest.approx(-5.0) and rs.energies[-1] == pytest.approx(9.95)
    np.testing.assert_allclose(np.diff(rs.energies), 0.05)
    for i, jid in enumerate(rs.ids):
        np.testing.assert_allclose(rs.spectra[i], expected[jid], rtol=1e-6, atol=1e-9)
    _check_common(rs, "edos")
    assert (rs.meta["e_fermi"] == 0).all()
    nacl = list(rs.ids).index("JVASP-1000")
    assert rs.meta["n_valence"][nacl] == 8 and rs.meta["formula"][nacl] == "NaCl"
    assert rs.meta["crystal_system"][nacl] == "cubic"
    assert rs.attrs["valence_normalised"] is True
    assert "valence_normalised=auto -> already valence-normalised" in caplog.text
    # both recipes that need E_F work
    assert NativeRecipe(spacing=0.05).apply(rs).shape == (5, 300)
    y = GridRecipe(-5.0, 0.05, 300, reference="e_fermi").apply(rs)
    np.testing.assert_allclose(y, rs.spectra, atol=1e-6)


def test_jarvis_valence_auto_detects_raw(tmp_path, caplog):
    F.write_jarvis(tmp_path / JARVIS_ZIP, normalised=False, as_zip=True)
    caplog.set_level(logging.INFO)
    rs = JarvisEDOS().load(tmp_path)
    assert rs.attrs["valence_normalised"] is False
    assert "raw (not normalised)" in caplog.text
    assert rs.attrs["dos_unit"].startswith("states/eV/cell")
    # an explicit setting is honoured (and a contradiction is warned about)
    rs2 = JarvisEDOS(valence_normalised=True).load(tmp_path)
    assert rs2.attrs["valence_normalised"] is True
    assert "data look raw" in caplog.text


def test_element_valence_counts():
    assert [element_valence(e) for e in ("O", "Si", "Fe", "Zn", "Ga", "Pd", "Ce", "Pb")] == [
        6,
        4,
        8,
        12,
        3,
        10,
        4,
        4,
    ]


def test_jarvis_bad_inputs_name_file_and_record(tmp_path):
    # grid length mismatch: 299 values
    F.write_jarvis(tmp_path / "a" / JARVIS_ZIP, as_zip=True, edit={3: {"edos_up": [0.1] * 299}})
    with pytest.raises(DataError, match=r"record JVASP-1003.*299 values, expected 300") as e:
        JarvisEDOS().load(tmp_path / "a")
    assert "edos-up_pdos-elast_interp" in str(e.value)
    # NaN and negative spectra
    bad = np.full(300, 0.1)
    bad[7] = float("nan")
    F.write_jarvis(tmp_path / "b" / JARVIS_ZIP, as_zip=True, edit={1: {"edos_up": bad.tolist()}})
    with pytest.raises(DataError, match=r"record JVASP-1001.*NaN"):
        JarvisEDOS().load(tmp_path / "b")
    bad[7] = -0.05
    F.write_jarvis(tmp_path / "c" / JARVIS_ZIP, as_zip=True, edit={1: {"edos_up": bad.tolist()}})
    with pytest.raises(DataError, match=r"record JVASP-1001.*negative"):
        JarvisEDOS().load(tmp_path / "c")
    # a structure pymatgen cannot read
    F.write_jarvis(
        tmp_path / "d" / JARVIS_ZIP,
        as_zip=True,
        edit={
            4: {
                "atoms": {
                    "lattice_mat": [[1, 0], [0, 1]],
                    "coords": [[0, 0, 0]],
                    "elements": ["Xx"],
                    "cartesian": False,
                }
            }
        },
    )
    with pytest.raises(DataError, match=r"record JVASP-1004.*structure"):
        JarvisEDOS().load(tmp_path / "d")
    # wrong format: a JSON object instead of the list; not JSON at all
    p = tmp_path / "e" / JARVIS_ZIP[:-4]
    p.parent.mkdir(parents=True)
    p.write_text(json.dumps({"jid": "x"}))
    with pytest.raises(DataError, match=r"expected a JSON list"):
        JarvisEDOS(path=JARVIS_ZIP[:-4]).load(tmp_path / "e")
    p.write_text("<html>not json")
    with pytest.raises(DataError, match=rf"{p.name}: not valid JSON"):
        JarvisEDOS(path=JARVIS_ZIP[:-4]).load(tmp_path / "e")
    z = tmp_path / "f" / JARVIS_ZIP
    z.parent.mkdir(parents=True)
    z.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"\.zip"):
        JarvisEDOS().load(tmp_path / "f")
    _no_tmp_left(tmp_path)
    assert not any(tmp_path.rglob("*.npz"))  # no partial cache


def test_jarvis_strict_false_skips_bad_records(tmp_path, caplog):
    F.write_jarvis(tmp_path / JARVIS_ZIP, as_zip=True, edit={3: {"edos_up": [0.1] * 299}})
    rs = JarvisEDOS(strict=False).load(tmp_path)
    assert len(rs) == 4 and "JVASP-1003" not in rs.ids
    assert "skipped 1 bad records" in caplog.text


def test_missing_file_message(tmp_path):
    with pytest.raises(DataError) as e:
        JarvisEDOS(dataset="jarvis_edos").load(tmp_path)
    msg = str(e.value)
    assert JARVIS_ZIP in msg and str(tmp_path / JARVIS_ZIP) in msg
    assert "dos-data download jarvis_edos" in msg and "by hand" in msg
    with pytest.raises(DataError, match=r"label_edos/mpids.csv.*dos-data download mp_edos_128"):
        Mat2SpecEDOS(dataset="mp_edos_128").load(tmp_path)
    with pytest.raises(DataError, match=r"mp_dos.*dos-data download mp_edos_201"):
        MPDosDocuments(dataset="mp_edos_201").load(tmp_path)
    with pytest.raises(DataError, match=r"phdos/mpids.csv"):
        PhononE3NN().load(tmp_path)
    with pytest.raises(DataError, match=r"phonon_tut/data.csv.*dos-data download phonon_tut"):
        PhononTUT().load(tmp_path)


# =========================================================================== cache
def test_processed_cache_reused_and_atomic(tmp_path, caplog):
    F.write_jarvis(tmp_path / JARVIS_ZIP, as_zip=True)
    caplog.set_level(logging.INFO)
    rs1 = JarvisEDOS().load(tmp_path)
    files = list((tmp_path / "processed").glob("jarvis_edos-*.npz"))
    assert len(files) == 1
    caplog.clear()
    rs2 = JarvisEDOS().load(tmp_path)
    assert "reusing processed" in caplog.text and files[0].name in caplog.text
    np.testing.assert_array_equal(rs1.spectra, rs2.spectra)
    assert rs1.meta["crystal_system"].tolist() == rs2.meta["crystal_system"].tolist()
    assert rs2.attrs["valence_check"] == rs1.attrs["valence_check"]
    # another option -> another cache file; the key is stable
    assert JarvisEDOS().cache_key() == JarvisEDOS().cache_key()
    JarvisEDOS(negative_tol=0.5).load(tmp_path)
    assert len(list((tmp_path / "processed").glob("jarvis_edos-*.npz"))) == 2
    # replacing the raw file invalidates the cache
    F.write_jarvis(tmp_path / JARVIS_ZIP, as_zip=True, na_index=0)
    os.utime(tmp_path / JARVIS_ZIP, ns=(1, 1))
    rs3 = JarvisEDOS().load(tmp_path)
    assert "JVASP-1000" not in rs3.ids
    _no_tmp_left(tmp_path)
    # a damaged processed file is named in the error
    for f in (tmp_path / "processed").glob("*.npz"):
        f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(DataError, match=r"processed/jarvis_edos-[0-9a-f]+\.npz"):
        JarvisEDOS().load(tmp_path)


# =========================================================================== Mat2Spec eDOS
@pytest.mark.parametrize("header", [True, False])
def test_mat2spec_edos_folder(tmp_path, header):
    ids, y = F.write_mat2spec_edos(tmp_path / "Mat2Spec_DATA", header=header)
    rs = Mat2SpecEDOS().load(tmp_path)
    assert rs.ids.tolist() == ids
    np.testing.assert_allclose(rs.spectra, y, rtol=1e-6)
    assert rs.energies.shape == (128,)
    np.testing.assert_allclose(rs.energies, -4 + 0.0625 * (np.arange(128) + 0.5))
    _check_common(rs, "edos")
    recipe = NativeRecipe(spacing=0.0625)
    assert recipe.apply(rs).shape == (6, 128) and recipe.spacing == 0.0625


def test_mat2spec_edos_bad_inputs(tmp_path):
    root = tmp_path / "a" / "Mat2Spec_DATA"
    F.write_mat2spec_edos(root)
    npy = root / "label_edos" / "total_dos_128.npy"
    npy.write_bytes(npy.read_bytes()[:-300])  # truncated
    with pytest.raises(DataError, match=r"total_dos_128\.npy: cannot read"):
        Mat2SpecEDOS().load(tmp_path / "a")
    root = tmp_path / "b" / "Mat2Spec_DATA"
    F.write_mat2spec_edos(root, n_cols=127)
    with pytest.raises(DataError, match=r"total_dos_128\.npy: array has shape \(6, 127\)"):
        Mat2SpecEDOS().load(tmp_path / "b")
    root = tmp_path / "c" / "Mat2Spec_DATA"
    F.write_mat2spec_edos(root, n_ids=4)
    with pytest.raises(DataError, match=r"mpids\.csv lists 4 material ids but .* has 6"):
        Mat2SpecEDOS().load(tmp_path / "c")
    root = tmp_path / "d" / "Mat2Spec_DATA"
    ids, _ = F.write_mat2spec_edos(root)
    (root / "materials_with_edos" / f"dos_{ids[2]}.json").write_text(
        json.dumps({"structure": {"lattice": "garbage"}})
    )
    with pytest.raises(DataError, match=rf"dos_{ids[2]}\.json: record {ids[2]}: pymatgen"):
        Mat2SpecEDOS().load(tmp_path / "d")
    (root / "materials_with_edos" / f"dos_{ids[2]}.json").unlink()
    with pytest.raises(DataError, match=rf"record {ids[2]}.*missing.*dos_{ids[2]}\.json"):
        Mat2SpecEDOS().load(tmp_path / "d")
    _no_tmp_left(tmp_path)


def test_read_id_list_header_conventions(tmp_path):
    p = tmp_path / "ids.csv"
    p.write_text("mp_id\nmp-1\nmp-2\n")
    assert read_id_list(p) == ["mp-1", "mp-2"]
    p.write_text("mp-1\nmp-2\n")
    assert read_id_list(p) == ["mp-1", "mp-2"]
    p.write_text("0\n1\n2\n")  # pandas' unnamed-column header and integer ids
    assert read_id_list(p, n_expected=2) == ["mp-1", "mp-2"]


# =========================================================================== MP Dos documents
@pytest.mark.parametrize("layout", ["folder", "jsonl", "jsonlist"])
def test_mp_dos_documents(tmp_path, layout):
    target = {"folder": "mp_dos", "jsonl": "mp_dos.jsonl", "jsonlist": "mp_dos.json"}[layout]
    kinds = F.write_mp_dos_docs(tmp_path / target, layout=layout)
    rs = MPDosDocuments(path=target).load(tmp_path)
    magnetic = [m for m, k in kinds.items() if k == "magnetic"]
    assert sorted(rs.ids.tolist()) == sorted(m for m in kinds if m not in magnetic)
    _check_common(rs, "edos")
    assert (rs.meta["e_fermi"] == 0).all()
    assert rs.meta["e_fermi_abs"] == pytest.approx(np.full(len(rs), F.EF_ABS))
    np.testing.assert_allclose(np.diff(rs.energies), 0.02, atol=1e-9)
    assert rs.energies[0] == pytest.approx(-12.0) and rs.energies[-1] == pytest.approx(14.0)
    for i, m in enumerate(rs.ids):
        if kinds[m] == "insulator":
            assert rs.meta["vbm"][i] == pytest.approx(0.0, abs=0.02)
            assert rs.meta["cbm"][i] == pytest.approx(1.5, abs=0.02)
            assert rs.meta["band_gap"][i] == pytest.approx(1.5, abs=0.03)
            # the spectrum is the DOS shifted to E_F = 0 (VB value 2 sqrt(1 eV) at -1 eV)
            assert rs.spectra[i][np.argmin(np.abs(rs.energies + 1.0))] == pytest.approx(2.0, 0.01)
        else:
            assert rs.meta["band_gap"][i] == 0 and rs.meta["vbm"][i] == rs.meta["cbm"][i] == 0
        assert rs.meta["spin_polarised"][i] == (kinds[m] == "polarised_nm")
    assert not rs.meta["is_magnetic"].any()
    # the two paper recipes share this raw source
    g201 = GridRecipe(-5, 0.05, 201, reference="e_fermi", savgol_window=17, savgol_order=1)
    assert g201.apply(rs).shape == (len(rs), 201)
    y128 = BandEdgeRecipe(window=4, n_bins=128).apply(rs)
    assert y128.shape == (len(rs), 128)
    ins = [i for i, m in enumerate(rs.ids) if kinds[m] == "insulator"][0]
    assert y128[ins, 63] > 0 and y128[ins, 64] > 0  # the gap is removed


def test_mp_dos_magnetic_kept_on_request(tmp_path, caplog):
    kinds = F.write_mp_dos_docs(tmp_path / "mp_dos")
    caplog.set_level(logging.INFO)
    MPDosDocuments().load(tmp_path)
    assert "dropped 1 magnetic materials" in caplog.text
    rs = MPDosDocuments(non_magnetic_only=False).load(tmp_path)
    assert len(rs) == len(kinds)
    mag = {m: bool(v) for m, v in zip(rs.ids, rs.meta["is_magnetic"], strict=True)}
    assert mag == {m: k == "magnetic" for m, k in kinds.items()}


def test_mp_dos_document_flags_override(tmp_path):
    kinds = F.write_mp_dos_docs(tmp_path / "mp_dos.jsonl", layout="jsonl")
    lines = (tmp_path / "mp_dos.jsonl").read_text().splitlines()
    docs = [json.loads(x) for x in lines]
    docs[1]["ordering"] = "AFM"  # a metal flagged antiferromagnetic by MP
    (tmp_path / "mp_dos.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    rs = MPDosDocuments(path="mp_dos.jsonl").load(tmp_path)
    assert docs[1]["material_id"] not in rs.ids
    assert len(rs) == len(kinds) - 2


def test_mp_dos_bad_inputs(tmp_path):
    F.write_mp_dos_docs(tmp_path / "a" / "mp_dos")
    f = tmp_path / "a" / "mp_dos" / "mp-201.json"
    d = json.loads(f.read_text())
    d["dos"]["densities"]["1"] = d["dos"]["densities"]["1"][:-1]
    f.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"mp-201\.json: record mp-201 densities\[1\]: spectrum"):
        MPDosDocuments().load(tmp_path / "a")
    d["dos"]["densities"]["1"] = [float("nan")] + d["dos"]["densities"]["1"]
    f.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"record mp-201.*NaN"):
        MPDosDocuments().load(tmp_path / "a")
    f.write_text(
        json.dumps({"material_id": "mp-201", "dos": {"efermi": 0}, "structure": d["structure"]})
    )
    with pytest.raises(DataError, match=r"mp-201\.json: record mp-201: pymatgen cannot read"):
        MPDosDocuments().load(tmp_path / "a")
    f.write_text(json.dumps({"foo": 1}))
    with pytest.raises(DataError, match=r"mp-201\.json: not a pymatgen Dos/CompleteDos"):
        MPDosDocuments().load(tmp_path / "a")
    F.write_mp_dos_docs(tmp_path / "b" / "mp_dos")
    f = tmp_path / "b" / "mp_dos" / "mp-201.json"
    d = json.loads(f.read_text())
    d["structure"] = {"lattice": {"matrix": [[0, 0, 0]] * 3}, "sites": []}
    f.write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"mp-201\.json: record mp-201.*structure"):
        MPDosDocuments().load(tmp_path / "b")
    _no_tmp_left(tmp_path)
    assert not any(tmp_path.rglob("*.npz"))


# =========================================================================== E3NN phonons
def test_phonon_e3nn_folder(tmp_path):
    ids, y = F.write_mat2spec_phdos(tmp_path / "Mat2Spec_DATA")
    rs = PhononE3NN().load(tmp_path)
    assert rs.ids.tolist() == ids
    np.testing.assert_allclose(rs.spectra, y, rtol=1e-6)
    np.testing.assert_allclose(rs.energies, 20.0 * np.arange(51))
    _check_common(rs, "phdos")
    assert rs.attrs["max_normalised"] is True
    assert rs.meta["source_row"].tolist() == list(range(6))
    # the structures survive the restricted unpickler exactly
    for i, s in enumerate(F.structures()):
        got = rs.structure(i)
        assert [sp.symbol for sp in got.species] == [sp.symbol for sp in s.species]
        np.testing.assert_allclose(got.lattice.matrix, s.lattice.matrix, atol=1e-9)
        np.testing.assert_allclose(got.frac_coords, s.frac_coords % 1.0, atol=1e-9)


def test_phonon_e3nn_warns_when_not_max_normalised(tmp_path, caplog):
    root = tmp_path / "Mat2Spec_DATA"
    F.write_mat2spec_phdos(root)
    y = np.load(root / "phdos" / "ph_dos.npy")
    y[2] *= 3.0
    np.save(root / "phdos" / "ph_dos.npy", y)
    rs = PhononE3NN().load(tmp_path)
    assert rs.attrs["max_normalised"] is False
    assert "1 of 6 spectra" in caplog.text and "not max-normalised" in caplog.text


def test_phonon_e3nn_bad_inputs(tmp_path):
    root = tmp_path / "a" / "Mat2Spec_DATA"
    F.write_mat2spec_phdos(root, n_cols=50)
    with pytest.raises(DataError, match=r"ph_dos\.npy: array has shape \(6, 50\), expected"):
        PhononE3NN().load(tmp_path / "a")
    root = tmp_path / "b" / "Mat2Spec_DATA"
    ids, _ = F.write_mat2spec_phdos(root)
    y = np.load(root / "phdos" / "ph_dos.npy")
    y[3, 5] = -0.5
    np.save(root / "phdos" / "ph_dos.npy", y)
    with pytest.raises(DataError, match=rf"ph_dos\.npy: record {ids[3]} \(row 3\).*negative"):
        PhononE3NN().load(tmp_path / "b")
    root = tmp_path / "c" / "Mat2Spec_DATA"
    F.write_mat2spec_phdos(root)
    (root / "phdos" / "ph_structures.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match=r"ph_structures\.pkl"):
        PhononE3NN().load(tmp_path / "c")
    _no_tmp_left(tmp_path)


@pytest.mark.parametrize("target", [os.system, subprocess.Popen, eval])
def test_pickle_with_disallowed_global_is_refused(tmp_path, target):
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    args = (["touch", str(marker)],) if target is subprocess.Popen else (cmd,)
    if target is eval:
        args = (f"__import__('os').system({cmd!r})",)
    root = tmp_path / "Mat2Spec_DATA"
    F.write_mat2spec_phdos(root)
    pkl = root / "phdos" / "ph_structures.pkl"
    F.write_evil_pickle(pkl, target, args)
    with pytest.raises(DataError) as e:
        PhononE3NN().load(tmp_path)
    assert "ph_structures.pkl" in str(e.value) and "not in the allowed list" in str(e.value)
    assert not marker.exists()
    with pytest.raises(DataError, match="not in the allowed list"):
        load_index_pickle(pkl)
    assert not marker.exists()


def test_pickled_structure_with_oxidation_states(tmp_path):
    from pymatgen.core import Lattice, Species, Structure

    s = Structure(
        Lattice.cubic(4.2), [Species("Fe", 2), Species("O", -2)], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    p = tmp_path / "s.pkl"
    for proto in (2, 4, 5):
        p.write_bytes(pickle.dumps([s], protocol=proto))
        (got,) = load_structure_pickle(p)
        assert [sp.symbol for sp in got.species] == ["Fe", "O"]
    # pymatgen classes are only placeholders in the index-pickle loader
    with pytest.raises(DataError, match="pymatgen.core.structure.Structure"):
        restricted_pickle_load(p)
    assert "pymatgen.core.structure" in PICKLE_WHITELIST


# =========================================================================== TUT data.csv
def test_phonon_tut_csv(tmp_path):
    ids, y = F.write_tut_csv(tmp_path / "phonon_tut" / "data.csv")
    rs = PhononTUT().load(tmp_path)
    assert rs.ids.tolist() == ids
    np.testing.assert_allclose(rs.spectra, y, rtol=1e-6)
    np.testing.assert_allclose(rs.energies, 20.0 * np.arange(51))
    _check_common(rs, "phdos")
    assert rs.meta["formula"].tolist()[:3] == ["NaCl", "Mg", "TiO2"]
    for i, s in enumerate(F.structures()):
        np.testing.assert_allclose(rs.structure(i).lattice.matrix, s.lattice.matrix, atol=1e-6)
        np.testing.assert_allclose(rs.structure(i).cart_coords, s.cart_coords, atol=1e-5)


CODE_CELLS = [
    "__import__('os').system('touch {marker}')",
    "array([1]).__class__",
    "{'numbers': array([1]), 'positions': open('{marker}', 'w')}",
    "[x for x in ().__class__.__base__.__subclasses__()]",
    "(lambda: __import__('os').system('touch {marker}'))()",
    "array([1], dtype=object)",
]


def test_phonon_tut_refuses_code_and_loads_the_rest(tmp_path, caplog):
    marker = tmp_path / "pwned"
    override = {
        1: {"structure": CODE_CELLS[0].replace("{marker}", str(marker))},
        3: {"structure": CODE_CELLS[1]},
        4: {"phdos": f"__import__('os').system('touch {marker}')"},
    }
    ids, _ = F.write_tut_csv(tmp_path / "phonon_tut" / "data.csv", override)
    rs = PhononTUT().load(tmp_path)
    assert not marker.exists()
    assert rs.ids.tolist() == [ids[0], ids[2], ids[5]]
    assert rs.meta["source_row"].tolist() == [0, 2, 5]
    assert rs.attrs["n_failed"] == 3
    for row in (1, 3, 4):
        assert f"row {row} (mp_id {ids[row]}" in caplog.text
    assert "refused to evaluate" in caplog.text
    # strict: the first bad row stops the load, naming it
    with pytest.raises(DataError, match=rf"row 1 \(mp_id {ids[1]}, line \d+\) column structure"):
        PhononTUT(strict=True).load(tmp_path)
    assert not marker.exists()


def test_phonon_tut_bad_inputs(tmp_path):
    F.write_tut_csv(tmp_path / "a" / "phonon_tut" / "data.csv", {2: {"phdos": str([0.5] * 50)}})
    with pytest.raises(DataError, match=r"row 2 \(mp_id mp-402.*50 values, expected 51"):
        PhononTUT(strict=True).load(tmp_path / "a")
    F.write_tut_csv(
        tmp_path / "b" / "phonon_tut" / "data.csv",
        {
            0: {
                "structure": "{'numbers': array([1, 1]), 'positions': array([[0., 0., "
                "0.]]), 'cell': array([[1., 0.], [0., 1.]])}"
            }
        },
    )
    with pytest.raises(DataError, match=r"row 0 \(mp_id mp-400.*structure"):
        PhononTUT(strict=True).load(tmp_path / "b")
    # every row bad -> raise even when not strict
    ids = [f"mp-{400 + i}" for i in range(6)]
    F.write_tut_csv(
        tmp_path / "c" / "phonon_tut" / "data.csv", {i: {"structure": "{}"} for i in range(6)}
    )
    with pytest.raises(DataError, match=rf"(?s)no record could be loaded.*{ids[0]}.*structure"):
        PhononTUT().load(tmp_path / "c")
    p = tmp_path / "d" / "phonon_tut" / "data.csv"
    p.parent.mkdir(parents=True)
    p.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"data\.csv: not the phonon-tutorial data\.csv layout"):
        PhononTUT().load(tmp_path / "d")
    _no_tmp_left(tmp_path)
    assert not any(tmp_path.rglob("*.npz"))


def test_tutorial_example_csv_structure_cell_is_refused_cleanly(tmp_path):
    """The real format example (``data_alloy.csv``) has an empty structure cell ``{}``."""
    src = SPLITS / "tutorial_phdos_format_example.csv"
    if not src.exists():
        pytest.skip("published example not available")
    dst = tmp_path / "phonon_tut" / "data.csv"
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src.read_bytes())
    with pytest.raises(
        DataError,
        match=r"row 0 \(mp_id \?, line 2\) column structure: "
        r"structure cell is empty",
    ):
        PhononTUT().load(tmp_path)


# =========================================================================== literal parser
def test_parse_literal_accepts_numpy_reprs():
    d = parse_literal(
        "{'numbers': array([11, 17]), 'positions': array([[ 0. ,  0. ,  0. ],\n"
        "       [ 2.8,  2.8,  2.8]]), 'pbc': array([ True,  True,  True]), "
        "'tags': array([1, 2], dtype=int32), 'x': -1.5e-3, 'y': (nan, -inf), 'z': None}",
        "t",
    )
    assert d["numbers"].tolist() == [11, 17] and d["positions"].shape == (2, 3)
    assert d["pbc"].dtype == bool and d["tags"].dtype == np.int32 and d["x"] == -1.5e-3
    assert np.isnan(d["y"][0]) and d["y"][1] == -np.inf


@pytest.mark.parametrize("cell", CODE_CELLS + ["array([1, ...])", "1 + 1", "os", "{**{}}"])
def test_parse_literal_refuses_everything_else(cell, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(DataError, match=r"^cell 7: refused to evaluate"):
        parse_literal(cell.replace("{marker}", str(marker)), "cell 7")
    assert not marker.exists()


# =========================================================================== published splits
def test_published_split_files_read():
    pkl = SPLITS / "e3nn_phdos_200801_trteva_indices.pkl"
    if not pkl.exists():
        pytest.skip("published split files not available")
    parts = load_index_pickle(pkl)
    assert [len(p) for p in parts] == [1220, 152, 152]
    assert all(p.dtype == np.int64 for p in parts)
    allidx = np.concatenate(parts)
    assert len(np.unique(allidx)) == 1524 and allidx.min() == 0 and allidx.max() == 1523
    txt = [
        load_index_txt(SPLITS / f"tutorial_phdos_idx_{p}.txt") for p in ("train", "valid", "test")
    ]
    assert [len(t) for t in txt] == [1192, 141, 189]
    assert np.concatenate(txt).max() <= 1521


def test_index_file_errors(tmp_path):
    p = tmp_path / "idx.txt"
    p.write_text("1\n2\nthree\n")
    with pytest.raises(DataError, match=r"idx\.txt: line 3"):
        load_index_txt(p)
    q = tmp_path / "idx.pkl"
    q.write_bytes(pickle.dumps([np.array([[1, 2]])]))
    with pytest.raises(DataError, match=r"idx\.pkl: entry 0 is not a 1-D integer array"):
        load_index_pickle(q)
    q.write_bytes(pickle.dumps([np.arange(5)])[:-5])
    with pytest.raises(DataError, match=r"idx\.pkl"):
        load_index_pickle(q)


def test_zip_with_two_json_members_needs_member(tmp_path):
    z = tmp_path / JARVIS_ZIP
    F.write_jarvis(z, as_zip=True)
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("other.json", "[]")
    with pytest.raises(DataError, match=r"expected one \.json member"):
        JarvisEDOS().load(tmp_path)
    rs = JarvisEDOS(member="edos-up_pdos-elast_interp-8-18-2021.json").load(tmp_path)
    assert len(rs) == 5


def test_pickle_entry_that_is_not_a_structure_names_the_record(tmp_path):
    root = tmp_path / "Mat2Spec_DATA"
    ids, _ = F.write_mat2spec_phdos(root)
    ss = F.structures()
    ss[2] = {"lattice": np.eye(3)}
    with open(root / "phdos" / "ph_structures.pkl", "wb") as fh:
        pickle.dump(ss, fh)
    with pytest.raises(DataError, match=rf"ph_structures\.pkl: record {ids[2]} \(entry 2\)"):
        PhononE3NN().load(tmp_path)


# =========================================================================== YAML wiring
CONF = Path(__file__).resolve().parents[2] / "conf"
DATASETS = [
    "jarvis_edos",
    "mp_edos_128",
    "mp_edos_201",
    "mp_edos_128_from_dos",
    "phonon_e3nn",
    "phonon_tut",
]


def _compose(name: str, data_dir: Path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[f"dataset={name}", f"paths.data_dir={data_dir}", "progress=false"],
        )


def download_entries_valid(dataset_cfg) -> bool:
    from dos_bench.data.download import dataset_entries

    return all((e.url or e.record).startswith("https://") for e in dataset_entries(dataset_cfg))


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_yaml(name, tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = _compose(name, tmp_path)
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert ds["name"] == name and ds["kind"] in ("edos", "phdos")
    assert isinstance(ds["download"], list)
    for entry in ds["download"]:
        # a direct file URL, or an InvenioRDM record resolved to its file at download time
        assert ("url" in entry) != ("record" in entry)
        assert {"sha256", "path", "unpack"} <= set(entry)
        assert set(entry) <= {"url", "record", "file", "sha256", "path", "unpack", "git_blob"}
        link = entry.get("url") or entry["record"]
        assert link.startswith("https://") and not Path(entry["path"]).is_absolute()
    if name.startswith("mp_edos_") and name != "mp_edos_128":
        assert ds["requires_env"] == "MP_API_KEY"
        from dos_bench.data import download, mp_builder  # noqa: F401 (registers the builder)

        assert ds["api"]["builder"] in download.API_BUILDERS
    assert download_entries_valid(cfg.dataset)
    src = instantiate(cfg.dataset.source)
    rec = instantiate(cfg.dataset.recipe)
    assert src.dataset == name and hasattr(rec, "apply")
    with pytest.raises(DataError, match=rf"dos-data download {name}"):
        src.load(tmp_path)


def test_yaml_pipeline_end_to_end(tmp_path):
    from hydra.utils import instantiate

    F.write_mat2spec_phdos(tmp_path / "Mat2Spec_DATA")
    F.write_mp_dos_docs(tmp_path / "mp_dos")
    cfg = _compose("phonon_e3nn", tmp_path)
    rs = instantiate(cfg.dataset.source).load(cfg.paths.data_dir)
    assert instantiate(cfg.dataset.recipe).apply(rs).shape == (6, 51)
    shapes = {}
    for name in ("mp_edos_201", "mp_edos_128_from_dos"):
        cfg = _compose(name, tmp_path)
        rs = instantiate(cfg.dataset.source).load(cfg.paths.data_dir)
        shapes[name] = instantiate(cfg.dataset.recipe).apply(rs).shape
    assert shapes == {"mp_edos_201": (5, 201), "mp_edos_128_from_dos": (5, 128)}
    # the two MP datasets share one processed file
    assert len(list((tmp_path / "processed").glob("mp_dos-*.npz"))) == 1
