"""Readers of raw data files, with errors that name the file: JSON (plain or inside a zip),
numeric ``.npy`` arrays, material-id lists, row-index files, and the checks of one raw spectrum.

Also :func:`build_recordset`, which stacks the parsed records of a source into a
:class:`RecordSet`.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.io import DataError

__all__ = [
    "build_recordset",
    "clean_spectrum",
    "load_index_txt",
    "load_npy",
    "read_id_list",
    "read_json",
    "read_json_file",
]

_ID_RE = re.compile(r"^(mp|mvc|JVASP|jvasp|agm|toy)-\d+$|^\d+$")


# ====================================================================================== files
def read_json(path: Path, text: str | bytes | None = None) -> Any:
    """Parse JSON from ``path`` (or from ``text`` read from it); errors name the file."""
    try:
        if text is None:
            with open(path, "rb") as fh:
                text = fh.read()
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def load_npy(path: Path) -> np.ndarray:
    """A numeric ``.npy`` array (never with pickles); truncated or wrong files raise."""
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError/EOFError/OSError/UnpicklingError
        raise DataError(
            f"{path}: cannot read as a numeric .npy array ({type(exc).__name__}: {exc}); "
            "the file is damaged, truncated or in another format"
        ) from exc
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise DataError(f"{path}: expected a numeric array, got dtype {getattr(arr, 'dtype', '?')}")
    return arr


def read_id_list(path: Path, n_expected: int | None = None) -> list[str]:
    """Material ids, one per row (first column) of a CSV such as Mat2Spec's ``mpids.csv``.

    The authors read the file with ``pandas.read_csv`` and its default ``header=0`` (``M2S:
    train_Mat2Spec.py``), i.e. the first line is a column header (pandas writes ``0`` for an
    unnamed column). Both conventions are accepted here: the first line is taken as a header if
    it does not look like a material id, or if the file has exactly one more row than
    ``n_expected`` (the spectra rows). Bare integers are read as ``mp-<n>``.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read as text ({exc})") from exc
    rows = [ln.split(",")[0].strip().strip('"').strip("'") for ln in lines]
    while rows and not rows[-1]:
        rows.pop()
    if not rows:
        raise DataError(f"{path}: no material ids in the file")
    first_is_id = bool(_ID_RE.match(rows[0]))
    if first_is_id and rows[0].isdigit() and len(rows) > 1 and not rows[1].isdigit():
        first_is_id = False  # pandas' "0" header above mp-... ids
    has_header = not first_is_id
    if n_expected is not None and first_is_id:
        if len(rows) == n_expected + 1:
            has_header = True
    if has_header:
        rows = rows[1:]
    ids = []
    for i, r in enumerate(rows):
        if not r:
            raise DataError(f"{path}: empty material id on data row {i}")
        ids.append(f"mp-{r}" if r.isdigit() else r)
    return ids


def load_index_txt(path: str | Path) -> np.ndarray:
    """One non-negative integer row index per line (TUT ``idx_{train,valid,test}.txt``)."""
    path = Path(path)
    try:
        lines = path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read index file ({exc})") from exc
    out = []
    for i, tok in enumerate(lines):
        try:
            v = int(float(tok))
        except ValueError:
            raise DataError(f"{path}: line {i + 1}: {tok!r} is not an integer row index") from None
        if v < 0 or float(tok) != v:
            raise DataError(f"{path}: line {i + 1}: {tok!r} is not a non-negative integer")
        out.append(v)
    return np.asarray(out, dtype=np.int64)


def read_json_file(path: Path, member: str | None = None, member_key: str = "member") -> Any:
    """Parse a JSON file, or the JSON member of a zip archive (read in place).

    Args:
        path: a ``.json`` file or a zip holding one.
        member: the member to read (default: the only ``.json`` member of the zip).
        member_key: the config key that selects the member, named in the message when the zip
            holds several ``.json`` files.

    Errors (damaged zip, missing member, invalid JSON) raise :class:`DataError` naming the file.
    """
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                if member is not None:
                    if member not in names:
                        raise DataError(
                            f"{path}: zip has no member {member!r} (members: {names[:5]})"
                        )
                    chosen = member
                else:
                    js = [n for n in names if n.lower().endswith(".json")]
                    if len(js) != 1:
                        raise DataError(
                            f"{path}: expected one .json member in the zip, found {js or names}"
                            f"; set {member_key}"
                        )
                    chosen = js[0]
                text = zf.read(chosen)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(f"{path}: damaged zip archive ({exc})") from None
        return read_json(Path(f"{path}!{chosen}"), text)
    if path.suffix == ".zip":
        raise DataError(f"{path}: not a zip archive (damaged or wrong format)")
    return read_json(path)


# ====================================================================================== spectra
def clean_spectrum(
    values: Any,
    n_points: int | None,
    where: str,
    negative_tol: float = 0.0,
) -> tuple[np.ndarray, bool]:
    """Check one raw spectrum: numeric, the right length, finite, not (significantly) negative.

    Args:
        values: a sequence of numbers.
        n_points: required length (``None`` = any length ≥ 2).
        where: file and record, for messages.
        negative_tol: negative values with ``|v| <= negative_tol * max(v)`` (interpolation or
            tetrahedron-method noise) are set to 0; larger ones raise.

    Returns:
        (float64 array, whether small negatives were clipped).
    """
    if isinstance(values, str):
        raise DataError(f"{where}: spectrum is the string {values[:20]!r}, expected numbers")
    try:
        y = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: spectrum is not a list of numbers ({exc})") from None
    if y.ndim != 1:
        raise DataError(f"{where}: spectrum has shape {y.shape}, expected a flat list")
    if n_points is not None and y.shape[0] != n_points:
        raise DataError(
            f"{where}: spectrum has {y.shape[0]} values, expected {n_points} (grid length)"
        )
    if y.shape[0] < 2:
        raise DataError(f"{where}: spectrum has {y.shape[0]} values")
    if not np.isfinite(y).all():
        raise DataError(f"{where}: spectrum contains NaN or infinite values")
    clipped = False
    if (y < 0).any():
        top = max(float(y.max()), 0.0)
        if float(y.min()) < -negative_tol * top or top == 0.0:
            raise DataError(f"{where}: spectrum has negative values (min {y.min():.4g})")
        y = np.maximum(y, 0.0)
        clipped = True
    return y, clipped


# ====================================================================================== records
def build_recordset(records: list[DOSRecord], attrs: dict[str, Any], where: str) -> RecordSet:
    """Stack records, filling metadata missing in some records with NaN (numeric) or ''."""
    if not records:
        raise DataError(f"{where}: no records")
    keys = sorted({k for r in records for k in r.meta})
    for k in keys:
        present = [r.meta[k] for r in records if k in r.meta]
        fill: Any = "" if any(isinstance(v, str) for v in present) else float("nan")
        for r in records:
            if k not in r.meta or r.meta[k] is None:
                r.meta[k] = fill
    return RecordSet.from_records(records, attrs)
