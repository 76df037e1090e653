"""``dos-evaluate``: re-evaluate finished runs from their files.

``python -m dos_bench.evaluate <run_dir> [<run_dir> ...]`` re-reads each run's
``predictions.npz`` (and ``metrics.json`` if present), recomputes the spectrum metrics of
:mod:`dos_bench.metrics`, the per-group breakdown (DOSTransformer Table 5) and the derived
quantities of :mod:`dos_bench.derived` (band gap, DOS at E_F, VB-gap scores, C_V, mean
frequency; see there), and prints a short table with the unit of every row
(:meth:`dos_bench.reporting.units.SpectrumUnits.metric_unit` of the run's spectra: the spectrum
unit for MAE/RMSE, its square for MSE, the grid unit for WD, eV for band gaps and E_F,
J/(K·mol) for C_V, cm⁻¹ for ω̄). With ``--jarvis-submission OUT_DIR`` it also
writes the run's JARVIS-Leaderboard phonon-DOS submission
(:func:`dos_bench.reporting.leaderboard.submission_from_run`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.derived import DEFAULT_SETTINGS, PH_UNITS, derived_metrics
from dos_bench.io import ConfigError, DataError, load_json_file, load_npz_file
from dos_bench.metrics import METRICS, compute_metrics, grouped_metrics

__all__ = ["DEFAULT_SETTINGS", "DEFAULT_METRICS", "derived_metrics", "evaluate_run", "main"]

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
        if u.lower() in PH_UNITS:
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
        'derived', 'units', 'stored_test'}`` — ``units`` maps every metric and derived quantity
        to its unit (:func:`metric_units`), ``stored_test`` is ``metrics.json['test']`` for
        comparison.
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
    metrics = compute_metrics(pred, true, list(names), spacing=spacing)
    derived = derived_metrics(pred, true, e, kind, meta, s)
    return {
        "run_dir": str(run_dir),
        "dataset": stored.get("dataset"),
        "model": stored.get("model"),
        "kind": kind,
        "n_test": int(pred.shape[0]),
        "spacing": spacing,
        "metrics": metrics,
        "grouped": grouped_metrics(pred, true, groups, list(names), spacing=spacing),
        "derived": derived,
        "units": metric_units(run_dir, [*metrics, *derived], kind),
        "stored_test": stored.get("test"),
    }


def metric_units(run_dir: str | Path, names: Sequence[str], kind: str | None = None) -> dict:
    """``{name: unit}`` for metric and derived-quantity names of a run, from its spectrum units
    (:func:`dos_bench.reporting.units.run_spectrum_units`; ``kind`` when the files do not say):
    ``fraction`` for ``frac_*``, ``count`` for counts, ``–`` for dimensionless values (R², RE,
    accuracies, precision/recall/F1)."""
    from dataclasses import replace

    from dos_bench.reporting.units import run_spectrum_units

    units = run_spectrum_units(run_dir)
    if not units.kind and kind:
        units = replace(units, kind=kind)
    out = {}
    for n in names:
        low = n.lower()
        u = units.metric_unit(n)
        if not u:
            u = "fraction" if low.startswith("frac_") or "_frac_" in low else "–"
        out[n] = u
    return out


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
    units = {k: _row_unit(k, results) for k in rows}
    w0 = max([len(k) for k in rows] + [6])
    wu = max([len(u) for u in units.values()] + [4]) + 2
    w = max([len(h) for h in heads + subs] + [10]) + 2
    lines = [
        f"{'':<{w0}}  {'unit':<{wu}}" + "".join(f"{h:>{w}}" for h in heads),
        f"{'':<{w0}}  {'':<{wu}}" + "".join(f"{h:>{w}}" for h in subs),
    ]
    for k in rows:
        vals = []
        for r in results:
            v = r["metrics"].get(k, r["derived"].get(k))
            vals.append("-" if v is None else _fmt(v))
        lines.append(f"{k:<{w0}}  {units[k]:<{wu}}" + "".join(f"{v:>{w}}" for v in vals))
    return "\n".join(lines)


def _row_unit(name: str, results: Sequence[Mapping[str, Any]]) -> str:
    """The unit of one table row: the runs' common unit, else each run's unit in column order
    (``states/eV/cell | modes/cm⁻¹/cell``) over the runs that have the row."""
    seen: list[str] = []
    for r in results:
        if name in r["metrics"] or name in r["derived"]:
            u = (r.get("units") or {}).get(name, "?")
            if u not in seen:
                seen.append(u)
    return " | ".join(seen)


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
        from dos_bench.reporting.leaderboard import submission_from_run

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
