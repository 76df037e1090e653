"""Derived physical quantities of predicted vs true spectra (:func:`derived_metrics`).

Computed for every run's test set (``metrics.json["derived"]``, :mod:`dos_bench.training.results`)
and again from a finished run's files by ``dos-evaluate`` (:mod:`dos_bench.evaluate`).

Derived quantities (:func:`derived_metrics`, flat keys):

* eDOS (docs/papers/alignn_dos.md §1.5, docs/papers/dostransformer.md §2.6, docs/papers/mat2spec.md
§4.5)
  * ``band_gap_mae`` — MAE (eV) between band gaps read off the predicted and the true spectra
    (ALIGNN-DOS §5; both with :func:`dos_bench.physics.band_gaps`), over materials where both are
    defined (``band_gap_n``); ``band_gap_mae_vs_dft`` against ``meta['band_gap']`` if present;
    ``metal_accuracy`` — agreement of the metal / non-metal call (DOS(E_F) > tolerance).
  * ``dos_at_ef_mae`` and ``dos_at_ef_frac_err_lt_<thr>`` (ALIGNN-DOS §5: 90 % below 0.02).
  * ``vbgap_precision``, ``vbgap_recall``, ``vbgap_f1``, ``vbgap_n_true``, ``vbgap_n_pred``
    (Mat2Spec Table 2).
  * ``fermi_rmse`` — the frozen :class:`~dos_bench.physics.FermiProbe` on the predicted spectra
    vs the true Fermi energy (DOSTransformer A.2), and ``fermi_rmse_true`` — the same probe on the
    true spectra (the probe's own floor).
* phDOS (Mat2Spec Table 1, docs/papers/mat2spec.md §4.5): ``cv_mae``, ``cv_mse`` (C_V(300 K),
J/(K·mol of
  cells), needs ``meta['n_atoms']``), ``omega_mae``, ``omega_mse`` (ω̄, cm⁻¹).

On the gap-removed band-edge grid (Mat2Spec/Xtal2DoS 128 bins) a band gap and the DOS at E_F
cannot be read off the spectrum, so those are skipped there and the VB-gap scores computed
instead; on E_F-centred grids it is the other way round. The ``band_gap``, ``dos_at_ef`` and
``vb_gap`` settings (``True``/``False``) override this.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from dos_bench.io import ConfigError, DataError
from dos_bench.physics import (
    CM1_TO_THZ,
    FermiProbe,
    average_frequency,
    band_gaps,
    classification_scores,
    dos_at_fermi,
    heat_capacity,
    is_band_edge_grid,
    vb_gap_flags,
)

__all__ = ["DEFAULT_SETTINGS", "PH_UNITS", "derived_metrics"]

log = logging.getLogger(__name__)

#: settings of :func:`derived_metrics` and their defaults
DEFAULT_SETTINGS: dict[str, Any] = {
    # eDOS energy reference: 'fermi' = the grid is E_F-relative (E_F at 0, every dataset so far);
    # 'absolute' = absolute energies, E_F of each material in meta[e_fermi_column]
    "reference": "fermi",
    "e_fermi_column": "e_fermi",
    # band gap / metal call (physics.band_gaps): threshold = gap_tol × max (relative) or gap_tol
    "gap_tol": 0.01,
    "gap_tol_relative": True,
    "dos_at_ef_threshold": 0.02,
    # None = decide from the grid (see module docstring); True/False forces
    "band_gap": None,
    "dos_at_ef": None,
    "vb_gap": None,
    # Mat2Spec VB-gap criteria (physics.vb_gap_flags)
    "vb_threshold": 1.0,
    "vb_min_width": 1.0,
    "vb_upper_min": -1.0,
    "vb_upper_max": -0.25,
    "vb_require_lower_edge": True,
    # Fermi probe target column: None = 'e_fermi_abs' if present, else 'e_fermi'
    "fermi_column": None,
    # phonons
    "cv_temperature": 300.0,
    "cv_convention": "pymatgen",
    "cv_zero_freq": "limit",
    "freq_unit": "cm^-1",
}

#: phonon frequency units of the grid and their factor to cm^-1
PH_UNITS = {"cm^-1": 1.0, "cm-1": 1.0, "1/cm": 1.0, "cm⁻¹": 1.0, "thz": 1.0 / CM1_TO_THZ}


def _settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    s = dict(DEFAULT_SETTINGS)
    unknown = sorted(set(settings or {}) - set(s))
    if unknown:
        raise ConfigError(f"unknown evaluation setting(s) {unknown}; known: {sorted(s)}")
    s.update(settings or {})
    if s["reference"] not in ("fermi", "absolute"):
        raise ConfigError(
            f"evaluation setting reference must be 'fermi' or 'absolute', got {s['reference']!r}"
        )
    return s


def _pair_errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """(MAE, MSE, count) over the pairs where both values are finite."""
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return float("nan"), float("nan"), 0
    d = a[ok] - b[ok]
    return float(np.mean(np.abs(d))), float(np.mean(d**2)), int(ok.sum())


def _column(meta: Mapping[str, Any], name: str, n: int) -> np.ndarray | None:
    if name not in meta:
        return None
    try:
        col = np.asarray(meta[name], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"metadata column {name!r} is not numeric") from None
    if col.shape != (n,):
        raise DataError(f"metadata column {name!r} has shape {col.shape}, expected ({n},)")
    return col


def _edos(
    p: np.ndarray,
    t: np.ndarray,
    e: np.ndarray,
    meta: Mapping[str, Any],
    s: dict[str, Any],
    probe: FermiProbe | None,
) -> dict[str, float]:
    n = p.shape[0]
    out: dict[str, float] = {}
    band_edge = is_band_edge_grid(e)
    if s["reference"] == "fermi":
        ef: np.ndarray | None = np.zeros(n)
    else:
        ef = _column(meta, s["e_fermi_column"], n)
        if ef is None:
            log.warning(
                "reference='absolute' but no meta[%r]: no band gap / DOS(E_F)", s["e_fermi_column"]
            )

    do_gap = (not band_edge) if s["band_gap"] is None else bool(s["band_gap"])
    do_ef = (not band_edge) if s["dos_at_ef"] is None else bool(s["dos_at_ef"])
    do_vb = band_edge if s["vb_gap"] is None else bool(s["vb_gap"])

    if do_gap and ef is not None:
        kw = {"tol": s["gap_tol"], "relative": s["gap_tol_relative"]}
        gp, _, _ = band_gaps(e, p, ef, **kw)
        gt, _, _ = band_gaps(e, t, ef, **kw)
        out["band_gap_mae"], _, out["band_gap_n"] = _pair_errors(gp, gt)
        dft = _column(meta, "band_gap", n)
        if dft is not None:
            out["band_gap_mae_vs_dft"] = _pair_errors(gp, dft)[0]
        ok = np.isfinite(gp) & np.isfinite(gt)
        out["metal_accuracy"] = (
            float(np.mean((gp[ok] == 0) == (gt[ok] == 0))) if ok.any() else float("nan")
        )
    if do_ef and ef is not None:
        dp, dt = dos_at_fermi(e, p, ef), dos_at_fermi(e, t, ef)
        out["dos_at_ef_mae"] = _pair_errors(dp, dt)[0]
        err = np.abs(dp - dt)
        thr = s["dos_at_ef_threshold"]
        with np.errstate(invalid="ignore"):
            out[f"dos_at_ef_frac_err_lt_{thr:g}"] = float(np.mean(np.isfinite(err) & (err < thr)))
    if do_vb:
        kw = {
            "threshold": s["vb_threshold"],
            "min_width": s["vb_min_width"],
            "upper_min": s["vb_upper_min"],
            "upper_max": s["vb_upper_max"],
            "require_lower_edge": s["vb_require_lower_edge"],
        }
        fp, ft = vb_gap_flags(e, p, **kw), vb_gap_flags(e, t, **kw)
        out.update({f"vbgap_{k}": v for k, v in classification_scores(fp, ft).items()})
        out["vbgap_n_true"], out["vbgap_n_pred"] = int(ft.sum()), int(fp.sum())
    if probe is not None:
        col = s["fermi_column"] or ("e_fermi_abs" if "e_fermi_abs" in meta else "e_fermi")
        target = _column(meta, col, n)
        if target is None:
            log.warning("a Fermi probe was given but no meta[%r]: no fermi_rmse", col)
        else:
            out["fermi_rmse"] = probe.rmse(p, target)
            out["fermi_rmse_true"] = probe.rmse(t, target)
    return out


def _phdos(
    p: np.ndarray, t: np.ndarray, f: np.ndarray, meta: Mapping[str, Any], s: dict[str, Any]
) -> dict[str, float]:
    n = p.shape[0]
    unit = str(s["freq_unit"]).strip().lower()
    if unit not in PH_UNITS:
        raise ConfigError(
            f"evaluation setting freq_unit {s['freq_unit']!r} is not one of {sorted(PH_UNITS)}"
        )
    f_cm1 = f * PH_UNITS[unit]
    out: dict[str, float] = {}
    n_atoms = _column(meta, "n_atoms", n)
    if n_atoms is None:
        log.warning("phDOS without meta['n_atoms']: no heat capacity")
    else:
        kw: dict[str, Any] = {"T": s["cv_temperature"], "convention": s["cv_convention"]}
        if s["cv_convention"] == "e3nn":
            kw["n_species"] = _column(meta, "n_species", n)
            if kw["n_species"] is None:
                raise DataError("cv_convention='e3nn' needs meta['n_species']")
        else:
            kw["zero_freq"] = s["cv_zero_freq"]
        cp, ct = heat_capacity(f_cm1, p, n_atoms, **kw), heat_capacity(f_cm1, t, n_atoms, **kw)
        out["cv_mae"], out["cv_mse"], _ = _pair_errors(cp, ct)
    wp, wt = average_frequency(f_cm1, p), average_frequency(f_cm1, t)
    out["omega_mae"], out["omega_mse"], _ = _pair_errors(wp, wt)
    return out


def derived_metrics(
    pred: Any,
    true: Any,
    energies: Any,
    kind: str,
    meta: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    fermi_probe: FermiProbe | None = None,
) -> dict[str, float]:
    """Derived physical quantities of predicted vs true spectra, where their inputs exist.

    Args:
        pred, true: ``(N, L)`` spectra in native units (states/eV for the VB gap criteria).
        energies: the grid ``(L,)`` (eV for eDOS, ``settings['freq_unit']`` for phDOS).
        kind: ``'edos'`` or ``'phdos'``.
        meta: per-material ``(N,)`` columns: ``e_fermi`` (absolute grids), ``e_fermi_abs`` /
            ``e_fermi`` (Fermi-probe target), ``band_gap`` (DFT gap), ``n_atoms`` (C_V),
            ``n_species`` (e3nn C_V convention).
        settings: overrides of :data:`DEFAULT_SETTINGS`.
        fermi_probe: a fitted :class:`~dos_bench.physics.FermiProbe` (trained on the *train*
            ground truth of the same grid) or None.

    Returns:
        Flat ``{name: value}`` (see the module docstring); NaN where no material qualifies.
    """
    s = _settings(settings)
    p = np.asarray(pred, dtype=np.float64)
    t = np.asarray(true, dtype=np.float64)
    e = np.asarray(energies, dtype=np.float64)
    if p.shape != t.shape or p.ndim != 2 or e.shape != (p.shape[1],):
        raise ValueError(f"pred {p.shape}, true {t.shape} and grid {e.shape} do not match")
    meta = meta or {}
    if kind == "edos":
        return _edos(p, t, e, meta, s, fermi_probe)
    if kind == "phdos":
        return _phdos(p, t, e, meta, s)
    raise ConfigError(f"kind must be 'edos' or 'phdos', got {kind!r}")
