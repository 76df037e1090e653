"""``dos-tables``: turn a multirun directory into a paper table, beside the published numbers.

``python -m dos_bench.tables <multirun dir> [<dir> ...] [--format markdown|csv|latex]
[--table <spec name or path>] [--plots <outdir>] [--output <file>] [--check]``

1. **Runs.** Every directory under the given roots holding ``metrics.json`` or a ``.hydra/``
   folder is a run (the search does not descend into a run). A run with ``.hydra/`` but no
   readable ``metrics.json`` is a *failed* (or unfinished) run: it is matched to its cell like any
   other and shown there ("1 failed"), never dropped. The configuration comes from
   ``config_resolved.yaml`` (written by ``dos-train``) or else ``.hydra/config.yaml``.
2. **Table spec.** The table is named by the runs' ``table`` config key (set by every
   ``conf/experiment`` preset), unless ``--table`` names one. Specs are data files,
   ``dos_bench/published/<name>.yaml``; published numbers never live in code.
3. **Cells.** A run belongs to cell (row, column) when it satisfies the spec's ``match``, the
   row's ``match`` and the column's ``match``; the cell's value is the column's ``metric`` read
   from each such run's ``metrics.json``, aggregated over the runs (seeds) as **mean (std)**
   (sample std, ddof = 1, for n ≥ 2; no std for n = 1). ``n=<k>`` is shown where a cell's number
   of runs differs from the table's usual number. The published value is printed beside it:
   ``0.1283 (0.0005) [paper 0.1283 (0.0017)]``.

Table spec format (YAML)::

    name: dostransformer_table1          # = file name; runs name it in their `table` key
    title: "..."                         # printed above the table
    source: "papers/... Table 1 (facts.md §2.7)"
    experiment: dostransformer_table1    # the conf/experiment preset that makes the runs
    format: ".4f"                        # default number format (Python format spec)
    row_header: [Model, Energy]          # headers of the row-label columns
    transpose: false                     # true: print rows as columns (paper layout)
    match: {key: value}                  # optional: conditions every run of the table must meet
    notes: ["..."]                       # printed under the table
    columns:
      - id: ph_rmse                      # unique; keys `published`, `na` and figures
        group: Phonon                    # optional header group (two-level header)
        label: RMSE
        metric: test.rmse                # path into metrics.json; "a|b": first one present
        match: {dataset.kind: phdos}     # optional: conditions on the run config
        better: lower                    # lower | higher (improvement rows, radar plots)
        scale: 1.0                       # optional factor applied to our values (unit change)
        format: ".4f"                    # optional, overrides the table format
    rows:
      - id: mlp
        labels: [MLP, "✗"]               # one per row_header entry
        match: {model.name: mlp}
        published: {ph_rmse: [0.1719, 0.0006], ph_mae: 0.1131}   # number or [mean, std]
        na: [col_id]                     # optional: cells that do not apply to this row
        metric_map: {test: baseline_mean_spectrum}  # optional: read other metrics.json roots;
                                         # columns whose root is not mapped are n/a
    derived_rows:                        # optional, computed from the rows above
      - {id: improve, labels: [improve], kind: improvement, target: xtal2dos, published: {...}}
    figures:                             # optional, drawn by --plots (see dos_bench.plots)
      - {kind: radar, columns: [r2, mae], panel: 0, name: fig5_radar}

Match rules: keys are dotted config paths (``model.name``, ``target_repr._target_``,
``split.train_fraction``, ``loss.pred_loss``, ...). A value matches when it is equal (numbers
compared as floats), when it is the last component of a dotted ``_target_`` (``MaxNorm`` matches
``dos_bench.data.transforms.MaxNorm``), or, for a list, when any element matches; ``null``
matches a missing key. Metric paths may contain keys with dots (``test.frac_mae_lt_0.02``,
``test_groups.n_species.1.rmse``): the longest key present at each level wins.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dos_bench.config import SPEC_DIR as PACKAGED_SPEC_DIR
from dos_bench.io import ConfigError, atomic_write, ensure_writable_dir

__all__ = [
    "SPEC_DIR",
    "Cell",
    "Column",
    "Row",
    "Run",
    "TableResult",
    "TableSpec",
    "FigureReport",
    "available_specs",
    "build_table",
    "draw_figures",
    "find_runs",
    "get_path",
    "load_spec",
    "main",
    "matches",
    "render",
    "write_plots",
]

log = logging.getLogger("dos_bench.tables")

#: where the published table specs live (package data)
SPEC_DIR = PACKAGED_SPEC_DIR

_RUN_SKIP_DIRS = {"checkpoints", "csv", "__pycache__", ".hydra"}
_NUM = (int, float, np.integer, np.floating)


# ============================================================================ table specs
@dataclass(frozen=True)
class Column:
    id: str
    label: str
    metric: str
    group: str | None = None
    match: dict[str, Any] = field(default_factory=dict)
    better: str = "lower"
    scale: float = 1.0
    fmt: str | None = None

    @property
    def header(self) -> str:
        return f"{self.group} {self.label}" if self.group else self.label


@dataclass(frozen=True)
class Row:
    id: str
    labels: tuple[str, ...]
    match: dict[str, Any]
    published: dict[str, tuple[float, float | None]] = field(default_factory=dict)
    na: tuple[str, ...] = ()
    metric_map: dict[str, str] | None = None
    kind: str = "runs"  # runs | improvement
    target: str | None = None  # improvement rows: the row compared with the best other one

    @property
    def label(self) -> str:
        return " / ".join(self.labels)


@dataclass(frozen=True)
class TableSpec:
    name: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    derived_rows: tuple[Row, ...] = ()
    row_header: tuple[str, ...] = ("",)
    fmt: str = ".4g"
    match: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    experiment: str | None = None
    notes: tuple[str, ...] = ()
    figures: tuple[dict[str, Any], ...] = ()
    transpose: bool = False
    path: Path | None = None

    def column(self, cid: str) -> Column:
        for c in self.columns:
            if c.id == cid:
                return c
        raise KeyError(cid)

    def row(self, rid: str) -> Row:
        for r in self.rows:
            if r.id == rid:
                return r
        raise KeyError(rid)


_SPEC_KEYS = {
    "name",
    "title",
    "source",
    "experiment",
    "format",
    "row_header",
    "transpose",
    "match",
    "notes",
    "columns",
    "rows",
    "derived_rows",
    "figures",
}
_COL_KEYS = {"id", "label", "group", "metric", "match", "better", "scale", "format"}
_ROW_KEYS = {"id", "labels", "match", "published", "na", "metric_map"}
_DROW_KEYS = {"id", "labels", "kind", "target", "published"}
_FIG_KINDS = {"error_histogram", "quantile_examples", "periodic_table_gap", "radar", "datasize"}


def available_specs() -> list[str]:
    """Names of the bundled table specs (``dos_bench/published/*.yaml``)."""
    return sorted(p.stem for p in SPEC_DIR.glob("*.yaml"))


def _spec_error(path: Path | str, msg: str) -> ConfigError:
    return ConfigError(f"table spec {path}: {msg}")


def _check_keys(obj: Mapping, allowed: set[str], where: str, path: Path | str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise _spec_error(path, f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _published(value: Any, where: str, path: Path | str) -> tuple[float, float | None] | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _spec_error(path, f"{where}: published value must be a number, got {value!r}")
    if isinstance(value, _NUM):
        return float(value), None
    if isinstance(value, Mapping) and "mean" in value:
        std = value.get("std")
        return float(value["mean"]), None if std is None else float(std)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return float(value[0]), float(value[1])
    raise _spec_error(
        path,
        f"{where}: published value must be a number, [mean, std] or {{mean, std}}, got {value!r}",
    )


def _dups(ids: Sequence[str]) -> list[str]:
    return [k for k, n in Counter(ids).items() if n > 1]


#: name of the table spec :func:`auto_spec` writes for an ad-hoc sweep
SWEEP_SPEC_NAME = "sweep"
_SWEEP_SPEC_PREFIX = "dos_tables_sweep_"


def _better(metric: str) -> str:
    """``higher`` for scores (R², fractions below a threshold, precision/recall/F1)."""
    m = metric.rsplit(".", 1)[-1] if "_lt_" not in metric else metric
    if m.startswith(("r2", "frac_")) or m.endswith(("_f1", "_precision", "_recall", "accuracy")):
        return "higher"
    return "lower"


def _is_sweep_spec(spec: TableSpec) -> bool:
    return (
        spec.name == SWEEP_SPEC_NAME
        and spec.path is not None
        and spec.path.name.startswith(_SWEEP_SPEC_PREFIX)
    )


def auto_spec(runs: Sequence[Run]) -> Path:
    """A table spec for runs of an ad-hoc sweep: rows = ``model.name``, columns = test metrics.

    Written to a temporary YAML file (no published values) and loaded like any other spec.
    """
    import tempfile

    models = sorted({str(r.get("model.name")) for r in runs})
    metrics: list[str] = []
    for r in runs:
        for k in (r.metrics or {}).get("test", {}):
            if k not in metrics:
                metrics.append(k)
    if not metrics:
        metrics = ["mae"]
    raw = {
        "name": SWEEP_SPEC_NAME,
        "title": "Sweep: test metrics (mean (std) over the runs of each model)",
        "row_header": ["model"],
        "columns": [
            {"id": m, "label": m, "metric": f"test.{m}", "better": _better(m)} for m in metrics
        ],
        "rows": [
            {"id": f"m{i}", "labels": [m], "match": {"model.name": m}} for i, m in enumerate(models)
        ],
    }
    fd, name = tempfile.mkstemp(prefix=_SWEEP_SPEC_PREFIX, suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(raw, fh, sort_keys=False)
    return Path(name)


def load_spec(name_or_path: str | Path) -> TableSpec:
    """Load and validate a table spec by name (``dos_bench/published/<name>.yaml``) or path."""
    p = Path(name_or_path)
    if not (p.suffix in (".yaml", ".yml") and p.is_file()):
        p = SPEC_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        raise ConfigError(
            f"no table spec {name_or_path!r} (looked for {p}); available: {available_specs()}"
        )
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise _spec_error(p, f"not valid YAML: {exc}") from None
    if not isinstance(raw, Mapping):
        raise _spec_error(p, "must be a mapping")
    _check_keys(raw, _SPEC_KEYS, "top level", p)
    for key in ("name", "columns", "rows"):
        if key not in raw:
            raise _spec_error(p, f"missing key {key!r}")
    fmt = str(raw.get("format", ".4g"))
    row_header = tuple(str(h) for h in raw.get("row_header") or ("",))

    columns: list[Column] = []
    for i, c in enumerate(raw["columns"]):
        _check_keys(c, _COL_KEYS, f"columns[{i}]", p)
        if "id" not in c or "metric" not in c:
            raise _spec_error(p, f"columns[{i}] needs 'id' and 'metric'")
        better = str(c.get("better", "lower"))
        if better not in ("lower", "higher"):
            raise _spec_error(p, f"column {c['id']}: better must be lower or higher")
        columns.append(
            Column(
                id=str(c["id"]),
                label=str(c.get("label", c["id"])),
                metric=str(c["metric"]),
                group=None if c.get("group") is None else str(c["group"]),
                match=dict(c.get("match") or {}),
                better=better,
                scale=float(c.get("scale", 1.0)),
                fmt=None if c.get("format") is None else str(c["format"]),
            )
        )
    col_ids = [c.id for c in columns]
    if len(set(col_ids)) != len(col_ids):
        raise _spec_error(p, f"duplicate column ids: {_dups(col_ids)}")

    def parse_row(r: Mapping, i: int, derived: bool) -> Row:
        where = f"{'derived_rows' if derived else 'rows'}[{i}]"
        _check_keys(r, _DROW_KEYS if derived else _ROW_KEYS, where, p)
        if "id" not in r:
            raise _spec_error(p, f"{where} needs an 'id'")
        labels = tuple(str(x) for x in (r.get("labels") or [r["id"]]))
        if len(labels) != len(row_header):
            raise _spec_error(
                p, f"row {r['id']}: {len(labels)} labels for row_header {list(row_header)}"
            )
        pub: dict[str, tuple[float, float | None]] = {}
        for cid, v in (r.get("published") or {}).items():
            if cid not in col_ids:
                raise _spec_error(p, f"row {r['id']}: published value for unknown column {cid!r}")
            val = _published(v, f"row {r['id']} column {cid}", p)
            if val is not None:
                pub[str(cid)] = val
        na = tuple(str(x) for x in r.get("na") or ())
        bad = [x for x in na if x not in col_ids]
        if bad:
            raise _spec_error(p, f"row {r['id']}: na names unknown column(s) {bad}")
        if derived:
            kind = str(r.get("kind", ""))
            if kind != "improvement":
                raise _spec_error(p, f"derived row {r['id']}: kind must be 'improvement'")
            return Row(
                id=str(r["id"]),
                labels=labels,
                match={},
                published=pub,
                kind=kind,
                target=str(r.get("target")),
            )
        mm = r.get("metric_map")
        return Row(
            id=str(r["id"]),
            labels=labels,
            match=dict(r.get("match") or {}),
            published=pub,
            na=na,
            metric_map=None if mm is None else dict(mm),
        )

    rows = [parse_row(r, i, False) for i, r in enumerate(raw["rows"])]
    drows = [parse_row(r, i, True) for i, r in enumerate(raw.get("derived_rows") or [])]
    row_ids = [r.id for r in rows + drows]
    if len(set(row_ids)) != len(row_ids):
        raise _spec_error(p, f"duplicate row ids: {_dups(row_ids)}")
    for d in drows:
        if d.target not in {r.id for r in rows}:
            raise _spec_error(p, f"derived row {d.id}: target {d.target!r} is not a row id")
    figures = []
    for i, f in enumerate(raw.get("figures") or []):
        if f.get("kind") not in _FIG_KINDS:
            raise _spec_error(p, f"figures[{i}]: kind must be one of {sorted(_FIG_KINDS)}")
        if "row" in f and f["row"] not in row_ids:
            raise _spec_error(p, f"figures[{i}]: unknown row {f['row']!r}")
        for rid in f.get("rows") or ():
            if rid not in row_ids:
                raise _spec_error(p, f"figures[{i}]: unknown row {rid!r}")
        for cid in f.get("columns") or ():
            if cid not in col_ids:
                raise _spec_error(p, f"figures[{i}]: unknown column {cid!r}")
        figures.append(dict(f))
    return TableSpec(
        name=str(raw["name"]),
        title=str(raw.get("title", raw["name"])),
        columns=tuple(columns),
        rows=tuple(rows),
        derived_rows=tuple(drows),
        row_header=row_header,
        fmt=fmt,
        match=dict(raw.get("match") or {}),
        source=str(raw.get("source", "")),
        experiment=raw.get("experiment"),
        notes=tuple(str(n) for n in raw.get("notes") or ()),
        figures=tuple(figures),
        transpose=bool(raw.get("transpose", False)),
        path=p,
    )


# ============================================================================ runs
@dataclass
class Run:
    """One run directory: its configuration, its metrics (``None`` if it failed) and status."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any] | None
    error: str | None = None
    _omega: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.metrics is not None

    @property
    def seed(self) -> Any:
        return self.get("seed")

    def get(self, key: str) -> Any:
        """A config value by dotted path; interpolations of ``.hydra/config.yaml`` are resolved
        where possible (resolvers that only exist inside a Hydra run give the raw string)."""
        found, value = _lookup(self.config, key)
        if not found:
            return None
        if isinstance(value, str) and "${" in value:
            try:
                from omegaconf import OmegaConf

                if self._omega is None:
                    self._omega = OmegaConf.create(self.config)
                resolved = OmegaConf.select(self._omega, key, throw_on_resolution_failure=False)
                if resolved is not None:
                    return resolved
            except Exception:  # noqa: BLE001 - an unresolvable string stays as it is
                pass
        return value

    def predictions(self) -> Path | None:
        p = self.path / "predictions.npz"
        return p if p.is_file() else None


def _lookup(obj: Any, path: str | Sequence[str]) -> tuple[bool, Any]:
    """``(found, value)`` for a dotted path; keys may contain dots (longest key wins)."""
    tokens = path.split(".") if isinstance(path, str) else list(path)
    cur = obj
    i = 0
    while i < len(tokens):
        if isinstance(cur, Mapping):
            for j in range(len(tokens), i, -1):
                key = ".".join(tokens[i:j])
                if key in cur:
                    cur, i = cur[key], j
                    break
            else:
                return False, None
        elif isinstance(cur, (list, tuple)) and tokens[i].lstrip("-").isdigit():
            k = int(tokens[i])
            if not -len(cur) <= k < len(cur):
                return False, None
            cur, i = cur[k], i + 1
        else:
            return False, None
    return True, cur


def get_path(obj: Any, path: str) -> Any:
    """The value at a dotted ``path`` in nested mappings, or ``None``.

    Keys may themselves contain dots: at each level the longest key present wins, so
    ``test.frac_mae_lt_0.02`` and ``test_groups.n_species.1.rmse`` both work.
    """
    return _lookup(obj, path)[1]


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a mapping")
    return data


def _load_run(d: Path) -> Run:
    config: dict[str, Any] = {}
    errors = []
    for name in ("config_resolved.yaml", ".hydra/config.yaml"):
        p = d / name
        if p.is_file():
            try:
                config = _read_yaml(p)
                break
            except (yaml.YAMLError, ValueError, OSError) as exc:
                errors.append(f"unreadable {name}: {exc}")
    if not config:
        errors.append("no config_resolved.yaml or .hydra/config.yaml")
    metrics = None
    mp = d / "metrics.json"
    if mp.is_file():
        try:
            loaded = json.loads(mp.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                metrics = loaded
            else:
                errors.append("metrics.json is not an object")
        except (json.JSONDecodeError, OSError) as exc:
            errors.append(f"unreadable metrics.json: {exc}")
    else:
        errors.append("no metrics.json (failed or unfinished run)")
    return Run(path=d, config=config, metrics=metrics, error="; ".join(errors) or None)


def _is_run_dir(d: Path) -> bool:
    return (d / "metrics.json").is_file() or (d / ".hydra").is_dir()


def find_runs(roots: str | Path | Iterable[str | Path]) -> list[Run]:
    """Every run under ``roots`` (sorted by path); failed runs are included with ``metrics=None``.

    A run is a directory with ``metrics.json`` or ``.hydra/``; the search does not descend into
    runs, nor into ``checkpoints``/``csv`` folders.
    """
    if isinstance(roots, (str, Path)):
        roots = [roots]
    found: dict[Path, Run] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such directory")
        if _is_run_dir(root):
            found[root.resolve()] = _load_run(root)
            continue
        for dirpath, dirnames, _files in os.walk(root):
            here = Path(dirpath)
            keep = []
            for name in sorted(dirnames):
                sub = here / name
                if name in _RUN_SKIP_DIRS:
                    continue
                if _is_run_dir(sub):
                    found[sub.resolve()] = _load_run(sub)
                else:
                    keep.append(name)
            dirnames[:] = keep
    return [found[k] for k in sorted(found, key=_natural_key)]


def _natural_key(p: Path) -> list[Any]:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]


# ============================================================================ matching
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


# ============================================================================ rendering
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
    of the spectrum metrics (:func:`dos_bench.plots.spectrum_units`); nothing when the runs do
    not record their units."""
    from dos_bench import plots

    seen: dict[tuple[str, Any], None] = {}
    for r in result.runs:
        if not r.ok:
            continue
        u = plots.run_spectrum_units(r.path, config=r.config)
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


# ============================================================================ figures
@dataclass
class FigureReport:
    """What :func:`draw_figures` did: the PNGs written and, per figure not drawn, why."""

    outdir: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (figure, reason)

    def lines(self) -> list[str]:
        out = [f"wrote {p}" for p in self.written]
        out += [f"skipped {name}: {reason}" for name, reason in self.skipped]
        if not self.written:
            out.append(f"no figure written to {self.outdir}")
        return out


def _first_run(result: TableResult, row_id: str) -> Run | None:
    row = result.spec.row(row_id)
    cands = [r for r in result.runs if r.ok and matches(r, row.match) and r.predictions()]
    cands.sort(key=lambda r: (str(r.seed), _natural_key(r.path)))
    return cands[0] if cands else None


def _best_run(result: TableResult, row: Row) -> tuple[Run | None, str]:
    """The finished run of ``row`` with predictions and the best test MAE (or, without one, the
    best value of the first column), and a phrase saying how it was chosen."""
    cands = [r for r in result.runs if r.ok and matches(r, row.match) and r.predictions()]
    if not cands:
        return None, ""
    cols = [c for c in result.spec.columns if c.metric == "test.mae"] or list(result.spec.columns)
    col = cols[0] if cols else None

    def score(r: Run) -> tuple[float, list[Any]]:
        v = None
        if col is not None:
            st, v = _metric_value(r.metrics or {}, col.metric, row.metric_map)
            v = v if st == "ok" and v is not None and math.isfinite(v) else None
        if v is None:
            return math.inf, _natural_key(r.path)
        return (v if col.better == "lower" else -v), _natural_key(r.path)

    best = min(cands, key=score)
    seed = f"seed {best.seed}, " if best.seed is not None else ""
    if len(cands) == 1:
        return best, f"{seed}{best.path.name}"
    what = col.label if col is not None else "order"
    return best, f"best of {len(cands)} runs by test {what} ({seed}{best.path.name})"


def _safe_name(text: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _sweep_figures(result: TableResult) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The figures that apply to any sweep, and a reason for each figure kind that does not.

    Per model (table row), from its best run (:func:`_best_run`): spectra by error quartile,
    error histograms, the periodic-table band-gap map (eDOS on an E_F grid with formulas; the
    drawing step says why not otherwise). Across models: spectra of all models' best runs by
    quartile (2+ models), a radar plot (2+ models, 3+ metrics), a data-size curve (2+ values
    of ``split.train_fraction``).
    """
    spec = result.spec
    figs: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    best: dict[str, Run] = {}
    for row in spec.rows:
        run, how = _best_run(result, row)
        name = _safe_name(row.label)
        if run is None:
            for fig in ("examples_by_quartile", "error_histogram", "periodic_table_gap"):
                why = f"no finished run of {row.label} wrote predictions.npz"
                skipped.append((f"{name}_{fig}", why))
            continue
        best[row.id] = run
        title = f"{row.label}: {how}"
        common = {"_run": run, "_title": title, "row": row.id}
        figs.append(
            {
                "kind": "quantile_examples",
                "rows": [row.id],
                "quantiles": 4,
                "name": f"{name}_examples_by_quartile",
                **common,
            }
        )
        figs.append({"kind": "error_histogram", "name": f"{name}_error_histogram", **common})
        figs.append({"kind": "periodic_table_gap", "name": f"{name}_periodic_table_gap", **common})
    models = [r.label for r in spec.rows]
    one = f"only one model ({models[0]}) in this sweep" if len(models) == 1 else ""
    if len(best) >= 2:
        figs.append(
            {
                "kind": "quantile_examples",
                "rows": list(best),
                "quantiles": 4,
                "name": "all_models_examples_by_quartile",
                "_runs": best,
                "_title": "best run of each model",
            }
        )
    else:
        skipped.append(
            (
                "all_models_examples_by_quartile",
                (one or "fewer than two models with predictions")
                + "; this figure compares the models on the same materials",
            )
        )
    with_values = [
        c.id
        for c in spec.columns
        if sum(result.cells[(r.id, c.id)].has_number for r in spec.rows) >= 2
    ]
    if len(spec.rows) < 2:
        skipped.append(("radar", f"{one}; a radar plot compares several models"))
    elif len(with_values) < 3:
        why = f"only {len(with_values)} metric(s) with values for 2+ models; a radar needs 3"
        skipped.append(("radar", why))
    else:
        figs.append({"kind": "radar", "columns": with_values, "name": "radar"})
    raw_fracs = [r.get("split.train_fraction") for r in result.runs if r.ok]
    fracs = sorted({float(x) for x in raw_fracs if isinstance(x, _NUM)})
    if len(fracs) >= 2:
        metrics = [f"test.{c}" for c in ("mae", "wd") if c in {x.id for x in spec.columns}]
        figs.append(
            {
                "kind": "datasize",
                "x": "split.train_fraction",
                "metrics": metrics or [spec.columns[0].metric],
                "name": "datasize",
            }
        )
    else:
        which = f"split.train_fraction={fracs[0]:g}" if fracs else "no split.train_fraction"
        skipped.append(
            (
                "datasize",
                f"all runs use {which}; a data-size curve needs several training fractions",
            )
        )
    return figs, skipped


def draw_figures(result: TableResult, outdir: str | Path) -> FigureReport:
    """Draw a table's figures into ``outdir`` (created) and report what was written or skipped.

    Published tables draw the figures their spec lists (``figures:``); an ad-hoc sweep
    (:func:`auto_spec`) draws those that apply to any sweep (:func:`_sweep_figures`). A figure
    whose inputs are missing (no finished run, no formula column, not an eDOS, ...) or whose
    drawing fails is skipped with its reason; the others are still drawn.
    """
    from dos_bench import plots

    outdir = Path(outdir)
    spec = result.spec
    report = FigureReport(outdir=outdir)
    if _is_sweep_spec(spec):
        figures, skipped = _sweep_figures(result)
        report.skipped += [(f"{spec.name}_{n}", why) for n, why in skipped]
    else:
        figures = [dict(f) for f in spec.figures]
        if not figures:
            where = spec.path or f"{spec.name}.yaml"
            report.skipped.append((spec.name, f"the table spec lists no figures ({where})"))
    one_row = {
        "error_histogram": plots.plot_error_histogram,
        "periodic_table_gap": plots.plot_periodic_table_gap,
    }
    for i, fig in enumerate(figures):
        kind = fig["kind"]
        out = outdir / f"{spec.name}_{fig.get('name', f'{kind}_{i}')}.png"
        try:
            path: Path | None = None
            if kind in one_row:
                run = fig.get("_run") or _first_run(result, fig["row"])
                if run is None:
                    report.skipped.append(
                        (out.name, f"no finished run with predictions for row {fig['row']}")
                    )
                    continue
                if kind == "periodic_table_gap":
                    why = plots.periodic_table_gap_unavailable(run.predictions())
                    if why is not None:
                        report.skipped.append((out.name, why))
                        continue
                title = fig.get("_title") or spec.row(fig["row"]).label
                path = one_row[kind](run.predictions(), out, title=title)
            elif kind == "quantile_examples":
                preds = []
                for rid in fig["rows"]:
                    run = (fig.get("_runs") or {}).get(rid) or fig.get("_run")
                    run = run or _first_run(result, rid)
                    if run is not None:
                        preds.append((spec.row(rid).label, run.predictions()))
                if not preds:
                    report.skipped.append((out.name, "no finished runs with predictions"))
                    continue
                path = plots.plot_quantile_examples(
                    preds, out, n_quantiles=int(fig.get("quantiles", 5)), title=fig.get("_title")
                )
            elif kind == "radar":
                path = _radar(result, fig, out)
            elif kind == "datasize":
                path = _datasize(result, fig, out)
                if path is None:
                    report.skipped.append((out.name, f"no finished runs with {fig.get('x')}"))
                    continue
        except Exception as exc:  # noqa: BLE001 - one bad figure must not hide the others
            log.debug("%s failed", out.name, exc_info=True)
            report.skipped.append((out.name, f"failed: {type(exc).__name__}: {exc}"))
            continue
        if path is not None:
            report.written.append(Path(path))
    return report


def write_plots(result: TableResult, outdir: str | Path) -> list[Path]:
    """Draw the table's figures into ``outdir`` (see :func:`draw_figures`); the paths written.

    Skipped figures are logged with their reason.
    """
    report = draw_figures(result, outdir)
    for name, reason in report.skipped:
        log.warning("%s skipped: %s", name, reason)
    return report.written


def _radar(result: TableResult, fig: Mapping[str, Any], out: Path) -> Path | None:
    from dos_bench import plots

    spec = result.spec
    cols = [spec.column(c) for c in (fig.get("columns") or [c.id for c in spec.columns])]
    values = np.array(
        [
            [
                result.cells[(r.id, c.id)].mean if result.cells[(r.id, c.id)].has_number else np.nan
                for c in cols
            ]
            for r in spec.rows
        ],
        dtype=float,
    )
    panel = fig.get("panel")
    panels = None if panel is None else [r.labels[int(panel)] for r in spec.rows]
    names = [
        r.label
        if panel is None
        else " / ".join(x for k, x in enumerate(r.labels) if k != int(panel))
        for r in spec.rows
    ]
    return plots.plot_radar(
        names,
        [c.header for c in cols],
        values,
        [c.better for c in cols],
        out,
        panels=panels,
        title=spec.title,
    )


def _datasize(result: TableResult, fig: Mapping[str, Any], out: Path) -> Path | None:
    from dos_bench import plots

    spec = result.spec
    x_key = str(fig.get("x", "split.train_fraction"))
    metric_paths = list(fig.get("metrics") or ["test.mae"])
    series: dict[str, dict[str, list[tuple[float, float, float | None]]]] = {}
    for mp in metric_paths:
        per_row: dict[str, list[tuple[float, float, float | None]]] = {}
        for row in spec.rows:
            by_x: dict[float, list[float]] = {}
            for r in result.runs:
                if not r.ok or not matches(r, row.match):
                    continue
                x = r.get(x_key)
                st, v = _metric_value(r.metrics or {}, mp, row.metric_map)
                if x is None or st != "ok":
                    continue
                by_x.setdefault(float(x), []).append(v)
            pts = []
            for x, vs in sorted(by_x.items()):
                pts.append(
                    (x, float(np.mean(vs)), float(np.std(vs, ddof=1)) if len(vs) > 1 else None)
                )
            if pts:
                per_row[row.label] = pts
        series[mp] = per_row
    if not any(series.values()):
        log.warning("%s: no finished runs with %s", out.name, x_key)
        return None
    xlabel = "training-set fraction" if x_key == "split.train_fraction" else x_key
    units = next((plots.run_spectrum_units(r.path) for r in result.runs if r.ok), None)
    ylabels = {}
    for mp in metric_paths:
        unit = units.metric_unit(mp) if units is not None else ""
        ylabels[mp] = f"{mp} ({unit})" if unit else mp
    return plots.plot_datasize(series, out, xlabel=xlabel, title=spec.title, ylabels=ylabels)


# ============================================================================ CLI
def _tables_of(runs: Sequence[Run]) -> list[str]:
    names = {str(r.get("table")) for r in runs if r.get("table") not in (None, "")}
    return sorted(names)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dos-tables",
        description=(
            "Build paper tables (mean (std) over seeds, beside the published values) from one or\n"
            "more multirun directories; a sweep without a table preset gets one row per model.\n\n"
            "examples:\n"
            "  dos-tables outputs/multiruns/mat2spec_table1/<date>       # the paper table\n"
            "  dos-tables <sweep> --check --plots figs/                   # fail on empty cells\n"
            "  dos-tables <sweep> --format latex --output table.tex       # for the manuscript"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dirs", nargs="*", type=Path, help="multirun (or run) directories")
    parser.add_argument("--format", choices=("markdown", "csv", "latex"), default="markdown")
    parser.add_argument(
        "--table",
        help="table spec name (dos_bench/published/<name>.yaml) or "
        "path; default: the runs' `table` config key",
    )
    parser.add_argument(
        "--plots",
        type=Path,
        metavar="OUTDIR",
        help="also draw the table's figures (PNG) into OUTDIR",
    )
    parser.add_argument("--output", type=Path, help="write the table(s) to this file")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 unless every applicable cell has a number"
    )
    parser.add_argument("--list", action="store_true", help="list the bundled table specs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.list:
        for name in available_specs():
            spec = load_spec(name)
            print(f"{name:24s} {spec.title}")
        return 0
    if not args.dirs:
        parser.error("give at least one multirun directory (or --list)")
    try:
        runs = find_runs(args.dirs)
        if not runs:
            raise ConfigError(
                f"no runs (directories with metrics.json or .hydra/) under "
                f"{[str(d) for d in args.dirs]}"
            )
        if args.table:
            jobs = [(load_spec(args.table), runs)]
        else:
            names = _tables_of(runs)
            jobs = [(load_spec(n), [r for r in runs if str(r.get("table")) == n]) for n in names]
            untabled = [r for r in runs if r.get("table") in (None, "None", "")]
            if untabled:
                # an ad-hoc sweep (no preset): one row per model, one column per test metric
                jobs.append((load_spec(auto_spec(untabled)), untabled))
    except (ConfigError, FileNotFoundError) as exc:
        print(f"dos-tables: {exc}", file=sys.stderr)
        return 2

    if args.plots:
        try:
            ensure_writable_dir(args.plots, key="--plots")
        except (ConfigError, OSError) as exc:
            print(f"dos-tables: {exc}", file=sys.stderr)
            return 2
    texts, incomplete = [], []
    for spec, spec_runs in jobs:
        result = build_table(spec, spec_runs)
        texts.append(render(result, args.format))
        incomplete += [(spec.name, r, c, cell) for r, c, cell in result.incomplete()]
        if args.plots:
            # what was written (or why not) goes to stderr: stdout may be the table itself
            report = draw_figures(result, args.plots)
            print(f"dos-tables: figures of table {spec.name} -> {args.plots}", file=sys.stderr)
            for line in report.lines():
                print(f"  {line}", file=sys.stderr)
    text = "\n".join(texts)
    if args.output:
        with atomic_write(args.output) as tmp:
            tmp.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if args.check and incomplete:
        for name, r, c, cell in incomplete:
            print(
                f"dos-tables --check: {name} [{r}, {c}] has no number ({cell.status}"
                f"{', metric ' + cell.metric if cell.status == 'no_value' else ''})",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
