"""Figures drawn from the files a run wrote (never from live training state).

Per run (from ``predictions.npz``):

* :func:`plot_quartile_examples` — one test material per error quartile (ALIGNN-DOS Fig. 4c);
  written by ``dos-train`` into every run directory.
* :func:`plot_quantile_examples` — the same for any number of quantiles and several models on the
  same test set (Mat2Spec Fig. 3: quintiles, materials chosen in the intersection of the models'
  quintiles).
* :func:`plot_error_histogram` — histograms of the per-material MAE and of the relative error,
  both shaded by quartile (ALIGNN-DOS Figs. 4a-b, 5a-b).
* :func:`plot_periodic_table_gap` — periodic table shaded by the mean non-zero band gap read off
  the *predicted* spectra of the binary test compounds containing each element (ALIGNN-DOS Fig. 6).

Per predicted crystal (``dos-predict``): :func:`plot_predicted_spectrum`, with E_F and the
predicted band gap (VBM-CBM) marked for eDOS.

Per table (from a :class:`dos_bench.tables.TableResult`, see ``dos-tables --plots``):

* :func:`plot_radar` — one polygon per model over min-max normalised metrics, best outward
  (Mat2Spec Fig. 5).
* :func:`plot_datasize` — metric vs training-set fraction (Mat2Spec Fig. 4).

**Units.** Every axis label and every number in a title comes from one helper,
:func:`spectrum_units` (rules in its docstring), fed from what a run wrote:
:func:`run_spectrum_units` (``predictions.npz``, ``metrics.json``, ``config_resolved.yaml``) or
:func:`checkpoint_spectrum_units` (``dos-predict``). :meth:`SpectrumUnits.metric_unit` gives the
unit of each spectrum or derived metric (tables, ``dos-evaluate``).

Every figure is written atomically as PNG (:func:`dos_bench.io.atomic_write`); the PNG carries a
``dos_bench`` text chunk (JSON: per axes its labels, title, marked lines/spans and y ticks), read
back with :func:`figure_info`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.io import DataError, atomic_write

__all__ = [
    "SpectrumUnits",
    "band_gaps_from_predictions",
    "checkpoint_spectrum_units",
    "figure_info",
    "periodic_table_gap_unavailable",
    "plot_datasize",
    "plot_error_histogram",
    "plot_periodic_table_gap",
    "plot_predicted_spectrum",
    "plot_quantile_examples",
    "plot_quartile_examples",
    "plot_radar",
    "run_spectrum_units",
    "spectrum_units",
]

log = logging.getLogger("dos_bench.plots")

_QUARTILE_COLOURS = ("#2b83ba", "#abdda4", "#fdae61", "#d7191c")
_MODEL_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:purple", "tab:orange", "tab:brown")
#: PNG text key holding the JSON summary of a figure's axes (see :func:`figure_info`)
PNG_INFO_KEY = "dos_bench"


# ============================================================================ units
#: per-material normalisations (target_repr class) -> the unit of the spectra in that space
_NORMALISATIONS = {
    "maxnorm": "max-normalised",
    "max_norm": "max-normalised",
    "sumnorm": "sum-normalised: Σ over the grid = 1",
    "sum_norm": "sum-normalised: Σ over the grid = 1",
    "minmax": "min-max normalised",
    "min_max": "min-max normalised",
    "standard": "z-score per grid point",
    "valencenorm": "states/eV/electron",
    "valence_norm": "states/eV/electron",
}
_NOT_NORMALISED = {"", "raw", "none", "native"}
_REFERENCES = {
    "fermi": "fermi",
    "e_fermi": "fermi",
    "efermi": "fermi",
    "e_f": "fermi",
    "band_edges": "band_edges",
    "band edges": "band_edges",
    "band_edge": "band_edges",
    "band-edge": "band_edges",
    "vbm": "vbm",
    "cbm": "cbm",
    "absolute": "absolute",
}
_X_REF = {
    "fermi": r"$E - E_\mathrm{F}$",
    "band_edges": r"$E - E_\mathrm{edge}$",
    "vbm": r"$E - E_\mathrm{VBM}$",
    "cbm": r"$E - E_\mathrm{CBM}$",
    "absolute": "$E$",
}
_ZERO_MARK = {"fermi": "E_F", "band_edges": "VBM | CBM", "vbm": "VBM", "cbm": "CBM"}
_DIMENSIONLESS = ("r2", "r2_per_sample", "re", "metal_accuracy")


def _pretty_energy_unit(unit: Any) -> str:
    u = "" if unit is None else str(unit).strip()
    low = u.lower().replace(" ", "")
    if low in ("cm^-1", "cm-1", "1/cm", "cm⁻¹", "cm^{-1}", "invcm"):
        return "cm⁻¹"
    if low == "thz":
        return "THz"
    if low == "mev":
        return "meV"
    if low == "ev":
        return "eV"
    return u


def _pretty_dos_unit(unit: Any) -> str:
    u = "" if unit is None else str(unit).strip()
    if u.lower() in ("", "none", "native", "normalised", "normalized"):
        return ""
    u = u.replace("^-1", "⁻¹").replace("^{-1}", "⁻¹").replace("cm-1", "cm⁻¹")
    return u.replace("valence electron", "electron")


def _infer_kind(kind: Any, energy_unit: str) -> str:
    k = "" if kind is None else str(kind).strip().lower()
    if k in ("edos", "phdos"):
        return k
    if energy_unit in ("eV", "meV"):
        return "edos"
    if energy_unit in ("cm⁻¹", "THz"):
        return "phdos"
    return ""


def _class_key(target: Any) -> str:
    """``dos_bench.data.transforms.MaxNorm`` / ``MaxNorm`` / ``max_norm`` -> ``maxnorm``/..."""
    if target is None:
        return ""
    s = str(target).strip()
    return s.rsplit(".", 1)[-1].lower()


@dataclass(frozen=True)
class SpectrumUnits:
    """What a spectrum's axes are: built by :func:`spectrum_units` (see the rules there)."""

    kind: str = ""  # edos | phdos | "" (unknown)
    energy_unit: str = ""  # eV, cm⁻¹, THz, ... ("" = not recorded)
    dos_unit: str = ""  # unit of the spectra ("" = not recorded)
    reference: str = ""  # eDOS: fermi | band_edges | vbm | cbm | absolute
    normalised: bool = False  # per-material normalised (not the dataset's native scale)
    physical: bool = False  # dos_unit is a physical unit (states/eV/..., modes/cm⁻¹/...)

    @property
    def xlabel(self) -> str:
        e = self.energy_unit
        if self.kind == "phdos":
            return f"frequency ({e or 'grid units'})"
        if self.kind == "edos":
            text = f"{_X_REF.get(self.reference, 'E − ' + self.reference)} ({e or 'eV'}"
            return text + ("; gap removed)" if self.reference == "band_edges" else ")")
        return f"E ({e})" if e else "grid point"

    @property
    def xlabel_plain(self) -> str:
        """:attr:`xlabel` without mathtext, for text output (tables, logs)."""
        plain = {
            r"$E - E_\mathrm{F}$": "E − E_F",
            r"$E - E_\mathrm{edge}$": "E − E_edge",
            r"$E - E_\mathrm{VBM}$": "E − E_VBM",
            r"$E - E_\mathrm{CBM}$": "E − E_CBM",
            "$E$": "E",
        }
        text = self.xlabel
        for k, v in plain.items():
            text = text.replace(k, v)
        return text

    @property
    def ylabel(self) -> str:
        prefix = {"edos": "DOS", "phdos": "phonon DOS"}.get(self.kind, "spectrum")
        unit = re.sub(r"\s*\(([^)]*)\)", r", \1", self.dos_unit)  # no nested parentheses
        return f"{prefix} ({unit or 'unit not recorded'})"

    @property
    def zero_marker(self) -> str | None:
        """Name of the energy at 0 on the grid (eDOS), or None (phDOS, absolute energies)."""
        return _ZERO_MARK.get(self.reference) if self.kind == "edos" else None

    @property
    def value_unit(self) -> str:
        """The spectrum unit for numbers (MAE in titles): physical units without their
        parenthesised qualifiers; '' for normalised or unknown scales."""
        if not self.physical:
            return ""
        return re.sub(r"\s*\([^)]*\)", "", self.dos_unit).strip()

    @property
    def value_suffix(self) -> str:
        """What follows a spectrum-valued number: ``states/eV/cell``, ``(max-normalised)`` or
        '' when the unit is unknown."""
        if self.value_unit:
            return self.value_unit
        return f"({self.dos_unit})" if self.dos_unit else ""

    def fmt(self, value: float, spec: str = ".3g") -> str:
        """A spectrum-valued number with its unit: ``1.97 states/eV/cell``, ``0.031
        (max-normalised)``, or the bare number when the unit is unknown."""
        text = format(float(value), spec)
        return f"{text} {self.value_suffix}" if self.value_suffix else text

    def metric_unit(self, name: str) -> str:
        """Unit of a spectrum metric (:mod:`dos_bench.metrics`) or derived metric
        (:mod:`dos_bench.evaluate`) named ``name`` ('' = dimensionless, ``count`` for counts)."""
        n = name.split("/")[-1].lower()
        cut = n.index("_lt_") if "_lt_" in n else len(n)
        n = n[n.rfind(".", 0, cut) + 1 :]  # test.mae -> mae, test.frac_mae_lt_0.02 -> frac_...
        dos = self.value_unit or (self.dos_unit and f"{self.dos_unit} units") or "DOS units"
        energy = self.energy_unit or "grid units"
        if n.startswith("frac_") or "_frac_" in n or n in _DIMENSIONLESS:
            return ""
        if n.startswith("vbgap_"):
            return "count" if n.startswith("vbgap_n_") else ""
        if n.endswith("_n") or n.startswith("n_"):
            return "count"
        if n.startswith(("band_gap_", "fermi_rmse")):
            return "eV"
        if n == "cv_mae":
            return "J/(K·mol)"
        if n == "cv_mse":
            return "(J/(K·mol))²"
        if n == "omega_mae":  # dos-evaluate converts the grid to cm⁻¹ first
            return "cm⁻¹"
        if n == "omega_mse":
            return "(cm⁻¹)²"
        if n in ("wd",):
            return energy
        if n in ("mse",):
            return f"({dos})²"
        if n in ("mae", "rmse", "multimae", "dos_at_ef_mae", "loss"):
            return dos
        return ""


def spectrum_units(
    kind: str | None = None,
    energy_unit: str | None = None,
    dos_unit: str | None = None,
    reference: str | None = None,
    normalisation: str | None = None,
    grid: Any = None,
) -> SpectrumUnits:
    """The one rule for spectrum axes, used by every figure (runs, tables, ``dos-predict``).

    * **kind**: ``edos`` / ``phdos``; if not given, from the energy unit (eV → eDOS, cm⁻¹ or THz →
      phDOS).
    * **x axis**: phDOS → ``frequency (cm⁻¹)``. eDOS by energy ``reference``: ``fermi`` (also
      ``e_fermi``) → ``E − E_F (eV)``; ``band_edges`` (Mat2Spec/Xtal2DoS 128-bin grid: 4 eV
      below the VBM and above the CBM, gap removed) → ``E − E_edge (eV; gap removed)``; ``vbm``
      / ``cbm`` → ``E − E_VBM`` / ``E − E_CBM``; ``absolute`` → ``E (eV)``. Not recorded: the
      band-edge grid is recognised by its bins (:func:`dos_bench.physics.is_band_edge_grid`),
      any other eDOS grid is E_F-relative (the ``dos-evaluate`` default).
    * **y axis**: ``DOS (<unit>)`` (eDOS) or ``phonon DOS (<unit>)``. ``normalisation`` (the
      target representation, when the spectra are in its per-material space, i.e.
      ``metric_space: normalised`` or a normalised ``dos-predict`` output): ``max_norm`` →
      max-normalised, ``sum_norm`` → sum-normalised (Σ over the grid = 1), ``min_max`` → min-max
      normalised, ``standard`` → z-score per grid point, ``valence_norm`` → states/eV/electron.
      Otherwise the dataset's native ``dos_unit`` (``^-1`` written ⁻¹; JARVIS "valence electron"
      written "electron": states/eV/electron); ``unit not recorded`` when nothing says.
    * **numbers** (MAE in titles, table metrics): :meth:`SpectrumUnits.fmt`,
      :meth:`SpectrumUnits.metric_unit` — MAE/RMSE in the y unit, MSE in its square, WD and ω̄
      in the x unit, band gaps and E_F in eV, C_V in J/(K·mol), R², RE and fractions without.
    """
    eu = _pretty_energy_unit(energy_unit)
    k = _infer_kind(kind, eu)
    if k == "edos" and not eu:
        eu = "eV"
    norm = _class_key(normalisation)
    if norm == "autoencoder":  # the caller should pass the inner transform; say what we know
        norm = "normalised"
    if norm and norm not in _NOT_NORMALISED:
        unit = _NORMALISATIONS.get(norm, "normalised")
        if unit == "states/eV/electron" and k == "phdos":
            unit = "per valence electron"
        normalised = True
    else:
        unit = _pretty_dos_unit(dos_unit)
        normalised = False
    low = unit.lower()
    physical = (
        bool(unit)
        and "/" in unit
        and not any(w in low for w in ("normalised", "normalized", "z-score", "σ", "per valence"))
    )
    ref = ""
    if k == "edos":
        r = "" if reference is None else str(reference).strip()
        key = r.lower().split(";")[0].split("(")[0].strip()
        if key in _REFERENCES:
            ref = _REFERENCES[key]
        elif key.startswith(("band edge", "band_edge")):
            ref = "band_edges"
        elif key:
            ref = key
        if not ref:
            ref = "fermi"
            if grid is not None:
                from dos_bench.physics import is_band_edge_grid

                if is_band_edge_grid(np.asarray(grid, dtype=float)):
                    ref = "band_edges"
    return SpectrumUnits(
        kind=k,
        energy_unit=eu,
        dos_unit=unit,
        reference=ref,
        normalised=normalised,
        physical=physical,
    )


def _read_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    for name in ("config_resolved.yaml", ".hydra/config.yaml"):
        p = run_dir / name
        if p.is_file():
            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8"))
            except (yaml.YAMLError, OSError):
                continue
            if isinstance(data, dict):
                return data
    return {}


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _recipe_reference(recipe: Any) -> str | None:
    """Energy reference set by a dataset recipe, None when the recipe does not say."""
    if not isinstance(recipe, Mapping):
        return None
    target = _class_key(recipe.get("_target_"))
    if target == "bandedgerecipe":
        return "band_edges"
    if "reference" in recipe:
        ref = recipe.get("reference")
        return "absolute" if ref in (None, "", "null") else str(ref)
    return None


def _normalisation_of(config: Mapping[str, Any]) -> str | None:
    """The target representation the spectra are expressed in, when it is not native."""
    tr = config.get("target_repr") if isinstance(config, Mapping) else None
    if not isinstance(tr, Mapping):
        return None
    target = _class_key(tr.get("_target_"))
    if target == "autoencoder":
        target = _class_key(_get(tr, "inner", "_target_")) or "normalised"
    return target


def _config_units_info(config: Mapping[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {}
    kind = _get(config, "dataset", "kind")
    if kind:
        info["kind"] = kind
    for path in (("dataset", "recipe"), ("data", "recipe")):
        ref = _recipe_reference(_get(config, *path))
        if ref is not None:
            info["reference"] = ref
            break
    if str(config.get("metric_space", "native")) == "normalised":
        info["normalisation"] = _normalisation_of(config)
    return info


def run_spectrum_units(run: str | Path, config: Mapping[str, Any] | None = None) -> SpectrumUnits:
    """:func:`spectrum_units` of a run directory or its ``predictions.npz``.

    Sources, first found wins: ``predictions.npz`` (``energy_unit``, ``dos_unit``,
    ``energy_reference``, ``kind``, the grid), ``metrics.json`` (``kind``, ``units.energy``,
    ``units.dos``, ``units.energy_reference``), ``config_resolved.yaml`` / ``.hydra/config.yaml``
    (``dataset.kind``, the dataset recipe's ``reference`` or ``BandEdgeRecipe``, and
    ``metric_space: normalised`` with ``target_repr``, which puts the stored spectra in the
    representation's per-material units). ``config``: the run's configuration when already
    read (not read again).
    """
    p = Path(run)
    run_dir = p if p.is_dir() else p.parent
    npz = p if p.is_file() else run_dir / "predictions.npz"
    info: dict[str, Any] = {}
    grid = None
    if npz.is_file():
        try:
            with np.load(npz, allow_pickle=False) as z:
                for key in ("energy_unit", "dos_unit", "energy_reference", "kind"):
                    if key in z.files and str(z[key]):
                        info[key] = str(z[key])
                grid = np.asarray(z["energies"]) if "energies" in z.files else None
        except (OSError, ValueError):
            pass
    mpath = run_dir / "metrics.json"
    if mpath.is_file():
        try:
            m = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            m = {}
        if isinstance(m, dict):
            units = m.get("units") if isinstance(m.get("units"), dict) else {}
            for key, val in (
                ("kind", m.get("kind")),
                ("energy_unit", units.get("energy")),
                ("dos_unit", units.get("dos")),
                ("energy_reference", units.get("energy_reference") or units.get("reference")),
            ):
                if val and key not in info:
                    info[key] = val
    cfg_info = _config_units_info(config if config is not None else _read_config(run_dir))
    info.setdefault("kind", cfg_info.get("kind"))
    return spectrum_units(
        kind=info.get("kind"),
        energy_unit=info.get("energy_unit"),
        dos_unit=info.get("dos_unit"),
        reference=info.get("energy_reference") or cfg_info.get("reference"),
        normalisation=cfg_info.get("normalisation"),
        grid=grid,
    )


def checkpoint_spectrum_units(
    config: Mapping[str, Any] | Any, meta: Mapping[str, Any], normalised: bool
) -> SpectrumUnits:
    """:func:`spectrum_units` of ``dos-predict`` output: ``config`` and ``meta`` are the
    checkpoint's ``dos_bench_config`` / ``dos_bench_meta``; ``normalised`` = the spectra are in
    the target representation's per-material units (``Predictor.normalised``)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(config):
            config = OmegaConf.to_container(config, resolve=False)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    cfg = config if isinstance(config, Mapping) else {}
    info = _config_units_info(cfg)
    norm = (_normalisation_of(cfg) or "normalised") if normalised else None
    return spectrum_units(
        kind=meta.get("kind") or info.get("kind"),
        energy_unit=meta.get("energy_unit"),
        dos_unit=meta.get("dos_unit"),
        reference=meta.get("energy_reference") or info.get("reference"),
        normalisation=norm,
        grid=meta.get("grid"),
    )


# ============================================================================ figure plumbing
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
        raise DataError(f"{png}: no {PNG_INFO_KEY!r} text chunk (not written by dos_bench.plots)")
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


# ============================================================================ run figures
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


# ============================================================================ predict figures
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
                from dos_bench.physics import band_gaps

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


# ============================================================================ band gaps
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


# ============================================================================ table figures
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
