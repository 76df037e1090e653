"""The resume pieces alone (dos_bench.training.resume): the run lock, the resumable CSV logger,
the wandb run id of a run directory and the checks of a checkpoint to resume from. The end-to-end
resume of a killed run is in tests/test_resume.py."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dos_bench.io import ConfigError, DataError
from dos_bench.training.callbacks import ResumeState
from dos_bench.training.resume import (
    LOCK_NAME,
    ResumableCSVLogger,
    RunDirLocked,
    RunLock,
    checkpoint_position,
    link_last_to_best,
    load_checkpoint_safely,
    resume_path,
    unlink_last,
    wandb_run_id,
)


# ---------------------------------------------------------------------------- lock
def _write_lock(run: Path, pid: int, host: str | None = None) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    lock = run / LOCK_NAME
    info = {"pid": pid, "host": host or socket.gethostname(), "started": "then", "token": "x"}
    lock.write_text(json.dumps(info))
    return lock


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("owner", ["live", "other-host", "garbage"])
def test_lock_held_by_a_live_or_unknown_owner_is_refused(tmp_path, owner):
    run = tmp_path / "run"
    if owner == "garbage":
        (run).mkdir()
        (run / LOCK_NAME).write_text("{half")
    else:
        host = "some-other-node" if owner == "other-host" else None
        _write_lock(run, os.getpid() if owner == "live" else _dead_pid(), host)
    with pytest.raises(RunDirLocked, match=str(run)) as e:
        RunLock(run).acquire()
    assert isinstance(e.value, ConfigError)
    assert (run / LOCK_NAME).exists()
    assert [p.name for p in run.iterdir()] == [LOCK_NAME]  # no temporary files left


def test_stale_lock_is_taken_over_and_released(tmp_path, caplog):
    run = tmp_path / "run"
    dead = _dead_pid()
    _write_lock(run, dead)
    with caplog.at_level("WARNING", logger="dos_bench.training.resume"):
        lock = RunLock(run).acquire()
    assert f"stale lock of pid {dead}" in caplog.text
    info = json.loads((run / LOCK_NAME).read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    with pytest.raises(RunDirLocked, match=f"pid {os.getpid()}"):
        RunLock(run).acquire()  # now held by a live owner
    lock.release()
    assert list(run.iterdir()) == []


# ---------------------------------------------------------------------------- CSV logger, wandb
def _write_csv(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


CSV_HEAD = "epoch,step,train/loss,val/mae\n"
CSV_ROWS = "0,3,,0.5\n0,3,0.4,\n1,7,,0.3\n1,7,0.2,\n2,11,,0.25\n"


@pytest.mark.parametrize("cut_short", [False, True])
def test_csv_logger_keeps_rows_up_to_the_checkpoint_epoch(tmp_path, cut_short):
    path = tmp_path / "csv" / "metrics.csv"
    _write_csv(path, CSV_HEAD + CSV_ROWS + ("2,11,0.1" if cut_short else ""))
    lg = ResumableCSVLogger(save_dir=tmp_path, name="csv", version="")
    lg.resume_from(1)
    lg.log_metrics({"val/mae": 0.125, "epoch": 2}, step=11)
    lg.save()
    rows = list(csv.DictReader(path.open()))
    assert [(r["epoch"], r["val/mae"], r["train/loss"]) for r in rows] == [
        ("0", "0.5", ""),
        ("0", "", "0.4"),
        ("1", "0.3", ""),
        ("1", "", "0.2"),
        ("2", "0.125", ""),  # the re-run epoch's row once, from the resumed run
    ]
    assert not list(path.parent.glob("*.tmp"))


def test_csv_logger_restores_the_training_row_the_kill_lost(tmp_path):
    path = tmp_path / "csv" / "metrics.csv"
    _write_csv(path, CSV_HEAD + "0,3,,0.5\n0,3,0.4,\n1,7,,0.3\n")
    lg = ResumableCSVLogger(save_dir=tmp_path, name="csv", version="")
    lg.resume_from(1, {"train/loss": 0.2, "epoch": 1, "step": 7})
    lg.log_metrics({"val/mae": 0.125, "epoch": 2}, step=11)
    lg.save()
    rows = list(csv.DictReader(path.open()))
    assert [(r["epoch"], r["step"], r["train/loss"]) for r in rows][-2:] == [
        ("1", "7", "0.2"),
        ("2", "11", ""),
    ]


def test_csv_logger_without_resume_starts_a_new_file(tmp_path):
    path = tmp_path / "csv" / "metrics.csv"
    _write_csv(path, CSV_HEAD + CSV_ROWS)
    lg = ResumableCSVLogger(save_dir=tmp_path, name="csv", version="")
    lg.log_metrics({"val/mae": 0.9, "epoch": 0}, step=3)
    lg.save()
    assert [r["val/mae"] for r in csv.DictReader(path.open())] == ["0.9"]


def test_wandb_run_id_of_a_run_directory(tmp_path):
    assert wandb_run_id(tmp_path) is None
    for name in ("offline-run-20250101_000000-abc123", "offline-run-20250102_000000-def456"):
        (tmp_path / "wandb" / name).mkdir(parents=True)
    (tmp_path / "wandb" / "latest-run").mkdir()
    assert wandb_run_id(tmp_path) == "def456"


# ---------------------------------------------------------------------------- checkpoints
def _checkpoint(path: Path, epoch: int = 3, row: dict | None = None) -> Path:
    state = {"epoch_row": row} if row else {}
    ckpt = {
        "epoch": epoch,
        "global_step": 4 * (epoch + 1),
        "state_dict": {"w": torch.zeros(2)},
        "callbacks": {ResumeState.__qualname__: state},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def test_checkpoint_position_reads_epoch_step_and_row(tmp_path):
    row = {"train/loss": 0.5, "epoch": 3, "step": 15}
    pos = checkpoint_position(_checkpoint(tmp_path / "a.ckpt", 3, row))
    assert pos == {"epoch": 3, "global_step": 16, "epoch_row": row}
    assert checkpoint_position(_checkpoint(tmp_path / "b.ckpt", 1))["epoch_row"] is None


def test_resume_path_last_and_explicit(tmp_path, caplog):
    run = tmp_path / "run"
    assert resume_path(None, run) is None and resume_path("", run) is None
    with caplog.at_level("WARNING", logger="dos_bench.training.resume"):
        assert resume_path("last", run) is None  # no last.ckpt yet: a fresh start
    assert "starting from scratch" in caplog.text
    last = _checkpoint(run / "checkpoints" / "last.ckpt")
    assert resume_path("last", run) == str(last)
    assert resume_path(str(last), tmp_path / "elsewhere") == str(last)


def test_last_checkpoint_links_to_an_identical_best_and_becomes_a_file_again(tmp_path):
    ckpts = tmp_path / "checkpoints"
    best = _checkpoint(ckpts / "epoch003.ckpt", 3)
    last = ckpts / "last.ckpt"
    last.write_bytes(best.read_bytes())
    assert link_last_to_best(last, best)
    assert last.is_symlink() and os.readlink(last) == "epoch003.ckpt"  # relative: dir can move
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch003.ckpt", "last.ckpt"]
    assert resume_path("last", tmp_path) == str(last)  # ckpt_path=last reads through it
    assert checkpoint_position(last)["epoch"] == 3
    assert not link_last_to_best(last, best)  # already a link
    # before training again: a real file with the same bytes, the best checkpoint untouched
    unlink_last(last)
    assert not last.is_symlink() and last.read_bytes() == best.read_bytes()
    last.write_bytes(b"written by the next epoch")
    assert checkpoint_position(best)["epoch"] == 3
    # a later last epoch, or the same step saved at validation end (other loop state): two files
    _checkpoint(last, 4)
    assert not link_last_to_best(last, best) and not last.is_symlink()
    ckpt = torch.load(best, weights_only=True)
    torch.save({**ckpt, "loops": {"fit_loop": {"epoch_progress": 1}}}, last)
    assert not link_last_to_best(last, best) and not last.is_symlink()
    # epoch 0: the files differ only in the ModelCheckpoint callbacks' bookkeeping
    mc = "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_epochs': 1}"
    torch.save({**ckpt, "callbacks": {**ckpt["callbacks"], mc: {"best_model_path": ""}}}, best)
    last_cbs = {**ckpt["callbacks"], mc: {"best_model_path": str(last)}}
    torch.save({**ckpt, "callbacks": last_cbs}, last)
    assert link_last_to_best(last, best) and last.is_symlink()
    unlink_last(last)
    _checkpoint(last, 4)
    unlink_last(last)  # a file: nothing to do
    assert checkpoint_position(last)["epoch"] == 4
    # a dangling link is removed
    last.unlink()
    last.symlink_to("gone.ckpt")
    unlink_last(last)
    assert not last.exists() and not last.is_symlink()


def test_resume_path_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(ConfigError, match="no such checkpoint file"):
        resume_path(str(tmp_path / "nope.ckpt"), tmp_path)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="junk.ckpt.*weights_only=True"):
        resume_path(str(junk), tmp_path)
    weights = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {}}, weights)
    with pytest.raises(DataError, match="not a Lightning training checkpoint"):
        resume_path(str(weights), tmp_path)
    torch.save([1, 2], weights)
    with pytest.raises(DataError, match="not a Lightning checkpoint"):
        load_checkpoint_safely(weights)
