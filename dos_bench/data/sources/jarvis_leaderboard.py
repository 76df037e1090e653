"""The JARVIS-Leaderboard phonon-DOS benchmark file: reading it, parsing its spectra, its grid.

Facts (read in ``usnistgov/jarvis_leaderboard`` at commit ``57afc55``; nothing copied):
``jarvis_leaderboard/benchmarks/AI/Spectra/edos_pdos_ph_dos.json.zip`` is a zip holding
``edos_pdos_ph_dos.json``, a dict ``{"train": {jid: "v1;v2;...;v66"}, "val": ..., "test": ...}``
of 11,395 / 1,424 / 1,424 JARVIS ids. Each value is one spectrum: 66 ``;``-joined floats in
[0, 1], maximum 1 per spectrum. The grid is −300 … 1000 cm⁻¹ in 20 cm⁻¹ steps (see
:data:`GRID_NOTE`).

The data layer reads the benchmark here (the targets of
:class:`~dos_bench.data.sources.jarvis.JarvisLeaderboardPhDOS`, the ``jarvis_leaderboard``
split); the submission file and its score are written and computed by the reporting side, which
imports the reader from this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.sources.readers import read_json_file
from dos_bench.io import DataError

__all__ = ["BENCHMARK_PARTS", "GRID_NOTE", "N_POINTS", "read_benchmark", "split_spectrum"]

BENCHMARK_PARTS = ("train", "val", "test")
#: spectrum length of the benchmark
N_POINTS = 66
GRID_NOTE = (
    "-300 ... 1000 cm^-1 in 20 cm^-1 steps (66 points): the phonon-DOS binning "
    "'PhononData-Freq-300_1000_20' of the ALIGNN phonon paper's code "
    "(RamyaGuru/Alignn-thermal-props generate_id_props.py: minf=-300, maxf=1000, step=20; "
    "dynamic_stability_classification.py: np.linspace(-300, 1000, len(dos))); the leaderboard "
    "file itself carries no grid"
)


# ============================================================================ spectra as text
def split_spectrum(text: Any, where: str) -> np.ndarray:
    """Parse one ``;``-joined spectrum (``"0.0;0.01;..."``) into float64 values.

    A list of numbers is accepted too. Empty or non-numeric fields raise :class:`DataError`
    naming ``where``; NaN/inf are returned as such (the caller checks finiteness).
    """
    if isinstance(text, str):
        fields = text.strip().split(";")
        try:
            return np.asarray([float(f) for f in fields], dtype=np.float64)
        except ValueError:
            bad = next(f for f in fields if not _is_float(f))
            raise DataError(
                f"{where}: spectrum field {bad[:20]!r} is not a number (expected ';'-joined floats)"
            ) from None
    if isinstance(text, (list, tuple)):
        try:
            return np.asarray(text, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: spectrum is not a list of numbers ({exc})") from None
    raise DataError(
        f"{where}: spectrum is a {type(text).__name__}, expected a ';'-joined string of floats"
    )


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


# ============================================================================ benchmark file
def read_benchmark(path: str | Path, member: str | None = None) -> dict[str, dict[str, Any]]:
    """The benchmark JSON (``edos_pdos_ph_dos.json``, or the zip holding it) as
    ``{part: {jid: raw value}}``, values not yet parsed (see :func:`split_spectrum`).

    Raises :class:`DataError` naming the file when it is not a dict of ``train``/``val``/
    ``test`` dicts.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: JARVIS-Leaderboard benchmark file not found")
    data = read_json_file(path, member, "dataset.source.benchmark_member")
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a JSON dict with keys {list(BENCHMARK_PARTS)} (JARVIS-Leaderboard "
            f"benchmark), got a {type(data).__name__}"
        )
    for part, ids in data.items():
        if not isinstance(ids, dict):
            raise DataError(
                f"{path}: part {part!r} is a {type(ids).__name__}, expected a dict jid -> spectrum"
            )
    return data
