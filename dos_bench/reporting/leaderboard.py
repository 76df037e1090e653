"""JARVIS-Leaderboard phonon-DOS benchmark: the submission file, its metadata, the score.

Facts (read in ``usnistgov/jarvis_leaderboard`` at commit ``57afc55``; nothing copied):

* **Benchmark** ``jarvis_leaderboard/benchmarks/AI/Spectra/edos_pdos_ph_dos.json.zip`` — a zip
  holding ``edos_pdos_ph_dos.json``, a dict ``{"train": {jid: "v1;v2;...;v66"}, "val": ...,
  "test": ...}`` of 11,395 / 1,424 / 1,424 JARVIS ids. Each value is one spectrum: 66
  ``;``-joined floats in [0, 1], maximum 1 per spectrum. The grid is −300 … 1000 cm⁻¹ in
  20 cm⁻¹ steps (see :data:`GRID_NOTE`). The file is read by the data layer
  (:mod:`dos_bench.data.sources.jarvis_leaderboard`: :func:`read_benchmark`,
  :func:`split_spectrum`), re-exported here.
* **Submission** ``jarvis_leaderboard/contributions/<model>/`` + :data:`ZIP_NAME` — a zip whose
  only member is :data:`CSV_NAME` (the zip name without ``.zip``), deflated. The CSV has the
  header ``id,target,prediction``, ``\\n`` line ends, and one row per test id; ``target`` and
  ``prediction`` are the spectra as ``;``-joined Python float reprs (``0.0``,
  ``3.559472361303051e-07``), as in ``contributions/alignn_model/`` + :data:`ZIP_NAME`.
  Beside it, ``metadata.json`` with the keys of :data:`REQUIRED_METADATA`.
* **Score** ``multimae`` (``jarvis_leaderboard/rebuild.py``, ``get_metric_value``): the CSV is
  read with pandas, inner-joined on ``id`` with the benchmark's ``test`` part, every ``actual``
  (taken from the *benchmark file*, not from the CSV's ``target`` column) and ``prediction``
  string is split on ``;`` and parsed as float, and the score is scikit-learn
  ``mean_absolute_error(concatenate(actuals), concatenate(predictions))`` — nothing is
  normalised or rounded. See :func:`dos_bench.metrics.multimae`. Published: ALIGNN
  (``alignn_model``) 0.05772635693310998.

:func:`submission_from_run` turns a finished ``dos-train`` run (``predictions.npz``: ``ids``,
``true``, ``pred`` in native units) into the submission zip, and scores it against the benchmark
file when one is known; :func:`read_submission` and :func:`score_submission` read it back.
``dos-evaluate RUN_DIR --jarvis-submission OUT_DIR`` is the command line.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import logging
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.sources.jarvis_leaderboard import (
    BENCHMARK_PARTS,
    GRID_NOTE,
    N_POINTS,
    read_benchmark,
    split_spectrum,
)
from dos_bench.io import ConfigError, DataError, atomic_write, write_json

__all__ = [
    "BENCHMARK_NAME",
    "BENCHMARK_PARTS",
    "CSV_HEADER",
    "CSV_NAME",
    "GRID_NOTE",
    "N_POINTS",
    "REQUIRED_METADATA",
    "Submission",
    "ZIP_NAME",
    "complete_metadata",
    "join_spectrum",
    "read_benchmark",
    "read_submission",
    "score_submission",
    "split_spectrum",
    "submission_from_run",
    "write_metadata",
    "write_submission",
]

log = logging.getLogger(__name__)

#: the leaderboard's benchmark name: category-subcategory-property-dataset-split-metric
BENCHMARK_NAME = "AI-Spectra-ph_dos-edos_pdos-test-multimae"
CSV_NAME = f"{BENCHMARK_NAME}.csv"
ZIP_NAME = f"{CSV_NAME}.zip"
CSV_HEADER = ("id", "target", "prediction")
#: keys ``rebuild.py`` needs in a contribution's metadata.json (``check_metadata_info_exists``
#: and ``get_metric_value``); ``author_email`` must contain ``@``
REQUIRED_METADATA = (
    "model_name",
    "team_name",
    "project_url",
    "git_url",
    "author_email",
    "date_submitted",
    "time_taken_seconds",
    "software_used",
    "hardware_used",
)


# ============================================================================ spectra as text
def join_spectrum(values: Any) -> str:
    """``;``-joined Python float reprs (shortest round-trip form of each float64 value)."""
    return ";".join(repr(float(v)) for v in np.asarray(values, dtype=np.float64).reshape(-1))


# ============================================================================ submission file
@dataclass
class Submission:
    """A parsed submission CSV: ids and, per row, the target and predicted spectra."""

    path: Path
    ids: list[str]
    target: list[np.ndarray]
    prediction: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)


def _check_arrays(ids: Sequence[str], true: Any, pred: Any, where: str):
    ids = [str(i) for i in ids]
    t = np.asarray(true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    if t.ndim != 2 or p.shape != t.shape or t.shape[0] != len(ids):
        raise DataError(
            f"{where}: need ids (N,), true and pred (N, L); got {len(ids)} ids, true {t.shape}, "
            f"pred {p.shape}"
        )
    for name, a in (("true", t), ("pred", p)):
        bad = ~np.isfinite(a).all(axis=1)
        if bad.any():
            raise DataError(f"{where}: {name} spectrum of {ids[int(np.argmax(bad))]} is not finite")
    seen: set[str] = set()
    for i in ids:
        if not i or any(c in i for c in ',;"\n\r'):
            raise DataError(f"{where}: id {i!r} cannot be written to the leaderboard CSV")
        if i in seen:
            raise DataError(f"{where}: duplicate id {i!r}")
        seen.add(i)
    return ids, t, p


def write_submission(out_dir: str | Path, ids: Sequence[str], true: Any, pred: Any) -> Path:
    """Write ``<out_dir>/`` :data:`ZIP_NAME` in the leaderboard's format (atomically).

    Args:
        out_dir: the contribution folder.
        ids: JARVIS ids of the test materials, ``(N,)``.
        true, pred: target and predicted spectra, ``(N, 66)``, in the benchmark's units.

    Returns:
        The path of the zip.
    """
    out = Path(out_dir) / ZIP_NAME
    ids, t, p = _check_arrays(ids, true, pred, str(out))
    buf = io.StringIO()
    buf.write(",".join(CSV_HEADER) + "\n")
    for i, a, b in zip(ids, t, p, strict=True):
        buf.write(f"{i},{join_spectrum(a)},{join_spectrum(b)}\n")
    with atomic_write(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(CSV_NAME, buf.getvalue())
    return out


def read_submission(path: str | Path) -> Submission:
    """Read a submission ``.csv.zip`` (member = the zip name without ``.zip``, or its only
    ``.csv``) or a bare ``.csv``. Errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: submission file not found")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                want = path.name[:-4] if path.name.endswith(".zip") else None
                csvs = [n for n in names if n.lower().endswith(".csv")]
                member = want if want in names else (csvs[0] if len(csvs) == 1 else None)
                if member is None:
                    raise DataError(f"{path}: expected one .csv member, found {names}")
                raw = zf.read(member)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(f"{path}: damaged zip archive ({exc})") from None
        where = f"{path}!{member}"
    else:
        if path.suffix == ".zip":
            raise DataError(f"{path}: not a zip archive (damaged or wrong format)")
        raw = path.read_bytes()
        where = str(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text ({exc})") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{where}: empty file")
    header = [h.strip() for h in header]
    missing = [c for c in CSV_HEADER if c not in header]
    if missing:
        raise DataError(f"{where}: header {header} lacks column(s) {missing}")
    col = {c: header.index(c) for c in CSV_HEADER}
    ids: list[str] = []
    target: list[np.ndarray] = []
    prediction: list[np.ndarray] = []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) < len(header):
            raise DataError(f"{where}: line {line} has {len(row)} fields, expected {len(header)}")
        jid = row[col["id"]].strip()
        at = f"{where}: line {line} (id {jid})"
        t = split_spectrum(row[col["target"]], f"{at} target")
        p = split_spectrum(row[col["prediction"]], f"{at} prediction")
        if t.shape != p.shape:
            raise DataError(f"{at}: target has {t.size} values, prediction {p.size}")
        ids.append(jid)
        target.append(t)
        prediction.append(p)
    if not ids:
        raise DataError(f"{where}: no data rows")
    return Submission(path, ids, target, prediction)


def score_submission(
    submission: str | Path | Submission,
    benchmark: str | Path,
    part: str = "test",
    member: str | None = None,
) -> dict[str, Any]:
    """The leaderboard's ``multimae`` of a submission against the benchmark file.

    As ``rebuild.py``: inner join on ``id`` with the benchmark's ``part``, actual values from the
    benchmark (the CSV's ``target`` column is not used), MAE of all values concatenated.

    Returns:
        ``{'multimae', 'n_rows', 'n_benchmark', 'n_matched', 'missing', 'extra'}`` —
        ``missing``/``extra``: benchmark ids without a row / rows without a benchmark id (the
        leaderboard flags a length mismatch but still scores the matched rows).
    """
    from dos_bench.metrics import multimae

    sub = submission if isinstance(submission, Submission) else read_submission(submission)
    data = read_benchmark(benchmark, member)
    if part not in data:
        raise DataError(f"{benchmark}: no part {part!r} (parts: {sorted(data)})")
    actual = data[part]
    rows = dict(zip(sub.ids, sub.prediction, strict=True))
    matched = [i for i in sub.ids if i in actual]
    if not matched:
        raise DataError(f"{sub.path}: no id matches the {part!r} ids of {benchmark}")
    reals = [split_spectrum(actual[i], f"{benchmark}: {part} id {i}") for i in matched]
    preds = [rows[i] for i in matched]
    return {
        "multimae": multimae(preds, reals),
        "n_rows": len(sub),
        "n_benchmark": len(actual),
        "n_matched": len(matched),
        "missing": sorted(set(actual) - set(rows)),
        "extra": sorted(set(rows) - set(actual)),
    }


# ============================================================================ metadata.json
def complete_metadata(fields: Mapping[str, Any], where: str = "metadata") -> dict[str, Any]:
    """The metadata.json content: ``fields`` completed and checked.

    ``date_submitted`` defaults to today (``MM-DD-YYYY`` as the ALIGNN contribution);
    ``time_taken_seconds`` to ``{ZIP_NAME: ""}`` (a dict given is completed with that key); a
    ``git_url`` string becomes a one-element list. Every key of :data:`REQUIRED_METADATA` must be
    set and ``author_email`` must contain ``@``, else :class:`ConfigError` naming ``where``.
    """
    meta = dict(fields)
    meta.setdefault("date_submitted", _dt.date.today().strftime("%m-%d-%Y"))
    tts = meta.get("time_taken_seconds")
    if tts is None:
        meta["time_taken_seconds"] = {ZIP_NAME: ""}
    elif isinstance(tts, Mapping):
        meta["time_taken_seconds"] = {ZIP_NAME: "", **dict(tts)}
    else:
        meta["time_taken_seconds"] = {ZIP_NAME: tts}
    missing = [k for k in REQUIRED_METADATA if meta.get(k) in (None, "", [])]
    if missing:
        raise ConfigError(
            f"{where}: leaderboard metadata key(s) {missing} are not set (needed by the "
            f"leaderboard's checks: {list(REQUIRED_METADATA)})"
        )
    if "@" not in str(meta["author_email"]):
        raise ConfigError(f"{where}: author_email {meta['author_email']!r} is not an address")
    if isinstance(meta["git_url"], str):
        meta["git_url"] = [meta["git_url"]]
    return meta


def write_metadata(out_dir: str | Path, fields: Mapping[str, Any], where: str = "metadata") -> Path:
    """Write ``<out_dir>/metadata.json`` (atomically) from :func:`complete_metadata`."""
    return write_json(Path(out_dir) / "metadata.json", complete_metadata(fields, where))


def _load_mapping(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the metadata file ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML/JSON mapping of metadata keys")
    return data


# ============================================================================ from a run
def _benchmark_from_config(run_dir: Path) -> Path | None:
    """``paths.data_dir / dataset.source.benchmark`` from the run's ``config_resolved.yaml``."""
    import yaml

    cfg_path = run_dir / "config_resolved.yaml"
    if not cfg_path.is_file():
        return None
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        rel = cfg["dataset"]["source"]["benchmark"]
        data_dir = cfg["paths"]["data_dir"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None
    path = Path(data_dir) / str(rel)
    return path if path.is_file() else None


def _run_config(run_dir: Path) -> dict[str, Any]:
    import yaml

    p = run_dir / "config_resolved.yaml"
    if not p.is_file():
        return {}
    try:
        cfg = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def submission_from_run(
    run_dir: str | Path,
    out_dir: str | Path,
    benchmark: str | Path | None = None,
    metadata: str | Path | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the leaderboard submission of a finished run and score it.

    Args:
        run_dir: a ``dos-train`` run directory (``predictions.npz``, ``metrics.json``).
        out_dir: the contribution folder to write :data:`ZIP_NAME` (and ``metadata.json``) into.
        benchmark: the benchmark file; default: the run's ``dataset.source.benchmark`` under its
            ``paths.data_dir`` if that file exists. When known, the run's test ids must be
            exactly the benchmark's test ids, and the leaderboard score is computed from it.
        metadata: a YAML/JSON file (or mapping) with the metadata.json keys; ``model_name``
            defaults to the run's model. ``None``: no metadata.json.

    Returns:
        ``{'path', 'n', 'multimae' (from the written CSV), 'stored_multimae' (metrics.json test,
        or None), 'leaderboard' (score_submission result, or None), 'metadata' (path or None)}``.
    """
    from dos_bench.metrics import multimae

    run_dir = Path(run_dir)
    npz = run_dir / "predictions.npz"
    if not npz.is_file():
        raise DataError(f"{npz}: no predictions.npz (is {run_dir} a finished run?)")
    try:
        with np.load(npz, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:  # zipfile/numpy raise many types on damaged files
        raise DataError(f"{npz}: cannot read ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("ids", "true", "pred") if k not in data]
    if missing:
        raise DataError(f"{npz}: missing array(s) {missing}")
    mpath = run_dir / "metrics.json"
    stored: dict[str, Any] = {}
    if mpath.is_file():
        try:
            stored = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{mpath}: not valid JSON ({exc})") from None
    cfg = _run_config(run_dir)
    space = cfg.get("metric_space", "native")
    if space != "native":
        raise DataError(
            f"{run_dir}: metric_space={space!r}, so predictions.npz holds normalised spectra; "
            "the leaderboard needs the benchmark's values (train with metric_space=native)"
        )
    if stored.get("dataset") not in (None, "jarvis_phdos"):
        log.warning("%s: dataset is %s, not jarvis_phdos", run_dir, stored.get("dataset"))
    ids = [str(i) for i in data["ids"].tolist()]
    true = np.asarray(data["true"], dtype=np.float64)
    pred = np.asarray(data["pred"], dtype=np.float64)
    if true.ndim != 2 or true.shape[1] != N_POINTS:
        raise DataError(
            f"{npz}: spectra have shape {true.shape}, the benchmark needs {N_POINTS} points each"
        )
    bench = Path(benchmark) if benchmark is not None else _benchmark_from_config(run_dir)
    if bench is not None:
        test_ids = set(read_benchmark(bench).get("test", {}))
        have = set(ids)
        if have != test_ids:
            raise DataError(
                f"{npz}: the run's {len(have)} test ids are not the {len(test_ids)} test ids of "
                f"{bench} ({len(test_ids - have)} missing, {len(have - test_ids)} extra, e.g. "
                f"{sorted(test_ids ^ have)[:3]}); train with split=jarvis_leaderboard"
            )
    else:
        log.warning(
            "%s: no benchmark file known (pass one); the test ids were not checked", run_dir
        )
    meta = None
    if metadata is not None:  # checked before anything is written
        where = "metadata" if isinstance(metadata, Mapping) else str(metadata)
        fields = dict(metadata) if isinstance(metadata, Mapping) else _load_mapping(Path(metadata))
        if stored.get("model"):
            fields.setdefault("model_name", stored["model"])
        meta = complete_metadata(fields, where)
    path = write_submission(out_dir, ids, true, pred)
    sub = read_submission(path)
    ours = multimae(sub.prediction, sub.target)
    board = score_submission(sub, bench) if bench is not None else None
    meta_path = None if meta is None else write_json(Path(out_dir) / "metadata.json", meta)
    stored_mm = (stored.get("test") or {}).get("multimae")
    if stored_mm is not None and not math.isclose(ours, stored_mm, rel_tol=1e-6, abs_tol=1e-9):
        log.warning(
            "%s: multimae of the written CSV (%.6g) differs from metrics.json (%.6g)",
            path,
            ours,
            stored_mm,
        )
    return {
        "path": str(path),
        "n": len(sub),
        "multimae": ours,
        "stored_multimae": stored_mm,
        "leaderboard": board,
        "metadata": None if meta_path is None else str(meta_path),
    }
