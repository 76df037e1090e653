"""Spectrum metrics, computed on native-unit spectra (docs/papers/alignn_dos.md §1.5,
docs/papers/dostransformer.md §2.6, docs/papers/xtal2dos.md §3.5, docs/papers/mat2spec.md §4.5).

All metric functions take ``pred`` and ``true`` of shape ``(N, L)`` (numpy or torch) and return a
float. Names are looked up in :data:`METRICS`, which also understands the parametrised
``frac_<metric>_lt_<threshold>`` names.

* ``mae`` — mean absolute error over all N·L entries (= mean of per-sample MAE, ALIGNN-DOS §5,
  since every sample has L points).
* ``mse`` — mean squared error over all entries (sklearn ``mean_squared_error``, Xtal2DoS code).
* ``rmse`` — per-sample RMSE over the grid, then averaged over samples (DOSTransformer §2.6).
* ``r2`` — variance-weighted R² over the test matrix (scikit-learn ``r2_score(y_true, y_pred,
  multioutput='variance_weighted')``, Xtal2DoS ``xtal2dos/utils.py``, also used for Mat2Spec,
  docs/papers/xtal2dos.md §3.5): ``1 − Σ_{j∈V} SS_res,j / Σ_j SS_tot,j`` with ``SS_tot,j = Σ_i
  (y_ij − ȳ_j)²``,
  ȳ_j the mean over materials at grid point j, and V the grid points with ``SS_tot,j ≠ 0``.
  A grid point whose computed variance over the materials is 0 (phonon DOS at 0 cm⁻¹) has weight
  0 and its error is left out, as scikit-learn does (see :func:`r2`); when *every* grid point is
  constant the value is the fraction of grid points predicted exactly. Needs ≥ 2 materials (NaN
  for one).
* ``r2_per_sample`` — sklearn ``r2_score`` on each material's own vector (ȳ = mean over the grid),
  averaged over materials (DOSTransformer code, Xtal2DoS paper §4.1 form,
  docs/papers/dostransformer.md §2.6). A
  constant true vector follows sklearn's ``force_finite`` rule: 1 if the prediction equals it
  exactly, else 0.
* ``wd`` — 1-D Wasserstein-1 distance between the two spectra seen as distributions over the grid
  index, ``Σ_k |CDF_ŷ(k) − CDF_y(k)|``, times the grid spacing, averaged over materials (Xtal2DoS
  §3.5: scipy ``wasserstein_distance`` on bin indices × 0.0625 eV). Negative values are clipped
  to 0 first; two all-zero spectra are at distance 0, one all-zero spectrum against a non-zero one
  is undefined (NaN, left out of the mean).
* ``re`` — ALIGNN-DOS §5 relative error ``|p̄ − ā| / |ā|`` of the spectrum means, averaged over
  materials (docs/papers/alignn_dos.md §1.5). ā = 0: 0 if p̄ = 0 too, else undefined (NaN, left out
  of the mean;
  counted as *not* below any threshold by ``frac_re_lt_*``).
* ``multimae`` — the JARVIS-Leaderboard spectrum score (``jarvis_leaderboard/rebuild.py``,
  ``get_metric_value``): scikit-learn ``mean_absolute_error`` of all true values concatenated
  against all predicted values concatenated; no normalisation, no rounding. Also accepts
  sequences of 1-D spectra of different lengths. For equal-length spectra it equals ``mae`` and
  the mean of the per-sample MAEs.
* ``frac_<m>_lt_<thr>`` — fraction of materials whose per-sample ``<m>`` (one of
  :data:`PER_SAMPLE`) is strictly below ``thr``, over all N materials (NaN counts as not below).
  ALIGNN-DOS reports ``frac_mae_lt_0.02`` and ``frac_re_lt_0.2`` (docs/papers/alignn_dos.md §1.6).
"""

from __future__ import annotations

import math
import re as _re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from dos_bench.io import ConfigError

__all__ = [
    "METRICS",
    "PER_SAMPLE",
    "compute_metrics",
    "get_metric",
    "grouped_metrics",
    "per_sample",
    "mae",
    "mse",
    "multimae",
    "rmse",
    "r2",
    "r2_per_sample",
    "relative_error",
    "wd",
    "wd_per_sample",
    "fraction_below",
]

MetricFn = Callable[..., float]


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


# ------------------------------------------------------------------------- per-sample vectors
def _mae_ps(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.mean(np.abs(p - t), axis=1)


def _mse_ps(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.mean((p - t) ** 2, axis=1)


def _rmse_ps(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.sqrt(_mse_ps(p, t))


def _re_ps(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    pm, tm = p.mean(axis=1), t.mean(axis=1)
    num, den = np.abs(pm - tm), np.abs(tm)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out = np.where(den > 0, out, np.nan)
    return np.where((den == 0) & (num == 0), 0.0, out)


def _r2_ps(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    ss_res = np.sum((t - p) ** 2, axis=1)
    ss_tot = np.sum((t - t.mean(axis=1, keepdims=True)) ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 1.0 - ss_res / ss_tot
    # sklearn r2_score(force_finite=True): constant truth -> 1 if perfect else 0
    return np.where(ss_tot > 0, out, np.where(ss_res == 0, 1.0, 0.0))


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


_PER_SAMPLE_FNS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "mae": _mae_ps,
    "mse": _mse_ps,
    "rmse": _rmse_ps,
    "re": _re_ps,
    "r2_per_sample": _r2_ps,
}
#: metric names that have a per-material vector (:func:`per_sample`, ``frac_<m>_lt_<thr>``)
PER_SAMPLE: tuple[str, ...] = ("mae", "mse", "rmse", "re", "wd", "r2_per_sample")


def per_sample(name: str, pred, true, spacing: float = 1.0) -> np.ndarray:
    """The per-material ``(N,)`` vector of metric ``name`` (one of :data:`PER_SAMPLE`).

    Used for histograms (ALIGNN-DOS Fig. 4, docs/papers/alignn_dos.md §1.5), quartile plots and
    group breakdowns.
    ``wd`` is in grid units × ``spacing``; ``re`` may hold NaN where the true mean is 0.
    """
    p, t = _np(pred), _np(true)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred {p.shape} and true {t.shape} must both be (N, L)")
    if name == "wd":
        return wd_per_sample(p, t, spacing)
    if name not in _PER_SAMPLE_FNS:
        raise ConfigError(f"no per-sample form of metric {name!r}; choose from {list(PER_SAMPLE)}")
    return _PER_SAMPLE_FNS[name](p, t)


# ------------------------------------------------------------------------- aggregate metrics
def mae(pred, true, **_) -> float:
    p, t = _np(pred), _np(true)
    return float(np.mean(np.abs(p - t)))


def multimae(pred, true, **_) -> float:
    """JARVIS-Leaderboard ``multimae``: MAE of all values concatenated (see module docstring).

    Args:
        pred, true: ``(N, L)`` arrays, or sequences of N 1-D spectra (lengths may differ between
            spectra but must agree between ``pred[i]`` and ``true[i]``).
    """
    if hasattr(pred, "detach") or isinstance(pred, np.ndarray):
        p2, t2 = _np(pred), _np(true)
        if p2.shape != t2.shape:
            raise ValueError(f"multimae: pred {p2.shape} and true {t2.shape} differ in shape")
        ps, ts = [p2.reshape(-1)], [t2.reshape(-1)]
    else:
        ps = [_np(x).reshape(-1) for x in pred]
        ts = [_np(x).reshape(-1) for x in true]
    if len(ps) != len(ts) or any(a.shape != b.shape for a, b in zip(ps, ts, strict=False)):
        raise ValueError("multimae: pred and true must hold the same number of values per sample")
    p, t = np.concatenate(ps), np.concatenate(ts)
    if p.size == 0:
        return float("nan")
    return float(np.mean(np.abs(p - t)))


def mse(pred, true, **_) -> float:
    p, t = _np(pred), _np(true)
    return float(np.mean((p - t) ** 2))


def rmse(pred, true, **_) -> float:
    p, t = _np(pred), _np(true)
    return float(np.mean(_rmse_ps(p, t)))


def r2(pred, true, **_) -> float:
    """Variance-weighted R² over the ``(N, L)`` matrix, the rule of scikit-learn's ``r2_score``.

    Restated from scikit-learn ``sklearn/metrics/_regression.py`` (``r2_score`` with
    ``multioutput="variance_weighted"`` and the default ``force_finite=True``; the Xtal2DoS
    metric, ``xtal2dos/utils.py``, docs/papers/xtal2dos.md §3.5). Per grid point j, in float64:
    ``SS_res,j = Σ_i (y_ij − ŷ_ij)²`` and ``SS_tot,j = Σ_i (y_ij − ȳ_j)²`` (ȳ_j the mean over
    materials). The per-point score ``1 − SS_res,j/SS_tot,j`` (1 when ``SS_res,j = 0``, 0 when
    only ``SS_tot,j = 0``) is averaged with weights ``SS_tot,j``, which gives

    * some ``SS_tot,j ≠ 0``: ``1 − Σ_{j: SS_tot,j≠0} SS_res,j / Σ_j SS_tot,j`` — a grid point
      that is constant over the materials carries no weight, so its error is **not** counted;
    * every ``SS_tot,j = 0``: the unweighted mean of the per-point scores, i.e. the fraction of
      grid points with ``SS_res,j = 0``;
    * fewer than 2 materials: NaN (scikit-learn warns and returns NaN).

    The zero test is exact on the computed ``SS_tot,j``, as scikit-learn's: a constant column
    whose float mean does not round back to the value gets a tiny non-zero variance and keeps
    its error in both. Exactly-zero columns (a DOS that vanishes at a grid point for every
    material) are always left out.
    """
    p, t = _np(pred), _np(true)
    if p.ndim == 1:
        p, t = p[:, None], t[:, None]
    if p.shape[0] < 2:
        return float("nan")  # the per-grid-point variance over one material is undefined
    ss_res = np.sum((t - p) ** 2, axis=0)
    ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    varying = ss_tot != 0
    if not varying.any():
        return float(np.mean(ss_res == 0))
    return float(1.0 - np.sum(ss_res[varying]) / np.sum(ss_tot))


def r2_per_sample(pred, true, **_) -> float:
    return float(np.mean(_r2_ps(_np(pred), _np(true))))


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.mean(x)) if x.size else float("nan")


def relative_error(pred, true, **_) -> float:
    return _nanmean(_re_ps(_np(pred), _np(true)))


def wd(pred, true, spacing: float = 1.0, **_) -> float:
    return _nanmean(wd_per_sample(pred, true, spacing))


def fraction_below(base: str, threshold: float, pred, true, spacing: float = 1.0, **_) -> float:
    """Fraction of materials whose per-sample ``base`` metric is < ``threshold`` (NaN is not)."""
    v = per_sample(base, pred, true, spacing)
    if v.size == 0:
        return float("nan")
    with np.errstate(invalid="ignore"):
        return float(np.mean(np.where(np.isfinite(v), v < threshold, False)))


_FRAC = _re.compile(
    r"^frac_(?P<base>[a-z0-9_]+?)_lt_(?P<thr>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)$"
)


def _parse(name: str) -> MetricFn | None:
    m = _FRAC.match(name)
    if not m or m.group("base") not in PER_SAMPLE:
        return None
    return partial(fraction_below, m.group("base"), float(m.group("thr")))


class _Registry(dict):
    """``dict`` of the fixed metrics that also resolves ``frac_<m>_lt_<thr>`` names on lookup."""

    def __missing__(self, name: str) -> MetricFn:
        fn = _parse(name) if isinstance(name, str) else None
        if fn is None:
            raise KeyError(name)
        return fn

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name) or (isinstance(name, str) and _parse(name) is not None)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default


METRICS: dict[str, MetricFn] = _Registry(
    mae=mae,
    multimae=multimae,
    mse=mse,
    rmse=rmse,
    r2=r2,
    r2_per_sample=r2_per_sample,
    wd=wd,
    re=relative_error,
)


def get_metric(name: str) -> MetricFn:
    """The metric function called ``name``; unknown names raise :class:`ConfigError`."""
    if name not in METRICS:
        raise ConfigError(
            f"unknown metric {name!r}; choose from {sorted(dict.keys(METRICS))} or "
            f"frac_<m>_lt_<threshold> with <m> in {list(PER_SAMPLE)}"
        )
    return METRICS[name]


def compute_metrics(
    pred, true, names: Sequence[str] = ("mae", "mse", "rmse", "r2", "wd"), spacing: float = 1.0
) -> dict[str, float]:
    """Every named metric on ``(N, L)`` arrays; an unknown name raises :class:`ConfigError`."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ConfigError(
            f"unknown metric(s) {unknown}; choose from {sorted(dict.keys(METRICS))} or "
            f"frac_<m>_lt_<threshold> with <m> in {list(PER_SAMPLE)}"
        )
    p, t = _np(pred), _np(true)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred {p.shape} and true {t.shape} must both be (N, L)")
    return {n: METRICS[n](p, t, spacing=spacing) for n in names}


def _group_key(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (bytes, np.bytes_)):
        return v.decode()
    return str(v.item() if hasattr(v, "item") else v)


def grouped_metrics(
    pred,
    true,
    groups: Mapping[str, Any],
    names: Sequence[str] = ("mae", "rmse", "r2"),
    spacing: float = 1.0,
) -> dict[str, dict[str, dict[str, float]]]:
    """Every metric broken down by group (DOSTransformer Table 5, ALIGNN-DOS per crystal system).

    Args:
        pred, true: ``(N, L)`` native-unit spectra.
        groups: column name → ``(N,)`` labels (e.g. ``n_species``, ``crystal_system``).
        names: metric names as in :func:`compute_metrics`.
        spacing: grid spacing for ``wd``.

    Returns:
        ``{column: {group_value (str): {metric: value, 'n': count}}}``; group values are sorted
        and stringified (``2.0`` → ``"2"``). Counts of each column sum to N. ``r2`` needs at least
        two materials in a group (NaN otherwise) and, as :func:`r2`, leaves out the grid points
        that are constant *within the group*; the other metrics are defined for any size ≥ 1.
    """
    p, t = _np(pred), _np(true)
    if p.shape != t.shape or p.ndim != 2:
        raise ValueError(f"pred {p.shape} and true {t.shape} must both be (N, L)")
    for n in names:
        get_metric(n)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for col, labels in groups.items():
        lab = np.asarray(labels)
        if lab.shape != (p.shape[0],):
            raise ValueError(
                f"group column {col!r} has shape {lab.shape}, expected ({p.shape[0]},)"
            )
        keys = np.array([_group_key(v) for v in lab], dtype=object)
        res: dict[str, dict[str, float]] = {}
        for g in _sorted_keys(set(keys.tolist())):
            idx = np.flatnonzero(keys == g)
            vals = {n: METRICS[n](p[idx], t[idx], spacing=spacing) for n in names}
            vals["n"] = int(idx.size)
            res[g] = vals
        out[col] = res
    return out


def _sorted_keys(keys: set[str]) -> list[str]:
    def key(k: str) -> tuple[int, float, str]:
        try:
            x = float(k)
            return (0, x, k) if math.isfinite(x) else (1, 0.0, k)
        except ValueError:
            return (1, 0.0, k)

    return sorted(keys, key=key)
