"""Restricted unpickling: structures with oxidation states, index pickles, the published splits."""

from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

from dos_bench.data.sources.pickles import (
    PICKLE_WHITELIST,
    load_index_pickle,
    load_structure_pickle,
    restricted_pickle_load,
)
from dos_bench.data.sources.readers import load_index_txt
from dos_bench.io import DataError

_spec = importlib.util.spec_from_file_location(
    "dos_sources_fixtures", Path(__file__).parents[1] / "fixtures.py"
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)
SPLITS = F.SPLITS


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
