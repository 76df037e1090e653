"""Table figures (dos-tables --plots) from fake multiruns, and the radar / data-size charts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from dos_bench.reporting.cli import main
from dos_bench.reporting.figures import plot_datasize, plot_radar
from dos_bench.reporting.plotting import figure_info

from .helpers import _is_png, _predictions, _write_sweep_run


@pytest.mark.parametrize("kind", ["edos", "phdos"])
def test_ad_hoc_sweep_plots_write_files_and_say_so(tmp_path, capsys, kind):
    """`dos-tables <ad-hoc sweep> --plots DIR` creates DIR, draws the figures that apply to any
    sweep from the best run, prints each path written and one reason per figure skipped."""
    root = tmp_path / "sweep"
    _write_sweep_run(root / "0", 0, 0.5, kind)
    _write_sweep_run(root / "1", 1, 0.3, kind)  # the best run (lowest test MAE)
    out = tmp_path / "figs" / "new"
    assert main([str(root), "--plots", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Sweep: test metrics" in captured.out and "wrote" not in captured.out
    err = captured.err
    pngs = sorted(out.glob("*.png"))
    expected = {
        "sweep_graph_network_examples_by_quartile.png",
        "sweep_graph_network_error_histogram.png",
    }
    if kind == "edos":
        expected.add("sweep_graph_network_periodic_table_gap.png")
    else:
        assert "skipped sweep_graph_network_periodic_table_gap.png: phonon DOS: no band gap" in err
    assert {p.name for p in pngs} == expected
    for p in pngs:
        assert f"wrote {p}" in err
    skipped = [line.strip() for line in err.splitlines() if line.strip().startswith("skipped")]
    assert any(line.startswith("skipped sweep_radar: only one model") for line in skipped)
    assert any("split.train_fraction=1" in line for line in skipped if "datasize" in line)
    info = figure_info(out / "sweep_graph_network_examples_by_quartile.png")
    assert "best of 2 runs by test mae (seed 1, 1)" in info["suptitle"]
    unit = "states/eV/cell" if kind == "edos" else "max-normalised"
    assert unit in info["axes"][0]["ylabel"]
    # the table states the units of its spectra and metrics
    assert f"Units (toy_{kind}, native): spectra in" in captured.out


def test_radar_and_datasize(tmp_path):
    values = np.array([[0.5, 3.0, 80.0], [0.3, 4.0, 100.0], [0.6, np.nan, 70.0], [0.1, 5.0, 120.0]])
    out = plot_radar(
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
    assert _is_png(plot_datasize(series, tmp_path / "size.png"))
    with pytest.raises(ValueError):
        plot_radar(["a"], ["x", "y"], np.zeros((1, 2)), ["lower", "lower"], tmp_path / "bad.png")


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
    rc = main([str(root), "--table", str(spec_path), "--plots", str(out)])
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
