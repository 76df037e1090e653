"""Multi-device training that survives Hydra multirun: plan, launch, gather.

Why this module exists (style.md "Ecosystem decisions"): Lightning's default DDP launcher
(``_SubprocessScriptLauncher``) starts rank 1.. by re-running ``sys.argv``. Under Hydra multirun
that child re-parses the command line and re-runs the whole sweep, or writes into a new
``outputs/`` directory (Lightning #11300, the revert #15737, still open #18175; hydra #2070).
The patterns used here instead:

* **elastic** (``trainer=ddp``, ``trainer=ddp_cpu``, no external launcher): the parent process
  composes the config once (Hydra has already done so), resolves it and prepares the data
  (:func:`dos_bench.train.train`), and starts ``nproc_per_node = devices`` workers with
  :func:`torch.distributed.launcher.api.elastic_launch` (rendezvous ``c10d`` on ``127.0.0.1`` with
  a free port and a unique ``run_id``) through :func:`run_elastic`, which runs the caller's
  top-level worker function (:func:`dos_bench.train.run_worker`) in each of them; the resolved
  config travels as a plain (picklable) container. Workers are clean interpreters (``spawn`` on
  GPU, ``forkserver`` on CPU, see :func:`start_method_for`); none re-parses the command line, so a
  multirun job with DDP writes exactly its own job directory (this module imports nothing of the
  run itself: the worker function is an argument). Inside the workers Lightning runs
  ``strategy=ddp`` on the environment variables the agent set (``TorchElasticEnvironment``, passed
  explicitly so that a SLURM allocation around the job cannot be mistaken for the launcher),
  ``num_nodes=1``.
* **external** (``SLURM_NTASKS`` > 1 under ``srun``/hydra-submitit-launcher with
  ``tasks_per_node = gpus_per_node``, or a process already started by ``torchrun``): the
  cluster has started one process per device, each running the Hydra job function; we do not
  launch anything and Lightning's ``SLURMEnvironment`` / ``TorchElasticEnvironment`` takes over.
* **lightning** (opt-in, ``+ddp_launcher=lightning``): Lightning's own sub-process re-launch.
  It works for a single run only; under ``-m`` it is refused with a :class:`ConfigError`.
* Spawn-type strategies (``ddp_spawn``, ``ddp_fork``, ``ddp_notebook``) pickle the trainer into
  workers and lose the run state (test predictions, timers) of rank 0; they are refused with a
  pointer to ``trainer=ddp_cpu``.

Evaluation under DDP: the ``DistributedSampler`` splits the validation set over ranks and pads
it by repeating samples, so :func:`gather_predictions` all-gathers the per-rank predictions and
keeps each record index once before the epoch metrics are computed. ``trainer.test`` under DDP
would duplicate samples the same way (Lightning #12862); dos_bench therefore tests on one
process: after ``fit``, rank 0 alone builds a single-device trainer and tests the best
checkpoint, and rank 0 alone writes the run files (``config_resolved.yaml`` and ``splits.json``
are written by the launching parent before the workers start; checkpoints and the CSV log by
Lightning on rank 0).

Seeds: every rank calls ``L.seed_everything(cfg.seed, workers=True)`` as Lightning does, so the
initial weights agree (DDP also broadcasts rank 0's weights and buffers when it wraps the
module); the ``DistributedSampler`` shuffles with ``seed = PL_GLOBAL_SEED`` (= ``cfg.seed``) plus
the epoch, so each rank sees a different, reproducible shard. ``data.batch_size`` is per process:
the effective batch is ``devices x batch_size``, so a DDP run is not numerically the same
experiment as a one-device run.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dos_bench.io import ConfigError

__all__ = [
    "LaunchPlan",
    "env_rank",
    "free_port",
    "gather_predictions",
    "is_multirun",
    "launch_config",
    "n_processes",
    "plan_launch",
    "run_elastic",
]

log = logging.getLogger(__name__)

# strategies whose multi-process launch Lightning does by re-running the script: we start the
# workers ourselves instead and hand Lightning the strategy name inside them
SCRIPT_STRATEGIES = (
    "auto",
    "ddp",
    "ddp_find_unused_parameters_true",
    "ddp_find_unused_parameters_false",
    "fsdp",
)
SPAWN_STRATEGIES = (
    "ddp_spawn",
    "ddp_fork",
    "ddp_notebook",
    "ddp_spawn_find_unused_parameters_true",
    "ddp_spawn_find_unused_parameters_false",
    "ddp_fork_find_unused_parameters_true",
    "ddp_fork_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true",
    "ddp_notebook_find_unused_parameters_false",
)
LAUNCHERS = ("elastic", "lightning")
START_METHODS = ("spawn", "forkserver")
# imported once by the forkserver (see start_method_for)
PRELOAD = (
    "lightning",
    "dos_bench.train",
    "dos_bench.training.module",
    "dos_bench.data.datamodule",
    "dos_bench.models.model",
)


@dataclass(frozen=True)
class LaunchPlan:
    """How this process takes part in a run.

    Attributes:
        mode: ``single`` (one process), ``elastic`` (this process starts ``world_size``
            workers with ``elastic_launch`` and waits), ``external`` (the cluster or torchrun
            started this process as one of ``world_size``), ``lightning`` (Lightning re-launches
            the script; single runs only).
        world_size: number of training processes.
        rank: this process's global rank as the environment tells it (0 for the parent of an
            elastic launch and for a single process).
        environment: ``slurm``, ``torchelastic``, ``lightning`` or ``""``.
    """

    mode: str
    world_size: int
    rank: int = 0
    environment: str = ""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_writer(self) -> bool:
        """Only global rank 0 writes run files (metrics, predictions, splits, config, plots)."""
        return self.rank == 0


# ---------------------------------------------------------------------------- environment
def env_rank() -> int:
    """Global rank from the environment (torchrun/elastic ``RANK``, SLURM, Lightning), else 0."""
    if os.environ.get("RANK") is not None:
        return int(os.environ["RANK"])
    if _slurm_world() is not None:
        return int(os.environ.get("SLURM_PROCID", 0))
    if os.environ.get("LOCAL_RANK") is not None:  # Lightning's own launcher sets these two
        # NODE_RANK * devices + LOCAL_RANK; num_nodes > 1 only exists under SLURM/torchrun
        return int(os.environ["LOCAL_RANK"]) + int(os.environ.get("NODE_RANK", 0)) * int(
            os.environ.get("LOCAL_WORLD_SIZE", 1)
        )
    return 0


def _slurm_world() -> int | None:
    """``SLURM_NTASKS`` when this process was started by ``srun`` as one of several tasks.

    As in Lightning's ``SLURMEnvironment.detect``: an interactive allocation (job name ``bash``
    or ``interactive``) does not count, since the user starts processes there by hand.
    """
    n = os.environ.get("SLURM_NTASKS")
    if n is None or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    return int(n) if int(n) > 1 else None


def _torchelastic_world() -> int | None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_torchelastic_launched():
        return int(os.environ.get("WORLD_SIZE", 1))
    return None


def is_multirun() -> bool:
    """True inside a Hydra ``-m`` job (False under the compose API or a plain single run)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return False
    return HydraConfig.get().mode == RunMode.MULTIRUN


# ---------------------------------------------------------------------------- planning
def n_processes(trainer_cfg: Any) -> int:
    """Processes per node that ``trainer.devices`` asks for (as Lightning would count them)."""
    devices = trainer_cfg.get("devices", "auto")
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices == -1:
            return _count_accelerators(accelerator)
        return max(devices, 1)
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1"):
            return 1 if accelerator == "cpu" else _count_accelerators(accelerator)
        if "," in text:  # "0,1,3": a list of GPU indices
            return len([t for t in text.split(",") if t.strip()])
        if text.isdigit():
            return max(int(text), 1)
        raise ConfigError(f"trainer.devices={devices!r}: expected an int, a list or 'auto'")
    try:
        return len(list(devices))  # ListConfig of device indices
    except TypeError as exc:
        raise ConfigError(
            f"trainer.devices={devices!r}: expected an int, a list or 'auto'"
        ) from exc


def _count_accelerators(accelerator: str) -> int:
    import torch

    if accelerator == "cpu":
        return 1
    return max(torch.cuda.device_count(), 1)


def plan_launch(cfg: Any) -> LaunchPlan:
    """Decide how this run starts its processes; refuse combinations known to break.

    Raises:
        ConfigError: naming the keys, for Lightning's script re-launch under Hydra multirun
            (Lightning #11300/#18175, hydra #2070), spawn-type strategies, a world size that
            does not match SLURM's task count, or several nodes without a cluster launcher.
    """
    tr = cfg.trainer
    strategy = tr.get("strategy", "auto")
    strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
    launcher = str(cfg.get("ddp_launcher") or "elastic")
    if launcher not in LAUNCHERS:
        raise ConfigError(f"ddp_launcher={launcher!r}: choose one of {list(LAUNCHERS)}")
    nodes = int(tr.get("num_nodes", 1) or 1)
    per_node = n_processes(tr)
    world = per_node * nodes

    local_tasks = int(os.environ.get("SUBMITIT_LOCAL_NTASKS", 1))
    if local_tasks > 1:
        raise ConfigError(
            f"hydra/launcher=submitit_local with hydra.launcher.tasks_per_node={local_tasks}: "
            "Lightning cannot see submitit's local tasks; keep tasks_per_node=1 there (DDP "
            "workers are then started with elastic_launch) or use submitit_slurm"
        )
    # processes started by the cluster (srun) or by torchrun: Lightning's environment takes over
    external = _slurm_world()
    env = "slurm"
    if external is None:
        external, env = _torchelastic_world(), "torchelastic"
    if external is not None:
        if world != external:
            raise ConfigError(
                f"trainer.devices={tr.get('devices')} x trainer.num_nodes={nodes} = {world} "
                f"processes, but the {env} launcher started {external}: on SLURM set "
                "hydra.launcher.tasks_per_node = hydra.launcher.gpus_per_node = trainer.devices "
                "and hydra.launcher.nodes = trainer.num_nodes"
            )
        return LaunchPlan("external", world, env_rank(), env)

    if world == 1:
        return LaunchPlan("single", 1)
    if strategy_name in SPAWN_STRATEGIES:
        raise ConfigError(
            f"trainer.strategy={strategy_name}: spawn-type strategies pickle the trainer into the "
            "workers and lose rank 0's test predictions; use trainer=ddp (GPUs) or "
            "trainer=ddp_cpu (CPU, gloo), which start the workers with elastic_launch"
        )
    if strategy_name not in SCRIPT_STRATEGIES:
        raise ConfigError(
            f"trainer.strategy={strategy_name} with {world} devices is not supported; "
            f"use one of {list(SCRIPT_STRATEGIES[1:])}"
        )
    if launcher == "lightning":
        if is_multirun():
            raise ConfigError(
                f"ddp_launcher=lightning with trainer.strategy={strategy_name} and "
                f"trainer.devices={tr.get('devices')} under Hydra multirun (hydra.mode=MULTIRUN): "
                "Lightning's sub-process re-launch re-runs the whole sweep in every child "
                "(Lightning #11300/#18175, hydra #2070). Drop ddp_launcher (elastic is the "
                "default), or use one device per sweep job"
            )
        return LaunchPlan("lightning", world, env_rank(), "lightning")
    if nodes > 1:
        raise ConfigError(
            f"trainer.num_nodes={nodes}: several nodes need a cluster launcher that starts one "
            "process per device (hydra/launcher=submitit_slurm with "
            "hydra.launcher.nodes and tasks_per_node = gpus_per_node, or torchrun)"
        )
    if str(tr.get("accelerator")) in ("gpu", "cuda"):
        import torch

        have = torch.cuda.device_count()
        if have < per_node:
            raise ConfigError(
                f"trainer.devices={tr.get('devices')} asks for {per_node} GPUs but {have} are "
                "visible; use trainer=ddp_cpu to try DDP on CPU"
            )
    return LaunchPlan("elastic", world, 0, "")


# ---------------------------------------------------------------------------- launching
def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def launch_config(
    nprocs: int, run_id: str | None = None, host: str = "127.0.0.1", start_method: str = "spawn"
):
    """A one-node :class:`LaunchConfig`: ``nprocs`` workers, c10d rendezvous on a free port.

    ``run_id`` is unique per launch, so two sweep jobs running at the same time on one machine
    (``hydra/launcher=joblib``) never join each other's rendezvous. ``max_restarts=0``: a failed
    worker fails the job, it is not retried silently.
    """
    from torch.distributed.launcher.api import LaunchConfig

    if start_method not in START_METHODS:
        raise ConfigError(f"DOS_BENCH_START_METHOD={start_method!r}: choose from {START_METHODS}")
    return LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=int(nprocs),
        run_id=run_id or f"dos_bench-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"{host}:{free_port(host)}",
        rdzv_configs={"timeout": 120},
        max_restarts=0,
        monitor_interval=0.2,
        start_method=start_method,
        local_addr=host,
    )


def start_method_for(accelerator: str) -> str:
    """``forkserver`` on CPU, ``spawn`` on GPU, unless ``DOS_BENCH_START_METHOD`` says otherwise.

    Both start clean interpreters that never parse ``sys.argv``. ``forkserver`` imports the heavy
    modules (:data:`PRELOAD`, ~8 s) once per parent process and forks each worker from that
    clean server, so the second DDP job of a sweep starts in about a second; the import of those
    modules was checked not to touch CUDA. ``spawn`` re-imports everything in every worker and is
    the conservative choice on GPU nodes.
    """
    method = os.environ.get("DOS_BENCH_START_METHOD")
    if method:
        return method
    return "forkserver" if str(accelerator) == "cpu" else "spawn"


def run_elastic(
    fn: Callable[..., Any], nprocs: int, *args: Any, start_method: str = "spawn"
) -> dict[int, Any]:
    """Run ``fn(*args)`` in ``nprocs`` workers; returns ``{rank: return value}``.

    ``fn`` must be a top-level (importable) function and ``args`` picklable: the workers are
    fresh interpreters (``spawn``/``forkserver``) that never see ``sys.argv``. Each worker first
    tells Lightning its rank and repeats this process's logging setup (:func:`logging_spec`).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    cfg = launch_config(nprocs, start_method=start_method)
    if start_method == "forkserver":
        import multiprocessing as mp

        mp.set_forkserver_preload(list(PRELOAD))  # no effect once the server runs
    log.info(
        "starting %d DDP workers with elastic_launch (%s, run_id %s, rendezvous %s)",
        nprocs,
        start_method,
        cfg.run_id,
        cfg.rdzv_endpoint,
    )
    saved = _save_signal_handlers(cfg.signals_to_handle)
    try:
        return elastic_launch(cfg, _elastic_entry)(fn, logging_spec(), *args)
    except ChildFailedError as exc:
        failures = "; ".join(
            f"rank {rank}: {f.message or f.error_file_data or f.exitcode}"
            for rank, f in exc.failures.items()
        )
        raise RuntimeError(f"a DDP worker failed: {failures}") from None
    finally:
        _restore_signal_handlers(saved)


def _save_signal_handlers(names: str) -> dict[int, Any]:
    """The elastic agent installs SIGTERM/SIGINT/... handlers that raise ``SignalException`` and
    leaves them installed. A later ``fork`` (e.g. a ``multiprocessing.Pool`` in the next sweep job
    or Optuna trial) inherits them, and ``Pool.terminate()`` then hangs on workers that turn
    SIGTERM into an exception instead of exiting; so the previous handlers are put back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}
    saved = {}
    for name in (n.strip() for n in (names or "").split(",")):
        sig = getattr(signal, name, None) if name else None
        if sig is not None:
            saved[sig] = signal.getsignal(sig)
    return saved


def _restore_signal_handlers(saved: dict[int, Any]) -> None:
    import signal

    for sig, handler in saved.items():
        if handler is not None:
            signal.signal(sig, handler)


def _elastic_entry(fn: Callable[..., Any], log_spec: dict[str, Any], *args: Any) -> Any:
    """Worker entry point of an elastic launch (top level, so that spawn can import it): set up
    the rank and the logging, then run ``fn(*args)``."""
    rank = int(os.environ.get("RANK", 0))
    _set_lightning_rank(rank)
    _setup_worker_logging(log_spec or {}, rank)
    return fn(*args)


def _set_lightning_rank(rank: int) -> None:
    """Lightning reads the rank from the environment at import; a forkserver worker imported it
    in the server (rank unset), so tell its rank-zero-only helpers before the trainer does."""
    from lightning.fabric.utilities import rank_zero as fabric_rank_zero
    from lightning.pytorch.utilities import rank_zero as pl_rank_zero

    fabric_rank_zero.rank_zero_only.rank = rank
    pl_rank_zero.rank_zero_only.rank = rank


# ---------------------------------------------------------------------------- logging
def logging_spec() -> dict[str, Any]:
    """The parent's root-logger setup (level, format, log files) to repeat in the workers."""
    root = logging.getLogger()
    fmt = datefmt = None
    files = []
    for h in root.handlers:
        if h.formatter is not None and fmt is None:
            fmt, datefmt = h.formatter._fmt, h.formatter.datefmt
        if isinstance(h, logging.FileHandler):
            files.append(h.baseFilename)
    return {"level": root.level, "format": fmt, "datefmt": datefmt, "files": files}


def _setup_worker_logging(spec: dict[str, Any], rank: int) -> None:
    """Rank 0 logs like the parent (console + the job's log file); other ranks warnings only."""
    fmt = spec.get("format") or "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    if rank == 0:
        root.setLevel(spec.get("level") or logging.INFO)
        handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
        handlers += [logging.FileHandler(f, mode="a") for f in spec.get("files") or []]
    else:
        root.setLevel(logging.WARNING)
        handlers = [logging.StreamHandler(sys.stderr)]
        fmt = f"[rank {rank}]" + fmt
    for h in handlers:
        h.setFormatter(logging.Formatter(fmt, spec.get("datefmt")))
        root.addHandler(h)


# ---------------------------------------------------------------------------- evaluation
def gather_predictions(
    idx: np.ndarray | None, pred: np.ndarray | None, true: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """All-gather per-rank evaluation arrays and keep every record index once.

    The ``DistributedSampler`` pads the last shard by repeating samples, so the concatenation
    over ranks can hold a record twice; duplicates are dropped by record index (the predictions
    of a record are the same on every rank, the weights being in sync). Every rank must call
    this (it is a collective); a rank without predictions passes ``None``. The result is sorted
    by record index and is the same on every rank.

    Shapes:
        idx ``(n_r,)``, pred / true ``(n_r, L)`` per rank → ``(N_unique,)``, ``(N_unique, L)``.
    """
    import torch.distributed as dist

    local = None if idx is None else (np.asarray(idx), np.asarray(pred), np.asarray(true))
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    parts = [p for p in parts if p is not None and len(p[0])]
    if not parts:
        return None, None, None
    all_idx = np.concatenate([p[0] for p in parts])
    _, first = np.unique(all_idx, return_index=True)
    return (
        all_idx[first],
        np.concatenate([p[1] for p in parts])[first],
        np.concatenate([p[2] for p in parts])[first],
    )
