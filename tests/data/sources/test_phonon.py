"""Phonon sources: the E3NN/Mat2Spec folder (restricted pickles) and the tutorial data.csv."""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dos_bench.data.sources.phonon import PhononE3NN, PhononTUT
from dos_bench.data.sources.pickles import load_index_pickle
from dos_bench.io import DataError

_spec = importlib.util.spec_from_file_location(
    "dos_sources_fixtures", Path(__file__).parents[1] / "fixtures.py"
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)
SPLITS, CODE_CELLS = F.SPLITS, F.CODE_CELLS
_no_tmp_left, _check_common = F.no_tmp_left, F.check_common


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


def test_pickle_entry_that_is_not_a_structure_names_the_record(tmp_path):
    root = tmp_path / "Mat2Spec_DATA"
    ids, _ = F.write_mat2spec_phdos(root)
    ss = F.structures()
    ss[2] = {"lattice": np.eye(3)}
    with open(root / "phdos" / "ph_structures.pkl", "wb") as fh:
        pickle.dump(ss, fh)
    with pytest.raises(DataError, match=rf"ph_structures\.pkl: record {ids[2]} \(entry 2\)"):
        PhononE3NN().load(tmp_path)
