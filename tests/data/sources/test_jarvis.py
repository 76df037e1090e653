"""JarvisEDOS (``jarvis_edos``) on a tiny copy of the JARVIS ``edos_pdos`` file."""

from __future__ import annotations

import importlib.util
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dos_bench.data.sources.jarvis import JarvisEDOS
from dos_bench.data.sources.structures import element_valence
from dos_bench.data.spectra import GridRecipe, NativeRecipe
from dos_bench.io import DataError

_spec = importlib.util.spec_from_file_location(
    "dos_sources_fixtures", Path(__file__).parents[1] / "fixtures.py"
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)
JARVIS_ZIP = F.JARVIS_ZIP
_no_tmp_left, _check_common = F.no_tmp_left, F.check_common


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


def test_zip_with_two_json_members_needs_member(tmp_path):
    z = tmp_path / JARVIS_ZIP
    F.write_jarvis(z, as_zip=True)
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr("other.json", "[]")
    with pytest.raises(DataError, match=r"expected one \.json member"):
        JarvisEDOS().load(tmp_path)
    rs = JarvisEDOS(member="edos-up_pdos-elast_interp-8-18-2021.json").load(tmp_path)
    assert len(rs) == 5
