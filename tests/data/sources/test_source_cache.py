"""The base of the published-data sources: the processed cache and the missing-file message."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from dos_bench.data.sources import (
    JarvisEDOS,
    Mat2SpecEDOS,
    MPDosDocuments,
    PhononE3NN,
    PhononTUT,
)
from dos_bench.io import DataError

_spec = importlib.util.spec_from_file_location(
    "dos_sources_fixtures", Path(__file__).parents[1] / "fixtures.py"
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)
JARVIS_ZIP = F.JARVIS_ZIP
_no_tmp_left = F.no_tmp_left


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
