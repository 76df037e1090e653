"""Spectrum figures: examples by error quantile, one predicted spectrum with E_F and gap marked."""

from __future__ import annotations

import numpy as np
import pytest

from dos_bench.reporting.plotting import figure_info
from dos_bench.reporting.spectra import (
    plot_predicted_spectrum,
    plot_quantile_examples,
    plot_quartile_examples,
)
from dos_bench.reporting.units import checkpoint_spectrum_units

from .helpers import FERMI_GRID, GRID_RECIPE, PH_GRID, _is_png, _predictions


def test_quartile_and_quintile_examples(tmp_path):
    a = _predictions(tmp_path / "a.npz", 0)
    b = _predictions(tmp_path / "b.npz", 1)
    assert _is_png(plot_quartile_examples(a, tmp_path / "q4.png"))
    out = plot_quantile_examples([("A", a), ("B", b)], tmp_path / "q5.png", n_quantiles=5)
    assert _is_png(out)
    assert _is_png(plot_quantile_examples(a, tmp_path / "q4b.png", n_quantiles=4))
    assert not list(tmp_path.glob("*.tmp"))


def test_predicted_spectrum_marks_fermi_level_and_gap(tmp_path):
    e = FERMI_GRID
    y = np.where((e < -1.0) | (e > 0.8), 2.0, 0.0)
    units = checkpoint_spectrum_units(
        {"dataset": {"recipe": GRID_RECIPE}, "target_repr": {"_target_": "x.Raw"}},
        {"kind": "edos", "energy_unit": "eV", "dos_unit": "states/eV/cell (spin included)"},
        normalised=False,
    )
    out = plot_predicted_spectrum(e, y, tmp_path / "p.png", units, "Si", band_gap=1.8)
    ax = figure_info(out)["axes"][0]
    assert ax["xlabel"] == r"$E - E_\mathrm{F}$ (eV)"
    assert ax["ylabel"] == "DOS (states/eV/cell, spin included)"
    marks = {m["gid"]: m for m in ax["marks"]}
    assert marks["E_F"]["x"] == [0.0, 0.0]
    assert marks["band_gap"]["x"] == pytest.approx([-1.0, 0.8], abs=0.051)
    assert "gap 1.80 eV" in marks["band_gap"]["label"]
    metal = plot_predicted_spectrum(e, np.ones_like(e), tmp_path / "m.png", units, band_gap=0)
    ax = figure_info(metal)["axes"][0]
    assert "metal (DOS at E_F > 0)" in ax["legend"] and "band_gap" not in str(ax["marks"])
    # normalised output of a per-material representation; phonons: no E_F line
    norm = checkpoint_spectrum_units(
        {"target_repr": {"_target_": "dos_bench.data.transforms.MaxNorm"}},
        {"kind": "phdos", "energy_unit": "cm^-1", "dos_unit": "modes/cm^-1/cell"},
        normalised=True,
    )
    ph = plot_predicted_spectrum(PH_GRID, np.ones(PH_GRID.size), tmp_path / "ph.png", norm)
    ax = figure_info(ph)["axes"][0]
    assert (ax["xlabel"], ax["ylabel"]) == ("frequency (cm⁻¹)", "phonon DOS (max-normalised)")
    assert ax["marks"] == []
