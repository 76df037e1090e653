"""Figures drawn from the files a run wrote (never from live training state).

Per run (from ``predictions.npz``):

* :func:`plot_quartile_examples` — one test material per error quartile (ALIGNN-DOS Fig. 4c);
  written by ``dos-train`` into every run directory.
* :func:`plot_quantile_examples` — the same for any number of quantiles and several models on the
  same test set (Mat2Spec Fig. 3: quintiles, materials chosen in the intersection of the models'
  quintiles).
* :func:`plot_error_histogram` — histograms of the per-material MAE shaded by quartile and of the
  relative error (ALIGNN-DOS Figs. 4a-b, 5a-b).
* :func:`plot_periodic_table_gap` — periodic table shaded by the mean non-zero band gap read off
  the *predicted* spectra of the binary test compounds containing each element (ALIGNN-DOS Fig. 6).

Per table (from a :class:`dos_bench.tables.TableResult`, see ``dos-tables --plots``):

* :func:`plot_radar` — one polygon per model over min-max normalised metrics, best outward
  (Mat2Spec Fig. 5).
* :func:`plot_datasize` — metric vs training-set fraction (Mat2Spec Fig. 4).

Every figure is written atomically as PNG (:func:`dos_bench.io.atomic_write`).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.io import DataError, atomic_write

__all__ = [
    "band_gaps_from_predictions",
    "plot_datasize",
    "plot_error_histogram",
    "plot_periodic_table_gap",
    "plot_quantile_examples",
    "plot_quartile_examples",
    "plot_radar",
]

log = logging.getLogger("dos_bench.plots")

_QUARTILE_COLOURS = ("#2b83ba", "#abdda4", "#fdae61", "#d7191c")
_MODEL_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: str | Path, dpi: int = 110) -> Path:
    plt = _pyplot()
    out = Path(out)
    with atomic_write(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(fig)
    return out


def _load(predictions: str | Path) -> dict[str, np.ndarray]:
    path = Path(predictions)
    if not path.is_file():
        raise DataError(f"{path}: no such predictions file")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    missing = [k for k in ("ids", "energies", "true", "pred") if k not in data]
    if missing:
        raise DataError(f"{path}: missing array(s) {missing}")
    if data["true"].shape != data["pred"].shape or data["true"].ndim != 2:
        raise DataError(
            f"{path}: true {data['true'].shape} and pred {data['pred'].shape} must both be (N, L)"
        )
    return data


def _energy_label(data: Mapping[str, np.ndarray]) -> str:
    unit = str(data["energy_unit"]) if "energy_unit" in data else ""
    if not unit:
        return "grid"
    return f"frequency ({unit})" if "cm" in unit or "hz" in unit.lower() else f"E ({unit})"


def plot_quartile_examples(predictions: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Predicted vs true spectra for one test material per error quartile (ALIGNN-DOS Fig. 4).

    Args:
        predictions: a ``predictions.npz`` written by ``dos-train``.
        out: the PNG to write (atomically).
        seed: which material of each quartile is drawn.
    """
    plt = _pyplot()
    with np.load(predictions, allow_pickle=False) as z:
        ids, grid, true, pred = z["ids"], z["energies"], z["true"], z["pred"]
        energy_unit = str(z["energy_unit"]) if "energy_unit" in z.files else ""
    err = np.mean(np.abs(pred - true), axis=1)
    order = np.argsort(err)
    quartiles = np.array_split(order, 4)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharey=False)
    for q, (ax, members) in enumerate(zip(axes, quartiles, strict=True)):
        if len(members) == 0:
            ax.set_axis_off()
            continue
        i = int(rng.choice(members))
        ax.plot(grid, true[i], color="k", lw=1.5, label="true")
        ax.plot(grid, pred[i], color="tab:red", lw=1.2, label="predicted")
        ax.fill_between(grid, true[i], color="0.85")
        ax.set_title(f"Q{q + 1}: {ids[i]}\nMAE {err[i]:.3g}", fontsize=9)
        ax.set_xlabel(f"E ({energy_unit})" if energy_unit else "grid")
        if q == 0:
            ax.set_ylabel("DOS")
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def plot_quantile_examples(
    predictions: str | Path | Sequence[tuple[str, str | Path]],
    out: str | Path,
    n_quantiles: int = 5,
    seed: int = 0,
) -> Path:
    """One test material per MAE quantile, true spectrum and every model's prediction.

    Mat2Spec Fig. 3 / S1: the test set is cut into ``n_quantiles`` by per-material MAE for each
    model; the material of quantile q is drawn from the *intersection* of the models' q-th
    quantiles (materials of comparable relative difficulty for all models), or from the first
    model's quantile when the intersection is empty.

    Args:
        predictions: one ``predictions.npz`` or ``[(label, path), ...]`` over the same test set.
        out: the PNG to write.
        n_quantiles: 4 = quartiles (ALIGNN-DOS), 5 = quintiles (Mat2Spec).
        seed: which material of each quantile set is drawn.
    """
    if n_quantiles < 1:
        raise ValueError(f"n_quantiles must be >= 1, got {n_quantiles}")
    if isinstance(predictions, (str, Path)):
        predictions = [("predicted", predictions)]
    models = [(label, _load(p)) for label, p in predictions]
    if not models:
        raise ValueError("no predictions given")
    ref = models[0][1]
    common = set(ref["ids"].astype(str).tolist())
    for _, d in models[1:]:
        common &= set(d["ids"].astype(str).tolist())
    if not common:
        raise DataError("the prediction files share no test material ids")
    ids = np.array(sorted(common))
    aligned = []
    for label, d in models:
        pos = {k: i for i, k in enumerate(d["ids"].astype(str).tolist())}
        idx = np.array([pos[k] for k in ids])
        aligned.append((label, d["true"][idx], d["pred"][idx]))
    true = aligned[0][1]
    maes = [np.mean(np.abs(p - t), axis=1) for _, t, p in aligned]
    qsets = []
    for err in maes:
        order = np.argsort(err, kind="stable")
        qsets.append([set(ids[m].tolist()) for m in np.array_split(order, n_quantiles)])
    rng = np.random.default_rng(seed)
    grid = ref["energies"]
    plt = _pyplot()
    fig, axes = plt.subplots(1, n_quantiles, figsize=(3.6 * n_quantiles, 3.4), squeeze=False)
    index = {k: i for i, k in enumerate(ids.tolist())}
    for q, ax in enumerate(axes[0]):
        cands = set.intersection(*(qs[q] for qs in qsets)) or qsets[0][q]
        if not cands:
            ax.set_axis_off()
            continue
        mat = str(rng.choice(sorted(cands)))
        i = index[mat]
        ax.fill_between(grid, true[i], color="0.88")
        ax.plot(grid, true[i], color="k", lw=1.5, label="true")
        for k, (label, _, pred) in enumerate(aligned):
            ax.plot(
                grid, pred[i], color=_MODEL_COLOURS[k % len(_MODEL_COLOURS)], lw=1.1, label=label
            )
        errs = ", ".join(f"{e[i]:.3g}" for e in maes)
        ax.set_title(f"Q{q + 1}: {mat}\nMAE {errs}", fontsize=8)
        ax.set_xlabel(_energy_label(ref))
        if q == 0:
            ax.set_ylabel("DOS")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out)


def plot_error_histogram(
    predictions: str | Path,
    out: str | Path,
    bins: int = 40,
    mae_threshold: float = 0.02,
    re_threshold: float = 0.2,
    title: str | None = None,
) -> Path:
    """Histogram of per-material MAE with the four quartiles shaded, and of the relative error.

    ALIGNN-DOS Fig. 4a-b (and 5a-b for AE-ALIGNN): MAE_s = mean |p - a| over the grid;
    RE_s = |mean(p) - mean(a)| / mean(a) (materials with mean(a) = 0 are left out). The fractions
    below ``mae_threshold`` and ``re_threshold`` are printed (paper: 92 % and 85 %).
    """
    d = _load(predictions)
    true, pred = d["true"].astype(float), d["pred"].astype(float)
    mae = np.mean(np.abs(pred - true), axis=1)
    tm, pm = true.mean(axis=1), pred.mean(axis=1)
    ok = tm != 0
    re = np.abs(pm[ok] - tm[ok]) / np.abs(tm[ok])
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    edges = np.linspace(0.0, float(mae.max()) * 1.001 + 1e-12, bins + 1)
    qs = np.quantile(mae, [0.25, 0.5, 0.75]) if len(mae) else np.zeros(3)
    parts = [
        mae[mae <= qs[0]],
        mae[(mae > qs[0]) & (mae <= qs[1])],
        mae[(mae > qs[1]) & (mae <= qs[2])],
        mae[mae > qs[2]],
    ]
    a1.hist(
        parts,
        bins=edges,
        stacked=True,
        color=list(_QUARTILE_COLOURS),
        label=[f"Q{k + 1}" for k in range(4)],
        edgecolor="none",
    )
    a1.axvline(mae_threshold, color="k", ls="--", lw=1)
    a1.set_xlabel("per-material MAE")
    a1.set_ylabel("test materials")
    a1.set_title(
        f"mean MAE {mae.mean():.4g}; {100 * np.mean(mae < mae_threshold):.0f}% < {mae_threshold:g}",
        fontsize=9,
    )
    a1.legend(fontsize=8)
    if re.size:
        hi = float(np.quantile(re, 0.99)) if re.size > 10 else float(re.max())
        a2.hist(np.clip(re, 0, hi), bins=bins, color="0.5", edgecolor="none")
        frac = 100 * np.sum(re < re_threshold) / len(mae)
        a2.set_title(f"{frac:.0f}% of materials with RE < {re_threshold:g}", fontsize=9)
    a2.axvline(re_threshold, color="k", ls="--", lw=1)
    a2.set_xlabel("relative error of the spectrum mean")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------- band gaps
def _threshold_gaps(energies: np.ndarray, dos: np.ndarray, tol: float = 0.01) -> np.ndarray:
    """ALIGNN-DOS §5 rule with a tolerance: non-zero = above ``tol`` x the spectrum's max; a
    spectrum non-zero at E_F = 0 is a metal (gap 0); otherwise CBM - VBM of the nearest non-zero
    grid points on either side of 0 (NaN if a side has none)."""
    e = np.asarray(energies, dtype=float)
    out = np.full(len(dos), np.nan)
    for k, row in enumerate(np.asarray(dos, dtype=float)):
        thr = tol * float(np.max(np.abs(row))) if row.size else 0.0
        if thr <= 0:
            continue
        nz = row > thr
        if np.interp(0.0, e, row) > thr:
            out[k] = 0.0
            continue
        below, above = np.flatnonzero(nz & (e < 0)), np.flatnonzero(nz & (e > 0))
        if below.size and above.size:
            out[k] = e[above[0]] - e[below[-1]]
    return out


def band_gaps_from_predictions(energies: np.ndarray, dos: np.ndarray) -> np.ndarray:
    """Band gaps of spectra ``(N, L)`` on an E_F-relative grid: :func:`dos_bench.physics.band_gaps`
    when available, else the same threshold rule implemented here."""
    try:
        from dos_bench.physics import band_gaps
    except ImportError:
        return _threshold_gaps(energies, dos)
    try:
        res = band_gaps(np.asarray(energies, dtype=float), np.asarray(dos, dtype=float))
    except Exception as exc:  # noqa: BLE001 - fall back to the local rule, say so
        log.warning("dos_bench.physics.band_gaps failed (%s); using the threshold rule", exc)
        return _threshold_gaps(energies, dos)
    gaps = res[0] if isinstance(res, tuple) else res
    return np.asarray(gaps, dtype=float).reshape(-1)


def _element_position(symbol: str) -> tuple[int, int] | None:
    """(row, column), 0-based, in the 18-column table with the f-block in rows 8-9."""
    from pymatgen.core import Element

    el = Element(symbol)
    z = el.Z
    if 57 <= z <= 71:
        return 8, z - 57 + 2
    if 89 <= z <= 103:
        return 9, z - 89 + 2
    return int(el.row) - 1, int(el.group) - 1


def plot_periodic_table_gap(
    predictions: str | Path,
    out: str | Path,
    formula_key: str | None = None,
    title: str | None = None,
) -> Path | None:
    """Periodic table shaded by the mean non-zero predicted band gap of binary test compounds.

    ALIGNN-DOS Fig. 6: band gaps are read off the *predicted* spectra
    (:func:`band_gaps_from_predictions`); for each element the mean over binary compounds that
    contain it and have a non-zero gap is shown; elements without such compounds are grey.
    Formulas come from the ``meta_formula`` (or ``group_formula``) array of ``predictions.npz``;
    without one the figure is skipped (returns ``None``, with a log message).
    """
    from pymatgen.core import Composition

    d = _load(predictions)
    keys = [formula_key] if formula_key else ["meta_formula", "group_formula"]
    key = next((k for k in keys if k and k in d), None)
    if key is None:
        log.warning(
            "%s: no formula array (%s) in %s; periodic-table figure skipped",
            Path(out).name,
            " / ".join(k for k in keys if k),
            predictions,
        )
        return None
    gaps = band_gaps_from_predictions(d["energies"], d["pred"])
    per_el: dict[str, list[float]] = {}
    for formula, gap in zip(d[key].astype(str), gaps, strict=True):
        if not np.isfinite(gap) or gap <= 0:
            continue
        try:
            els = {e.symbol for e in Composition(str(formula)).elements}
        except Exception:  # noqa: BLE001 - an unparsable formula is skipped
            continue
        if len(els) != 2:
            continue
        for el in els:
            per_el.setdefault(el, []).append(float(gap))
    plt = _pyplot()
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle
    from pymatgen.core import Element

    means = {el: float(np.mean(v)) for el, v in per_el.items()}
    vmax = max(means.values()) if means else 1.0
    norm = Normalize(vmin=0.0, vmax=vmax)
    cmap = colormaps["viridis"]
    fig, ax = plt.subplots(figsize=(13, 7))
    for z in range(1, 104):
        sym = Element.from_Z(z).symbol
        pos = _element_position(sym)
        if pos is None:
            continue
        r, c = pos
        y = -(r + (0.5 if r >= 8 else 0))
        colour = cmap(norm(means[sym])) if sym in means else "0.85"
        ax.add_patch(Rectangle((c, y), 0.95, 0.95, facecolor=colour, edgecolor="white"))
        dark = sym in means and norm(means[sym]) < 0.6
        ax.text(
            c + 0.47,
            y + 0.6,
            sym,
            ha="center",
            va="center",
            fontsize=8,
            color="white" if dark else "black",
        )
        if sym in means:
            ax.text(
                c + 0.47,
                y + 0.25,
                f"{means[sym]:.1f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if dark else "black",
            )
    ax.set_xlim(-0.2, 18.2)
    ax.set_ylim(-10.8, 1.2)
    ax.set_aspect("equal")
    ax.set_axis_off()
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, fraction=0.025, pad=0.01, label="mean predicted band gap (eV)")
    n_bin = sum(1 for f in d[key].astype(str) if _n_elements(f) == 2)
    ax.set_title(
        (title + ": " if title else "") + f"mean non-zero predicted gap of binary "
        f"compounds ({n_bin} binary test materials)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, out)


def _n_elements(formula: str) -> int:
    from pymatgen.core import Composition

    try:
        return len(Composition(str(formula)).elements)
    except Exception:  # noqa: BLE001
        return 0


# ---------------------------------------------------------------------------- table figures
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
) -> Path:
    """Metric vs training-set fraction, one line per model (Mat2Spec Fig. 4).

    Args:
        series: ``{metric name: {model label: [(x, mean, std or None), ...]}}``; one panel per
            metric, error bars = std over seeds.
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
        ax.set_ylabel(m)
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
