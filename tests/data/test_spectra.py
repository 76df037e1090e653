"""Spectrum recipes on hand-checkable spectra."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.data.spectra import BandEdgeRecipe, GridRecipe, bin_average_rows, interp_rows
from dos_bench.io import ConfigError, DataError

E = np.arange(-20.0, 20.0 + 1e-9, 0.01)


def _rs(spectra, **meta_cols):
    s = Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])
    recs = [
        DOSRecord(f"m{i}", s, E, sp, {k: v[i] for k, v in meta_cols.items()})
        for i, sp in enumerate(spectra)
    ]
    return RecordSet.from_records(recs, {"name": "t"})


def test_interp_rows_linear_function_exact():
    y = np.stack([E * 2 + 50, E + 30])
    pts = np.array([[0.005, 1.234], [-3.0, 7.777]])
    out = interp_rows(E, y, pts)
    assert out == pytest.approx(np.array([[0.01 + 50, 2.468 + 50], [27.0, 37.777]]), abs=1e-9)
    # outside the grid -> 0
    assert interp_rows(E, y, np.array([[-30.0, 30.0]] * 2)).max() == 0


def test_bin_average_constant_and_integral():
    y = np.ones((1, E.size)) * 3.0
    edges = np.linspace(-5, 5, 11)
    assert bin_average_rows(E, y, edges) == pytest.approx(np.full((1, 10), 3.0))
    # a box from 0 to 1: its bin-average over [0, 2] is half of it
    box = ((E >= 0) & (E <= 1)).astype(float)[None, :]
    avg = bin_average_rows(E, box, np.array([0.0, 2.0]))
    assert avg[0, 0] == pytest.approx(0.5, abs=0.01)


def test_grid_recipe_fermi_reference_shifts():
    gauss = np.exp(-((E - 2.0) ** 2) / 0.1)
    rs = _rs([gauss, gauss], e_fermi=np.array([0.0, 2.0]))
    r = GridRecipe(start=-5, step=0.05, n_points=300, reference="e_fermi")
    y = r.apply(rs)
    assert y.shape == (2, 300)
    g = r.grid
    assert g[0] == -5 and g[-1] == pytest.approx(9.95)
    assert g[np.argmax(y[0])] == pytest.approx(2.0)
    assert g[np.argmax(y[1])] == pytest.approx(0.0)


def test_grid_recipe_smoothing_and_errors():
    rs = _rs([np.ones(E.size)], e_fermi=np.array([0.0]))
    y = GridRecipe(-5, 0.05, 201, "e_fermi", savgol_window=17, savgol_order=1).apply(rs)
    assert y == pytest.approx(np.ones((1, 201)), abs=1e-6)
    with pytest.raises(DataError, match="metadata column 'vbm'"):
        GridRecipe(-5, 0.05, 10, reference="vbm").apply(rs)
    with pytest.raises(ConfigError, match="n_points"):
        GridRecipe(0, 1, 1)


def test_band_edge_recipe_removes_gap():
    # valence states below -1, conduction states above +1: a 2 eV gap
    vb = ((E > -3.0) & (E < -1.0)).astype(float)
    cb = 2.0 * ((E > 1.0) & (E < 3.0)).astype(float)
    rs = _rs([vb + cb], vbm=np.array([-1.0]), cbm=np.array([1.0]))
    r = BandEdgeRecipe(window=4.0, n_bins=128)
    y = r.apply(rs)[0]
    assert r.spacing == pytest.approx(0.0625)
    assert r.grid[0] == pytest.approx(-4 + 0.03125)
    # bins 64.. start right at the CBM: no gap bins of zero between the bands
    # (within one raw step of the band edge the trapezoid rule loses a little)
    assert y[63] == pytest.approx(1.0, abs=0.1) and y[64] == pytest.approx(2.0, abs=0.2)
    assert y[:31].max() < 1e-9  # VBM-4 .. VBM-2 is empty (bin 31 touches the band edge)
    assert y[32:63].min() == pytest.approx(1.0, abs=0.05)


def test_band_edge_recipe_rejects_bad_edges():
    rs = _rs([np.ones(E.size)], vbm=np.array([1.0]), cbm=np.array([0.0]))
    with pytest.raises(DataError, match="record m0"):
        BandEdgeRecipe().apply(rs)
