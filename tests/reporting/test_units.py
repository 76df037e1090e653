"""Axis labels and units: the spectrum_units rules, and the labels read back from saved figures."""

from __future__ import annotations

import pytest

from dos_bench.reporting.histograms import plot_error_histogram
from dos_bench.reporting.plotting import figure_info
from dos_bench.reporting.spectra import plot_quantile_examples, plot_quartile_examples
from dos_bench.reporting.units import run_spectrum_units, spectrum_units

from .helpers import BAND_EDGE_GRID, FERMI_GRID, GRID_RECIPE, PH_GRID, _run_dir

# name -> (run files, expected x label, expected y label, marker at 0 or None)
LABEL_CASES = {
    "edos_native": (
        dict(kind="edos", energy_unit="eV", dos_unit="states/eV/cell (spin included)",
             grid=FERMI_GRID, recipe=GRID_RECIPE),
        r"$E - E_\mathrm{F}$ (eV)",
        "DOS (states/eV/cell, spin included)",
        "E_F",
    ),
    "edos_jarvis_valence": (
        dict(kind="edos", energy_unit="eV", dos_unit="states/eV/valence electron (spin up)",
             grid=FERMI_GRID),
        r"$E - E_\mathrm{F}$ (eV)",
        "DOS (states/eV/electron, spin up)",
        "E_F",
    ),
    "edos_max_normalised": (
        dict(kind="edos", energy_unit="eV", dos_unit="states/eV", grid=FERMI_GRID,
             recipe=GRID_RECIPE, metric_space="normalised",
             target_repr={"_target_": "dos_bench.data.transforms.MaxNorm"}),
        r"$E - E_\mathrm{F}$ (eV)",
        "DOS (max-normalised)",
        "E_F",
    ),
    "edos_autoencoder_valence": (
        dict(kind="edos", energy_unit="eV", dos_unit="states/eV/cell", grid=FERMI_GRID,
             metric_space="normalised",
             target_repr={"_target_": "dos_bench.data.transforms.Autoencoder",
                          "inner": {"_target_": "dos_bench.data.transforms.ValenceNorm"}}),
        r"$E - E_\mathrm{F}$ (eV)",
        "DOS (states/eV/electron)",
        "E_F",
    ),
    "edos_band_edges": (
        dict(kind="edos", energy_unit="eV", dos_unit="states/eV", grid=BAND_EDGE_GRID),
        r"$E - E_\mathrm{edge}$ (eV; gap removed)",
        "DOS (states/eV)",
        "VBM | CBM",
    ),
    "edos_absolute": (
        dict(kind="edos", energy_unit="eV", dos_unit="states/eV", grid=FERMI_GRID,
             recipe={"_target_": "dos_bench.data.spectra.GridRecipe", "reference": None}),
        "$E$ (eV)",
        "DOS (states/eV)",
        None,
    ),
    "phdos_native": (
        dict(kind="phdos", energy_unit="cm^-1", dos_unit="modes/cm^-1/cell", grid=PH_GRID),
        "frequency (cm⁻¹)",
        "phonon DOS (modes/cm⁻¹/cell)",
        None,
    ),
    "phdos_max_normalised": (
        dict(kind="phdos", energy_unit="cm^-1", dos_unit="max-normalised", grid=PH_GRID),
        "frequency (cm⁻¹)",
        "phonon DOS (max-normalised)",
        None,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_run_figures_axis_labels_units_and_fermi_line(tmp_path, case):
    """Axis labels read back from the saved figure: x by energy reference, y by spectrum kind
    and units (native or normalised), MAE titles with units, a line at E_F (or the band edges)
    on eDOS panels only."""
    files, xlabel, ylabel, marker = LABEL_CASES[case]
    run = _run_dir(tmp_path / case, **files)
    units = run_spectrum_units(run)
    assert (units.xlabel, units.ylabel) == (xlabel, ylabel)

    out = plot_quartile_examples(run / "predictions.npz", tmp_path / "q.png")
    info = figure_info(out)
    panels = info["axes"]
    assert len(panels) == 4
    assert panels[0]["ylabel"] == ylabel
    for ax in panels:
        assert ax["xlabel"] == xlabel
        assert ax["title"].split("MAE ")[1].endswith(units.value_suffix)
        zero = [m for m in ax["marks"] if m["x"] == [0.0, 0.0]]
        if marker is None:
            assert zero == []
        else:
            assert [m["gid"] for m in zero] == [marker]
    # the same labels on the multi-model quantile figure and the error histogram
    q5 = figure_info(plot_quantile_examples([("A", run / "predictions.npz")], tmp_path / "q5.png"))
    assert {a["xlabel"] for a in q5["axes"]} == {xlabel} and q5["axes"][0]["ylabel"] == ylabel
    hist = figure_info(plot_error_histogram(run / "predictions.npz", tmp_path / "h.png"))
    assert hist["axes"][0]["xlabel"] == f"per-material MAE ({units.metric_unit('mae')})"


def test_spectrum_units_rules():
    jarvis = spectrum_units("edos", "eV", "states/eV/valence electron (spin up)")
    assert jarvis.value_unit == "states/eV/electron" and jarvis.physical
    assert jarvis.fmt(0.0123) == "0.0123 states/eV/electron"
    assert jarvis.xlabel_plain == "E − E_F (eV)" and jarvis.zero_marker == "E_F"
    ph = spectrum_units(None, "cm^-1", "max-normalised")
    assert ph.kind == "phdos" and not ph.physical and ph.fmt(0.5) == "0.5 (max-normalised)"
    assert ph.metric_unit("test.wd") == "cm⁻¹" and ph.metric_unit("omega_mae") == "cm⁻¹"
    assert spectrum_units("phdos", "THz").metric_unit("omega_mae") == "cm⁻¹"
    assert ph.metric_unit("cv_mae") == "J/(K·mol)"
    e = spectrum_units("edos", "eV", "states/eV", normalisation="sum_norm")
    assert e.ylabel == "DOS (sum-normalised: Σ over the grid = 1)" and e.normalised
    assert spectrum_units("edos", grid=BAND_EDGE_GRID).reference == "band_edges"
    assert spectrum_units("edos", grid=FERMI_GRID).reference == "fermi"
    n = spectrum_units("edos", "eV", "states/eV/cell (spin included)")
    units = {m: n.metric_unit(m) for m in ("mae", "test.rmse", "mse", "wd", "r2", "band_gap_mae",
                                           "test.frac_mae_lt_0.02", "band_gap_n", "fermi_rmse",
                                           "dos_at_ef_mae", "vbgap_f1")}  # fmt: skip
    assert units == {
        "mae": "states/eV/cell",
        "test.rmse": "states/eV/cell",
        "mse": "(states/eV/cell)²",
        "wd": "eV",
        "r2": "",
        "band_gap_mae": "eV",
        "test.frac_mae_lt_0.02": "",
        "band_gap_n": "count",
        "fermi_rmse": "eV",
        "dos_at_ef_mae": "states/eV/cell",
        "vbgap_f1": "",
    }
    assert spectrum_units().ylabel == "spectrum (unit not recorded)"
