"""Error histograms: PNG written, integer counts, quartile shading, no invented units."""

from __future__ import annotations

from dos_bench.reporting.histograms import plot_error_histogram
from dos_bench.reporting.plotting import figure_info

from .helpers import _is_png, _predictions


def test_error_histogram(tmp_path):
    a = _predictions(tmp_path / "a.npz")
    assert _is_png(plot_error_histogram(a, tmp_path / "h.png", title="D-ALIGNN"))


def test_error_histogram_integer_counts_and_quartile_shading(tmp_path):
    """Few test materials: count ticks are integers on both panels, and the relative-error
    panel is shaded by quartile like the MAE panel."""
    a = _predictions(tmp_path / "a.npz", n=9)
    info = figure_info(plot_error_histogram(a, tmp_path / "h.png"))
    assert len(info["axes"]) == 2
    for ax in info["axes"]:
        assert ax["ylabel"] == "test materials"
        assert len(ax["yticks"]) >= 2
        assert all(float(t).is_integer() for t in ax["yticks"]), ax["yticks"]
        assert [t for t in ax["legend"] if t.startswith("Q")] == ["Q1", "Q2", "Q3", "Q4"]
    assert "(dimensionless)" in info["axes"][1]["xlabel"]
    assert "states" not in info["axes"][0]["xlabel"]  # no units recorded: none invented
