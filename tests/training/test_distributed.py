"""DDP on CPU: two gloo processes started with elastic_launch (dos_bench.training.distributed).

No GPU is needed: ``trainer=ddp_cpu`` takes the same launch path as ``trainer=ddp``. The GPU
configuration is checked for what can be checked without GPUs (the plan and the launch config).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import CLI_SMALL, cli_env, compose_cfg, train_cli

from dos_bench.io import ConfigError
from dos_bench.training.distributed import (
    LaunchPlan,
    gather_predictions,
    launch_config,
    plan_launch,
    run_elastic,
)

RUN_FILES = {
    "metrics.json",
    "predictions.npz",
    "splits.json",
    "examples_by_quartile.png",
    "config_resolved.yaml",
    "checkpoints",
    "csv",
}
SMALL = CLI_SMALL


# ---------------------------------------------------------------------------- planning (fast)
def _cfg(tmp_path, data_dir, *overrides: str):
    return compose_cfg(list(overrides), data_dir, tmp_path / "run")


def test_plan_single_and_ddp_cpu(tmp_path, data_dir):
    assert plan_launch(_cfg(tmp_path, data_dir)) == LaunchPlan("single", 1)
    plan = plan_launch(_cfg(tmp_path, data_dir, "trainer=ddp_cpu"))
    assert (plan.mode, plan.world_size, plan.rank, plan.is_writer) == ("elastic", 2, 0, True)


def test_plan_gpu_ddp_without_gpus_fails_clearly(tmp_path, data_dir, monkeypatch):
    import torch

    cfg = _cfg(tmp_path, data_dir, "trainer=ddp", "trainer.devices=4")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ConfigError, match="trainer.devices=4 asks for 4 GPUs but 0"):
        plan_launch(cfg)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert plan_launch(cfg) == LaunchPlan("elastic", 4)


def test_launch_config_is_local_and_unique():
    a, b = launch_config(4), launch_config(4)
    assert a.nproc_per_node == 4 and a.min_nodes == a.max_nodes == 1
    assert a.rdzv_backend == "c10d" and a.rdzv_endpoint.startswith("127.0.0.1:")
    assert a.run_id != b.run_id and a.max_restarts == 0


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["trainer=ddp_cpu", "trainer.strategy=ddp_spawn"], "spawn-type strategies"),
        (["trainer=ddp_cpu", "trainer.num_nodes=2"], "trainer.num_nodes=2"),
        (["trainer=ddp_cpu", "++ddp_launcher=torchrun"], "ddp_launcher='torchrun'"),
    ],
)
def test_plan_refuses(tmp_path, data_dir, overrides, match):
    with pytest.raises(ConfigError, match=match):
        plan_launch(_cfg(tmp_path, data_dir, *overrides))


def test_lightning_relaunch_refused_under_multirun(tmp_path, data_dir, monkeypatch):
    import dos_bench.training.distributed as d

    cfg = _cfg(tmp_path, data_dir, "trainer=ddp_cpu", "++ddp_launcher=lightning")
    assert plan_launch(cfg).mode == "lightning"  # a single run may use it
    monkeypatch.setattr(d, "is_multirun", lambda: True)
    with pytest.raises(
        ConfigError,
        match=r"ddp_launcher=lightning.*trainer.strategy=ddp.*"
        r"trainer.devices=2.*hydra.mode=MULTIRUN",
    ):
        plan_launch(cfg)


def test_slurm_tasks_take_over(tmp_path, data_dir, monkeypatch):
    """srun with tasks_per_node = devices: no elastic launch; a mismatch names the keys."""
    cfg = _cfg(tmp_path, data_dir, "trainer=ddp_cpu")
    for k, v in {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_JOB_NAME": "train"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RANK", raising=False)
    plan = plan_launch(cfg)
    assert (plan.mode, plan.world_size, plan.rank, plan.environment) == ("external", 2, 1, "slurm")
    assert not plan.is_writer
    monkeypatch.setenv("SLURM_NTASKS", "4")
    with pytest.raises(ConfigError, match="tasks_per_node"):
        plan_launch(cfg)
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # salloc shell: not a launcher
    assert plan_launch(cfg).mode == "elastic"


# ---------------------------------------------------------------------------- two processes
def _gather_worker() -> dict[str, list | None]:
    """Rank 0 holds records 0, 1, 2; rank 1 holds 3, 4 and a padded repeat of 0."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    idx = np.array([0, 1, 2]) if rank == 0 else np.array([4, 3, 0])
    pred = idx[:, None] * np.ones((1, 3))
    out = {"full": [a.tolist() for a in gather_predictions(idx, pred, pred + 1)]}
    if rank == 1:
        idx = pred = None
    out["one_empty"] = [a.tolist() for a in gather_predictions(idx, pred, pred)]
    dist.destroy_process_group()
    return out


def test_gather_predictions_dedupes_padding_across_ranks():
    import signal

    before = signal.getsignal(signal.SIGTERM)
    res = run_elastic(_gather_worker, 2, start_method="forkserver")
    # the agent's SIGTERM handler must not outlive the launch (forked pools would hang on it)
    assert signal.getsignal(signal.SIGTERM) is before
    assert res[0] == res[1]  # every rank computes the metrics on the same arrays
    idx, pred, true = res[0]["full"]
    assert idx == [0, 1, 2, 3, 4]
    assert [row[0] for row in pred] == idx and [row[0] for row in true] == [i + 1 for i in idx]
    assert res[0]["one_empty"][0] == [0, 1, 2]


def _failing_worker() -> None:
    if os.environ["RANK"] == "1":
        raise ValueError("rank one is broken")


def test_worker_failure_is_reported():
    with pytest.raises(RuntimeError, match="a DDP worker failed: rank 1.*rank one is broken"):
        run_elastic(_failing_worker, 2, start_method="forkserver")


def test_ddp_cpu_test_metrics_match_one_process(data_dir, tmp_path):
    """(a) Two-process DDP fit; its test metrics equal a one-process test of the same checkpoint."""
    import torch

    from dos_bench.train import train

    cfg = compose_cfg(
        ["model=mlp", "trainer=ddp_cpu", "trainer.max_epochs=2"], data_dir, tmp_path / "ddp"
    )
    m = train(cfg)
    run = tmp_path / "ddp"
    # rank 0 alone wrote the run files; no second copy, nothing from rank 1
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert not list(tmp_path.glob("**/*.tmp"))
    splits = json.loads((run / "splits.json").read_text())
    assert m["n_test"] == len(splits["test"]) > 0
    with np.load(run / "predictions.npz") as z:
        assert z["pred"].shape[0] == m["n_test"]
        assert sorted(z["ids"].tolist()) == sorted(splits["test"])  # every material once
        ddp_ids, ddp_pred = z["ids"].copy(), z["pred"].copy()
    assert m["epochs_completed"] == 2 and m["timing"]["n_train_epochs"] == 2
    best = m["selection"]["checkpoint"]
    assert best and Path(best).parent == run / "checkpoints"

    # one process, same checkpoint, no further training: resume at the checkpoint's own epoch
    epoch = torch.load(best, map_location="cpu", weights_only=False)["epoch"]
    one = compose_cfg(
        ["model=mlp", f"ckpt_path='{best}'", f"trainer.max_epochs={epoch + 1}"],
        data_dir,
        tmp_path / "one",
    )
    m1 = train(one)
    assert m1["timing"]["n_train_epochs"] == 0
    assert m1["n_test"] == m["n_test"]
    for k, v in m["test"].items():
        assert m1["test"][k] == pytest.approx(v, rel=1e-6, abs=1e-6), k
    with np.load(tmp_path / "one" / "predictions.npz") as z:
        assert z["ids"].tolist() == ddp_ids.tolist()
        np.testing.assert_allclose(z["pred"], ddp_pred, rtol=1e-6, atol=1e-6)


def test_multirun_with_ddp_writes_exactly_its_job_dirs(data_dir, tmp_path):
    """(b) ``-m seed=0,1 trainer=ddp_cpu``: two jobs of two processes, two job dirs, no strays."""
    sweep = tmp_path / "sweep"
    args = ["-m", "model=mlp", "seed=0,1", "trainer=ddp_cpu", "trainer.max_epochs=1"]
    out = train_cli([*args, *SMALL, f"hydra.sweep.dir={sweep}"], data_dir, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    # (hidden files such as .split_stats-<hash>.txt are the sweep's own, not job dirs)
    entries = sorted(p.name for p in sweep.iterdir() if not p.name.startswith("."))
    assert entries[-1] == "multirun.yaml" and len(entries) == 3, entries
    for num, job in enumerate(entries[:2]):
        assert job.startswith(f"{num}_")
        jd = sweep / job
        names = {p.name for p in jd.iterdir()}
        assert names == RUN_FILES | {".hydra", "train.log"}, names
        m = json.loads((jd / "metrics.json").read_text())
        assert m["seeds"]["train"] == num and m["timing"]["n_train_epochs"] == 1
        log_text = (jd / "train.log").read_text()
        assert "starting 2 DDP workers with elastic_launch" in log_text
    assert out.stdout.count("Test metrics on") == 2  # rank 0 of each job, once
    assert not (tmp_path / "outputs").exists()  # no child re-ran Hydra into a new run dir


def test_cli_refuses_lightning_relaunch_under_multirun(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "model=mlp", "trainer=ddp_cpu", "++ddp_launcher=lightning"]
    out = train_cli([*args, *SMALL, f"hydra.sweep.dir={sweep}"], data_dir, tmp_path, 300)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "ConfigError: ddp_launcher=lightning" in text and "hydra.mode=MULTIRUN" in text
    assert not list(sweep.glob("*/metrics.json"))


@pytest.mark.slow
def test_simulated_srun_two_tasks(data_dir, tmp_path):
    """SLURM with tasks_per_node = 2: each task runs the job; Lightning's SLURMEnvironment."""
    from dos_bench.training.distributed import free_port

    run = tmp_path / "slurm"
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = {
            **cli_env(data_dir),
            "SLURM_NTASKS": "2",
            "SLURM_NTASKS_PER_NODE": "2",
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": str(rank),
            "SLURM_NODEID": "0",
            "SLURM_NNODES": "1",
            "SLURM_JOB_NAME": "train",
            "SLURM_JOB_ID": "4242",
            "SLURM_NODELIST": "127.0.0.1",
            "MASTER_PORT": port,
        }
        cmd = [
            sys.executable,
            "-m",
            "dos_bench.train",
            "model=mlp",
            "trainer=ddp_cpu",
            "trainer.max_epochs=1",
            *SMALL,
            f"hydra.run.dir={run}",
        ]
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=tmp_path,
                env=env,
            )
        )
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_o, e) in zip(procs, outs, strict=True):
        assert p.returncode == 0, e[-3000:]
    assert "mean-spectrum baseline" in outs[0][0] and "mean-spectrum baseline" not in outs[1][0]
    m = json.loads((run / "metrics.json").read_text())
    with np.load(run / "predictions.npz") as z:
        assert z["pred"].shape[0] == m["n_test"]
    assert {p.name for p in run.iterdir()} == RUN_FILES | {".hydra", "train.log"}


@pytest.mark.slow
def test_lightning_relaunch_single_run(data_dir, tmp_path):
    """``+ddp_launcher=lightning`` (Lightning's own re-launch) is allowed for a single run."""
    run = tmp_path / "run"
    args = ["model=mlp", "trainer=ddp_cpu", "++ddp_launcher=lightning", "trainer.max_epochs=1"]
    out = train_cli([*args, *SMALL, f"hydra.run.dir={run}"], data_dir, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("Test metrics on") == 1
    m = json.loads((run / "metrics.json").read_text())
    with np.load(run / "predictions.npz") as z:
        assert z["pred"].shape[0] == m["n_test"]


def test_submitit_local_with_several_tasks_is_refused(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "2")
    with pytest.raises(ConfigError, match="tasks_per_node=2"):
        plan_launch(_cfg(tmp_path, data_dir, "trainer=ddp_cpu"))
