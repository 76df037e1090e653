"""Re-evaluate a finished run: spectrum metrics, group breakdowns and derived physical quantities.

``python -m dos_bench.evaluate <run_dir> [<run_dir> ...]`` re-reads each run's
``predictions.npz`` (and ``metrics.json`` if present), recomputes the spectrum metrics of
:mod:`dos_bench.metrics`, the per-group breakdown (DOSTransformer Table 5) and the derived
quantities of :mod:`dos_bench.physics`, and prints a short table. With
``--jarvis-submission OUT_DIR`` it also writes the run's JARVIS-Leaderboard phonon-DOS submission
(:func:`dos_bench.leaderboard.submission_from_run`).

Derived quantities (:func:`derived_metrics`, flat keys):

* eDOS (facts.md §1.5, §2.6, §4.5)
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
* phDOS (Mat2Spec Table 1, facts.md §4.5): ``cv_mae``, ``cv_mse`` (C_V(300 K), J/(K·mol of
  cells), needs ``meta['n_atoms']``), ``omega_mae``, ``omega_mse`` (ω̄, cm⁻¹).

On the gap-removed band-edge grid (Mat2Spec/Xtal2DoS 128 bins) a band gap and the DOS at E_F
cannot be read off the spectrum, so those are skipped there and the VB-gap scores computed
instead; on E_F-centred grids it is the other way round. The ``band_gap``, ``dos_at_ef`` and
``vb_gap`` settings (``True``/``False``) override this.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.io import ConfigError, DataError, load_json_file, load_npz_file
from dos_bench.metrics import METRICS, compute_metrics, grouped_metrics
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

__all__ = ["DEFAULT_SETTINGS", "DEFAULT_METRICS", "derived_metrics", "evaluate_run", "main"]

log = logging.getLogger("dos_bench.evaluate")

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

#: spectrum metrics :func:`evaluate_run` computes by default
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "edos": (
        "mae",
        "mse",
        "rmse",
        "r2",
        "r2_per_sample",
        "wd",
        "re",
        "frac_mae_lt_0.02",
        "frac_re_lt_0.2",
    ),
    "phdos": ("mae", "mse", "rmse", "r2", "r2_per_sample", "wd"),
}

_PH_UNITS = {"cm^-1": 1.0, "cm-1": 1.0, "1/cm": 1.0, "cm⁻¹": 1.0, "thz": 1.0 / CM1_TO_THZ}


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
    if unit not in _PH_UNITS:
        raise ConfigError(
            f"evaluation setting freq_unit {s['freq_unit']!r} is not one of {sorted(_PH_UNITS)}"
        )
    f_cm1 = f * _PH_UNITS[unit]
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


# ============================================================================ runs
def _infer_kind(energy_unit: str | None, metrics: Mapping[str, Any]) -> str:
    if metrics.get("kind") in ("edos", "phdos"):
        return str(metrics["kind"])
    units = metrics.get("units") or {}
    for u in (energy_unit, units.get("energy") if isinstance(units, dict) else None):
        if not u:
            continue
        u = str(u).strip()
        if u.lower() == "ev":
            return "edos"
        if u.lower() in _PH_UNITS:
            return "phdos"
    raise DataError(
        f"cannot tell eDOS from phDOS: energy unit {energy_unit!r} is neither 'eV' nor "
        "'cm^-1' and metrics.json has no 'kind'; pass kind="
    )


def _grid_step(e: np.ndarray) -> float:
    d = np.diff(e)
    if d.size == 0:
        return 1.0
    if not np.allclose(d, d[0], rtol=1e-4, atol=1e-9):
        raise DataError("the stored grid is not uniform; pass spacing= explicitly")
    return float(d[0])


def evaluate_run(
    run_dir: str | Path,
    settings: Mapping[str, Any] | None = None,
    names: Sequence[str] | None = None,
    kind: str | None = None,
    spacing: float | None = None,
) -> dict[str, Any]:
    """Recompute the metrics of a finished run from its ``predictions.npz`` (+ ``metrics.json``).

    ``predictions.npz`` keys: ``ids``, ``energies``, ``true``, ``pred``, ``energy_unit``,
    ``group_<col>`` (labels for :func:`~dos_bench.metrics.grouped_metrics`), ``meta_<col>``
    (numeric columns for :func:`derived_metrics`) and optionally ``spacing``. ``kind`` comes
    from the argument, ``metrics.json['kind']`` or the energy unit ('eV' → eDOS, 'cm^-1' →
    phDOS); the WD spacing from the argument, the file's ``spacing`` or the grid step.
    No Fermi probe is fitted here (that needs the training spectra).

    Returns:
        ``{'run_dir', 'dataset', 'model', 'kind', 'n_test', 'spacing', 'metrics', 'grouped',
        'derived', 'stored_test'}`` — ``stored_test`` is ``metrics.json['test']`` for comparison.
    """
    run_dir = Path(run_dir)
    npz_path = run_dir / "predictions.npz"
    if not npz_path.is_file():
        raise DataError(f"{npz_path}: no predictions.npz (is {run_dir} a finished run?)")
    data = load_npz_file(npz_path)  # a truncated or corrupt file: one DataError naming it
    missing = [k for k in ("energies", "true", "pred") if k not in data]
    if missing:
        raise DataError(f"{npz_path}: missing array(s) {missing}")
    mpath = run_dir / "metrics.json"
    stored: dict[str, Any] = load_json_file(mpath) if mpath.is_file() else {}
    if not isinstance(stored, dict):
        raise DataError(f"{mpath}: the file is damaged (expected a JSON object)")

    e = np.asarray(data["energies"], dtype=np.float64)
    pred = np.asarray(data["pred"], dtype=np.float64)
    true = np.asarray(data["true"], dtype=np.float64)
    unit = str(data["energy_unit"]) if "energy_unit" in data else None
    kind = kind or _infer_kind(unit, stored)
    if spacing is None:
        spacing = float(data["spacing"]) if "spacing" in data else _grid_step(e)
    if names is None:
        names = list(DEFAULT_METRICS.get(kind, DEFAULT_METRICS["edos"]))
        names += [k for k in stored.get("test", {}) if k not in names and k in METRICS]
    meta = {k[len("meta_") :]: data[k] for k in data if k.startswith("meta_")}
    groups = {k[len("group_") :]: data[k] for k in data if k.startswith("group_")}
    s = dict(settings or {})
    if kind == "phdos" and unit and "freq_unit" not in s and unit.lower() == "thz":
        s["freq_unit"] = "THz"
    return {
        "run_dir": str(run_dir),
        "dataset": stored.get("dataset"),
        "model": stored.get("model"),
        "kind": kind,
        "n_test": int(pred.shape[0]),
        "spacing": spacing,
        "metrics": compute_metrics(pred, true, list(names), spacing=spacing),
        "grouped": grouped_metrics(pred, true, groups, list(names), spacing=spacing),
        "derived": derived_metrics(pred, true, e, kind, meta, s),
        "stored_test": stored.get("test"),
    }


# ============================================================================ CLI
def _fmt(v: Any) -> str:
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def format_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Metrics (rows) × runs (columns), spectrum metrics first, then derived quantities."""
    rows: list[str] = []
    for r in results:
        for k in list(r["metrics"]) + list(r["derived"]):
            if k not in rows:
                rows.append(k)
    heads = [f"{r.get('model') or Path(r['run_dir']).name}" for r in results]
    subs = [f"{r.get('dataset') or r['kind']} (n={r['n_test']})" for r in results]
    w0 = max([len(k) for k in rows] + [6])
    w = max([len(h) for h in heads + subs] + [10]) + 2
    lines = [
        f"{'':<{w0}}" + "".join(f"{h:>{w}}" for h in heads),
        f"{'':<{w0}}" + "".join(f"{h:>{w}}" for h in subs),
    ]
    for k in rows:
        vals = []
        for r in results:
            v = r["metrics"].get(k, r["derived"].get(k))
            vals.append("-" if v is None else _fmt(v))
        lines.append(f"{k:<{w0}}" + "".join(f"{v:>{w}}" for v in vals))
    return "\n".join(lines)


def _job_key(p: Path) -> tuple:
    """Sort multirun jobs by their number (``10_...`` after ``9_...``), then by name."""
    head = p.name.split("_", 1)[0]
    return (0, int(head), p.name) if head.isdigit() else (1, 0, p.name)


def expand_run_dirs(dirs: Sequence[Path]) -> list[Path]:
    """Each directory as its runs: a run directory (``predictions.npz``) stands for itself; a
    multirun (or any folder) for the runs found below it, in job order, without descending
    into a run. A directory with neither is kept, so :func:`evaluate_run` names it."""
    out: list[Path] = []
    for d in map(Path, dirs):
        if (d / "predictions.npz").is_file() or not d.is_dir():
            out.append(d)
            continue
        found = sorted(
            (p.parent for p in d.rglob("predictions.npz") if ".hydra" not in p.parts),
            key=lambda p: (len(p.relative_to(d).parts), _job_key(p)),
        )
        runs = [r for r in found if not any(o != r and o in r.parents for o in found)]
        out.extend(runs or [d])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dos_bench.evaluate RUN_DIR [RUN_DIR ...] [--metrics m1,m2] [--json FILE]``."""
    ap = argparse.ArgumentParser(
        prog="dos-evaluate",
        description=(
            "Recompute the metrics and derived physics of finished runs from their files\n"
            "(predictions.npz), in native units; a multirun directory stands for its runs.\n\n"
            "examples:\n"
            "  dos-evaluate outputs/runs/<date>/<run>              # one run\n"
            "  dos-evaluate outputs/multiruns/<date>/<time> --groups   # every run, per group\n"
            "  dos-evaluate <run> --jarvis-submission contribution/    # JARVIS-Leaderboard CSV"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("run_dirs", nargs="+", type=Path, help="run directories (predictions.npz)")
    ap.add_argument("--metrics", help="comma-separated spectrum metric names (default: per kind)")
    ap.add_argument("--kind", choices=("edos", "phdos"), help="override the inferred kind")
    ap.add_argument("--spacing", type=float, help="grid spacing for WD (default: grid step)")
    ap.add_argument("--reference", choices=("fermi", "absolute"), help="eDOS energy reference")
    ap.add_argument("--gap-tol", type=float, help="band-gap threshold (relative to max)")
    ap.add_argument(
        "--gap-tol-absolute",
        action="store_true",
        help="interpret --gap-tol as an absolute DOS value",
    )
    ap.add_argument("--groups", action="store_true", help="also print the per-group breakdown")
    ap.add_argument("--json", type=Path, help="write all results to this JSON file")
    ap.add_argument(
        "--jarvis-submission",
        type=Path,
        metavar="OUT_DIR",
        help="also write the JARVIS-Leaderboard phonon-DOS submission "
        "(AI-Spectra-ph_dos-edos_pdos-test-multimae.csv.zip) of the run into OUT_DIR "
        "(one run only; see dos_bench/leaderboard.py)",
    )
    ap.add_argument(
        "--jarvis-benchmark",
        type=Path,
        metavar="FILE",
        help="benchmark edos_pdos_ph_dos.json(.zip) to check the test ids against and score "
        "with (default: the run's dataset.source.benchmark under paths.data_dir)",
    )
    ap.add_argument(
        "--jarvis-metadata",
        type=Path,
        metavar="FILE",
        help="YAML/JSON with the leaderboard metadata.json keys (team_name, author_email, ...); "
        "writes OUT_DIR/metadata.json",
    )
    args = ap.parse_args(argv)
    if args.jarvis_submission is None and (args.jarvis_benchmark or args.jarvis_metadata):
        ap.error("--jarvis-benchmark/--jarvis-metadata need --jarvis-submission")
    if args.jarvis_submission is not None and len(args.run_dirs) != 1:
        ap.error("--jarvis-submission takes exactly one run directory")

    settings: dict[str, Any] = {}
    if args.reference:
        settings["reference"] = args.reference
    if args.gap_tol is not None:
        settings["gap_tol"] = args.gap_tol
    if args.gap_tol_absolute:
        settings["gap_tol_relative"] = False
    names = [n.strip() for n in args.metrics.split(",") if n.strip()] if args.metrics else None
    results = []
    run_dirs = expand_run_dirs(args.run_dirs)
    if args.jarvis_submission is not None and len(run_dirs) != 1:
        ap.error(f"--jarvis-submission takes exactly one run; {len(run_dirs)} found")
    try:
        for d in run_dirs:
            results.append(evaluate_run(d, settings, names, args.kind, args.spacing))
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(results))
    if args.groups:
        for r in results:
            for col, res in r["grouped"].items():
                print(f"\n{r.get('model') or r['run_dir']} by {col}:")
                keys = [k for k in next(iter(res.values()), {}) if k != "n"]
                w = {k: max(12, len(k) + 2) for k in keys}
                print(f"{'group':<16}{'n':>6}" + "".join(f"{k:>{w[k]}}" for k in keys))
                for g, vals in res.items():
                    cells = "".join(f"{_fmt(vals[k]):>{w[k]}}" for k in keys)
                    print(f"{g:<16}{vals['n']:>6}" + cells)
    if args.json:
        from dos_bench.io import write_json

        try:
            write_json(args.json, results)
        except DataError as exc:  # StorageError: disk full, read-only, ...
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.jarvis_submission is not None:
        from dos_bench.leaderboard import submission_from_run

        try:
            sub = submission_from_run(
                args.run_dirs[0],
                args.jarvis_submission,
                benchmark=args.jarvis_benchmark,
                metadata=args.jarvis_metadata,
            )
        except (ConfigError, DataError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"\nJARVIS-Leaderboard submission: {sub['path']} ({sub['n']} rows)")
        print(f"multimae of the written file: {sub['multimae']:.6g}")
        board = sub["leaderboard"]
        if board is not None:
            print(f"multimae against the benchmark file: {board['multimae']:.6g}")
        if sub["metadata"]:
            print(f"metadata: {sub['metadata']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
