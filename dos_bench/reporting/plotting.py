"""Figure plumbing shared by every figure: pyplot (Agg), the atomic PNG writer with its axes
summary, reading it back (:func:`figure_info`), loading ``predictions.npz`` and E_F markers.

Every figure is written atomically as PNG (:func:`dos_bench.io.atomic_write`); the PNG carries a
``dos_bench`` text chunk (JSON: per axes its labels, title, marked lines/spans and y ticks), read
back with :func:`figure_info`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.io import DataError, atomic_write
from dos_bench.reporting.units import SpectrumUnits

__all__ = ["PNG_INFO_KEY", "figure_info"]

_QUARTILE_COLOURS = ("#2b83ba", "#abdda4", "#fdae61", "#d7191c")
_MODEL_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")
#: PNG text key holding the JSON summary of a figure's axes (see :func:`figure_info`)
PNG_INFO_KEY = "dos_bench"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes_summary(fig: Any) -> dict[str, Any]:
    """Labels, titles, marked lines/spans (artists with a ``gid``) and y ticks of every axes."""
    axes = []
    for ax in fig.get_axes():
        lo, hi = sorted(ax.get_ylim())
        ticks = [float(t) for t in ax.get_yticks() if lo - 1e-9 <= t <= hi + 1e-9]
        marks = []
        for art in list(ax.lines) + list(ax.patches):
            gid = art.get_gid()
            if not gid:
                continue
            entry: dict[str, Any] = {"gid": gid, "label": str(art.get_label())}
            if hasattr(art, "get_xdata"):  # a line (axvline: x constant)
                xs = np.atleast_1d(np.asarray(art.get_xdata(), dtype=float))
                entry["x"] = [float(xs.min()), float(xs.max())] if xs.size else []
            elif hasattr(art, "get_x") and hasattr(art, "get_width"):  # axvspan rectangle
                x0, w = float(art.get_x()), float(art.get_width())
                entry["x"] = [min(x0, x0 + w), max(x0, x0 + w)]
            marks.append(entry)
        legend = ax.get_legend()
        axes.append(
            {
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "title": ax.get_title(),
                "marks": marks,
                "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                "yticks": ticks,
            }
        )
    suptitle = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else ""
    return {"suptitle": suptitle, "axes": axes}


def _save(fig: Any, out: str | Path, dpi: int = 110) -> Path:
    plt = _pyplot()
    out = Path(out)
    info = json.dumps(_axes_summary(fig), ensure_ascii=True)
    with atomic_write(out) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight", metadata={PNG_INFO_KEY: info})
    plt.close(fig)
    return out


def figure_info(png: str | Path) -> dict[str, Any]:
    """The axes summary stored in a PNG written here: ``{'suptitle', 'axes': [{'xlabel',
    'ylabel', 'title', 'marks': [{'gid', 'label', 'x'}], 'legend', 'yticks'}]}``; ``marks`` are
    the lines and spans with a ``gid`` (``E_F``, ``VBM | CBM``, ``band_gap``, ``threshold``)."""
    from PIL import Image

    with Image.open(png) as im:
        text = im.text.get(PNG_INFO_KEY) if hasattr(im, "text") else None
    if text is None:
        raise DataError(f"{png}: no {PNG_INFO_KEY!r} text chunk (not written by dos_bench)")
    return json.loads(text)


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


def _zero_positions(units: SpectrumUnits, data: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Per material, where the eDOS marker line goes: 0 on referenced grids, the material's
    ``meta_e_fermi`` on absolute grids (None when there is nothing to mark)."""
    n = len(data["ids"])
    if units.zero_marker:
        return np.zeros(n)
    if units.kind == "edos" and units.reference == "absolute" and "meta_e_fermi" in data:
        ef = np.asarray(data["meta_e_fermi"], dtype=float)
        return ef if ef.shape == (n,) else None
    return None


def _mark_zero(ax: Any, units: SpectrumUnits, x: float | None) -> None:
    """Vertical line at E_F (or the band edges of the gap-removed grid) on an eDOS axes."""
    if x is None or not np.isfinite(x):
        return
    name = units.zero_marker or "E_F"
    label = {"E_F": r"$E_\mathrm{F}$", "VBM | CBM": "VBM | CBM (gap removed)"}.get(name, name)
    ax.axvline(float(x), color="0.35", ls="--", lw=0.9, gid=name, label=label, zorder=1)


def _integer_counts(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
