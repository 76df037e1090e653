"""Periodic-table band-gap figure and the band-gap rule it reads off the predicted spectra."""

from __future__ import annotations

import numpy as np
import pytest

from dos_bench.reporting.periodic import band_gaps_from_predictions, plot_periodic_table_gap

from .helpers import _is_png, _predictions


def test_periodic_table_gap(tmp_path):
    a = _predictions(tmp_path / "a.npz")
    assert _is_png(plot_periodic_table_gap(a, tmp_path / "pt.png"))
    gaps = band_gaps_from_predictions(np.load(a)["energies"], np.load(a)["true"])
    assert gaps.shape == (24,) and np.nanmax(gaps) > 0
    # without formulas the figure is skipped, not faked
    b = _predictions(tmp_path / "b.npz", formulas=False)
    assert plot_periodic_table_gap(b, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_threshold_gap_rule():
    """The figure's gaps follow dos_bench.physics.band_gaps (1 % of each spectrum's max counts as
    non-zero): CBM - VBM when gapped, 0 for a metal, NaN for an all-zero spectrum."""
    e = np.linspace(-2, 2, 41)
    gapped = np.where(np.abs(e) > 0.55, 1.0, 0.0)
    metal = np.ones_like(e)
    g = band_gaps_from_predictions(e, np.stack([gapped, metal, np.zeros_like(e)]))
    assert g[0] == pytest.approx(1.2) and g[1] == 0.0 and np.isnan(g[2])
