"""Axis labels and units of spectra and metrics: the one rule every figure and table uses.

:func:`spectrum_units` (rules in its docstring) is fed from what a run wrote:
:func:`run_spectrum_units` (``predictions.npz``, ``metrics.json``, ``config_resolved.yaml``) or
:func:`checkpoint_spectrum_units` (``dos-predict``). :meth:`SpectrumUnits.metric_unit` gives the
unit of each spectrum or derived metric (tables, ``dos-evaluate``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SpectrumUnits",
    "checkpoint_spectrum_units",
    "run_spectrum_units",
    "spectrum_units",
]


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
