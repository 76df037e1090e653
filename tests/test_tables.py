"""dos-tables on a fake multirun: grouping, mean (std), published values, failed runs, formats."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dos_bench import tables
from dos_bench.io import ConfigError

SPEC = {
    "name": "toy_table",
    "title": "Toy table",
    "source": "tests",
    "format": ".4f",
    "row_header": ["Model", "Energy"],
    "notes": ["a note"],
    "columns": [
        {
            "id": "ph_rmse",
            "group": "Phonon",
            "label": "RMSE",
            "metric": "test.rmse",
            "match": {"dataset.kind": "phdos"},
        },
        {
            "id": "ph_mae",
            "group": "Phonon",
            "label": "MAE",
            "metric": "test.mae",
            "match": {"dataset.kind": "phdos"},
        },
        {
            "id": "e_mae",
            "group": "Electron",
            "label": "MAE",
            "metric": "test.mae",
            "match": {"dataset.kind": "edos", "split._target_": "RandomSplit"},
        },
        {
            "id": "e_frac",
            "group": "Electron",
            "label": "frac",
            "format": ".3f",
            "metric": "test.frac_mae_lt_0.02|derived.frac_mae_lt_0.02",
            "match": {"dataset.kind": "edos"},
            "better": "higher",
        },
        {
            "id": "u_rmse",
            "label": "Unary RMSE",
            "metric": "test_groups.n_species.1.rmse",
            "match": {"dataset.kind": "edos"},
        },
    ],
    "rows": [
        {
            "id": "a",
            "labels": ["Model A", "✗"],
            "match": {"model.name": "A"},
            "published": {"ph_rmse": [0.1719, 0.0006], "e_mae": 0.25},
        },
        {
            "id": "b",
            "labels": ["Model B", "✓"],
            "match": {"model.name": "B"},
            "published": {"ph_rmse": 0.12},
        },
        {
            "id": "base",
            "labels": ["Mean baseline", ""],
            "match": {"model.name": "A"},
            "metric_map": {"test": "baseline_mean_spectrum"},
        },
    ],
    "derived_rows": [
        {
            "id": "improve",
            "labels": ["improve", ""],
            "kind": "improvement",
            "target": "b",
            "published": {"ph_rmse": 0.10},
        },
    ],
}

# (model, kind) -> test values per seed
VALUES = {
    ("A", "phdos"): [0.20, 0.22],
    ("B", "phdos"): [0.10, 0.11],
    ("A", "edos"): [0.30, 0.34],
    ("B", "edos"): [0.15, 0.17],
}


def _write_run(
    d: Path,
    model: str,
    kind: str,
    seed: int,
    value: float | None,
    table: str = "toy_table",
    resolved: bool = True,
) -> None:
    cfg = {
        "seed": seed,
        "table": table,
        "monitor": "val/mae",
        "model": {"name": model, "_target_": "dos_bench.models.model.DOSModel"},
        "dataset": {"name": f"toy_{kind}", "kind": kind},
        "split": {"_target_": "dos_bench.data.splits.RandomSplit", "train_fraction": 1.0},
        "experiment_name": "${dataset.name}-${model.name}",
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
    }
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if value is None:  # failed run: Hydra wrote .hydra/, the job never wrote its files
        return
    if resolved:
        (d / "config_resolved.yaml").write_text(yaml.safe_dump(cfg))
    metrics = {
        "model": model,
        "test": {"mae": value, "rmse": 1.5 * value, "frac_mae_lt_0.02": 0.5 + value},
        "baseline_mean_spectrum": {"mae": 1.0, "rmse": 2.0, "frac_mae_lt_0.02": 0.1},
        "test_groups": {"n_species": {"1": {"rmse": 2 * value, "n": 3}}},
        "timing": {"train_epoch_s": 1.0},
    }
    (d / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture
def multirun(tmp_path: Path) -> tuple[Path, Path]:
    spec_path = tmp_path / "toy_table.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC, allow_unicode=True, sort_keys=False))
    root = tmp_path / "multirun"
    k = 0
    for (model, kind), vals in VALUES.items():
        for seed, v in enumerate(vals):
            _write_run(root / "sub" / str(k), model, kind, seed, v, resolved=k % 2 == 0)
            # checkpoints/ and csv/ inside a run are not runs
            (root / "sub" / str(k) / "checkpoints").mkdir()
            k += 1
    _write_run(root / "sub" / str(k), "A", "phdos", 2, None)  # one failed run
    (root / "multirun.yaml").write_text("{}")
    return root, spec_path


def test_find_runs_includes_failed(multirun):
    root, _ = multirun
    runs = tables.find_runs(root)
    assert len(runs) == 9
    assert sum(r.ok for r in runs) == 8
    failed = [r for r in runs if not r.ok]
    assert failed[0].get("model.name") == "A" and "no metrics.json" in failed[0].error
    # interpolations of .hydra/config.yaml are resolved where possible
    assert failed[0].get("experiment_name") == "toy_phdos-A"
    assert failed[0].get("paths.output_dir") == "${hydra:runtime.output_dir}"


def test_grouping_mean_std_and_published(multirun):
    root, spec_path = multirun
    spec = tables.load_spec(spec_path)
    res = tables.build_table(spec, tables.find_runs(root))
    cell = res.cells[("a", "ph_rmse")]
    assert cell.n == 2 and cell.n_failed == 1
    assert cell.mean == pytest.approx(1.5 * 0.21)
    assert cell.std == pytest.approx(np.std([0.30, 0.33], ddof=1))
    assert cell.published == (0.1719, 0.0006)
    b = res.cells[("b", "e_mae")]
    assert b.mean == pytest.approx(0.16) and b.std == pytest.approx(np.std([0.15, 0.17], ddof=1))
    assert res.cells[("a", "e_frac")].mean == pytest.approx(0.82)
    assert res.cells[("a", "u_rmse")].mean == pytest.approx(0.64)
    # baseline row reads baseline_mean_spectrum; unmapped roots are not applicable
    assert res.cells[("base", "ph_mae")].mean == pytest.approx(1.0)
    assert res.cells[("base", "u_rmse")].status == "na"
    # improvement of b over the best other row (lower is better): (best - b) / best
    best_other = min(res.cells[("a", "ph_rmse")].mean, res.cells[("base", "ph_rmse")].mean)
    imp = res.cells[("improve", "ph_rmse")].values[0]
    assert imp == pytest.approx((best_other - res.cells[("b", "ph_rmse")].mean) / best_other)
    assert not res.unassigned and not res.incomplete()

    text = tables.cell_text(res, spec.row("a"), spec.column("ph_rmse"))
    assert text.startswith("0.3150 (0.0212)")
    assert "1 failed" in text and "[paper 0.1719 (0.0006)]" in text
    assert tables.cell_text(res, spec.row("b"), spec.column("ph_rmse")).endswith("[paper 0.12]")
    assert tables.cell_text(res, spec.row("base"), spec.column("u_rmse")) == "n/a"


def test_failed_only_and_missing_cells(tmp_path):
    spec_path = tmp_path / "toy_table.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC, allow_unicode=True))
    root = tmp_path / "m"
    _write_run(root / "0", "A", "phdos", 0, None)
    _write_run(root / "1", "A", "edos", 0, 0.3)
    res = tables.build_table(tables.load_spec(spec_path), tables.find_runs(root))
    assert res.cells[("a", "ph_rmse")].status == "failed"
    assert "FAILED (1 run)" in tables.cell_text(res, res.spec.row("a"), res.spec.column("ph_rmse"))
    assert res.cells[("b", "ph_rmse")].status == "missing"
    assert res.cells[("a", "e_mae")].status == "ok"
    bad = {(r, c) for r, c, _ in res.incomplete()}
    assert ("a", "ph_rmse") in bad and ("b", "e_mae") in bad and ("a", "e_mae") not in bad


def test_n_shown_when_it_differs(multirun):
    root, spec_path = multirun
    runs = [
        r
        for r in tables.find_runs(root)
        if not (r.get("model.name") == "B" and r.get("dataset.kind") == "edos" and r.seed == 1)
    ]
    res = tables.build_table(tables.load_spec(spec_path), runs)
    spec = res.spec
    assert res.typical_n == 2
    assert tables.cell_text(res, spec.row("b"), spec.column("e_mae"), paper=False) == "0.1500 n=1"
    assert "n=" not in tables.cell_text(res, spec.row("b"), spec.column("ph_mae"))


def test_markdown_csv_latex(multirun):
    root, spec_path = multirun
    res = tables.build_table(tables.load_spec(spec_path), tables.find_runs(root))
    md = tables.render(res, "markdown")
    assert "### Toy table" in md
    assert "| Model | Energy | Phonon RMSE | Phonon MAE |" in md
    assert "| Model A | ✗ | 0.3150 (0.0212), 1 failed [paper 0.1719 (0.0006)] |" in md
    assert "failed run:" in md and "a note" in md and "val/mae" in md

    rows = list(csv.DictReader(io.StringIO(tables.render(res, "csv"))))
    assert len(rows) == 4 * 5
    r = next(x for x in rows if x["row_id"] == "a" and x["column_id"] == "ph_rmse")
    assert float(r["mean"]) == pytest.approx(0.315) and r["n"] == "2" and r["n_failed"] == "1"
    assert float(r["paper"]) == 0.1719 and float(r["paper_std"]) == 0.0006

    tex = tables.render(res, "latex")
    assert "\\begin{tabular}{llrrrrr}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "\\multicolumn{2}{c}{Phonon}" in tex and "$\\times$" in tex
    assert tex.count("\\midrule") == 2  # header rule and the rule above the improve row
    with pytest.raises(ConfigError):
        tables.render(res, "html")


def test_transpose(multirun):
    root, spec_path = multirun
    raw = yaml.safe_load(spec_path.read_text())
    raw["transpose"] = True
    p = spec_path.with_name("t.yaml")
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    res = tables.build_table(tables.load_spec(p), tables.find_runs(root))
    header, body = tables._grid(res)
    assert header[1:] == ["Model A / ✗", "Model B / ✓", "Mean baseline / ", "improve / "]
    assert [row[0] for row in body] == [c.header for c in res.spec.columns]


def test_cli_auto_table_check_and_output(multirun, tmp_path, capsys, monkeypatch):
    root, spec_path = multirun
    monkeypatch.setattr(tables, "SPEC_DIR", spec_path.parent)
    assert tables.main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "### Toy table" in out
    out_file = tmp_path / "t.csv"
    assert tables.main([str(root), "--format", "csv", "--output", str(out_file)]) == 0
    assert out_file.read_text().startswith("table,row_id")
    # a cell with only a failed run -> --check fails
    (root / "sub" / "0" / "metrics.json").unlink()
    (root / "sub" / "1" / "metrics.json").unlink()
    assert tables.main([str(root), "--check", "--table", str(spec_path)]) == 1
    assert "has no number" in capsys.readouterr().err
    assert tables.main([str(tmp_path / "nothing_here")]) == 2


def test_runs_without_table_key_get_an_ad_hoc_sweep_table(tmp_path, capsys):
    """A sweep that is no paper preset still gets a table: one row per model, test metrics."""
    root = tmp_path / "m"
    _write_run(root / "0", "A", "edos", 0, 0.3, table="")
    _write_run(root / "1", "A", "edos", 1, 0.5, table="")
    assert tables.main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "Sweep: test metrics" in out
    row = next(line for line in out.splitlines() if line.startswith("| A |"))
    assert row.startswith("| A | 0.4 (0.1414) | 0.6 (0.2121) |")  # mean (std) of the two runs


def test_latex_escapes_special_characters(multirun, tmp_path):
    """`<` is "¡" in LaTeX text mode: labels, groups and titles come out as valid LaTeX."""
    root, spec_path = multirun
    raw = yaml.safe_load(spec_path.read_text())
    raw["title"] = "R&D: 50% of #1 > x_y"
    raw["columns"][3]["label"] = "frac MAE<0.02"
    raw["columns"][0]["group"] = "Phonon (cm⁻¹) ± σ"
    p = spec_path.with_name("esc.yaml")
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    tex = tables.render(tables.build_table(tables.load_spec(p), tables.find_runs(root)), "latex")
    assert r"\caption{R\&D: 50\% of \#1 $>$ x\_y}" in tex
    assert r"frac MAE$<$0.02" in tex
    assert r"Phonon (cm\textsuperscript{$-$}\textsuperscript{1}) $\pm$ $\sigma$" in tex
    body = [
        line.replace("$<$", "").replace("$>$", "")
        for line in tex.splitlines()
        if not line.startswith("%")
    ]
    assert not any(ch in line for line in body for ch in "<>σ±⁻¹")
    assert tables._tex("a_b & c#d % e") == r"a\_b \& c\#d \% e"


def _write_sweep_run(d: Path, seed: int, mae: float, kind: str = "edos") -> None:
    """A finished run of an ad-hoc sweep (no `table` key) with its predictions and units."""
    _write_run(d, "graph_network", kind, seed, mae, table="")
    rng = np.random.default_rng(seed)
    if kind == "edos":
        grid, unit, dos_unit = np.arange(-5.0, 5.0, 0.1), "eV", "states/eV/cell (spin included)"
    else:
        grid, unit, dos_unit = np.arange(0.0, 1001.0, 20.0), "cm^-1", "max-normalised"
    true = np.abs(rng.normal(1.0, 0.5, (12, grid.size)))
    true[:, np.abs(grid) < 0.5] = 0.0  # gapped at E_F for eDOS
    np.savez(
        d / "predictions.npz",
        ids=np.array([f"m{i}" for i in range(12)]),
        energies=grid,
        true=true,
        pred=np.clip(true + rng.normal(0, 0.1, true.shape), 0, None),
        energy_unit=np.asarray(unit),
        meta_formula=np.array(["NaCl", "GaAs", "MgO", "ZnS"] * 3),
    )
    metrics = json.loads((d / "metrics.json").read_text())
    metrics.update(kind=kind, units={"energy": unit, "dos": dos_unit})
    (d / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.parametrize("kind", ["edos", "phdos"])
def test_ad_hoc_sweep_plots_write_files_and_say_so(tmp_path, capsys, kind):
    """`dos-tables <ad-hoc sweep> --plots DIR` creates DIR, draws the figures that apply to any
    sweep from the best run, prints each path written and one reason per figure skipped."""
    root = tmp_path / "sweep"
    _write_sweep_run(root / "0", 0, 0.5, kind)
    _write_sweep_run(root / "1", 1, 0.3, kind)  # the best run (lowest test MAE)
    out = tmp_path / "figs" / "new"
    assert tables.main([str(root), "--plots", str(out)]) == 0
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
    from dos_bench import plots

    info = plots.figure_info(out / "sweep_graph_network_examples_by_quartile.png")
    assert "best of 2 runs by test mae (seed 1, 1)" in info["suptitle"]
    unit = "states/eV/cell" if kind == "edos" else "max-normalised"
    assert unit in info["axes"][0]["ylabel"]
    # the table states the units of its spectra and metrics
    assert f"Units (toy_{kind}, native): spectra in" in captured.out


def test_plots_dir_that_cannot_be_created_fails_clearly(tmp_path, capsys):
    root = tmp_path / "sweep"
    _write_sweep_run(root / "0", 0, 0.5)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert tables.main([str(root), "--plots", str(blocker / "figs")]) == 2
    assert "--plots=" in capsys.readouterr().err


def test_get_path_and_matching():
    m = {
        "test": {"frac_mae_lt_0.02": 0.9, "mae": 1},
        "test_groups": {"n_species": {"1": {"rmse": 0.2}}},
    }
    assert tables.get_path(m, "test.frac_mae_lt_0.02") == 0.9
    assert tables.get_path(m, "test_groups.n_species.1.rmse") == 0.2
    assert tables.get_path(m, "test.nope") is None
    cfg = {
        "target_repr": {"_target_": "dos_bench.data.transforms.MaxNorm", "latent": 8},
        "split": {"train_fraction": 0.5},
        "loss": {"c_kl": 1.1},
        "model": {"name": "E3NN"},
    }
    assert tables.matches(cfg, {"target_repr._target_": "MaxNorm"})
    assert not tables.matches(cfg, {"target_repr._target_": "Norm"})
    assert tables.matches(cfg, {"target_repr.latent": 8, "split.train_fraction": 0.5})
    assert tables.matches(cfg, {"model.name": ["E3NN", "GATGNN"], "loss.c_kl": 1.1})
    assert tables.matches(cfg, {"loss.pred_loss": None})
    assert not tables.matches(cfg, {"model.name": "E3NN-orig"})


def test_every_bundled_spec_loads():
    names = tables.available_specs()
    assert len(names) >= 13
    for name in names:
        spec = tables.load_spec(name)
        assert spec.name == name and spec.columns and spec.rows
        assert spec.experiment == name


@pytest.mark.parametrize(
    "bad,match",
    [
        (
            {"rows": [{"id": "a", "labels": ["x", "y"], "match": {}, "published": {"zz": 1}}]},
            "unknown column",
        ),
        ({"columns": [{"id": "c", "metric": "test.mae", "better": "up"}]}, "better"),
        ({"rows": [{"id": "a", "labels": ["only one"], "match": {}}]}, "labels"),
        ({"colour": "red"}, "unknown key"),
    ],
)
def test_bad_spec_fails_clearly(tmp_path, bad, match):
    raw = {**SPEC, **bad}
    raw.pop("derived_rows")
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError, match=match):
        tables.load_spec(p)
