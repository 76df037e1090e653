"""What a job knows about the Hydra sweep it runs in (quiet output for multirun jobs).

* :func:`parallel_jobs`: how many jobs of this sweep run at the same time on this machine (the
  joblib launcher's ``n_jobs``); their progress bars would interleave on one terminal, so
  ``dos-train`` turns them off and logs one line per epoch instead.
* :func:`sweep_dir`: the sweep directory of a multirun job.
* :func:`first_in_sweep`: whether a text is new in this sweep; each distinct text is stored
  once as ``<sweep dir>/.<kind>-<hash>.txt``, created atomically, so parallel jobs agree on
  which of them prints it.
* :func:`split_stats_reporter`: the split statistics of a job, their 17-line tables printed by
  the first job of a sweep with that split only (``.split_stats-<hash>.txt``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

__all__ = ["first_in_sweep", "parallel_jobs", "split_stats_reporter", "sweep_dir"]

log = logging.getLogger("dos_bench.train")


def _hydra_config():
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def sweep_dir() -> Path | None:
    """The sweep directory of a Hydra ``-m`` job, None outside a multirun."""
    from hydra.types import RunMode

    hc = _hydra_config()
    if hc is None or hc.mode != RunMode.MULTIRUN:
        return None
    return Path(hc.sweep.dir)


def parallel_jobs() -> int:
    """Jobs of this sweep running at once in this machine's terminal: the joblib launcher's
    ``n_jobs`` (``-1``: one per CPU), 1 for any other launcher or a single run. (SLURM jobs
    write to their own log files.)"""
    if sweep_dir() is None:
        return 1
    launcher = _hydra_config().launcher
    if not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return 1
    n = int(launcher.get("n_jobs") or 1)
    if n < 0:  # joblib: -1 = all CPUs, -2 = all but one, ...
        n = max((os.cpu_count() or 1) + 1 + n, 1)
    return n


def first_in_sweep(kind: str, text: str) -> tuple[bool, Path | None]:
    """``(new, file)``: ``new`` is True the first time a job of this sweep reports ``text``
    (always True outside a multirun); ``file`` is ``<sweep dir>/.<kind>-<hash>.txt`` holding it.

    The file is created with ``O_CREAT | O_EXCL``: of two parallel jobs exactly one creates it.
    A sweep directory that cannot be written counts as new (the text is printed).
    """
    root = sweep_dir()
    if root is None:
        return True, None
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    path = root / f".{kind}-{digest}.txt"
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False, path
    except OSError:
        return True, None
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    return True, path


def split_stats_reporter(text: str) -> None:
    """Print the split statistics of a run (``split sizes: ...`` and the tables by species count
    and crystal system), the tables once per sweep: the first job of a multirun with these
    statistics prints all of it (INFO); a later job with the same statistics prints the sizes
    line and where the tables are, and logs the tables at DEBUG."""
    logger = logging.getLogger("dos_bench.data.datamodule")
    new, path = first_in_sweep("split_stats", text)
    head, _, tables = text.partition("\n")
    if new or not tables:
        logger.info("%s", text)
        return
    logger.info("%s; tables as printed earlier in this sweep: %s", head, path)
    logger.debug("%s", tables)
