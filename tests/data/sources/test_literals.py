"""The safe literal parser of the phonon-tutorial cells: numpy reprs in, code refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dos_bench.data.sources.literals import parse_literal
from dos_bench.io import DataError

_spec = importlib.util.spec_from_file_location(
    "dos_sources_fixtures", Path(__file__).parents[1] / "fixtures.py"
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)
CODE_CELLS = F.CODE_CELLS


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
