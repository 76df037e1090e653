"""Spectrum metrics, computed on native-unit spectra (facts.md §1.5, §2.6, §3.5, §4.5).

All functions take ``pred`` and ``true`` of shape ``(N, L)`` (numpy or torch) and return a float.

* ``mae`` — mean absolute error over all N·L entries (= mean of per-sample MAE, ALIGNN-DOS §5,
  since every sample has L points).
* ``mse`` — mean squared error over all entries (sklearn ``mean_squared_error``, Xtal2DoS code).
* ``rmse`` — per-sample RMSE over the grid, then averaged over samples (DOSTransformer §2.6).
* ``r2`` — variance-weighted R² over the test matrix, ``1 − Σ(y−ŷ)² / Σ(y − ȳ_j)²`` with ȳ_j the
  mean over materials at grid point j (sklearn ``multioutput='variance_weighted'``, Xtal2DoS and
  Mat2Spec code).
* ``wd`` — 1-D Wasserstein-1 distance between the two spectra seen as distributions over the grid
  index, ``Σ_k |CDF_ŷ(k) − CDF_y(k)|``, times the grid spacing, averaged over materials (Xtal2DoS
  §3.5: scipy ``wasserstein_distance`` on bin indices × 0.0625 eV).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from dos_bench.io import ConfigError

__all__ = ["METRICS", "compute_metrics", "mae", "mse", "rmse", "r2", "wd"]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def mae(pred, true, **_) -> float:
    p, t = _np(pred), _np(true)
    return float(np.mean(np.abs(p - t)))


def mse(pred, true, **_) -> float:
    p, t = _np(pred), _np(true)
    return float(np.mean((p - t) ** 2))


def rmse(pred, true, **_) -> float:
    p, t = _np(pred), _np(true)
    return float(np.mean(np.sqrt(np.mean((p - t) ** 2, axis=1))))


def r2(pred, true, **_) -> float:
    p, t = _np(pred), _np(true)
    ss_res = np.sum((t - p) ** 2)
    ss_tot = np.sum((t - t.mean(axis=0, keepdims=True)) ** 2)
    if ss_tot == 0:
        return float("nan") if ss_res > 0 else 1.0
    return float(1.0 - ss_res / ss_tot)


def wd_per_sample(pred, true, spacing: float = 1.0, eps: float = 1e-12) -> np.ndarray:
    """Wasserstein-1 per material, in units of the grid (``spacing`` per index)."""
    p, t = _np(pred), _np(true)
    p = np.clip(p, 0.0, None)
    t = np.clip(t, 0.0, None)
    ps, ts = p.sum(axis=1, keepdims=True), t.sum(axis=1, keepdims=True)
    cp = np.cumsum(p / np.maximum(ps, eps), axis=1)
    ct = np.cumsum(t / np.maximum(ts, eps), axis=1)
    out = np.abs(cp - ct)[:, :-1].sum(axis=1) * spacing
    # an all-zero spectrum is no distribution: distance 0 to another all-zero one, else undefined
    zero_p, zero_t = ps[:, 0] <= eps, ts[:, 0] <= eps
    out = np.where(zero_p & zero_t, 0.0, out)
    return np.where(zero_p ^ zero_t, np.nan, out)


def wd(pred, true, spacing: float = 1.0, **_) -> float:
    return float(np.nanmean(wd_per_sample(pred, true, spacing)))


METRICS: dict[str, Callable[..., float]] = {
    "mae": mae,
    "mse": mse,
    "rmse": rmse,
    "r2": r2,
    "wd": wd,
}


def compute_metrics(
    pred, true, names: Sequence[str] = ("mae", "mse", "rmse", "r2", "wd"), spacing: float = 1.0
) -> dict[str, float]:
    """Every named metric on ``(N, L)`` arrays; an unknown name raises :class:`ConfigError`."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; choose from {sorted(METRICS)}")
    p, t = _np(pred), _np(true)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred {p.shape} and true {t.shape} must both be (N, L)")
    return {n: METRICS[n](p, t, spacing=spacing) for n in names}
