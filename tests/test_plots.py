"""Every figure renders to PNG from synthetic run files (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dos_bench import plots, tables

PNG = b"\x89PNG\r\n\x1a\n"
FORMULAS = ["NaCl", "GaAs", "MgO", "Si", "LiF", "CuZn", "BaTiO3", "ZnS", "AlN", "KBr", "Fe", "CsI"]


def _predictions(path: Path, seed: int = 0, n: int = 24, formulas: bool = True) -> Path:
    """Gapped toy spectra on an E_F-relative grid, predictions = truth + noise."""
    rng = np.random.default_rng(seed)
    e = np.linspace(-5.0, 5.0, 101)
    gaps = rng.uniform(0.0, 3.0, n)
    true = np.zeros((n, e.size))
    for i, g in enumerate(gaps):
        vb, cb = e < -g / 2, e > g / 2
        true[i, vb] = 1.0 + np.sin(3 * e[vb] + i) ** 2
        true[i, cb] = 0.5 + np.cos(2 * e[cb] + i) ** 2
    pred = np.clip(
        true + rng.normal(0, 0.05 * (1 + np.arange(n)[:, None] / n), true.shape), 0, None
    )
    arrays = {
        "ids": np.array([f"toy-{i:03d}" for i in range(n)]),
        "energies": e,
        "true": true,
        "pred": pred,
        "energy_unit": np.asarray("eV"),
        "group_n_species": np.array([str(1 + i % 4) for i in range(n)]),
    }
    if formulas:
        arrays["meta_formula"] = np.array([FORMULAS[i % len(FORMULAS)] for i in range(n)])
    np.savez(path, **arrays)
    return path


def _is_png(p: Path | None) -> bool:
    return p is not None and Path(p).is_file() and Path(p).read_bytes()[:8] == PNG


def _run_dir(
    d: Path,
    *,
    kind: str,
    energy_unit: str,
    dos_unit: str,
    grid: np.ndarray,
    recipe: dict | None = None,
    metric_space: str = "native",
    target_repr: dict | None = None,
    n: int = 12,
) -> Path:
    """A run directory as dos-train writes it: predictions.npz, metrics.json (units) and
    config_resolved.yaml (dataset recipe, metric_space, target_repr)."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    true = np.abs(rng.normal(1.0, 0.5, (n, grid.size)))
    np.savez(
        d / "predictions.npz",
        ids=np.array([f"m{i}" for i in range(n)]),
        energies=grid,
        true=true,
        pred=true + rng.normal(0, 0.1, true.shape),
        energy_unit=np.asarray(energy_unit),
    )
    (d / "metrics.json").write_text(
        json.dumps({"kind": kind, "units": {"energy": energy_unit, "dos": dos_unit}})
    )
    cfg = {
        "metric_space": metric_space,
        "dataset": {"kind": kind, "recipe": recipe or {"_target_": "x.NativeRecipe"}},
        "target_repr": target_repr or {"_target_": "dos_bench.data.transforms.Raw"},
    }
    (d / "config_resolved.yaml").write_text(yaml.safe_dump(cfg))
    return d


def test_quartile_and_quintile_examples(tmp_path):
    a = _predictions(tmp_path / "a.npz", 0)
    b = _predictions(tmp_path / "b.npz", 1)
    assert _is_png(plots.plot_quartile_examples(a, tmp_path / "q4.png"))
    out = plots.plot_quantile_examples([("A", a), ("B", b)], tmp_path / "q5.png", n_quantiles=5)
    assert _is_png(out)
    assert _is_png(plots.plot_quantile_examples(a, tmp_path / "q4b.png", n_quantiles=4))
    assert not list(tmp_path.glob("*.tmp"))


def test_error_histogram(tmp_path):
    a = _predictions(tmp_path / "a.npz")
    assert _is_png(plots.plot_error_histogram(a, tmp_path / "h.png", title="D-ALIGNN"))


def test_periodic_table_gap(tmp_path):
    a = _predictions(tmp_path / "a.npz")
    assert _is_png(plots.plot_periodic_table_gap(a, tmp_path / "pt.png"))
    gaps = plots.band_gaps_from_predictions(np.load(a)["energies"], np.load(a)["true"])
    assert gaps.shape == (24,) and np.nanmax(gaps) > 0
    # without formulas the figure is skipped, not faked
    b = _predictions(tmp_path / "b.npz", formulas=False)
    assert plots.plot_periodic_table_gap(b, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_threshold_gap_rule():
    e = np.linspace(-2, 2, 41)
    gapped = np.where(np.abs(e) > 0.55, 1.0, 0.0)
    metal = np.ones_like(e)
    g = plots._threshold_gaps(e, np.stack([gapped, metal, np.zeros_like(e)]))
    assert g[0] == pytest.approx(1.2) and g[1] == 0.0 and np.isnan(g[2])


def test_radar_and_datasize(tmp_path):
    values = np.array([[0.5, 3.0, 80.0], [0.3, 4.0, 100.0], [0.6, np.nan, 70.0], [0.1, 5.0, 120.0]])
    out = plots.plot_radar(
        ["E3NN", "Mat2Spec", "E3NN", "Mat2Spec"],
        ["R2", "MAE", "MSE"],
        values,
        ["higher", "lower", "lower"],
        tmp_path / "radar.png",
        panels=["Std-MAE", "Std-MAE", "Sum-KL", "Sum-KL"],
    )
    assert _is_png(out)
    series = {
        "test.mae": {"Mat2Spec": [(1.0, 3.8, 0.1), (0.5, 4.0, 0.2), (0.125, 4.6, None)]},
        "test.wd": {"Mat2Spec": [(1.0, 0.21, None), (0.5, 0.22, 0.01)]},
    }
    assert _is_png(plots.plot_datasize(series, tmp_path / "size.png"))
    with pytest.raises(ValueError):
        plots.plot_radar(
            ["a"], ["x", "y"], np.zeros((1, 2)), ["lower", "lower"], tmp_path / "bad.png"
        )


def test_dos_tables_plots_from_a_fake_multirun(tmp_path, capsys):
    """`dos-tables --plots`: every figure kind of a spec, drawn from the runs' files."""
    spec = {
        "name": "figs",
        "title": "Figures",
        "row_header": ["Setting", "Model"],
        "columns": [
            {"id": "r2", "label": "R2", "metric": "test.r2", "better": "higher"},
            {"id": "mae", "label": "MAE", "metric": "test.mae"},
            {"id": "wd", "label": "WD", "metric": "test.wd"},
        ],
        "rows": [
            {"id": f"{s}_{m}", "labels": [s, m], "match": {"setting.name": s, "model.name": m}}
            for s in ("Std", "Sum")
            for m in ("A", "B")
        ],
        "figures": [
            {"kind": "error_histogram", "row": "Std_A", "name": "hist"},
            {"kind": "quantile_examples", "rows": ["Std_A", "Sum_B"], "quantiles": 5, "name": "q5"},
            {"kind": "periodic_table_gap", "row": "Std_A", "name": "pt"},
            {"kind": "radar", "columns": ["r2", "mae", "wd"], "panel": 0, "name": "radar"},
            {
                "kind": "datasize",
                "x": "split.train_fraction",
                "metrics": ["test.mae"],
                "name": "size",
            },
        ],
    }
    spec_path = tmp_path / "figs.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    root = tmp_path / "multirun"
    k = 0
    for s in ("Std", "Sum"):
        for m in ("A", "B"):
            for frac in (1.0, 0.5):
                for seed in (0, 1):
                    d = root / str(k)
                    d.mkdir(parents=True)
                    cfg = {
                        "seed": seed,
                        "table": "figs",
                        "setting": {"name": s},
                        "model": {"name": m},
                        "split": {"train_fraction": frac},
                    }
                    (d / "config_resolved.yaml").write_text(yaml.safe_dump(cfg))
                    v = 0.1 * (k % 5 + 1) / frac
                    (d / "metrics.json").write_text(
                        json.dumps({"test": {"r2": 1 - v, "mae": v, "wd": v / 2}})
                    )
                    _predictions(d / "predictions.npz", seed=k)
                    k += 1
    out = tmp_path / "figures"
    rc = tables.main([str(root), "--table", str(spec_path), "--plots", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    for name in ("figs_hist", "figs_pt", "figs_q5", "figs_radar", "figs_size"):
        assert f"wrote {out / name}.png" in err
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "figs_hist.png",
        "figs_pt.png",
        "figs_q5.png",
        "figs_radar.png",
        "figs_size.png",
    ]
    assert all(_is_png(out / p) for p in pngs)


FERMI_GRID = np.round(np.arange(-5.0, 10.0, 0.05), 4)
BAND_EDGE_GRID = -4.0 + 0.0625 * (np.arange(128) + 0.5)
PH_GRID = np.arange(0.0, 1001.0, 20.0)
GRID_RECIPE = {"_target_": "dos_bench.data.spectra.GridRecipe", "reference": "e_fermi"}

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
    units = plots.run_spectrum_units(run)
    assert (units.xlabel, units.ylabel) == (xlabel, ylabel)

    out = plots.plot_quartile_examples(run / "predictions.npz", tmp_path / "q.png")
    info = plots.figure_info(out)
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
    q5 = plots.figure_info(
        plots.plot_quantile_examples([("A", run / "predictions.npz")], tmp_path / "q5.png")
    )
    assert {a["xlabel"] for a in q5["axes"]} == {xlabel} and q5["axes"][0]["ylabel"] == ylabel
    hist = plots.figure_info(
        plots.plot_error_histogram(run / "predictions.npz", tmp_path / "h.png")
    )
    assert hist["axes"][0]["xlabel"] == f"per-material MAE ({units.metric_unit('mae')})"


def test_spectrum_units_rules():
    jarvis = plots.spectrum_units("edos", "eV", "states/eV/valence electron (spin up)")
    assert jarvis.value_unit == "states/eV/electron" and jarvis.physical
    assert jarvis.fmt(0.0123) == "0.0123 states/eV/electron"
    assert jarvis.xlabel_plain == "E − E_F (eV)" and jarvis.zero_marker == "E_F"
    ph = plots.spectrum_units(None, "cm^-1", "max-normalised")
    assert ph.kind == "phdos" and not ph.physical and ph.fmt(0.5) == "0.5 (max-normalised)"
    assert ph.metric_unit("test.wd") == "cm⁻¹" and ph.metric_unit("omega_mae") == "cm⁻¹"
    assert plots.spectrum_units("phdos", "THz").metric_unit("omega_mae") == "cm⁻¹"
    assert ph.metric_unit("cv_mae") == "J/(K·mol)"
    e = plots.spectrum_units("edos", "eV", "states/eV", normalisation="sum_norm")
    assert e.ylabel == "DOS (sum-normalised: Σ over the grid = 1)" and e.normalised
    assert plots.spectrum_units("edos", grid=BAND_EDGE_GRID).reference == "band_edges"
    assert plots.spectrum_units("edos", grid=FERMI_GRID).reference == "fermi"
    n = plots.spectrum_units("edos", "eV", "states/eV/cell (spin included)")
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
    assert plots.spectrum_units().ylabel == "spectrum (unit not recorded)"


def test_error_histogram_integer_counts_and_quartile_shading(tmp_path):
    """Few test materials: count ticks are integers on both panels, and the relative-error
    panel is shaded by quartile like the MAE panel."""
    a = _predictions(tmp_path / "a.npz", n=9)
    info = plots.figure_info(plots.plot_error_histogram(a, tmp_path / "h.png"))
    assert len(info["axes"]) == 2
    for ax in info["axes"]:
        assert ax["ylabel"] == "test materials"
        assert len(ax["yticks"]) >= 2
        assert all(float(t).is_integer() for t in ax["yticks"]), ax["yticks"]
        assert [t for t in ax["legend"] if t.startswith("Q")] == ["Q1", "Q2", "Q3", "Q4"]
    assert "(dimensionless)" in info["axes"][1]["xlabel"]
    assert "states" not in info["axes"][0]["xlabel"]  # no units recorded: none invented


def test_predicted_spectrum_marks_fermi_level_and_gap(tmp_path):
    e = FERMI_GRID
    y = np.where((e < -1.0) | (e > 0.8), 2.0, 0.0)
    units = plots.checkpoint_spectrum_units(
        {"dataset": {"recipe": GRID_RECIPE}, "target_repr": {"_target_": "x.Raw"}},
        {"kind": "edos", "energy_unit": "eV", "dos_unit": "states/eV/cell (spin included)"},
        normalised=False,
    )
    out = plots.plot_predicted_spectrum(e, y, tmp_path / "p.png", units, "Si", band_gap=1.8)
    ax = plots.figure_info(out)["axes"][0]
    assert ax["xlabel"] == r"$E - E_\mathrm{F}$ (eV)"
    assert ax["ylabel"] == "DOS (states/eV/cell, spin included)"
    marks = {m["gid"]: m for m in ax["marks"]}
    assert marks["E_F"]["x"] == [0.0, 0.0]
    assert marks["band_gap"]["x"] == pytest.approx([-1.0, 0.8], abs=0.051)
    assert "gap 1.80 eV" in marks["band_gap"]["label"]
    metal = plots.plot_predicted_spectrum(e, np.ones_like(e), tmp_path / "m.png", units, band_gap=0)
    ax = plots.figure_info(metal)["axes"][0]
    assert "metal (DOS at E_F > 0)" in ax["legend"] and "band_gap" not in str(ax["marks"])
    # normalised output of a per-material representation; phonons: no E_F line
    norm = plots.checkpoint_spectrum_units(
        {"target_repr": {"_target_": "dos_bench.data.transforms.MaxNorm"}},
        {"kind": "phdos", "energy_unit": "cm^-1", "dos_unit": "modes/cm^-1/cell"},
        normalised=True,
    )
    ph = plots.plot_predicted_spectrum(PH_GRID, np.ones(PH_GRID.size), tmp_path / "ph.png", norm)
    ax = plots.figure_info(ph)["axes"][0]
    assert (ax["xlabel"], ax["ylabel"]) == ("frequency (cm⁻¹)", "phonon DOS (max-normalised)")
    assert ax["marks"] == []
