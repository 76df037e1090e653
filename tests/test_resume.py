"""Exact resume: a run SIGKILLed at any point and resumed with ckpt_path=last ends with the
uninterrupted run's test metrics and training curves; checkpoints load with weights_only=True
only; one run per run directory (lock file); multirun jobs that finished are skipped; wandb works
offline without a key. (The pieces alone, lock, CSV logger, checkpoint checks: tests/training/
test_resume.py.)"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import CLI_SMALL, cli_env, compose_cfg, train_cli
from pymatgen.core import Lattice, Structure

from dos_bench.io import DataError
from dos_bench.training.resume import LOCK_NAME, load_checkpoint_safely

# Fault injection: block at a chosen point so that the test can SIGKILL the process exactly
# there. ``StallAfterCheckpoint`` is a Checkpoint callback, which Lightning runs after the
# ModelCheckpoints: it blocks after last.ckpt of the epoch is written, before Lightning logs the
# epoch's training row.
STALL = textwrap.dedent("""
    import os, time
    from pathlib import Path
    from lightning.pytorch.callbacks import Callback, Checkpoint

    class Stall(Callback):
        def __init__(self, hook: str, epoch: int, marker: str, batch: int = 0):
            self.hook, self.epoch, self.batch, self.marker = hook, epoch, batch, marker

        def _maybe(self, trainer, hook, batch_idx=0):
            if (hook, trainer.current_epoch, batch_idx) == (self.hook, self.epoch, self.batch) \\
                    and not trainer.sanity_checking:
                Path(self.marker).write_text(str(os.getpid()))
                time.sleep(3600)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self._maybe(trainer, "on_train_batch_start", batch_idx)

        def on_validation_end(self, trainer, pl_module):
            self._maybe(trainer, "on_validation_end")

        def on_train_epoch_end(self, trainer, pl_module):
            self._maybe(trainer, "on_train_epoch_end")

    class StallAfterCheckpoint(Checkpoint, Stall):
        pass
""")

# dropout: the global RNG state matters, so restoring it from the checkpoint is tested too
BASE = ["dataset=toy_phdos", "model=mlp", "model.head.dropout=0.2", "trainer=debug", *CLI_SMALL]


def _env(tmp_path: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    path = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return cli_env(data_dir, PYTHONPATH=path, **extra)


def _run(args, tmp_path, data_dir, epochs=4):
    """Debug epochs; ``tmp_path`` on the path so configs can name ``stall.Stall``."""
    env = _env(tmp_path, data_dir)
    return train_cli([*BASE, f"trainer.max_epochs={epochs}", *args], data_dir, tmp_path, env=env)


def _last_epoch(run: Path) -> int | None:
    """Epoch of ``last.ckpt``, or None while it does not exist (or is being replaced)."""
    try:
        ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    except (FileNotFoundError, RuntimeError, EOFError):
        return None
    return int(ckpt["epoch"])


def _has_checkpoint_of(run: Path, epoch: int) -> bool:
    last = _last_epoch(run)
    return last is not None and last >= epoch


def _kill_at(tmp_path, data_dir, run: Path, epochs, stall, hook, epoch, batch, while_stalled=None):
    """Start ``dos-train`` in ``run``, wait until it stalls at (hook, epoch, batch) and until
    last.ckpt holds epoch ``epoch - 1`` or later, call ``while_stalled(pid)``, SIGKILL it;
    returns the killed process's pid."""
    (tmp_path / "stall.py").write_text(STALL)
    marker = tmp_path / f"stalled-{run.name}"
    args = [
        *BASE,
        f"trainer.max_epochs={epochs}",
        f"hydra.run.dir={run}",
        f"+callbacks.stall._target_=stall.{stall}",
        f"+callbacks.stall.hook={hook}",
        f"+callbacks.stall.epoch={epoch}",
        f"+callbacks.stall.batch={batch}",
        f"+callbacks.stall.marker={marker}",
    ]
    cmd = [sys.executable, "-m", "dos_bench.train", *args]
    log = tmp_path / f"{run.name}.log"
    with open(log, "w") as out:  # a file, not a pipe: a full pipe would block the run
        p = subprocess.Popen(
            cmd, cwd=tmp_path, env=_env(tmp_path, data_dir), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 600
        while not (marker.exists() and _has_checkpoint_of(run, epoch - 1)):
            assert p.poll() is None, (
                f"the run ended before the kill point: {log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, "the run never reached the kill point"
            time.sleep(0.2)
        if while_stalled is not None:
            while_stalled(p.pid)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL
    assert not (run / "metrics.json").exists()
    assert (run / LOCK_NAME).exists()  # SIGKILL: no chance to remove the lock
    return p.pid


def _check_second_run_refused(tmp_path, data_dir, run: Path, owner: int) -> None:
    """While the first run holds the directory, a second one stops at once with one message."""
    csv_before = (run / "csv" / "metrics.csv").read_bytes()
    p = _run([f"hydra.run.dir={run}"], tmp_path, data_dir)
    assert p.returncode == 2, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    errors = [ln for ln in (p.stdout + p.stderr).splitlines() if "ERROR" in ln]
    assert len(errors) == 1, p.stderr[-3000:]
    assert str(run) in errors[0] and f"pid {owner} on host {socket.gethostname()}" in errors[0]
    assert (run / "csv" / "metrics.csv").read_bytes() == csv_before


def _rows(run: Path) -> list[dict[str, float]]:
    with open(run / "csv" / "metrics.csv", newline="") as fh:
        return [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]


def _assert_same_result(full: Path, cut: Path, epochs: int) -> None:
    m_full = json.loads((full / "metrics.json").read_text())
    m_cut = json.loads((cut / "metrics.json").read_text())
    assert m_full["epochs_completed"] == m_cut["epochs_completed"] == epochs
    assert m_cut["selection"]["best_val"] == pytest.approx(m_full["selection"]["best_val"])
    assert m_cut["test"].keys() == m_full["test"].keys()
    for k, v in m_full["test"].items():
        assert m_cut["test"][k] == pytest.approx(v, rel=1e-6, abs=1e-6), k
    rows_full, rows_cut = _rows(full), _rows(cut)
    # a training and a validation row per epoch, then the test row: each exactly once
    assert [r["epoch"] for r in rows_full] == [*np.repeat(np.arange(epochs), 2), epochs]
    assert len(rows_cut) == len(rows_full)
    for a, b in zip(rows_full, rows_cut, strict=True):
        assert a.keys() == b.keys(), (a, b)
        assert b == pytest.approx(a, rel=1e-6, abs=1e-6)


def _resume(tmp_path, data_dir, cut: Path, epochs: int, killed_pid: int):
    p = _run([f"hydra.run.dir={cut}", "ckpt_path=last"], tmp_path, data_dir, epochs)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout + p.stderr
    assert "resuming from" in out and "RNG states restored" in out
    assert f"taking over the stale lock of pid {killed_pid}" in out
    assert not (cut / LOCK_NAME).exists()
    return p


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, data_dir):
    """Two epochs; SIGKILL mid-epoch 1 (after epoch 0's checkpoint); a second run in the same
    directory is refused meanwhile; the resumed run equals the uninterrupted one."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    p = _run([f"hydra.run.dir={full}"], tmp_path, data_dir, epochs=2)
    assert p.returncode == 0, p.stderr[-3000:]
    assert not (full / LOCK_NAME).exists()
    pid = _kill_at(
        tmp_path,
        data_dir,
        cut,
        2,
        "Stall",
        "on_train_batch_start",
        1,
        1,
        while_stalled=lambda owner: _check_second_run_refused(tmp_path, data_dir, cut, owner),
    )
    assert [r["epoch"] for r in _rows(cut)] == [0, 0]
    _resume(tmp_path, data_dir, cut, 2, pid)
    _assert_same_result(full, cut, 2)
    # the resumed process trained only the interrupted epoch, from its start
    assert json.loads((cut / "metrics.json").read_text())["timing"]["n_train_epochs"] == 1


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("full")
    p = _run([f"hydra.run.dir={tmp / 'full'}"], tmp, data_dir, epochs=4)
    assert p.returncode == 0, p.stderr[-3000:]
    return tmp / "full"


@pytest.mark.slow
@pytest.mark.parametrize(
    "stall, hook, epoch, batch",
    [
        ("Stall", "on_train_batch_start", 2, 1),  # mid-epoch 2, after epoch 1's checkpoint
        ("Stall", "on_validation_end", 2, 0),  # epoch 2's val row written, no checkpoint yet
        ("StallAfterCheckpoint", "on_train_epoch_end", 2, 0),  # checkpoint, no train row yet
    ],
    ids=["mid-epoch", "before-checkpoint", "after-checkpoint"],
)
def test_run_killed_at_any_point_resumes_exactly(
    tmp_path, data_dir, uninterrupted, stall, hook, epoch, batch
):
    cut = tmp_path / "cut"
    pid = _kill_at(tmp_path, data_dir, cut, 4, stall, hook, epoch, batch)
    _resume(tmp_path, data_dir, cut, 4, pid)
    _assert_same_result(uninterrupted, cut, 4)


# ---------------------------------------------------------------------------- checkpoint safety
def _evil(path: Path, marker: Path) -> None:
    """A pickle that runs ``touch marker`` when unpickled (tests/data/fixtures.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "dos_resume_fixtures", Path(__file__).parent / "data" / "fixtures.py"
    )
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    fixtures.write_evil_pickle(path, os.system, (f"touch {marker}",))


def test_malicious_checkpoint_is_refused_on_the_command_line(tmp_path, data_dir):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.ckpt"
    _evil(evil, marker)
    env = _env(tmp_path, data_dir, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    run = tmp_path / "run"
    args = [*BASE, f"hydra.run.dir={run}", f"ckpt_path={evil}"]
    p = train_cli(args, data_dir, tmp_path, env=env)
    assert p.returncode == 2, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    errors = [ln for ln in (p.stdout + p.stderr).splitlines() if "ERROR" in ln]
    assert len(errors) == 1 and str(evil) in errors[0] and "weights_only=True" in errors[0]
    assert not marker.exists()
    assert not (run / "config_resolved.yaml").exists() and not (run / LOCK_NAME).exists()


def test_malicious_last_checkpoint_is_refused(tmp_path, data_dir, monkeypatch):
    """``ckpt_path=last`` with a pickle in place of last.ckpt, torch's default forced off."""
    from dos_bench.train import train

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker, run = tmp_path / "pwned", tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    _evil(last, marker)
    cfg = compose_cfg(["model=mlp", "ckpt_path=last"], data_dir, run)
    with pytest.raises(DataError, match=str(last)):
        train(cfg)
    assert not marker.exists()
    assert not (run / LOCK_NAME).exists()  # released on error too
    with pytest.raises(DataError, match="refused"):
        load_checkpoint_safely(last)
    assert not marker.exists()


def test_every_checkpoint_load_is_weights_only(tmp_path, data_dir, monkeypatch):
    """A run, then its resume: each torch.load (our check, Lightning's resume, the test of the
    best checkpoint) is called with weights_only=True."""
    from dos_bench.train import train

    run = tmp_path / "run"
    train(compose_cfg(["model=mlp", "trainer.max_epochs=1", "plots=false"], data_dir, run))
    (run / "metrics.json").unlink()
    calls: list = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    m = train(
        compose_cfg(
            ["model=mlp", "trainer.max_epochs=2", "ckpt_path=last", "plots=false"], data_dir, run
        )
    )
    assert m["timing"]["n_train_epochs"] == 1
    assert len(calls) >= 3 and all(c is True for c in calls), calls


# ---------------------------------------------------------------------------- lock
def _write_lock(run: Path, pid: int, host: str | None = None) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    lock = run / LOCK_NAME
    info = {"pid": pid, "host": host or socket.gethostname(), "started": "then", "token": "x"}
    lock.write_text(json.dumps(info))
    return lock


def test_locked_run_directory_stops_a_second_run(tmp_path, data_dir):
    """A live owner (this test process) holds the lock: the CLI run stops with one message."""
    run = tmp_path / "run"
    lock = _write_lock(run, os.getpid())
    before = lock.read_text()
    p = _run([f"hydra.run.dir={run}"], tmp_path, data_dir, epochs=1)
    assert p.returncode == 2, p.stderr[-3000:]
    errors = [ln for ln in (p.stdout + p.stderr).splitlines() if "ERROR" in ln]
    assert len(errors) == 1, p.stderr[-3000:]
    assert (
        str(run) in errors[0] and f"pid {os.getpid()} on host {socket.gethostname()}" in errors[0]
    )
    assert lock.read_text() == before  # not taken, not removed
    assert not (run / "config_resolved.yaml").exists() and not (run / "csv").exists()


def test_lock_is_released_when_the_run_fails(tmp_path, data_dir):
    from dos_bench.train import train

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="last.ckpt"):
        train(compose_cfg(["model=mlp", "ckpt_path=last"], data_dir, run))
    assert not (run / LOCK_NAME).exists()


# ---------------------------------------------------------------------------- pieces
def test_shuffle_order_of_an_epoch_does_not_depend_on_history():
    from dos_bench.data.datamodule import EpochShuffleSampler

    data = list(range(50))
    a = EpochShuffleSampler(data, seed=3)
    orders = []
    for epoch in range(3):
        a.set_epoch(epoch)
        orders.append(list(a))
    b = EpochShuffleSampler(data, seed=3)
    b.set_epoch(2)
    next(iter(b))  # an iterator created and dropped (as Lightning does on restart)
    assert list(b) == orders[2] == list(b)
    assert orders[0] != orders[1] != orders[2]
    assert sorted(orders[1]) == data
    c = EpochShuffleSampler(data, seed=4)
    c.set_epoch(2)
    assert list(c) != orders[2]


# ---------------------------------------------------------------------------- sweeps, wandb
def test_completed_job_is_skipped(tmp_path, data_dir):
    run = tmp_path / "r"
    p = _run([f"hydra.run.dir={run}"], tmp_path, data_dir)
    assert p.returncode == 0, p.stderr[-2000:]
    before = (run / "metrics.json").stat().st_mtime_ns
    p = _run([f"hydra.run.dir={run}"], tmp_path, data_dir)
    assert p.returncode == 0 and "skipping" in p.stdout + p.stderr
    assert (run / "metrics.json").stat().st_mtime_ns == before


def test_wandb_offline_without_key_or_network(tmp_path, data_dir):
    run = tmp_path / "w"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB")}
    env.update(HOME=str(tmp_path), WANDB_DIR=str(tmp_path / "wandb_dir"))
    env["DOS_BENCH_DATA_DIR"] = str(data_dir)
    p = train_cli([*BASE, "logger=wandb", f"hydra.run.dir={run}"], data_dir, tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (run / "metrics.json").exists() and (run / "csv" / "metrics.csv").exists()
    offline = list(run.rglob("offline-run-*"))
    assert offline, "no offline wandb run directory was written"
    assert "anonymous" not in p.stdout + p.stderr  # "The anonymous setting has no effect"
    # the run's configuration: wandb >= 0.19 offline keeps it in the run's transaction log
    # (files/config.yaml is written only when the run is synced)
    (log_file,) = offline[0].glob("run-*.wandb")
    config = _wandb_config(log_file)
    assert config["optimizer"]["lr"] == 1.0e-3 and config["model"]["name"] == "mlp"
    assert config["data"]["batch_size"] == 16 and config["seed"] == 0
    assert config["dataset"]["name"] == "toy_phdos"


def _wandb_config(path: Path) -> dict:
    """The config of an offline wandb run, read from its ``run-<id>.wandb`` transaction log:
    a LevelDB-style log (header ``:W&B`` + magic + version, 32 KiB blocks of records with a
    7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST) of ``wandb_internal_pb2.Record``
    protobufs; the run record and config records carry ``ConfigItem``s (JSON values)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    block, pos, buf, config = 32768, 7, b"", {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer: zero padding
            pos += block - pos % block
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        buf += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind not in (1, 4):  # FIRST/MIDDLE chunks: the record continues
            continue
        rec = pb.Record()
        rec.ParseFromString(buf)
        buf = b""
        which = rec.WhichOneof("record_type")
        items = {"config": rec.config.update, "run": rec.run.config.update}.get(which, [])
        for item in items:
            keys = list(item.nested_key) or [item.key]
            node = config
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = json.loads(item.value_json)
    return config


def test_last_checkpoint_links_to_the_best_and_resume_and_predict_read_through_it(
    tmp_path, data_dir
):
    """One epoch: the best epoch is the last, so the run keeps one checkpoint file and
    last.ckpt links to it; dos-predict and ckpt_path=last work through the link, and training
    on from it never writes into the best checkpoint."""
    run = tmp_path / "one"
    p = _run([f"hydra.run.dir={run}"], tmp_path, data_dir, epochs=1)
    assert p.returncode == 0, p.stderr[-3000:]
    ckpts = run / "checkpoints"
    last, best = ckpts / "last.ckpt", ckpts / "epoch000.ckpt"
    assert last.is_symlink() and os.readlink(last) == "epoch000.ckpt"
    assert [f.name for f in ckpts.iterdir() if not f.is_symlink()] == ["epoch000.ckpt"]
    assert json.loads((run / "metrics.json").read_text())["selection"]["checkpoint"] == str(best)
    best_bytes = best.read_bytes()
    # dos-predict through the link
    Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).to(filename=str(tmp_path / "NaCl.cif"))
    out = tmp_path / "pred"
    pred = subprocess.run(
        [sys.executable, "-m", "dos_bench.predict", f"ckpt_path={last}"]
        + [f"inputs={tmp_path / 'NaCl.cif'}", f"output_dir={out}", f"hydra.run.dir={out}/h"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert (out / "predictions.csv").is_file() and (out / "NaCl.png").is_file()
    # resume through the link and train a second epoch
    args = [f"hydra.run.dir={run}", "ckpt_path=last", "skip_completed=false"]
    p = _run(args, tmp_path, data_dir, epochs=2)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming from" in p.stdout + p.stderr
    m = json.loads((run / "metrics.json").read_text())
    assert m["epochs_completed"] == 2 and m["timing"]["n_train_epochs"] == 1
    assert _last_epoch(run) == 1
    if best.exists():  # still the best: untouched by the second epoch's last.ckpt
        assert best.read_bytes() == best_bytes
    chosen = Path(m["selection"]["checkpoint"])
    assert chosen.is_file() and not chosen.is_symlink()
    assert last.is_symlink() == (chosen.name == "epoch001.ckpt")
