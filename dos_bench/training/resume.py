"""Exact resume and one run per directory (``ckpt_path=last``).

* :func:`resume_path`: the checkpoint a run continues from (``ckpt_path=last`` is this run
  directory's ``checkpoints/last.ckpt``), checked before any data is prepared.
* :func:`link_last_to_best`: after a run, ``last.ckpt`` becomes a relative symlink to the best
  checkpoint when both hold the same training state (the last epoch was the best);
  :func:`unlink_last` turns it back into a file before a run trains in that directory again.
* :func:`load_checkpoint_safely`: every checkpoint dos_bench reads is unpickled with
  ``torch.load(weights_only=True)`` (tensors, containers and numbers only), also when
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` is set (that variable only changes calls that leave
  ``weights_only`` unset). A file that needs anything else is refused with one :class:`DataError`
  naming it; nothing in it runs.
* The RNG states and the epoch's training row go into every checkpoint through the callback
  :class:`dos_bench.training.callbacks.ResumeState`; the training order comes from
  :class:`dos_bench.data.datamodule.EpochShuffleSampler` (a function of the seed and the epoch).
* :class:`ResumableCSVLogger`: Lightning's ``CSVLogger`` that keeps ``csv/metrics.csv`` on a
  resume: rows of epochs after the checkpoint's epoch (the interrupted epoch, which is trained
  again) are dropped, the rest is kept and new rows are appended. A fresh run starts a new file.
* :class:`RunLock`: ``<run dir>/.dos_bench.lock`` (owner pid, host, start time), created
  atomically; a second run in the same directory stops with one message naming the owner. A lock
  whose owner process is gone (same host) is taken over with a warning.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import secrets
import shutil
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from dos_bench.io import ConfigError, DataError, atomic_write
from dos_bench.training.callbacks import ResumeState

__all__ = [
    "LOCK_NAME",
    "ResumeState",
    "ResumableCSVLogger",
    "RunDirLocked",
    "RunLock",
    "checkpoint_position",
    "link_last_to_best",
    "load_checkpoint_safely",
    "resume_path",
    "same_training_state",
    "unlink_last",
    "wandb_run_id",
]

log = logging.getLogger(__name__)

LOCK_NAME = ".dos_bench.lock"


# ---------------------------------------------------------------------------- checkpoints
def load_checkpoint_safely(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; any failure is a :class:`DataError` naming the file.

    ``weights_only=True`` is passed explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn
    it off: a pickle that wants to import or call anything beyond tensors and plain containers is
    refused before any of it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"ckpt_path={path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem, reported with the file
        raise DataError(
            f"{path}: refused as a checkpoint: torch.load(weights_only=True) failed "
            f"({type(exc).__name__}: {_load_reason(exc)}); dos_bench loads only checkpoints made "
            "of tensors and plain containers, never arbitrary pickles"
        ) from None
    if not isinstance(ckpt, dict):
        raise DataError(f"{path}: not a Lightning checkpoint (a {type(ckpt).__name__}, not a dict)")
    return ckpt


def _load_reason(exc: Exception) -> str:
    """The informative part of a ``torch.load`` error (torch's own text suggests re-running with
    ``weights_only=False``, which is exactly what must not be done with an unknown file)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        tail = text.split("WeightsUnpickler error:", 1)[1]
        lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
        return lines[0] if lines else "disallowed content"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else "unreadable"


def checkpoint_position(path: str | Path) -> dict[str, Any]:
    """Where a Lightning checkpoint (loaded safely) stands: ``epoch``, ``global_step`` and
    ``epoch_row``, the CSV row of that epoch's training metrics saved by :class:`ResumeState`
    (``None`` in checkpoints without it)."""
    ckpt = load_checkpoint_safely(path)
    missing = [k for k in ("epoch", "global_step", "state_dict") if k not in ckpt]
    if missing:
        raise DataError(f"{path}: not a Lightning training checkpoint (no {', '.join(missing)})")
    state = (ckpt.get("callbacks") or {}).get(ResumeState.__qualname__) or {}
    return {
        "epoch": int(ckpt["epoch"]),
        "global_step": int(ckpt["global_step"]),
        "epoch_row": state.get("epoch_row"),
    }


def resume_path(ckpt: Any, run_dir: Path) -> str | None:
    """The checkpoint a run continues from, or ``None`` for a fresh start.

    ``ckpt`` is the ``ckpt_path`` key: empty for none, ``last`` for this run directory's
    ``checkpoints/last.ckpt`` (a fresh start, with a warning, if there is none yet), or a file.
    The checkpoint is checked here, before any data is prepared: it must load with
    ``torch.load(weights_only=True)`` (:func:`checkpoint_position`), else one
    :class:`DataError` names the file.
    """
    if ckpt in (None, ""):
        return None
    if str(ckpt) == "last":
        last = Path(run_dir) / "checkpoints" / "last.ckpt"
        if not last.exists():
            log.warning("ckpt_path=last but %s does not exist: starting from scratch", last)
            return None
        ckpt = last
    if not Path(ckpt).is_file():
        raise ConfigError(f"ckpt_path={ckpt}: no such checkpoint file")
    pos = checkpoint_position(ckpt)
    log.info(
        "resuming from %s (epoch %d complete; epoch %d is trained from its start)",
        ckpt,
        pos["epoch"],
        pos["epoch"] + 1,
    )
    return str(ckpt)


def link_last_to_best(last: str | Path, best: str | Path) -> bool:
    """Replace ``last`` (``checkpoints/last.ckpt``) by a relative symlink to ``best`` when the
    two checkpoints hold the same training state (:func:`same_training_state`); returns whether
    it did.

    Both callbacks of ``conf/callbacks/default.yaml`` save at the end of a training epoch, so when
    the last epoch is also the best one the two files hold the same epoch, global step, weights,
    optimizer, loop and RNG states; ``ckpt_path=last`` and ``dos-predict`` read through the
    link. A file system without symlinks keeps both files.
    """
    last, best = Path(last), Path(best)
    if last.is_symlink() or not last.is_file() or not best.is_file():
        return False
    if last.resolve() == best.resolve() or not same_training_state(last, best):
        return False
    rel = os.path.relpath(best.resolve(), last.parent.resolve())
    tmp = last.with_name(f".{last.name}.{os.getpid()}.{secrets.token_hex(4)}.link")
    try:
        os.symlink(rel, tmp)
        os.replace(tmp, last)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.debug("%s kept as a file (no symlink: %s)", last, exc)
        return False
    log.debug("%s -> %s: the last epoch is the best, one file instead of two", last, rel)
    return True


def same_training_state(a: str | Path, b: str | Path) -> bool:
    """True if two Lightning checkpoints resume to the same point: equal ``epoch`` and
    ``global_step`` (compared first, tensors memory-mapped and not read), then equal everything
    else, tensors by value (loaded with ``weights_only=True``), except the ``ModelCheckpoint``
    callbacks' own bookkeeping of which files they wrote (in epoch 0 the best checkpoint is saved
    before ``last.ckpt`` exists, so it records no last path yet). ``epoch``/``global_step``
    alone would not do: with validation less often than every epoch the best checkpoint is saved
    at validation end and differs from ``last.ckpt`` of the same step in its loop state and
    training row."""

    def load(path: str | Path) -> dict[str, Any]:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)

    try:
        ca, cb = load(a), load(b)
    except Exception:  # noqa: BLE001 - an unreadable file is simply not the same
        return False
    if not (isinstance(ca, dict) and isinstance(cb, dict)):
        return False
    if (ca.get("epoch"), ca.get("global_step")) != (cb.get("epoch"), cb.get("global_step")):
        return False

    def own_state(ckpt: dict[str, Any]) -> dict[str, Any]:
        out = dict(ckpt)
        out["callbacks"] = {
            k: v
            for k, v in (ckpt.get("callbacks") or {}).items()
            if not str(k).startswith("ModelCheckpoint")
        }
        return out

    return _equal(own_state(ca), own_state(cb))


def _equal(x: Any, y: Any) -> bool:
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        return (
            isinstance(x, torch.Tensor)
            and isinstance(y, torch.Tensor)
            and x.dtype == y.dtype
            and x.shape == y.shape
            and bool(torch.equal(x, y))
        )
    if isinstance(x, dict) and isinstance(y, dict):
        return x.keys() == y.keys() and all(_equal(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return type(x) is type(y) and len(x) == len(y) and all(map(_equal, x, y))
    try:
        return bool(x == y) or (x != x and y != y)  # NaN == NaN here
    except Exception:  # noqa: BLE001 - incomparable values differ
        return False


def unlink_last(last: str | Path) -> None:
    """Before a run trains in a run directory: a ``last.ckpt`` symlink (:func:`link_last_to_best`)
    becomes a real copy of its target again (atomically), so that Lightning's end-of-epoch save
    can never write through the link into the best checkpoint (fsspec falls back to copying onto
    the link target when its temporary file is on another file system), and the best checkpoint
    can be deleted when a better one comes. A dangling link is removed."""
    last = Path(last)
    if not last.is_symlink():
        return
    target = last.resolve()
    if not target.is_file():
        last.unlink(missing_ok=True)
        return
    with atomic_write(last) as tmp:
        shutil.copyfile(target, tmp)
    log.debug("%s: link to %s replaced by a copy before training", last, target.name)


# ---------------------------------------------------------------------------- CSV logger
def _epoch_of(row: dict[str, str]) -> float:
    """The row's epoch; NaN (kept by every comparison) if it has none."""
    try:
        return float(row.get("epoch") or "nan")
    except ValueError:
        return float("nan")


class _ResumableWriter(ExperimentWriter):
    """Lightning's CSV writer that keeps the existing file on a resume (see the module doc)."""

    def __init__(
        self, log_dir: str, keep_through_epoch: int | None, epoch_row: dict[str, Any] | None
    ) -> None:
        self.keep_through_epoch = keep_through_epoch
        self.epoch_row = epoch_row
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if self.keep_through_epoch is None or not path.is_file():
            super()._check_log_dir_exists()  # a fresh run: a new file
            return
        text = path.read_text()
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]  # a last line cut short by the kill
        reader = csv.DictReader(text.splitlines())
        header = list(reader.fieldnames or [])
        rows = list(reader)
        # rows of later epochs were written by the killed process in the epoch it did not finish
        kept = [r for r in rows if not _epoch_of(r) > self.keep_through_epoch]
        added = self._missing_epoch_row(kept)
        if added:
            header = sorted(set(header) | set(added))
            kept.append({k: str(v) for k, v in added.items()})
        with atomic_write(path) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=header)
                w.writeheader()
                w.writerows(kept)
        self.metrics_keys = header
        log.info(
            "%s: kept %d rows up to epoch %d%s, dropped %d of the re-run epoch",
            path,
            len(kept),
            self.keep_through_epoch,
            " (its training row restored from the checkpoint)" if added else "",
            len(rows) - len(kept) + bool(added),
        )

    def _missing_epoch_row(self, rows: list[dict[str, str]]) -> dict[str, Any] | None:
        """The checkpoint's epoch row if the killed process died before appending it."""
        row = self.epoch_row
        if not row or int(row.get("epoch", -1)) != self.keep_through_epoch:
            return None
        keys = [k for k in row if k not in ("epoch", "step")]
        for r in rows:
            if _epoch_of(r) == row["epoch"] and all(r.get(k) not in (None, "") for k in keys):
                return None
        out = dict(row)
        out["epoch"], out["step"] = int(row["epoch"]), int(row["step"])
        return out

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        # Lightning's version rewrites in place; a kill in between would lose the curves
        with open(self.metrics_file_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        with atomic_write(self.metrics_file_path) as tmp:
            with open(tmp, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=fieldnames)
                w.writeheader()
                w.writerows(rows)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives ``ckpt_path=last``.

    :meth:`resume_from` (called by ``dos_bench.train`` before training when a checkpoint is
    resumed) keeps the rows of epochs ``<= epoch`` (the checkpoint's, whose epoch is complete)
    and appends after them; rows of later epochs, written by the interrupted process before it
    died, are dropped because those epochs are trained again. Without it the logger behaves like
    Lightning's (a fresh ``metrics.csv``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keep_through_epoch: int | None = None
        self._epoch_row: dict[str, Any] | None = None

    def resume_from(self, epoch: int, epoch_row: dict[str, Any] | None = None) -> None:
        """Keep the rows up to ``epoch``; ``epoch_row`` (:class:`ResumeState`) is appended if
        the file lacks it."""
        if self._experiment is not None:
            raise RuntimeError("ResumableCSVLogger.resume_from must be called before logging")
        self._keep_through_epoch = int(epoch)
        self._epoch_row = epoch_row

    @property
    @rank_zero_experiment
    def experiment(self) -> _ResumableWriter:
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = _ResumableWriter(self.log_dir, self._keep_through_epoch, self._epoch_row)
        return self._experiment


def wandb_run_id(run_dir: Path) -> str | None:
    """The id of the newest wandb run under ``run_dir/wandb`` (``[offline-]run-<time>-<id>``)."""
    base = Path(run_dir) / "wandb"
    if not base.is_dir():
        return None
    runs = sorted(
        (p for p in base.iterdir() if p.is_dir() and p.name.startswith(("run-", "offline-run-"))),
        key=lambda p: p.name.split("run-", 1)[1],
    )
    return runs[-1].name.rsplit("-", 1)[1] if runs else None


# ---------------------------------------------------------------------------- run lock
class RunDirLocked(ConfigError):
    """Another live run holds this run directory's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OverflowError:
        return False
    return True


class RunLock:
    """``<run_dir>/.dos_bench.lock``: one live run per run directory.

    The lock file holds the owner's pid, host, start time and a random token as JSON. It is
    written to a temporary file first and then hard-linked to its name, which fails if the name
    exists: no other process ever sees a half-written lock (``O_EXCL`` creation is the fallback
    on file systems without hard links). :meth:`release` removes the file only while it is still
    this owner's.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "token": secrets.token_hex(8),
        }
        self.held = False

    # -- creation
    def _create(self) -> bool:
        blob = json.dumps(self.owner)
        tmp = self.run_dir / f"{LOCK_NAME}.{self.owner['token']}.tmp"
        tmp.write_text(blob)
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here: exclusive creation instead
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as fh:
                fh.write(blob)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _read(self, path: Path | None = None) -> dict[str, Any] | None:
        try:
            info = json.loads((path or self.path).read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _describe(self, info: dict[str, Any] | None) -> str:
        if info is None:
            return "an unreadable lock"
        return f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}"

    def _is_stale(self, info: dict[str, Any] | None) -> bool:
        if info is None or info.get("host") != self.owner["host"]:
            return False  # another machine's process cannot be checked from here
        try:
            pid = int(info["pid"])
        except (KeyError, TypeError, ValueError):
            return False
        return pid != os.getpid() and not _pid_alive(pid)

    def _take_over(self, seen: dict[str, Any]) -> None:
        """Move the stale lock aside (atomic rename), check it is the one judged stale."""
        aside = self.run_dir / f"{LOCK_NAME}.stale.{self.owner['token']}"
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return  # someone else removed it
        moved = self._read(aside)
        if moved != seen:  # a new owner got in between: give its lock back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        else:
            log.warning(
                "run directory %s: taking over the stale lock of %s (that process is gone)",
                self.run_dir,
                self._describe(seen),
            )
        aside.unlink(missing_ok=True)

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            if self._create():
                self.held = True
                return self
            info = self._read()
            if info is None and not self.path.exists():
                continue  # released meanwhile
            if self._is_stale(info):
                self._take_over(info)
                continue
            raise RunDirLocked(
                f"run directory {self.run_dir} is in use by another dos_bench run "
                f"({self._describe(info)}; lock file {self.path}). Wait for it to finish or use "
                "another hydra.run.dir; if no such run exists any more, delete the lock file"
            )
        raise RunDirLocked(f"run directory {self.run_dir}: could not take the lock {self.path}")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        if self._read() == self.owner:
            self.path.unlink(missing_ok=True)
        else:
            log.warning("run directory %s: the lock %s is no longer ours", self.run_dir, self.path)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
