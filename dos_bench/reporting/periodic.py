"""Periodic table shaded by the mean non-zero band gap read off the *predicted* spectra of the
binary test compounds containing each element (ALIGNN-DOS Fig. 6)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dos_bench.physics import band_gaps
from dos_bench.reporting.plotting import _load, _pyplot, _save
from dos_bench.reporting.units import run_spectrum_units

__all__ = [
    "band_gaps_from_predictions",
    "periodic_table_gap_unavailable",
    "plot_periodic_table_gap",
]

log = logging.getLogger(__name__)


def band_gaps_from_predictions(energies: np.ndarray, dos: np.ndarray) -> np.ndarray:
    """Band gaps of spectra ``(N, L)`` on an E_F-relative grid
    (:func:`dos_bench.physics.band_gaps`: 1 % of each spectrum's max counts as non-zero)."""
    gaps, _, _ = band_gaps(np.asarray(energies, dtype=float), np.asarray(dos, dtype=float))
    return np.asarray(gaps, dtype=float).reshape(-1)


def periodic_table_gap_unavailable(
    predictions: str | Path, formula_key: str | None = None
) -> str | None:
    """Why :func:`plot_periodic_table_gap` cannot be drawn from these predictions, or None."""
    d = _load(predictions)
    units = run_spectrum_units(predictions)
    if units.kind == "phdos":
        return "phonon DOS: no band gap"
    if units.kind == "edos" and units.reference != "fermi":
        what = {"band_edges": "the band-edge grid has the gap removed"}.get(
            units.reference, f"the grid is referenced to {units.reference}, not E_F"
        )
        return f"{what}: no band gap can be read off the spectra"
    keys = [formula_key] if formula_key else ["meta_formula", "group_formula"]
    if not any(k in d for k in keys if k):
        return f"no formula array ({' / '.join(k for k in keys if k)}) in {predictions}"
    return None


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
    Formulas come from the ``meta_formula`` (or ``group_formula``) array of ``predictions.npz``.
    Where the figure does not apply (:func:`periodic_table_gap_unavailable`: no formulas, not an
    eDOS, a grid not referenced to E_F) it is skipped (returns ``None``, with a log message).
    """
    from pymatgen.core import Composition

    reason = periodic_table_gap_unavailable(predictions, formula_key)
    if reason is not None:
        log.warning("%s: periodic-table figure skipped: %s", Path(out).name, reason)
        return None
    d = _load(predictions)
    keys = [formula_key] if formula_key else ["meta_formula", "group_formula"]
    key = next(k for k in keys if k and k in d)
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
    n_gapped = sum(
        1
        for f, g in zip(d[key].astype(str), gaps, strict=True)
        if _n_elements(f) == 2 and np.isfinite(g) and g > 0
    )
    if not means:
        ax.text(
            10.0,
            -5.5,
            "no binary test compound has a non-zero predicted band gap",
            ha="center",
            va="center",
            fontsize=10,
            color="tab:red",
        )
    ax.set_title(
        (title + "\n" if title else "")
        + f"mean non-zero predicted band gap of binary compounds ({n_gapped} of {n_bin} binary "
        "test materials with a predicted gap > 0)",
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
