"""Rendering a built table as markdown, tidy CSV or LaTeX, with its footer.

A cell prints as ``mean (std)``, ``n=<k>`` where its number of runs differs from the table's
usual number, failed-run counts, and the published value beside it:
``0.1283 (0.0005) [paper 0.1283 (0.0017)]``. The footer lists the runs, the checkpoint
selection, the units of the spectra and metrics, the spec's notes and every failed run.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from typing import Any

from dos_bench.io import ConfigError
from dos_bench.reporting.cells import TableResult
from dos_bench.reporting.spec import Column, Row
from dos_bench.reporting.units import run_spectrum_units

__all__ = ["cell_text", "render", "render_csv", "render_latex", "render_markdown"]


def _fmt_num(v: float, spec: str) -> str:
    if not math.isfinite(v):
        return "nan"
    try:
        return format(v, spec)
    except ValueError:
        return format(v, ".4g")


def _fmt_paper(p: tuple[float, float | None], percent: bool = False) -> str:
    m, s = p
    if percent:
        return f"{100 * m:.2f}%" + ("" if s is None else f" ({100 * s:.2f}%)")
    return f"{m:g}" + ("" if s is None else f" ({s:g})")


def cell_text(result: TableResult, row: Row, col: Column, paper: bool = True) -> str:
    """The printed form of one cell: ``mean (std)``, markers and the published value."""
    cell = result.cells[(row.id, col.id)]
    percent = row.kind == "improvement"
    fmt = col.fmt or result.spec.fmt
    if cell.status == "na":
        return "n/a"
    if cell.status == "ok":
        if percent:
            text = f"{100 * cell.values[0]:.2f}%"
        else:
            text = _fmt_num(float(cell.mean), fmt)
            if cell.std is not None:
                text += f" ({_fmt_num(cell.std, fmt)})"
            typical = result.typical_n
            if typical is not None and cell.n != typical:
                text += f" n={cell.n}"
        if cell.n_failed:
            text += f", {cell.n_failed} failed"
        if cell.note:
            text += f", {cell.note}"
    elif cell.status == "failed":
        text = f"FAILED ({cell.n_failed} run{'s' if cell.n_failed > 1 else ''})"
    elif cell.status == "no_value":
        text = "no value" if percent else f"no value ({cell.metric})"
        if cell.n_failed:
            text += f", {cell.n_failed} failed"
    else:
        text = "—" if percent else "missing (no run)"
    if paper and cell.published is not None:
        text += f" [paper {_fmt_paper(cell.published, percent)}]"
    return text


def _grid(result: TableResult, paper: bool = True) -> tuple[list[str], list[list[str]]]:
    """Header and body (strings) in the paper's orientation."""
    spec = result.spec
    all_rows = list(spec.rows) + list(spec.derived_rows)
    header = list(spec.row_header) + [c.header for c in spec.columns]
    body = [
        list(r.labels) + [cell_text(result, r, c, paper) for c in spec.columns] for r in all_rows
    ]
    if spec.transpose:
        h = len(spec.row_header)
        new_header = [" / ".join(spec.row_header) or ""] + [" / ".join(r.labels) for r in all_rows]
        new_body = [
            [header[h + j]] + [body[i][h + j] for i in range(len(all_rows))]
            for j in range(len(spec.columns))
        ]
        return new_header, new_body
    return header, body


def _footer(result: TableResult) -> list[str]:
    spec = result.spec
    lines = []
    n_ok = sum(r.ok for r in result.runs)
    n_fail = len(result.runs) - n_ok
    lines.append(f"{len(result.runs)} run(s): {n_ok} finished, {n_fail} failed or unfinished.")
    monitors = Counter(str(r.get("monitor")) for r in result.runs if r.get("monitor") is not None)
    if monitors:
        lines.append(
            "Checkpoint selection (monitor): "
            + ", ".join(f"{m} ({k} runs)" for m, k in sorted(monitors.items()))
            + "."
        )
    lines.append(
        "Cells: mean (std over runs, ddof=1) [paper value]; n=<k> where the number of runs differs."
    )
    if spec.source:
        lines.append(f"Source: {spec.source}.")
    lines.extend(_units_lines(result))
    lines.extend(spec.notes)
    lines.extend(f"WARNING: {w}" for w in result.warnings)
    for r in result.runs:
        if not r.ok:
            lines.append(f"failed run: {r.path} ({r.error})")
    return lines


def _units_lines(result: TableResult) -> list[str]:
    """One line per (dataset, spectrum units) of the finished runs: the units of the spectra and
    of the spectrum metrics (:func:`dos_bench.reporting.units.spectrum_units`); nothing when
    the runs do not record their units."""
    seen: dict[tuple[str, Any], None] = {}
    for r in result.runs:
        if not r.ok:
            continue
        u = run_spectrum_units(r.path, config=r.config)
        if not u.dos_unit:
            continue
        ds = str(r.get("dataset.name") or (r.metrics or {}).get("dataset") or u.kind or "?")
        seen[(ds, u)] = None
    lines = []
    for ds, u in seen:
        space = "per-material normalised (metric_space: normalised)" if u.normalised else "native"
        lines.append(
            f"Units ({ds}, {space}): spectra in {u.dos_unit} vs {u.xlabel_plain}; MAE and RMSE "
            f"in {u.metric_unit('mae')}, MSE in {u.metric_unit('mse')}, WD in "
            f"{u.metric_unit('wd')}; R², RE and fractions dimensionless."
        )
    return lines


def render_markdown(result: TableResult) -> str:
    header, body = _grid(result)
    esc = [[s.replace("|", "\\|") for s in row] for row in [header, *body]]
    out = [f"### {result.spec.title}", ""]
    out.append("| " + " | ".join(esc[0]) + " |")
    out.append("|" + "|".join("---" for _ in esc[0]) + "|")
    out.extend("| " + " | ".join(r) + " |" for r in esc[1:])
    out.append("")
    out.extend(f"- {line}" for line in _footer(result))
    return "\n".join(out) + "\n"


def render_csv(result: TableResult) -> str:
    """Tidy CSV: one line per (row, column) cell with mean, std, n, status and the paper value."""
    spec = result.spec
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "table",
            "row_id",
            "row",
            "column_id",
            "column",
            "metric",
            "mean",
            "std",
            "n",
            "n_failed",
            "status",
            "paper",
            "paper_std",
            "text",
        ]
    )
    for r in list(spec.rows) + list(spec.derived_rows):
        for c in spec.columns:
            cell = result.cells[(r.id, c.id)]
            pub = cell.published or (None, None)
            w.writerow(
                [
                    spec.name,
                    r.id,
                    r.label,
                    c.id,
                    c.header,
                    cell.metric,
                    "" if cell.mean is None else repr(cell.mean),
                    "" if cell.std is None else repr(cell.std),
                    cell.n,
                    cell.n_failed,
                    cell.status,
                    "" if pub[0] is None else repr(pub[0]),
                    "" if pub[1] is None else repr(pub[1]),
                    cell_text(result, r, c, paper=False),
                ]
            )
    return buf.getvalue()


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "✓": r"$\checkmark$",
    "✗": r"$\times$",
    "—": "--",
    "–": "--",
    "²": r"$^2$",
    "³": r"$^3$",
    "¹": r"\textsuperscript{1}",
    "⁻": r"\textsuperscript{$-$}",
    "<": r"$<$",
    ">": r"$>$",
    "≤": r"$\leq$",
    "≥": r"$\geq$",
    "±": r"$\pm$",
    "−": r"$-$",
    "×": r"$\times$",
    "·": r"$\cdot$",
    "|": r"\textbar{}",
    "Σ": r"$\Sigma$",
    "σ": r"$\sigma$",
    "ω": r"$\omega$",
    "Å": r"\AA{}",
    "°": r"$^\circ$",
}


def _tex(s: str) -> str:
    """Text for a LaTeX table: special characters escaped (``&`` ``%`` ``$`` ``#`` ``_`` ``{``
    ``}`` ``~`` ``^`` ``\\``), ``<`` / ``>`` in math mode (text-mode ``<`` prints "¡" in the OT1
    font encoding), common symbols as math."""
    return "".join(_TEX.get(ch, ch) for ch in s)


def render_latex(result: TableResult) -> str:
    spec = result.spec
    header, body = _grid(result)
    nl = 1 if spec.transpose else len(spec.row_header)
    ncol = len(header)
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        r"\small",
        f"\\caption{{{_tex(spec.title)}}}",
        f"\\label{{tab:{spec.name}}}",
        r"\begin{tabular}{" + "l" * nl + "r" * (ncol - nl) + "}",
        r"\toprule",
    ]
    groups = [c.group for c in spec.columns]
    if not spec.transpose and any(groups):
        parts, rules, j, i = [""] * nl, [], nl, 0
        while i < len(groups):
            k = i
            while k + 1 < len(groups) and groups[k + 1] == groups[i]:
                k += 1
            span = k - i + 1
            g = groups[i] or ""
            if g:
                parts.append(f"\\multicolumn{{{span}}}{{c}}{{{_tex(g)}}}")
            else:
                parts.extend([""] * span)
            if g:
                rules.append(f"\\cmidrule(lr){{{j + 1}-{j + span}}}")
            j += span
            i = k + 1
        lines.append(" & ".join(parts) + r" \\")
        if rules:
            lines.append(" ".join(rules))
        sub = list(spec.row_header) + [c.label for c in spec.columns]
        lines.append(" & ".join(_tex(s) for s in sub) + r" \\")
    else:
        lines.append(" & ".join(_tex(s) for s in header) + r" \\")
    lines.append(r"\midrule")
    n_main = len(spec.rows)
    for i, row in enumerate(body):
        if not spec.transpose and i == n_main and spec.derived_rows:
            lines.append(r"\midrule")
        lines.append(" & ".join(_tex(s) for s in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    lines += [f"% {line}" for line in _footer(result)]
    return "\n".join(lines) + "\n"


def render(result: TableResult, fmt: str = "markdown") -> str:
    """The table as ``markdown`` (default), ``csv`` (tidy, one line per cell) or ``latex``."""
    if fmt == "markdown":
        return render_markdown(result)
    if fmt == "csv":
        return render_csv(result)
    if fmt == "latex":
        return render_latex(result)
    raise ConfigError(f"unknown format {fmt!r}; choose markdown, csv or latex")
