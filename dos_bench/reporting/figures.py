"""The figures of a table (``dos-tables --plots``): what to draw, from which runs, and the
table-level charts (radar, data-size curve).

Published tables draw the figures their spec lists (``figures:``); an ad-hoc sweep draws those
that apply to any sweep. Per-run figures come from :mod:`~dos_bench.reporting.spectra`,
:mod:`~dos_bench.reporting.histograms` and :mod:`~dos_bench.reporting.periodic`; the charts
drawn from the table's cells are here:

* :func:`plot_radar` — one polygon per model over min-max normalised metrics, best outward
  (Mat2Spec Fig. 5).
* :func:`plot_datasize` — metric vs training-set fraction (Mat2Spec Fig. 4).
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.reporting.cells import TableResult, _metric_value, matches
from dos_bench.reporting.histograms import plot_error_histogram
from dos_bench.reporting.periodic import periodic_table_gap_unavailable, plot_periodic_table_gap
from dos_bench.reporting.plotting import _MODEL_COLOURS, _pyplot, _save
from dos_bench.reporting.runs import Run, _natural_key
from dos_bench.reporting.spec import _NUM, Row, _is_sweep_spec
from dos_bench.reporting.spectra import plot_quantile_examples
from dos_bench.reporting.units import run_spectrum_units

__all__ = ["FigureReport", "draw_figures", "plot_datasize", "plot_radar", "write_plots"]

log = logging.getLogger(__name__)


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
    (:func:`~dos_bench.reporting.spec.auto_spec`) draws those that apply to any sweep
    (:func:`_sweep_figures`). A figure whose inputs are missing (no finished run, no formula
    column, not an eDOS, ...) or whose drawing fails is skipped with its reason; the others are
    still drawn.
    """
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
        "error_histogram": plot_error_histogram,
        "periodic_table_gap": plot_periodic_table_gap,
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
                    why = periodic_table_gap_unavailable(run.predictions())
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
                path = plot_quantile_examples(
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
    return plot_radar(
        names,
        [c.header for c in cols],
        values,
        [c.better for c in cols],
        out,
        panels=panels,
        title=spec.title,
    )


def _datasize(result: TableResult, fig: Mapping[str, Any], out: Path) -> Path | None:
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
    units = next((run_spectrum_units(r.path) for r in result.runs if r.ok), None)
    ylabels = {}
    for mp in metric_paths:
        unit = units.metric_unit(mp) if units is not None else ""
        ylabels[mp] = f"{mp} ({unit})" if unit else mp
    return plot_datasize(series, out, xlabel=xlabel, title=spec.title, ylabels=ylabels)


# ============================================================================ charts
def plot_radar(
    names: Sequence[str],
    axes: Sequence[str],
    values: np.ndarray,
    better: Sequence[str],
    out: str | Path,
    panels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Radar plots, one polygon per model (Mat2Spec Fig. 5).

    Each axis is min-max scaled over **all** rows so that the best value sits on the outer ring
    (``better='lower'`` axes are flipped) and all panels are comparable; a constant axis maps to
    1, a missing value to 0.

    Args:
        names: polygon labels, one per row of ``values``.
        axes: metric labels, one per column of ``values``.
        values: ``(rows, metrics)`` raw metric values (NaN = missing).
        better: ``lower`` or ``higher`` per metric.
        panels: optional panel label per row (one radar per distinct label, e.g. the setting).
    """
    v = np.asarray(values, dtype=float)
    if v.shape != (len(names), len(axes)) or len(better) != len(axes):
        raise ValueError(
            f"values {v.shape} must be (len(names), len(axes)) = "
            f"({len(names)}, {len(axes)}) with one `better` per axis"
        )
    if len(axes) < 3:
        raise ValueError("a radar plot needs at least 3 axes")
    with warnings.catch_warnings():  # an all-NaN axis (metric not written) stays at 0
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(v, axis=0), np.nanmax(v, axis=0)
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(span > 0, (v - lo) / np.where(span > 0, span, 1.0), 1.0)
    flip = np.array([b == "lower" for b in better])
    s = np.where(flip & (span > 0), 1.0 - s, s)
    s = np.where(np.isfinite(v), s, 0.0)
    panel_labels = list(dict.fromkeys(panels)) if panels is not None else [""]
    plt = _pyplot()
    n = len(panel_labels)
    fig, axs = plt.subplots(
        1, n, figsize=(4.2 * n, 4.4), subplot_kw={"projection": "polar"}, squeeze=False
    )
    theta = np.linspace(0, 2 * np.pi, len(axes), endpoint=False)
    closed = np.concatenate([theta, theta[:1]])
    for ax, panel in zip(axs[0], panel_labels, strict=True):
        members = [i for i in range(len(names)) if panels is None or panels[i] == panel]
        for j, i in enumerate(members):
            colour = _MODEL_COLOURS[j % len(_MODEL_COLOURS)]
            r = np.concatenate([s[i], s[i][:1]])
            ax.plot(closed, r, color=colour, lw=1.4, label=names[i])
            ax.fill(closed, r, color=colour, alpha=0.12)
        ax.set_xticks(theta)
        ax.set_xticklabels(list(axes), fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_yticks([0.25, 0.5, 0.75, 1.0])
        ax.set_yticklabels([])
        if panel:
            ax.set_title(panel, fontsize=10, pad=14)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    if title:
        fig.suptitle(title + " (outer ring = best value over all models)", fontsize=9, y=1.04)
    fig.tight_layout()
    return _save(fig, out)


def plot_datasize(
    series: Mapping[str, Mapping[str, Sequence[tuple[float, float, float | None]]]],
    out: str | Path,
    xlabel: str = "training fraction",
    title: str | None = None,
    ylabels: Mapping[str, str] | None = None,
) -> Path:
    """Metric vs training-set fraction, one line per model (Mat2Spec Fig. 4).

    Args:
        series: ``{metric name: {model label: [(x, mean, std or None), ...]}}``; one panel per
            metric, error bars = std over seeds.
        ylabels: y-axis label per metric (with its unit, see :meth:`SpectrumUnits.metric_unit`);
            default: the metric name.
    """
    metrics = [m for m, per in series.items() if per]
    if not metrics:
        raise ValueError("no data to plot")
    plt = _pyplot()
    fig, axs = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axs[0], metrics, strict=True):
        xs_all: set[float] = set()
        for j, (label, pts) in enumerate(series[m].items()):
            pts = sorted(pts)
            x = np.array([p[0] for p in pts], dtype=float)
            y = np.array([p[1] for p in pts], dtype=float)
            e = np.array([np.nan if p[2] is None else p[2] for p in pts], dtype=float)
            xs_all.update(x.tolist())
            colour = _MODEL_COLOURS[j % len(_MODEL_COLOURS)]
            ax.errorbar(
                x,
                y,
                yerr=np.where(np.isfinite(e), e, 0.0),
                marker="o",
                ms=4,
                capsize=3,
                color=colour,
                label=label,
            )
        if xs_all and min(xs_all) > 0:
            ax.set_xscale("log", base=2)
            ticks = sorted(xs_all)
            ax.set_xticks(ticks)
            ax.set_xticklabels([_fraction_label(t) for t in ticks])
        ax.set_xlabel(xlabel)
        ax.set_ylabel((ylabels or {}).get(m, m))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def _fraction_label(x: float) -> str:
    if x >= 1 or x <= 0:
        return f"{x:g}"
    inv = 1 / x
    return f"1/{round(inv)}" if math.isclose(inv, round(inv), rel_tol=1e-6) else f"{x:g}"
