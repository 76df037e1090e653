"""Materials Project sources: the Mat2Spec eDOS folder and pymatgen DOS documents."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from dos_bench.data.sources.materials_project import Mat2SpecEDOS, MPDosDocuments
from dos_bench.data.sources.readers import read_id_list
from dos_bench.data.spectra import BandEdgeRecipe, GridRecipe, NativeRecipe
from dos_bench.io import DataError

_spec = importlib.util.spec_from_file_location(
    "dos_sources_fixtures", Path(__file__).parents[1] / "fixtures.py"
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)
_no_tmp_left, _check_common = F.no_tmp_left, F.check_common


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
