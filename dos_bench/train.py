"""``dos-train``: train and evaluate one configuration (``python -m dos_bench.train``).

A thin task function behind ``@hydra.main``: compose → build the data and fit the target
representation on the train split (:func:`prepare`) → build the model and the trainer → fit
(checkpoint selected on validation) → test → write ``metrics.json``, ``predictions.npz``,
``splits.json`` and a figure into the run directory (:mod:`dos_bench.training.results`). Returns
the monitored validation metric so sweepers can optimise it.

With several devices this process prepares the data once and starts one worker per device
(:func:`run_worker`, :mod:`dos_bench.training.distributed` says why); rank 0 alone tests and writes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, read_write

from dos_bench.config import CONF_DIR as PACKAGED_CONF_DIR
from dos_bench.config import build
from dos_bench.io import ConfigError, DataError, ensure_writable_dir
from dos_bench.training import builders, results
from dos_bench.training.allocator import configure_cpu
from dos_bench.training.callbacks import EpochLineLogger, EpochTimer, ResumeState
from dos_bench.training.distributed import plan_launch
from dos_bench.training.resume import RunLock, checkpoint_position, resume_path, unlink_last
from dos_bench.training.sweep import parallel_jobs

__all__ = ["CONF_DIR", "Prepared", "build", "main", "prepare", "run_worker", "train"]

log = logging.getLogger("dos_bench.train")

# absolute: the packaged config directory, found the same way from a source checkout, an editable
# install and an installed wheel (``python -m``, the ``dos-train`` script, joblib/submitit workers)
CONF_DIR = str(PACKAGED_CONF_DIR)


@dataclass
class Prepared:
    """What the data stage hands to the model stage: the set-up data module, the fitted target
    representation and the resolved config."""

    dm: Any
    tt: Any
    resolved: dict[str, Any]


@dataclass
class WorkerJob:
    """One DDP worker's task: fit ``config`` (fully resolved: workers need neither Hydra nor
    ``sys.argv``) with the parent's fitted ``target_transform``, resuming from ``ckpt_path``."""

    config: dict[str, Any]
    target_transform: Any
    ckpt_path: str | None


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment; returns the metrics dictionary written to ``metrics.json``."""
    t_start = time.perf_counter()
    builders.route_lightning_logs()
    from dos_bench.validation import validate_train_config

    validate_train_config(cfg)  # types and ranges of the keys, the monitor: before any work
    run_dir = Path(cfg.paths.output_dir)
    done = run_dir / "metrics.json"
    if cfg.get("skip_completed", True) and done.exists():
        # a re-launched multirun skips jobs that already finished (their metrics are final)
        log.info("skipping %s: metrics.json exists (skip_completed=false to rerun)", run_dir)
        return json.loads(done.read_text())
    plan = plan_launch(cfg)
    if plan.mode == "external" and not plan.is_writer:
        # srun/torchrun started every rank with the Hydra job: only rank 0 fills the job's log
        logging.getLogger().setLevel(logging.WARNING)
    ensure_writable_dir(run_dir, key="paths.output_dir")  # unwritable: one ConfigError
    _no_bars_in_parallel_sweeps(cfg)
    # one run per directory: the launching process / rank 0 holds <run dir>/.dos_bench.lock until
    # the run ends (other ranks and the elastic workers belong to the same run)
    lock = RunLock(run_dir).acquire() if plan.is_writer else None
    try:
        ckpt_path = resume_path(cfg.get("ckpt_path"), run_dir)
        if plan.is_writer:  # before anything writes checkpoints/ again (resume or a rerun)
            unlink_last(run_dir / "checkpoints" / "last.ckpt")
        configure_cpu(cfg)
        prep = prepare(cfg, write=plan.is_writer)
        if plan.mode == "elastic":
            return _launch_elastic(prep, plan.world_size, ckpt_path)
        return _fit_and_test(cfg, prep, ckpt_path, t_start, distributed=plan.distributed)
    finally:
        if lock is not None:
            lock.release()


def _no_bars_in_parallel_sweeps(cfg: DictConfig) -> None:
    """Under the joblib launcher with several jobs at once, the jobs' progress bars (data and
    training) would interleave on one terminal: ``progress=false`` for this job, and
    :func:`_fit_and_test` logs one line per epoch instead."""
    n = parallel_jobs()
    if n > 1 and cfg.get("progress", True):
        with read_write(cfg):
            cfg.progress = False
        log.debug("%d parallel jobs: progress bars off, one log line per epoch instead", n)


def prepare(cfg: DictConfig, *, write: bool, tt: Any = None) -> Prepared:
    """Data, fitted target representation (:func:`~dos_bench.training.builders.build_data`) and
    the resolved config; ``write``: save ``config_resolved.yaml`` and ``splits.json`` (rank 0)."""
    dm, tt = builders.build_data(cfg, tt)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if write:
        results.write_run_inputs(Path(cfg.paths.output_dir), dm, resolved, cfg.split_seed)
    return Prepared(dm, tt, resolved)


def _launch_elastic(prep: Prepared, nprocs: int, ckpt_path: str | None) -> dict[str, Any]:
    """Start ``nprocs`` workers on the resolved config; returns rank 0's metrics."""
    from dos_bench.training.distributed import run_elastic, start_method_for

    job = WorkerJob(prep.resolved, prep.tt, ckpt_path)  # tt fitted once here, same on every rank
    prep.dm = None  # the workers load the (now cached) data themselves
    method = start_method_for(prep.resolved["trainer"].get("accelerator", "auto"))
    return run_elastic(run_worker, nprocs, job, start_method=method)[0]


def run_worker(job: WorkerJob) -> dict[str, Any]:
    """Body of one DDP worker started by :func:`dos_bench.training.distributed.run_elastic`.

    Lightning finds the process group settings in the environment variables the elastic agent
    set; ``TorchElasticEnvironment`` is passed explicitly so that an enclosing SLURM allocation
    is not taken for the launcher, and ``num_nodes=1``.
    """
    from lightning.pytorch.plugins.environments import TorchElasticEnvironment

    t_start = time.perf_counter()
    builders.route_lightning_logs()
    cfg = OmegaConf.create(job.config)
    configure_cpu(cfg)
    prep = prepare(cfg, write=False, tt=job.target_transform)
    strategy = cfg.trainer.get("strategy", "auto")
    extra = {
        "plugins": [TorchElasticEnvironment()],
        "num_nodes": 1,
        "strategy": "ddp" if strategy in (None, "auto") else strategy,
    }
    return _fit_and_test(cfg, prep, job.ckpt_path, t_start, distributed=True, trainer_kwargs=extra)


def _fit_and_test(
    cfg: DictConfig,
    prep: Prepared,
    ckpt_path: str | None,
    t_start: float,
    *,
    distributed: bool = False,
    trainer_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import lightning as L

    # ---- model (every rank seeds alike, as Lightning does; DDP broadcasts rank 0's weights)
    L.seed_everything(cfg.seed, workers=True)
    if ckpt_path:
        builders.quiet_library_noise(resuming=True)
    lit = builders.build_module(cfg, prep.dm, prep.tt, prep.resolved)
    timer = EpochTimer(t_start)
    loggers = builders.build_loggers(cfg, checkpoint_position(ckpt_path) if ckpt_path else None)
    try:
        callbacks = builders.build_callbacks(cfg)
        if parallel_jobs() > 1 and not any(isinstance(c, EpochLineLogger) for c in callbacks):
            callbacks.append(EpochLineLogger())  # the progress bar of a parallel sweep job
        extra = dict(trainer_kwargs or {})
        if any(isinstance(c, EpochLineLogger) for c in callbacks):
            extra["enable_progress_bar"] = False
        trainer: L.Trainer = build(
            cfg.trainer, callbacks=callbacks + [timer, ResumeState()], logger=loggers, **extra
        )
        builders.log_config(loggers, prep.resolved)  # rank 0 only (Lightning's rank_zero_only)
        # weights_only=True explicitly: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot turn it off
        trainer.fit(lit, datamodule=prep.dm, ckpt_path=ckpt_path, weights_only=True)
        fit = results.FitResult(cfg, trainer, lit, prep.dm, timer)
        if distributed:
            return results.run_test_on_rank_zero(fit, loggers, extra)
        return results.run_test_and_write(fit)
    finally:
        builders.close_loggers(loggers)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from dos_bench.training.distributed import is_multirun

    try:
        metrics = train(cfg)
    except (ConfigError, DataError) as exc:
        # one clear message naming the key, file or record; no traceback for bad input
        # (bad input or config fails fast, in a sweep too: it would fail every job alike)
        log.error("%s: %s", type(exc).__name__, exc)
        raise SystemExit(2) from None
    except Exception:
        if not is_multirun():
            raise
        # a job that fails at run time (e.g. a diverging loss) must not stop the other jobs of a
        # sweep; it has no metrics.json, so dos-tables shows it as failed
        log.exception("job failed; the sweep continues")
        return None
    return metrics["selection"]["best_val"]


def cli() -> None:
    """The ``dos-train`` command: a command line that cannot compose (an unknown group option or
    key, a malformed override) stops with one line and exit code 2 before Hydra starts, like
    every other bad config value; then :func:`main`."""
    import sys

    from dos_bench.config import composition_error

    problem = composition_error("train", sys.argv[1:])
    if problem:
        print(f"dos-train: {problem}", file=sys.stderr)
        raise SystemExit(2)
    main()


if __name__ == "__main__":
    # run the importable ``dos_bench.train.cli``, not this ``__main__`` copy: launchers that
    # pickle the task function (joblib, submitit) then pickle it by reference
    from dos_bench.train import cli as _cli

    _cli()
