"""dos-tables on a fake multirun: the runs' table, --format/--output/--check, ad-hoc sweeps,
an unwritable --plots directory."""

from __future__ import annotations

import dos_bench.reporting.spec as table_specs
from dos_bench.reporting.cli import main

from .helpers import _write_run, _write_sweep_run


def test_cli_auto_table_check_and_output(multirun, tmp_path, capsys, monkeypatch):
    root, spec_path = multirun
    monkeypatch.setattr(table_specs, "SPEC_DIR", spec_path.parent)
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "### Toy table" in out
    out_file = tmp_path / "t.csv"
    assert main([str(root), "--format", "csv", "--output", str(out_file)]) == 0
    assert out_file.read_text().startswith("table,row_id")
    # a cell with only a failed run -> --check fails
    (root / "sub" / "0" / "metrics.json").unlink()
    (root / "sub" / "1" / "metrics.json").unlink()
    assert main([str(root), "--check", "--table", str(spec_path)]) == 1
    assert "has no number" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing_here")]) == 2


def test_runs_without_table_key_get_an_ad_hoc_sweep_table(tmp_path, capsys):
    """A sweep that is no paper preset still gets a table: one row per model, test metrics."""
    root = tmp_path / "m"
    _write_run(root / "0", "A", "edos", 0, 0.3, table="")
    _write_run(root / "1", "A", "edos", 1, 0.5, table="")
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    assert "Sweep: test metrics" in out
    row = next(line for line in out.splitlines() if line.startswith("| A |"))
    assert row.startswith("| A | 0.4 (0.1414) | 0.6 (0.2121) |")  # mean (std) of the two runs


def test_plots_dir_that_cannot_be_created_fails_clearly(tmp_path, capsys):
    root = tmp_path / "sweep"
    _write_sweep_run(root / "0", 0, 0.5)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([str(root), "--plots", str(blocker / "figs")]) == 2
    assert "--plots=" in capsys.readouterr().err
