"""Table specs: the YAML files that define a paper table, loaded and validated.

A spec names the table's columns (metrics), rows (models/settings), the conditions that put a
run into a cell, and the published numbers printed beside ours. The bundled specs live in
``dos_bench/published/<name>.yaml`` (package data, :data:`SPEC_DIR`); published numbers never
live in code. :func:`auto_spec` writes a spec for an ad-hoc sweep (one row per model).

Table spec format (YAML)::

    name: dostransformer_table1          # = file name; runs name it in their `table` key
    title: "..."                         # printed above the table
    source: "papers/... Table 1 (docs/papers/dostransformer.md §2.7)"
    experiment: dostransformer_table1    # the conf/experiment preset that makes the runs
                                         # (default: the spec's name)
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
    figures:                             # optional, drawn by --plots (see reporting.figures)
      - {kind: radar, columns: [r2, mae], panel: 0, name: fig5_radar}

Match rules: keys are dotted config paths (``model.name``, ``target_repr._target_``,
``split.train_fraction``, ``loss.pred_loss``, ...). A value matches when it is equal (numbers
compared as floats), when it is the last component of a dotted ``_target_`` (``MaxNorm`` matches
``dos_bench.data.transforms.MaxNorm``), or, for a list, when any element matches; ``null``
matches a missing key. Metric paths may contain keys with dots (``test.frac_mae_lt_0.02``,
``test_groups.n_species.1.rmse``): the longest key present at each level wins.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from dos_bench.config import SPEC_DIR as PACKAGED_SPEC_DIR
from dos_bench.io import ConfigError

if TYPE_CHECKING:
    from dos_bench.reporting.runs import Run

__all__ = [
    "SPEC_DIR",
    "SWEEP_SPEC_NAME",
    "Column",
    "Row",
    "TableSpec",
    "auto_spec",
    "available_specs",
    "load_spec",
]

#: where the published table specs live (package data)
SPEC_DIR = PACKAGED_SPEC_DIR

_NUM = (int, float, np.integer, np.floating)


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
        experiment=raw.get("experiment") or str(raw["name"]),
        notes=tuple(str(n) for n in raw.get("notes") or ()),
        figures=tuple(figures),
        transpose=bool(raw.get("transpose", False)),
        path=p,
    )
