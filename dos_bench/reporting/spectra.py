"""Spectrum figures: predicted vs true spectra by error quantile (runs), and one predicted
spectrum (``dos-predict``).

* :func:`plot_quartile_examples` — one test material per error quartile (ALIGNN-DOS Fig. 4c);
  written by ``dos-train`` into every run directory.
* :func:`plot_quantile_examples` — the same for any number of quantiles and several models on the
  same test set (Mat2Spec Fig. 3: quintiles, materials chosen in the intersection of the models'
  quintiles).
* :func:`plot_predicted_spectrum` — one predicted crystal, with E_F and the predicted band gap
  (VBM-CBM) marked for eDOS.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.io import DataError
from dos_bench.physics import band_gaps
from dos_bench.reporting.plotting import (
    _MODEL_COLOURS,
    _load,
    _mark_zero,
    _pyplot,
    _save,
    _zero_positions,
)
from dos_bench.reporting.units import SpectrumUnits, run_spectrum_units

__all__ = ["plot_predicted_spectrum", "plot_quantile_examples", "plot_quartile_examples"]

log = logging.getLogger(__name__)


def plot_quartile_examples(
    predictions: str | Path,
    out: str | Path,
    seed: int = 0,
    units: SpectrumUnits | None = None,
) -> Path:
    """Predicted vs true spectra for one test material per error quartile (ALIGNN-DOS Fig. 4).

    Args:
        predictions: a ``predictions.npz`` written by ``dos-train``.
        out: the PNG to write (atomically).
        seed: which material of each quartile is drawn.
        units: axis units (default: :func:`run_spectrum_units` of the run).
    """
    return plot_quantile_examples(
        [("predicted", predictions)], out, n_quantiles=4, seed=seed, units=units
    )


def plot_quantile_examples(
    predictions: str | Path | Sequence[tuple[str, str | Path]],
    out: str | Path,
    n_quantiles: int = 5,
    seed: int = 0,
    units: SpectrumUnits | None = None,
    title: str | None = None,
) -> Path:
    """One test material per MAE quantile, true spectrum and every model's prediction.

    Mat2Spec Fig. 3 / S1: the test set is cut into ``n_quantiles`` by per-material MAE for each
    model; the material of quantile q is drawn from the *intersection* of the models' q-th
    quantiles (materials of comparable relative difficulty for all models), or from the first
    model's quantile when the intersection is empty. Q1 = the lowest errors. eDOS panels mark
    E_F (or the band edges of the gap-removed grid) with a dashed line.

    Args:
        predictions: one ``predictions.npz`` or ``[(label, path), ...]`` over the same test set.
        out: the PNG to write.
        n_quantiles: 4 = quartiles (ALIGNN-DOS), 5 = quintiles (Mat2Spec).
        seed: which material of each quantile set is drawn.
        units: axis units (default: :func:`run_spectrum_units` of the first file).
        title: optional figure title.
    """
    if n_quantiles < 1:
        raise ValueError(f"n_quantiles must be >= 1, got {n_quantiles}")
    if isinstance(predictions, (str, Path)):
        predictions = [("predicted", predictions)]
    predictions = list(predictions)
    models = [(label, _load(p)) for label, p in predictions]
    if not models:
        raise ValueError("no predictions given")
    if units is None:
        units = run_spectrum_units(predictions[0][1])
        others = {run_spectrum_units(p).ylabel for _, p in predictions[1:]} - {units.ylabel}
        if others:
            log.warning(
                "%s: the models' spectra are in different units (%s vs %s); axes use the first",
                Path(out).name,
                units.ylabel,
                ", ".join(sorted(others)),
            )
    ref = models[0][1]
    common = set(ref["ids"].astype(str).tolist())
    for _, d in models[1:]:
        common &= set(d["ids"].astype(str).tolist())
    if not common:
        raise DataError("the prediction files share no test material ids")
    ids = np.array(sorted(common))
    aligned = []
    ref_pos = {k: i for i, k in enumerate(ref["ids"].astype(str).tolist())}
    zero_all = _zero_positions(units, ref)
    zeros = None if zero_all is None else zero_all[np.array([ref_pos[k] for k in ids])]
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
    fig, axes = plt.subplots(1, n_quantiles, figsize=(3.9 * n_quantiles, 3.5), squeeze=False)
    index = {k: i for i, k in enumerate(ids.tolist())}
    qname = {4: "quartile", 5: "quintile"}.get(n_quantiles, "quantile")
    for q, ax in enumerate(axes[0]):
        cands = set.intersection(*(qs[q] for qs in qsets)) or qsets[0][q]
        if not cands:
            ax.set_axis_off()
            continue
        mat = str(rng.choice(sorted(cands)))
        i = index[mat]
        ax.fill_between(grid, true[i], color="0.88", lw=0)
        ax.plot(grid, true[i], color="k", lw=1.5, label="true")
        for k, (label, _, pred) in enumerate(aligned):
            ax.plot(
                grid, pred[i], color=_MODEL_COLOURS[k % len(_MODEL_COLOURS)], lw=1.1, label=label
            )
        if zeros is not None:
            _mark_zero(ax, units, float(zeros[i]))
        errs = ", ".join(format(float(e[i]), ".3g") for e in maes)
        unit = units.value_suffix
        ax.set_title(f"{qname} {q + 1}: {mat}\nMAE {errs}{' ' + unit if unit else ''}", fontsize=8)
        ax.set_xlabel(units.xlabel)
        ax.set_ylabel(units.ylabel if q == 0 else "")
        ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
        if q == 0:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def plot_predicted_spectrum(
    grid: Any,
    spectrum: Any,
    out: str | Path,
    units: SpectrumUnits,
    title: str = "",
    band_gap: float | None = None,
    vbm: float | None = None,
    cbm: float | None = None,
) -> Path:
    """One predicted spectrum (``dos-predict``); axes from :func:`checkpoint_spectrum_units`.

    eDOS on an E_F-relative grid: a dashed line at E_F and, when ``band_gap`` is given (the CSV's
    ``band_gap_eV``), the gap VBM-CBM shaded and stated in the legend (``vbm``/``cbm`` default to
    the edges :func:`dos_bench.physics.band_gaps` finds on this spectrum, the rule that gave the
    gap); 0 is stated as "metal". The gap-removed band-edge grid marks VBM | CBM at 0.
    """
    e = np.asarray(grid, dtype=float)
    y = np.asarray(spectrum, dtype=float)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    ax.plot(e, y, color="tab:red", lw=1.2, label="predicted")
    ax.fill_between(e, y, color="tab:red", alpha=0.2, lw=0)
    if units.zero_marker:
        _mark_zero(ax, units, 0.0)
    gap_ok = band_gap is not None and np.isfinite(band_gap)
    if units.kind == "edos" and units.reference == "fermi" and gap_ok:
        if band_gap > 0:
            if vbm is None or cbm is None or not (np.isfinite(vbm) and np.isfinite(cbm)):
                _, v, c = band_gaps(e, y[None, :], 0.0)
                vbm, cbm = float(np.asarray(v).ravel()[0]), float(np.asarray(c).ravel()[0])
            if np.isfinite(vbm) and np.isfinite(cbm) and cbm > vbm:
                gap_label = f"gap {band_gap:.2f} eV (VBM {vbm:.2f}, CBM {cbm:.2f})"
                ax.axvspan(
                    vbm, cbm, color="tab:blue", alpha=0.15, lw=0, gid="band_gap", label=gap_label
                )
            else:
                ax.plot([], [], " ", label=f"gap {band_gap:.2f} eV")
        else:
            ax.plot([], [], " ", label="metal (DOS at E_F > 0)")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(units.xlabel)
    ax.set_ylabel(units.ylabel)
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out, dpi=100)
