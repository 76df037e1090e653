"""Issue 12: validation before work, and files (modes, orphans, read-only and full disks, damage).

Faults a user met, each checked through the real entry point where that is cheap (``dos-train``
as a subprocess on the tiny toy sets, ``dos-evaluate``, ``dos-hpsearch``) or by calling the
function that handles it. Tests run as root here, and root ignores permission bits: a
``chmod 555`` directory is still writable. Read-only directories and full disks are therefore
simulated by making the file-system call raise the ``OSError`` the kernel would raise (EROFS,
ENOSPC) with ``monkeypatch``; an unwritable output directory is made real by putting a regular
file where a parent directory should be (ENOTDIR, refused to root too).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_support import CLI_SMALL, CONF_DIR, cli_env, train_cli

import dos_bench.io as dio
from dos_bench.io import (
    ConfigError,
    DataError,
    StorageError,
    atomic_write,
    ensure_writable_dir,
    memory_cache,
    remove_orphan_temporaries,
    write_json,
)
from dos_bench.validation import check_search_space, logged_metrics, validate_train_config

SMALL = ["dataset=toy_phdos", "model=mlp", "trainer=debug", *CLI_SMALL]


def _lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ============================================================================ validation
@pytest.mark.parametrize(
    "override,message",
    [
        (
            "trainer.max_epochs=abc",
            "trainer.max_epochs: expected an integer >= 1 (or -1 for no limit), got 'abc'",
        ),
        ("optimizer.lr=-1", "optimizer.lr: expected a number > 0, got -1"),
        ("monitor=val/maee", "monitor: 'val/maee' is not a metric this run logs; did you mean"),
    ],
)
def test_bad_config_stops_before_the_data_with_one_line(tmp_path, override, message):
    """The user's three faults: exit 2, one line naming key and value, no data touched."""
    data = tmp_path / "fresh_data"  # empty: loading the data would generate the toy set here
    data.mkdir()
    run = tmp_path / "run"
    proc = train_cli([*SMALL, override, f"hydra.run.dir={run}"], data, tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = _lines(proc)
    assert len(lines) == 1, lines
    assert "ConfigError" in lines[0] and message in lines[0]
    assert "Traceback" not in proc.stderr
    assert list(data.iterdir()) == []  # failed before any data was loaded or generated
    assert not (run / "metrics.json").exists()


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["trainer.max_epochs=0"], r"trainer\.max_epochs: expected an integer >= 1"),
        (["trainer.max_epochs=2.5"], r"trainer\.max_epochs: .* got 2\.5"),
        (["trainer.precision=17"], r"trainer\.precision: expected one of .*'32-true'.*got 17"),
        (["trainer.devices=0"], r"trainer\.devices: expected an integer >= 1, -1 for all"),
        (["+trainer.accumulate_grad_batches=0"], r"trainer\.accumulate_grad_batches: .* got 0"),
        (["trainer.limit_train_batches=1.5"], r"trainer\.limit_train_batches: .* got 1\.5"),
        (["trainer.gradient_clip_val=-1"], r"trainer\.gradient_clip_val: expected a number >= 0"),
        (["trainer.accelerator=gpus"], r"trainer\.accelerator: expected one of 'auto', 'cpu'"),
        (["optimizer.weight_decay=-0.1"], r"optimizer\.weight_decay: expected a number >= 0"),
        (["+optimizer.betas=[0.9,1.0]"], r"optimizer\.betas: .* each a number in \[0, 1\)"),
        (["optimizer.lr=abc"], r"optimizer\.lr: expected a number > 0, got 'abc'"),
        (["data.batch_size=0"], r"data\.batch_size: expected an integer >= 1, got 0"),
        (["data.num_workers=-2"], r"data\.num_workers: expected an integer >= 0, got -2"),
        (["data.eval_batch_size=0"], r"data\.eval_batch_size: expected an integer >= 1"),
        (["split.train=0.9"], r"split\.train/val/test: expected fractions that sum to 1"),
        (["split.val=-0.1", "split.test=0.3"], r"split\.val: expected a number in \[0, 1\]"),
        (["split.train_fraction=0"], r"split\.train_fraction: expected a number in \(0, 1\]"),
        (["trainer.max_epochs=-1"], r"scheduler\.T_max: expected an integer >= 1, got -1"),
        (["metrics=[mae,rsme]"], r"metrics: unknown metric 'rsme'; did you mean 'rmse'"),
        (["monitor=test/mae"], r"monitor: 'test/mae' is a test metric"),
        (["metrics=[mae]", "monitor=val/wd"], r"monitor: 'val/wd' is not a metric this run logs"),
        (
            ["callbacks=early_stopping", "callbacks.early_stopping.monitor=val/lss"],
            r"callbacks\.early_stopping\.monitor: 'val/lss' .* did you mean 'val/loss'",
        ),
        (["callbacks.model_checkpoint.mode=minimum"], r"callbacks\.model_checkpoint\.mode"),
        (["num_threads=0"], r"num_threads: expected an integer >= 1 \(or null\), got 0"),
        (["metric_space=raw"], r"metric_space: expected one of 'native', 'normalised'"),
        (["seed=-1"], r"seed: expected an integer >= 0, got -1"),
    ],
)
def test_validation_rule_names_key_value_and_allowed(make_cfg, overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate_train_config(make_cfg(*overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["trainer.max_epochs=-1", "scheduler=none"],
        ["trainer=ddp_cpu"],
        ["trainer.devices=[0,1]"],
        ["trainer.precision=bf16-mixed"],
        ["trainer.limit_train_batches=0.5"],
        ["monitor=val/loss"],
        ["loss=mat2spec", "monitor=train/loss_kl"],
        ["split=index_file"],  # split.train/val/test are file names there, not fractions
        ["callbacks=early_stopping"],
        ["+callbacks.model_checkpoint_2={_target_: x.Y, monitor: null}"],  # every-epoch saver
    ],
)
def test_valid_configs_pass(make_cfg, overrides):
    validate_train_config(make_cfg(*overrides))


def test_every_experiment_preset_and_search_space_validates():
    """No false alarms: the shipped presets all pass."""
    from hydra import compose, initialize_config_dir

    presets = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
    searches = sorted(p.stem for p in (Path(CONF_DIR) / "hparams_search").glob("*.yaml"))
    assert presets and searches
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for ov in [f"experiment={p}" for p in presets] + [f"+hparams_search={s}" for s in searches]:
            validate_train_config(compose("train", overrides=[ov, "paths.output_dir=/tmp/x"]))


def test_logged_metrics_follow_the_config(make_cfg):
    names = logged_metrics(make_cfg("metrics=[mae,wd]"))
    assert names == ["val/loss", "val/mae", "val/wd", "train/loss"]


def test_search_space_values_are_checked_before_any_trial(tmp_path, capsys):
    from dos_bench.hpsearch import SearchParam, main

    with pytest.raises(ConfigError, match=r"hparams_search\.params\.optimizer\.lr: .* got -1"):
        check_search_space([SearchParam("optimizer.lr", {"low": -1.0, "high": 1.0})])
    with pytest.raises(ConfigError, match=r"hparams_search\.params\.bs \(data\.batch_size\)"):
        check_search_space([SearchParam("bs", {"keys": ["data.batch_size"], "choices": [8, 0]})])
    study = tmp_path / "study"
    rc = main(["hparams_search=smoke", "monitor=val/maee", f"hparams_search.dir={study}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "monitor: 'val/maee'" in err[0], err
    assert not study.exists()  # no study, no trial


# ============================================================================ output directory
def test_unwritable_output_dir_is_one_config_error(tmp_path, data_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "run"  # ENOTDIR, for root too
    run = tmp_path / "hydra_run"
    proc = train_cli(
        [*SMALL, f"hydra.run.dir={run}", f"paths.output_dir={out}"], data_dir, tmp_path
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = _lines(proc)
    assert len(lines) == 1, lines
    assert f"paths.output_dir={out}" in lines[0] and "ENOTDIR" in lines[0]
    assert "Traceback" not in proc.stderr


def test_read_only_output_dir_names_key_and_errno(tmp_path, monkeypatch):
    """EROFS on a new file in the output directory (simulated: root can write anywhere)."""

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(dio.tempfile, "mkstemp", read_only)
    with pytest.raises(ConfigError, match=r"paths\.output_dir=.*/out: .*EROFS: read-only"):
        ensure_writable_dir(tmp_path / "out", key="paths.output_dir")


# ============================================================================ full disk
def _fill_disk_when_writing_into(directory: Path, monkeypatch) -> None:
    """``np.savez`` writes some bytes into files under ``directory``, then fails with ENOSPC."""
    real = np.savez

    def savez(file, *args, **kwargs):
        name = getattr(file, "name", file)
        if str(name).startswith(str(directory)):
            file.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez", savez)


def test_disk_full_while_writing_the_data_cache(make_cfg, tmp_path, monkeypatch):
    from dos_bench.train import train

    data = tmp_path / "data"
    _fill_disk_when_writing_into(data, monkeypatch)
    cfg = make_cfg("dataset=toy_phdos", "model=mlp", f"paths.data_dir={data}")
    with pytest.raises(StorageError, match=r"toy_phdos-\w+\.npz: cannot write \(ENOSPC") as ei:
        train(cfg)
    assert isinstance(ei.value, DataError) and ei.value.errno == errno.ENOSPC
    assert str(data) in str(ei.value)
    assert [p.name for p in data.rglob("*") if p.is_file()] == []  # no cache, no .tmp
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_disk_full_in_a_writer_keeps_the_previous_file(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"old": 1})
    with pytest.raises(StorageError, match=r"metrics\.json: cannot write \(ENOSPC: no space"):
        with atomic_write(target) as tmp:
            tmp.write_text('{"new": ')
            raise OSError(errno.ENOSPC, "No space left on device")
    assert json.loads(target.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_storage_error_survives_pickling():
    import pickle

    exc = StorageError("x: cannot write", "/x", errno.EDQUOT)
    assert str(pickle.loads(pickle.dumps(exc))) == "x: cannot write"


# ============================================================================ read-only data dir
def test_read_only_data_dir_keeps_caches_in_memory(make_cfg, tmp_path, monkeypatch, caplog):
    """No cache yet in a read-only data directory: the run goes on, one warning names it.

    Simulated (tests run as root, which ignores ``chmod 555``): creating a directory or a file
    under the data directory raises EROFS, as a read-only mount would.
    """
    import logging

    from hydra.utils import instantiate

    from dos_bench.train import train

    data = tmp_path / "ro_data"
    data.mkdir()
    real_mkdir, real_mkstemp = os.mkdir, dio.tempfile.mkstemp

    def under(p) -> bool:
        return str(os.path.abspath(p)).startswith(str(data))

    def mkdir(path, *args, **kwargs):
        if under(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and under(dir):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(dio.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(dio, "_MEMORY_CACHE", {})
    monkeypatch.setattr(dio, "_WARNED_DIRS", set())
    caplog.set_level(logging.INFO)
    cfg = make_cfg("dataset=toy_phdos", "model=mlp", f"paths.data_dir={data}", "plots=false")
    metrics = train(cfg)
    assert metrics["n_test"] > 0 and (Path(cfg.paths.output_dir) / "metrics.json").is_file()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    ro = [w for w in warnings if "not writable" in w]
    assert len(ro) == 1, warnings
    assert ro[0].startswith(f"{data} is not writable (EROFS)")
    assert list(data.iterdir()) == []  # nothing written, nothing half-written
    assert len(dio._MEMORY_CACHE) == 2  # the records and the graphs
    # the same process asks again: served from memory, not generated anew
    source = instantiate(cfg.dataset.source)
    assert source.load(data) is memory_cache(source.cache_path(data))


# ============================================================================ modes
def test_run_files_and_caches_respect_umask_022(tmp_path):
    data = tmp_path / "data"  # fresh: this run writes the caches
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "dos_bench.train", *SMALL, f"hydra.run.dir={run}"]
    proc = subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$@"', "sh", *cmd],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=cli_env(data),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [run / f for f in ("metrics.json", "splits.json", "predictions.npz")]
    files += [run / "config_resolved.yaml", run / "examples_by_quartile.png"]
    caches = sorted(data.glob("*.npz")) + sorted((data / "graphs").glob("*.npz"))
    assert len(caches) == 2, caches
    for f in files + caches:
        assert _mode(f) == 0o644, f"{f}: {oct(_mode(f))}"


def test_atomic_write_mode_follows_another_umask(tmp_path, monkeypatch):
    monkeypatch.setattr(dio, "_UMASK", 0o027)
    assert _mode(write_json(tmp_path / "a.json", {})) == 0o640
    monkeypatch.setattr(dio, "_UMASK", 0o002)
    with atomic_write(tmp_path / "b.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, x=np.zeros(2))
    assert _mode(tmp_path / "b.npz") == 0o664


# ============================================================================ orphans
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_orphan_temporaries_are_removed_on_the_next_write(tmp_path):
    target = tmp_path / "splits.json"
    host = dio._HOST
    dead = tmp_path / f".splits.json.{host}.{_dead_pid()}.abcd1234.tmp"
    old = tmp_path / ".splits.json.k2j4h5g6.tmp"  # older naming, no writer recorded
    live = tmp_path / f".splits.json.{host}.{os.getppid()}.zzzz9999.tmp"  # a live writer
    other = tmp_path / f".other.json.{host}.{_dead_pid()}.abcd1234.tmp"  # not this file's
    for f in (dead, old, live, other):
        f.write_bytes(b"half")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    write_json(target, {"train": []})
    assert not dead.exists() and not old.exists()
    assert live.exists() and other.exists()
    assert json.loads(target.read_text()) == {"train": []}
    # untouched for longer than ORPHAN_AGE_S: an orphan whatever its pid says
    os.utime(live, (hour_ago, hour_ago))
    assert remove_orphan_temporaries(target) == [live]


def test_kill_9_during_a_cache_write_leaves_an_orphan_the_next_write_removes(tmp_path):
    target = tmp_path / "graphs" / "graphs-0123456789ab.npz"
    code = (
        "import os, signal, sys\n"
        "from dos_bench.io import atomic_write\n"
        "with atomic_write(sys.argv[1]) as tmp:\n"
        "    open(tmp, 'wb').write(b'PK' + b'x' * 4096)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(target)], timeout=120)
    assert proc.returncode == -9
    orphans = list(target.parent.glob(".graphs-0123456789ab.npz.*.tmp"))
    assert len(orphans) == 1 and not target.exists()
    with atomic_write(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, x=np.arange(3))
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


# ============================================================================ damaged results
def _run_with_predictions(path: Path) -> Path:
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(
        path / "predictions.npz",
        ids=np.array(["a", "b", "c"]),
        energies=np.linspace(-2, 2, 50),
        true=rng.random((3, 50)),
        pred=rng.random((3, 50)),
        energy_unit=np.asarray("eV"),
    )
    (path / "metrics.json").write_text(json.dumps({"dataset": "d", "model": "m", "kind": "edos"}))
    return path


def test_evaluate_truncated_predictions_names_the_file(tmp_path):
    run = _run_with_predictions(tmp_path / "run")
    npz = run / "predictions.npz"
    blob = npz.read_bytes()
    npz.write_bytes(blob[: len(blob) // 2])
    proc = subprocess.run(
        [sys.executable, "-m", "dos_bench.evaluate", str(run)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert str(npz) in err[0] and "damaged" in err[0]
    assert proc.stdout == ""


def test_evaluate_corrupt_metrics_json_names_the_file(tmp_path, capsys):
    from dos_bench.evaluate import main

    run = _run_with_predictions(tmp_path / "run")
    (run / "metrics.json").write_text('{"dataset": "d", "te')
    assert main([str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run / "metrics.json") in err[0] and "damaged" in err[0]
