"""Matching runs to a table's rows and columns, and aggregating each cell over its runs.

A run belongs to cell (row, column) when it satisfies the spec's ``match``, the row's ``match``
and the column's ``match`` (rules in :mod:`dos_bench.reporting.spec`); the cell's value is the
column's ``metric`` read from each such run's ``metrics.json``, aggregated over the runs (seeds)
as **mean (std)** (sample std, ddof = 1, for n >= 2; no std for n = 1). Failed runs are counted
in their cell, never dropped. Derived ``improvement`` rows compare a target row with the best
other row (Xtal2DoS "improve").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.reporting.runs import Run, _lookup, get_path
from dos_bench.reporting.spec import _NUM, Column, Row, TableSpec

__all__ = ["Cell", "TableResult", "build_table", "matches"]


def _value_matches(actual: Any, expected: Any) -> bool:
    if isinstance(expected, (list, tuple)):
        return any(_value_matches(actual, e) for e in expected)
    if expected is None:
        return actual is None
    if actual is None:
        return False
    if isinstance(expected, bool) or isinstance(actual, bool):
        return str(actual).lower() == str(expected).lower()
    if isinstance(expected, _NUM):
        try:
            return math.isclose(float(actual), float(expected), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    a, e = str(actual), str(expected)
    if a == e:
        return True
    return "." in a and " " not in a and a.rsplit(".", 1)[1] == e


def matches(run: Run | Mapping[str, Any], conditions: Mapping[str, Any]) -> bool:
    """Whether a run (or a plain config mapping) satisfies every ``key: value`` condition."""
    for key, expected in conditions.items():
        actual = run.get(key) if isinstance(run, Run) else get_path(run, key)
        if not _value_matches(actual, expected):
            return False
    return True


# ============================================================================ cells
@dataclass
class Cell:
    """One table cell: the values of the matched successful runs and what went wrong."""

    status: str  # ok | missing | failed | no_value | na
    values: list[float] = field(default_factory=list)
    seeds: list[Any] = field(default_factory=list)
    n_failed: int = 0
    runs: list[Path] = field(default_factory=list)
    published: tuple[float, float | None] | None = None
    metric: str = ""
    note: str = ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        return float(np.std(self.values, ddof=1)) if len(self.values) >= 2 else None

    @property
    def has_number(self) -> bool:
        return self.status == "ok" and self.mean is not None and math.isfinite(self.mean)


@dataclass
class TableResult:
    spec: TableSpec
    cells: dict[tuple[str, str], Cell]
    runs: list[Run]
    unassigned: list[Run]
    warnings: list[str]

    @property
    def typical_n(self) -> int | None:
        ns = [c.n for c in self.cells.values() if c.status == "ok"]
        return Counter(ns).most_common(1)[0][0] if ns else None

    def incomplete(self) -> list[tuple[str, str, Cell]]:
        """Cells (other than n/a and derived ones) without a finite number."""
        derived = {r.id for r in self.spec.derived_rows}
        return [
            (r, c, cell)
            for (r, c), cell in self.cells.items()
            if r not in derived and cell.status != "na" and not cell.has_number
        ]


def _metric_value(
    metrics: Mapping[str, Any], expr: str, metric_map: Mapping[str, str] | None
) -> tuple[str, float | None]:
    """``(status, value)`` with status ``ok``, ``absent`` (no such entry) or ``na``."""
    applicable = False
    for alt in (a.strip() for a in expr.split("|")):
        if metric_map is not None:
            root, _, rest = alt.partition(".")
            if root not in metric_map:
                continue
            alt = f"{metric_map[root]}.{rest}" if rest else metric_map[root]
        applicable = True
        found, v = _lookup(metrics, alt)
        if found and isinstance(v, _NUM) and not isinstance(v, bool):
            return "ok", float(v)
        if found and v is None:
            return "ok", float("nan")
    return ("absent" if applicable else "na"), None


def build_table(spec: TableSpec, runs: Sequence[Run]) -> TableResult:
    """Group runs into the spec's cells and aggregate each cell over its runs."""
    runs = [r for r in runs if matches(r, spec.match)]
    cells: dict[tuple[str, str], Cell] = {}
    assigned: set[Path] = set()
    warnings: list[str] = []
    for row in spec.rows:
        row_runs = [r for r in runs if matches(r, row.match)]
        for col in spec.columns:
            cell_runs = [r for r in row_runs if matches(r, col.match)]
            cell = Cell(
                status="missing",
                published=row.published.get(col.id),
                metric=col.metric,
                runs=[r.path for r in cell_runs],
            )
            cells[(row.id, col.id)] = cell
            assigned.update(r.path for r in cell_runs)
            if col.id in row.na:
                cell.status = "na"
                continue
            absent = 0
            for r in cell_runs:
                if not r.ok:
                    cell.n_failed += 1
                    continue
                st, v = _metric_value(r.metrics or {}, col.metric, row.metric_map)
                if st == "na":
                    cell.status = "na"
                    break
                if st == "absent":
                    absent += 1
                    continue
                cell.values.append(v * col.scale)
                cell.seeds.append(r.seed)
            if cell.status == "na":
                cell.values.clear()
                continue
            if cell.values:
                cell.status = "ok"
                if absent:
                    cell.note = f"{absent} without {col.metric}"
                dup = [s for s, k in Counter(map(str, cell.seeds)).items() if k > 1]
                if dup:
                    warnings.append(
                        f"{row.id} / {col.id}: several runs share seed(s) {dup} (different "
                        "configurations in one cell?); all are averaged"
                    )
            elif absent:
                cell.status = "no_value"
            elif cell.n_failed:
                cell.status = "failed"
    for d in spec.derived_rows:
        for col in spec.columns:
            cells[(d.id, col.id)] = _improvement(spec, cells, d, col)
    unassigned = [r for r in runs if r.path not in assigned]
    if unassigned:
        warnings.append(
            f"{len(unassigned)} run(s) match no cell of {spec.name}, e.g. {unassigned[0].path}"
        )
    return TableResult(
        spec=spec, cells=cells, runs=list(runs), unassigned=unassigned, warnings=warnings
    )


def _improvement(
    spec: TableSpec, cells: Mapping[tuple[str, str], Cell], d: Row, col: Column
) -> Cell:
    """Relative improvement of the target row over the best other row (Xtal2DoS 'improve')."""
    cell = Cell(status="no_value", published=d.published.get(col.id), metric="improvement")
    target = cells.get((str(d.target), col.id))
    others = [
        cells[(r.id, col.id)].mean
        for r in spec.rows
        if r.id != d.target and cells[(r.id, col.id)].has_number
    ]
    if target is None or not target.has_number or not others:
        return cell
    best = min(others) if col.better == "lower" else max(others)
    if best == 0:
        return cell
    t = float(target.mean)
    gain = (best - t) / abs(best) if col.better == "lower" else (t - best) / abs(best)
    cell.status, cell.values = "ok", [gain]
    return cell
