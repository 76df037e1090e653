"""Error histograms of a run: per-material MAE and relative error, shaded by quartile
(ALIGNN-DOS Figs. 4a-b, 5a-b)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dos_bench.reporting.plotting import (
    _QUARTILE_COLOURS,
    _integer_counts,
    _load,
    _pyplot,
    _save,
)
from dos_bench.reporting.units import SpectrumUnits, run_spectrum_units

__all__ = ["plot_error_histogram"]


def _quartile_parts(values: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    qs = np.quantile(values, [0.25, 0.5, 0.75]) if len(values) else np.zeros(3)
    parts = [
        values[values <= qs[0]],
        values[(values > qs[0]) & (values <= qs[1])],
        values[(values > qs[1]) & (values <= qs[2])],
        values[values > qs[2]],
    ]
    return parts, qs


def plot_error_histogram(
    predictions: str | Path,
    out: str | Path,
    bins: int = 40,
    mae_threshold: float = 0.02,
    re_threshold: float = 0.2,
    title: str | None = None,
    units: SpectrumUnits | None = None,
) -> Path:
    """Histograms of per-material MAE and of the relative error, each shaded by its quartiles.

    ALIGNN-DOS Fig. 4a-b (and 5a-b for AE-ALIGNN): MAE_s = mean |p - a| over the grid (in the
    spectra's unit); RE_s = |mean(p) - mean(a)| / mean(a) (dimensionless; materials with
    mean(a) = 0 are left out). The fractions below ``mae_threshold`` and ``re_threshold`` are
    printed (paper: 92 % and 85 %, on valence-normalised spectra). Counts are integers; at most
    ``bins`` bins, fewer for small test sets.
    """
    d = _load(predictions)
    units = units or run_spectrum_units(predictions)
    true, pred = d["true"].astype(float), d["pred"].astype(float)
    mae = np.mean(np.abs(pred - true), axis=1)
    tm, pm = true.mean(axis=1), pred.mean(axis=1)
    ok = tm != 0
    re_ = np.abs(pm[ok] - tm[ok]) / np.abs(tm[ok])
    nb = max(5, min(int(bins), len(mae) // 2 or 1))
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    edges = np.linspace(0.0, float(mae.max()) * 1.001 + 1e-12, nb + 1)
    parts, _ = _quartile_parts(mae)
    labels = [f"Q{k + 1}" for k in range(4)]
    a1.hist(parts, bins=edges, stacked=True, color=list(_QUARTILE_COLOURS), label=labels, lw=0)
    thr_label = f"MAE = {units.fmt(mae_threshold, 'g')}"
    a1.axvline(mae_threshold, color="k", ls="--", lw=1, gid="threshold", label=thr_label)
    unit = units.metric_unit("mae")
    a1.set_xlabel(f"per-material MAE ({unit})")
    a1.set_ylabel("test materials")
    a1.set_title(
        f"mean MAE {units.fmt(mae.mean(), '.4g')}; "
        f"{100 * np.mean(mae < mae_threshold):.0f}% of {len(mae)} below {mae_threshold:g}",
        fontsize=9,
    )
    a1.legend(fontsize=8, title="MAE quartile", title_fontsize=8)
    _integer_counts(a1)
    if re_.size:
        hi = float(np.quantile(re_, 0.99)) if re_.size > 10 else float(re_.max())
        clipped = np.clip(re_, 0, hi)
        re_edges = np.linspace(0.0, hi * 1.001 + 1e-12, nb + 1)
        re_parts, _ = _quartile_parts(clipped)
        a2.hist(
            re_parts, bins=re_edges, stacked=True, color=list(_QUARTILE_COLOURS), label=labels, lw=0
        )
        frac = 100 * np.sum(re_ < re_threshold) / len(mae)
        a2.set_title(f"{frac:.0f}% of {len(mae)} materials with RE < {re_threshold:g}", fontsize=9)
        a2.legend(fontsize=8, title="RE quartile", title_fontsize=8)
    else:
        a2.text(
            0.5, 0.5, "no material with a non-zero mean DOS", ha="center", transform=a2.transAxes
        )
    a2.axvline(re_threshold, color="k", ls="--", lw=1, gid="threshold", label="threshold")
    xl = "relative error of the spectrum mean (dimensionless)"
    if re_.size > 10 and np.any(re_ > hi):
        xl += "; last bin includes > 99th pct."
    a2.set_xlabel(xl)
    a2.set_ylabel("test materials")
    _integer_counts(a2)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)
