"""Rendering: n=<k> markers, markdown / CSV / LaTeX, transposed tables, LaTeX escapes."""

from __future__ import annotations

import csv
import io

import pytest
import yaml

from dos_bench.io import ConfigError
from dos_bench.reporting.cells import build_table
from dos_bench.reporting.render import _grid, _tex, cell_text, render
from dos_bench.reporting.runs import find_runs
from dos_bench.reporting.spec import load_spec


def test_n_shown_when_it_differs(multirun):
    root, spec_path = multirun
    runs = [
        r
        for r in find_runs(root)
        if not (r.get("model.name") == "B" and r.get("dataset.kind") == "edos" and r.seed == 1)
    ]
    res = build_table(load_spec(spec_path), runs)
    spec = res.spec
    assert res.typical_n == 2
    assert cell_text(res, spec.row("b"), spec.column("e_mae"), paper=False) == "0.1500 n=1"
    assert "n=" not in cell_text(res, spec.row("b"), spec.column("ph_mae"))


def test_markdown_csv_latex(multirun):
    root, spec_path = multirun
    res = build_table(load_spec(spec_path), find_runs(root))
    md = render(res, "markdown")
    assert "### Toy table" in md
    assert "| Model | Energy | Phonon RMSE | Phonon MAE |" in md
    assert "| Model A | ✗ | 0.3150 (0.0212), 1 failed [paper 0.1719 (0.0006)] |" in md
    assert "failed run:" in md and "a note" in md and "val/mae" in md

    rows = list(csv.DictReader(io.StringIO(render(res, "csv"))))
    assert len(rows) == 4 * 5
    r = next(x for x in rows if x["row_id"] == "a" and x["column_id"] == "ph_rmse")
    assert float(r["mean"]) == pytest.approx(0.315) and r["n"] == "2" and r["n_failed"] == "1"
    assert float(r["paper"]) == 0.1719 and float(r["paper_std"]) == 0.0006

    tex = render(res, "latex")
    assert "\\begin{tabular}{llrrrrr}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "\\multicolumn{2}{c}{Phonon}" in tex and "$\\times$" in tex
    assert tex.count("\\midrule") == 2  # header rule and the rule above the improve row
    with pytest.raises(ConfigError):
        render(res, "html")


def test_transpose(multirun):
    root, spec_path = multirun
    raw = yaml.safe_load(spec_path.read_text())
    raw["transpose"] = True
    p = spec_path.with_name("t.yaml")
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    res = build_table(load_spec(p), find_runs(root))
    header, body = _grid(res)
    assert header[1:] == ["Model A / ✗", "Model B / ✓", "Mean baseline / ", "improve / "]
    assert [row[0] for row in body] == [c.header for c in res.spec.columns]


def test_latex_escapes_special_characters(multirun, tmp_path):
    """`<` is "¡" in LaTeX text mode: labels, groups and titles come out as valid LaTeX."""
    root, spec_path = multirun
    raw = yaml.safe_load(spec_path.read_text())
    raw["title"] = "R&D: 50% of #1 > x_y"
    raw["columns"][3]["label"] = "frac MAE<0.02"
    raw["columns"][0]["group"] = "Phonon (cm⁻¹) ± σ"
    p = spec_path.with_name("esc.yaml")
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    tex = render(build_table(load_spec(p), find_runs(root)), "latex")
    assert r"\caption{R\&D: 50\% of \#1 $>$ x\_y}" in tex
    assert r"frac MAE$<$0.02" in tex
    assert r"Phonon (cm\textsuperscript{$-$}\textsuperscript{1}) $\pm$ $\sigma$" in tex
    body = [
        line.replace("$<$", "").replace("$>$", "")
        for line in tex.splitlines()
        if not line.startswith("%")
    ]
    assert not any(ch in line for line in body for ch in "<>σ±⁻¹")
    assert _tex("a_b & c#d % e") == r"a\_b \& c\#d \% e"
