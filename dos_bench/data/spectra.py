"""Spectrum recipes: from a raw spectrum on a fine grid to a paper's representation grid.

Each paper fixes its own grid and alignment (docs/README.md §0):

* ALIGNN-DOS (§3): 300 points, −5…9.95 eV in 0.05 eV steps, Fermi level at 0, interpolated.
* DOSTransformer (A.1.2): 201 points, −5…5 eV, 0.05 eV, Fermi level at 0, Savitzky–Golay
  smoothing (window 17, order 1).
* Mat2Spec / Xtal2DoS (Mat2Spec Methods): 128 bins from 4 eV below the valence-band maximum to
  4 eV above the conduction-band minimum with the gap removed, DOS averaged in each bin.
* Phonons (E3NN, Mat2Spec, DOSTransformer): 51 points 0…1000 cm⁻¹ in 20 cm⁻¹ steps.

A recipe is a small object with ``grid`` (the representation's energies, shape ``(L,)``) and
``apply(rs) -> (N, L)``. Raw spectra must lie on a *uniform* grid (every source resamples to one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dos_bench.data.records import RecordSet, check_spectra
from dos_bench.io import ConfigError, DataError

__all__ = [
    "GridRecipe",
    "BandEdgeRecipe",
    "NativeRecipe",
    "interp_rows",
    "bin_average_rows",
    "savgol_rows",
]


def _uniform_step(energies: np.ndarray) -> float:
    d = np.diff(energies)
    if d.size == 0 or not np.allclose(d, d[0], rtol=1e-4, atol=1e-9) or d[0] <= 0:
        raise DataError("raw spectra must lie on a uniform, increasing grid")
    return float(d[0])


def interp_rows(energies: np.ndarray, spectra: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Linear interpolation of every row at its own points (zero outside the raw grid).

    Args:
        energies: uniform raw grid ``(M,)``.
        spectra: raw spectra ``(N, M)``.
        points: absolute energies to sample, ``(N, L)`` (or ``(L,)`` for all rows).

    Returns:
        ``(N, L)`` float64.
    """
    step = _uniform_step(energies)
    n, m = spectra.shape
    points = np.broadcast_to(np.asarray(points, dtype=np.float64), (n, np.shape(points)[-1]))
    f = (points - energies[0]) / step
    i0 = np.floor(f).astype(np.int64)
    w = f - i0
    inside = (i0 >= 0) & (i0 <= m - 1)
    i0c = np.clip(i0, 0, m - 1)
    i1c = np.clip(i0 + 1, 0, m - 1)
    rows = np.arange(n)[:, None]
    out = (1.0 - w) * spectra[rows, i0c] + w * spectra[rows, i1c]
    return np.where(inside, out, 0.0)


def _cumulative(energies: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """Running trapezoid integral, same shape as ``spectra`` (first column zero)."""
    step = _uniform_step(energies)
    c = np.zeros_like(spectra, dtype=np.float64)
    c[:, 1:] = np.cumsum(0.5 * (spectra[:, 1:] + spectra[:, :-1]) * step, axis=1)
    return c


def bin_average_rows(energies: np.ndarray, spectra: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of each row over its own bins: ``(C(e_{k+1}) − C(e_k)) / (e_{k+1} − e_k)``.

    Args:
        energies: uniform raw grid ``(M,)``.
        spectra: ``(N, M)``.
        edges: bin edges ``(N, L + 1)`` in absolute energy (or ``(L + 1,)`` shared).

    Returns:
        ``(N, L)``; the integral over the bins is preserved exactly (up to the trapezoid rule).
    """
    n = spectra.shape[0]
    edges = np.broadcast_to(np.asarray(edges, dtype=np.float64), (n, np.shape(edges)[-1]))
    cum = _cumulative(energies, spectra)
    # C outside the grid: constant continuation (0 below, total above)
    c_at = interp_rows(energies, cum, edges)
    below = edges < energies[0]
    above = edges > energies[-1]
    c_at = np.where(below, 0.0, c_at)
    c_at = np.where(above, cum[:, -1:], c_at)
    width = np.diff(edges, axis=1)
    return np.diff(c_at, axis=1) / width


def savgol_rows(y: np.ndarray, window: int, order: int) -> np.ndarray:
    """Savitzky–Golay smoothing along the grid (DOSTransformer A.1.2 uses window 17, order 1)."""
    from scipy.signal import savgol_filter

    if window > y.shape[1]:
        raise ConfigError(f"savgol window {window} is longer than the grid ({y.shape[1]} points)")
    return savgol_filter(y, window_length=window, polyorder=order, axis=1)


class GridRecipe:
    """Sample every raw spectrum on a uniform grid, optionally relative to a reference energy.

    Args:
        start: first grid point (eV or cm⁻¹, relative to ``reference`` if given).
        step: grid spacing.
        n_points: number of points ``L``; the grid is ``start + step * arange(L)``.
        reference: name of a metadata column holding each record's reference energy (``e_fermi``
            for eDOS); ``None`` for an absolute grid (phonons).
        method: ``interp`` (value at each point, ALIGNN-DOS §3) or ``bin_average`` (mean over a bin
            of width ``step`` centred on each point).
        savgol_window, savgol_order: Savitzky–Golay smoothing after sampling (0 = off).
        clip_negative: set negative values after smoothing to zero (smoothing can undershoot).

    Shapes:
        ``apply``: RecordSet with N records → ``(N, n_points)``.
    """

    def __init__(
        self,
        start: float,
        step: float,
        n_points: int,
        reference: str | None = None,
        method: str = "interp",
        savgol_window: int = 0,
        savgol_order: int = 1,
        clip_negative: bool = True,
    ) -> None:
        if n_points < 2:
            raise ConfigError(f"dataset.recipe.n_points must be >= 2, got {n_points}")
        if step <= 0:
            raise ConfigError(f"dataset.recipe.step must be > 0, got {step}")
        if method not in ("interp", "bin_average"):
            raise ConfigError(
                f"dataset.recipe.method must be 'interp' or 'bin_average', got {method!r}"
            )
        self.start, self.step, self.n_points = float(start), float(step), int(n_points)
        self.reference, self.method = reference, method
        self.savgol_window, self.savgol_order = int(savgol_window), int(savgol_order)
        self.clip_negative = clip_negative

    @property
    def grid(self) -> np.ndarray:
        return self.start + self.step * np.arange(self.n_points)

    @property
    def spacing(self) -> float:
        return self.step

    def key(self) -> dict[str, Any]:
        return {"type": "grid", **{k: v for k, v in vars(self).items()}}

    def apply(self, rs: RecordSet) -> np.ndarray:
        n = len(rs)
        if self.reference is None:
            ref = np.zeros((n, 1))
        else:
            if self.reference not in rs.meta:
                raise DataError(
                    f"dataset {rs.attrs.get('name', '?')}: recipe needs the metadata column "
                    f"{self.reference!r}, which the records do not have"
                )
            ref = rs.meta[self.reference].astype(np.float64)[:, None]
            if not np.isfinite(ref).all():
                bad = rs.ids[int(np.argmin(np.isfinite(ref[:, 0])))]
                raise DataError(f"record {bad}: reference energy {self.reference!r} is not finite")
        spectra = rs.spectra.astype(np.float64)
        if self.method == "interp":
            y = interp_rows(rs.energies, spectra, self.grid[None, :] + ref)
        else:
            edges = self.start - 0.5 * self.step + self.step * np.arange(self.n_points + 1)
            y = bin_average_rows(rs.energies, spectra, edges[None, :] + ref)
        if self.savgol_window:
            y = savgol_rows(y, self.savgol_window, self.savgol_order)
        if self.clip_negative:
            y = np.maximum(y, 0.0)
        y = y.astype(np.float32)
        check_spectra(y, rs.ids, f"dataset {rs.attrs.get('name', '?')} after recipe: ")
        return y


class BandEdgeRecipe:
    """Mat2Spec / Xtal2DoS eDOS: ``window`` eV below the VBM and above the CBM, gap removed.

    The valence window ``[VBM − w, VBM]`` and the conduction window ``[CBM, CBM + w]`` are glued
    (Mat2Spec Methods, "removing the band gap") and divided into ``n_bins`` equal bins (128 in the
    papers, 0.0625 eV each for w = 4 eV) in which the DOS is averaged. Metals have VBM = CBM = E_F.
    The grid reported is the bin centres ``−w + (k + ½)·2w/n_bins`` (docs/papers/mat2spec.md §4.5).
    """

    def __init__(self, window: float = 4.0, n_bins: int = 128, vbm: str = "vbm", cbm: str = "cbm"):
        if n_bins % 2:
            raise ConfigError(f"dataset.recipe.n_bins must be even, got {n_bins}")
        if window <= 0:
            raise ConfigError(f"dataset.recipe.window must be > 0, got {window}")
        self.window, self.n_bins, self.vbm, self.cbm = float(window), int(n_bins), vbm, cbm

    @property
    def spacing(self) -> float:
        return 2 * self.window / self.n_bins

    @property
    def grid(self) -> np.ndarray:
        return -self.window + (np.arange(self.n_bins) + 0.5) * self.spacing

    def key(self) -> dict[str, Any]:
        return {"type": "band_edge", **vars(self)}

    def apply(self, rs: RecordSet) -> np.ndarray:
        for col in (self.vbm, self.cbm):
            if col not in rs.meta:
                raise DataError(
                    f"dataset {rs.attrs.get('name', '?')}: band-edge recipe needs the metadata "
                    f"column {col!r}, which the records do not have"
                )
        vbm = rs.meta[self.vbm].astype(np.float64)[:, None]
        cbm = rs.meta[self.cbm].astype(np.float64)[:, None]
        bad = ~(np.isfinite(vbm) & np.isfinite(cbm) & (cbm >= vbm))[:, 0]
        if bad.any():
            raise DataError(
                f"record {rs.ids[int(np.argmax(bad))]}: band edges are missing or CBM < VBM"
            )
        half = self.n_bins // 2
        rel = np.arange(half + 1) * self.spacing  # 0 .. window
        vb_edges = vbm - self.window + rel[None, :]
        cb_edges = cbm + rel[None, :]
        spectra = rs.spectra.astype(np.float64)
        y = np.concatenate(
            [
                bin_average_rows(rs.energies, spectra, vb_edges),
                bin_average_rows(rs.energies, spectra, cb_edges),
            ],
            axis=1,
        )
        y = np.maximum(y, 0.0).astype(np.float32)
        check_spectra(y, rs.ids, f"dataset {rs.attrs.get('name', '?')} after recipe: ")
        return y


class NativeRecipe:
    """Use the spectra exactly as stored (sources already on a paper's grid, e.g. Mat2Spec's
    ``total_dos_128.npy`` or the 51-point phonon table).

    Args:
        spacing: grid spacing for the Wasserstein distance; ``None`` = the stored grid's step.
    """

    def __init__(self, spacing: float | None = None) -> None:
        self._spacing = spacing
        self._grid: np.ndarray | None = None

    @property
    def grid(self) -> np.ndarray:
        if self._grid is None:
            raise RuntimeError("NativeRecipe.grid is known only after apply()")
        return self._grid

    @property
    def spacing(self) -> float:
        if self._spacing is not None:
            return float(self._spacing)
        return float(np.mean(np.diff(self.grid)))

    def key(self) -> dict[str, Any]:
        return {"type": "native", "spacing": self._spacing}

    def apply(self, rs: RecordSet) -> np.ndarray:
        self._grid = np.asarray(rs.energies, dtype=np.float64)
        y = rs.spectra.astype(np.float32)
        check_spectra(y, rs.ids, f"dataset {rs.attrs.get('name', '?')}: ")
        return y
