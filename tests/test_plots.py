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


def test_dos_tables_plots_from_a_fake_multirun(tmp_path):
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
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "figs_hist.png",
        "figs_pt.png",
        "figs_q5.png",
        "figs_radar.png",
        "figs_size.png",
    ]
    assert all(_is_png(out / p) for p in pngs)
