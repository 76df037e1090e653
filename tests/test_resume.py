"""A run killed mid-training resumes with ckpt_path=last; multirun jobs that finished are skipped;
wandb works offline without a key."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import torch
from conftest import CLI_SMALL, cli_env, train_cli

KILLER = textwrap.dedent('''
    import os, signal
    from lightning.pytorch.callbacks import Callback

    class KillAfterEpoch(Callback):
        """Fault injection: SIGKILL the process once epoch `epoch` has been checkpointed."""
        def __init__(self, epoch: int):
            self.epoch = epoch
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == self.epoch:
                trainer.save_checkpoint(trainer.checkpoint_callback.dirpath + "/last.ckpt")
                os.kill(os.getpid(), signal.SIGKILL)
''')


BASE = ["dataset=toy_phdos", "model=mlp", "trainer=debug", *CLI_SMALL]


def _run(args, tmp_path, data_dir):
    """Four debug epochs; ``tmp_path`` on the path so configs can name ``killer.KillAfterEpoch``."""
    path = f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env = cli_env(data_dir, PYTHONPATH=path)
    return train_cli([*BASE, "trainer.max_epochs=4", *args], data_dir, tmp_path, env=env)


def _last_epoch(run: Path) -> int:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return int(ckpt["epoch"])


def test_killed_run_resumes_to_the_same_number_of_epochs(tmp_path, data_dir):
    (tmp_path / "killer.py").write_text(KILLER)
    full, cut = tmp_path / "full", tmp_path / "cut"
    p = _run([f"hydra.run.dir={full}"], tmp_path, data_dir)
    assert p.returncode == 0, p.stderr[-2000:]
    p = _run(
        [
            f"hydra.run.dir={cut}",
            "+callbacks.killer._target_=killer.KillAfterEpoch",
            "+callbacks.killer.epoch=1",
        ],
        tmp_path,
        data_dir,
    )
    assert p.returncode != 0  # killed
    assert not (cut / "metrics.json").exists()
    assert _last_epoch(cut) == 1
    p = _run([f"hydra.run.dir={cut}", "ckpt_path=last"], tmp_path, data_dir)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "resuming from" in p.stdout + p.stderr
    m_full = json.loads((full / "metrics.json").read_text())
    m_cut = json.loads((cut / "metrics.json").read_text())
    assert m_full["epochs_completed"] == m_cut["epochs_completed"] == 4
    assert _last_epoch(cut) == _last_epoch(full)
    # the resumed process trained only the remaining epochs
    assert m_cut["timing"]["n_train_epochs"] == 2


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
