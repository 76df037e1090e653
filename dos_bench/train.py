"""``dos-train``: train and evaluate one configuration (``python -m dos_bench.train``).

A thin task function behind ``@hydra.main``: compose → build data → fit the target
representation on the train split → build the model → fit (checkpoint selected on validation) →
test → write ``metrics.json``, ``predictions.npz``, ``splits.json`` and a figure into the run
directory. Returns the monitored validation metric so sweepers can optimise it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from dos_bench.allocator import configure_cpu_allocator
from dos_bench.config import CONF_DIR as PACKAGED_CONF_DIR
from dos_bench.io import ConfigError, DataError, atomic_write, ensure_writable_dir, write_json

log = logging.getLogger("dos_bench.train")

# values that only the data can provide, read by the ${data:...} resolver in model configs
DATA_INFO: dict[str, Any] = {}


def _data_resolver(key: str) -> Any:
    if key not in DATA_INFO:
        raise ConfigError(
            f"${{data:{key}}} is only known after the data is set up; known keys: "
            f"{sorted(DATA_INFO) or 'none yet'}"
        )
    return DATA_INFO[key]


def _wandb_offline() -> bool:
    """Offline unless an API key is configured (environment or ~/.netrc) or WANDB_MODE=online."""
    import os

    if os.environ.get("WANDB_MODE") in ("online", "offline"):
        return os.environ["WANDB_MODE"] == "offline"
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path(os.path.expanduser("~/.netrc"))
    return not (netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"))


# Registered by the importable module only: under ``python -m dos_bench.train`` this file also
# runs as ``__main__`` (and as ``__mp_main__`` in spawned DDP workers), and the resolver must read
# the DATA_INFO that ``dos_bench.train.train`` fills.
#: longest job directory name built from the overrides (file systems allow 255 bytes)
MAX_JOB_DIRNAME = 120


def _path_safe(text: str) -> str:
    """A sweep job's override string as one directory name: config-group overrides such as
    ``model/head=rnn`` would otherwise nest the job directory (``/`` becomes ``.``), and a long
    override list (a table preset passes 16) is cut to :data:`MAX_JOB_DIRNAME` characters and
    ended by a hash of the whole string, so names stay unique and within the file system's limit
    (the full overrides are in the job's ``.hydra/overrides.yaml``)."""
    import hashlib

    name = str(text).replace("/", ".")
    if len(name.encode()) <= MAX_JOB_DIRNAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    head = name.encode()[: MAX_JOB_DIRNAME - len(digest) - 1].decode(errors="ignore")
    return f"{head}~{digest}"


if __name__ not in ("__main__", "__mp_main__"):
    OmegaConf.register_new_resolver("data", _data_resolver, use_cache=False, replace=True)
    OmegaConf.register_new_resolver("wandb_offline", _wandb_offline, replace=True)
    OmegaConf.register_new_resolver("path_safe", _path_safe, replace=True)


def _run_dir(cfg: DictConfig) -> Path:
    # paths.output_dir defaults to Hydra's run directory (conf/paths/default.yaml)
    return Path(cfg.paths.output_dir)


def _drop_advert(record: logging.LogRecord) -> bool:
    """Logging filter: Lightning's "Tip: try installing litlogger" line is an advert, not news."""
    return "litlogger" not in str(record.msg)


def _route_lightning_logs() -> None:
    """Send Lightning's messages through the root logger only (no doubled console lines).

    Lightning attaches its own stderr handlers when it is first imported, so it is imported here
    before they are removed.
    """
    if not logging.getLogger().hasHandlers():
        return
    import lightning  # noqa: F401  (installs the handlers this removes)

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if _drop_advert not in rank_zero.filters:
        rank_zero.addFilter(_drop_advert)


def build(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that surfaces our own errors unwrapped.

    Hydra wraps exceptions raised by a ``_target_`` in ``InstantiationException``; a
    :class:`ConfigError` or :class:`DataError` already names the key or record, so it is re-raised
    as it is, giving the user one clear message.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, (ConfigError, DataError)):
            raise cause from None
        raise


def build_callbacks(cfg: DictConfig) -> list:
    return [build(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def build_loggers(cfg: DictConfig, resume: dict[str, Any] | None = None) -> list:
    """The configured loggers. ``resume`` (:func:`dos_bench.resume.checkpoint_position` of the
    resumed checkpoint) makes the CSV logger keep its rows up to that epoch and a wandb logger
    continue the run id it wrote in this run directory."""
    from dos_bench.resume import wandb_run_id

    run_id = wandb_run_id(_run_dir(cfg)) if resume else None
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if node is None:
            continue
        kwargs: dict[str, Any] = {}
        if run_id and str(node.get("_target_", "")).endswith("WandbLogger"):
            kwargs = {"id": run_id, "resume": "allow"}
        lg = build(node, **kwargs)
        if resume and hasattr(lg, "resume_from"):
            lg.resume_from(resume["epoch"], resume.get("epoch_row"))
        loggers.append(lg)
    return loggers


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment; returns the metrics dictionary written to ``metrics.json``.

    With several devices (``trainer=ddp``, ``trainer=ddp_cpu``) this process prepares the data
    and the resolved config once, then starts one worker per device with ``elastic_launch``
    (:mod:`dos_bench.distributed`; avoids Lightning's script re-launch that breaks Hydra
    multirun, Lightning #11300/#18175, hydra #2070). Rank 0 alone tests the best checkpoint on
    one device and writes the run files (Lightning #12862).
    """
    import torch

    from dos_bench.distributed import plan_launch

    t_start = time.perf_counter()
    _route_lightning_logs()
    from dos_bench.validation import validate_train_config

    validate_train_config(cfg)  # types and ranges of the keys, the monitor: before any work
    run_dir = _run_dir(cfg)
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
    # one run per directory: the launching process / rank 0 holds <run dir>/.dos_bench.lock until
    # the run ends (other ranks and the elastic workers belong to the same run)
    from dos_bench.resume import RunLock

    lock = RunLock(run_dir).acquire() if plan.is_writer else None
    try:
        ckpt_path = _resume_path(cfg, run_dir)
        torch.set_num_threads(int(cfg.get("num_threads") or torch.get_num_threads()))
        configure_cpu_allocator(cfg.get("cpu_allocator", "retain"))
        prep = _prepare(cfg, run_dir, write=plan.is_writer)
        if plan.mode == "elastic":
            return _launch_elastic(prep, plan.world_size, ckpt_path)
        return _fit_and_test(cfg, prep, ckpt_path, t_start, distributed=plan.distributed)
    finally:
        if lock is not None:
            lock.release()


class _Prepared:
    """What the data stage hands to the model stage (and, pickled, to the DDP workers)."""

    def __init__(self, dm: Any, tt: Any, resolved: dict[str, Any]) -> None:
        self.dm, self.tt, self.resolved = dm, tt, resolved


def _prepare(cfg: DictConfig, run_dir: Path, *, write: bool, tt: Any = None) -> _Prepared:
    """Data, fitted target representation, ``DATA_INFO`` and the resolved config.

    ``write``: save ``config_resolved.yaml`` and ``splits.json`` (rank 0 only). ``tt``: an
    already fitted target representation (DDP workers receive the parent's).
    """
    fitted = tt is not None
    # ---- data (seeded by its own seeds, not the training seed)
    if tt is None:
        tt = build(cfg.target_repr)
    dm = build(cfg.data, extra_columns=list(tt.required_columns), _convert_="all")
    dm.setup("fit")
    if getattr(tt, "name", "") == "valence_norm" and dm.records.attrs.get("valence_normalised"):
        raise ConfigError(
            f"target_repr=valence_norm: dataset {dm.name} is already divided by the valence "
            "electron count (see its attrs['valence_check']); use target_repr=raw"
        )
    if not fitted:
        tt.fit(dm.part_targets("train"), batch=dm.part_columns("train", tt.required_columns))
    DATA_INFO.clear()
    DATA_INFO.update(
        atom_dim=dm.atom_dim, n_points=dm.n_points, target_dim=tt.latent_dim(dm.n_points)
    )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if write:
        with atomic_write(run_dir / "config_resolved.yaml") as tmp:
            tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
        write_json(
            run_dir / "splits.json",
            {**dm.split.ids(dm.records), "seed": cfg.split_seed, "dropped": dm.split.dropped},
        )
    return _Prepared(dm, tt, resolved)


def _launch_elastic(prep: _Prepared, nprocs: int, ckpt_path: str | None) -> dict[str, Any]:
    """Start ``nprocs`` workers on the resolved config; returns rank 0's metrics."""
    from dos_bench.distributed import _elastic_entry, logging_spec, run_elastic, start_method_for

    payload = {
        "config": prep.resolved,  # fully resolved: workers need neither Hydra nor sys.argv
        "data_info": dict(DATA_INFO),
        "target_transform": prep.tt,  # fitted once here, identical on every rank
        "ckpt_path": ckpt_path,
        "logging": logging_spec(),
    }
    prep.dm = None  # the workers load the (now cached) data themselves
    method = start_method_for(prep.resolved["trainer"].get("accelerator", "auto"))
    results = run_elastic(_elastic_entry, nprocs, payload, start_method=method)
    return results[0]


def run_worker(payload: dict[str, Any]) -> dict[str, Any]:
    """Body of one DDP worker started by :func:`dos_bench.distributed.run_elastic`.

    Lightning finds the process group settings in the environment variables the elastic agent
    set; ``TorchElasticEnvironment`` is passed explicitly so that an enclosing SLURM allocation
    is not taken for the launcher, and ``num_nodes=1``.
    """
    import torch
    from lightning.pytorch.plugins.environments import TorchElasticEnvironment

    t_start = time.perf_counter()
    _route_lightning_logs()
    cfg = OmegaConf.create(payload["config"])
    DATA_INFO.clear()
    DATA_INFO.update(payload["data_info"])
    torch.set_num_threads(int(cfg.get("num_threads") or torch.get_num_threads()))
    configure_cpu_allocator(cfg.get("cpu_allocator", "retain"))
    prep = _prepare(cfg, _run_dir(cfg), write=False, tt=payload["target_transform"])
    strategy = cfg.trainer.get("strategy", "auto")
    extra = {
        "plugins": [TorchElasticEnvironment()],
        "num_nodes": 1,
        "strategy": "ddp" if strategy in (None, "auto") else strategy,
    }
    return _fit_and_test(
        cfg, prep, payload["ckpt_path"], t_start, distributed=True, trainer_kwargs=extra
    )


def _fit_and_test(
    cfg: DictConfig,
    prep: _Prepared,
    ckpt_path: str | None,
    t_start: float,
    *,
    distributed: bool = False,
    trainer_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import lightning as L

    from dos_bench.lit import DOSLitModule, EpochTimer

    dm, tt, resolved = prep.dm, prep.tt, prep.resolved
    run_dir = _run_dir(cfg)
    # ---- model (every rank seeds alike, as Lightning does; DDP broadcasts rank 0's weights)
    L.seed_everything(cfg.seed, workers=True)
    model = build(cfg.model, out_dim=DATA_INFO["target_dim"], _recursive_=True)
    n_params = model.n_parameters()
    log.info("model %s: %s parameters", model.name, f"{n_params:,}")
    lit = DOSLitModule(
        model=model,
        target_transform=tt,
        loss=build(cfg.loss),
        optimizer=build(cfg.optimizer),
        scheduler=build(cfg.scheduler) if cfg.get("scheduler") else None,
        metrics=list(cfg.metrics),
        spacing=dm.spacing,
        scheduler_interval=cfg.get("scheduler_interval", "epoch"),
        monitor=cfg.monitor,
        metric_space=cfg.get("metric_space", "native"),
    )
    lit.run_config = resolved
    lit.run_meta = {
        "grid": dm.grid.tolist(),
        "spacing": dm.spacing,
        "kind": dm.records.attrs.get("kind"),
        "energy_unit": dm.records.attrs.get("energy_unit"),
        "dos_unit": dm.records.attrs.get("dos_unit"),
        "atom_dim": dm.atom_dim,
        "target_dim": DATA_INFO["target_dim"],
        "dataset": dm.name,
    }

    timer = EpochTimer(t_start)
    from dos_bench.resume import ResumeState, checkpoint_position

    loggers = build_loggers(cfg, checkpoint_position(ckpt_path) if ckpt_path else None)
    try:
        callbacks = build_callbacks(cfg)
        extra = dict(trainer_kwargs or {})
        if any(type(c).__name__ == "EpochLineLogger" for c in callbacks):
            extra["enable_progress_bar"] = False
        trainer: L.Trainer = build(
            cfg.trainer, callbacks=callbacks + [timer, ResumeState()], logger=loggers, **extra
        )
        # weights_only=True explicitly: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot turn it off
        trainer.fit(lit, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
        if not distributed:
            metrics = _test_and_write(cfg, trainer, lit, dm, tt, model, timer, run_dir, n_params)
        else:
            metrics = _test_on_rank_zero(
                cfg, trainer, lit, dm, tt, model, timer, loggers, run_dir, n_params, extra
            )
    finally:
        _close_loggers(loggers)
    return metrics


def _test_on_rank_zero(
    cfg,
    trainer,
    lit,
    dm,
    tt,
    model,
    timer,
    loggers,
    run_dir: Path,
    n_params: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """After a DDP fit: rank 0 tests the best checkpoint on one device and writes the files.

    ``trainer.test`` under DDP would pad the test set through the ``DistributedSampler`` and
    count some materials twice (Lightning #12862); one process sees every test material once.
    The process group is closed first, so the test runs exactly as in a one-process run.
    """
    import torch.distributed as dist

    rank = trainer.global_rank
    best_val = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every checkpoint is on disk before rank 0 reads the best one
        dist.destroy_process_group()
    if rank != 0:
        return {
            "selection": {
                "monitor": cfg.monitor,
                "best_val": None if best_val is None else float(best_val),
            }
        }
    kwargs = {k: v for k, v in extra.items() if k == "enable_progress_bar"}
    tester = build(
        cfg.trainer,
        devices=1,
        num_nodes=1,
        strategy="auto",
        sync_batchnorm=False,
        callbacks=[timer],
        logger=loggers,
        enable_checkpointing=False,
        **kwargs,
    )
    metrics = _test_and_write(
        cfg, trainer, lit, dm, tt, model, timer, run_dir, n_params, tester=tester
    )
    if metrics["n_test"] != len(lit.test_results["idx"]):
        raise RuntimeError(
            f"tested {len(lit.test_results['idx'])} materials, the test split has "
            f"{metrics['n_test']}"
        )
    return metrics


def _resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    """``ckpt_path=last`` continues from this run directory's ``checkpoints/last.ckpt``.

    The checkpoint is checked here, before any data is prepared: it must load with
    ``torch.load(weights_only=True)`` (:func:`dos_bench.resume.checkpoint_position`), else one
    :class:`DataError` names the file.
    """
    from dos_bench.resume import checkpoint_position

    ckpt = cfg.get("ckpt_path")
    if ckpt in (None, ""):
        return None
    if str(ckpt) == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
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


def _close_loggers(loggers: list) -> None:
    """Always close trackers: a wandb run left open leaks into the next multirun job."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            wandb.finish()


def _test_and_write(
    cfg, trainer, lit, dm, tt, model, timer, run_dir: Path, n_params: int, tester=None
):
    """Test the best checkpoint (on ``tester`` if given, else the fit trainer) and write files."""
    import torch

    from dos_bench.evaluate import derived_metrics
    from dos_bench.metrics import compute_metrics, grouped_metrics
    from dos_bench.models.baselines import MeanSpectrum

    ckpt_cb = trainer.checkpoint_callback
    best = getattr(ckpt_cb, "best_model_path", "") if ckpt_cb is not None else ""
    (tester or trainer).test(
        lit, datamodule=dm, ckpt_path=best or None, verbose=False, weights_only=True
    )
    res = lit.test_results
    if res is None:
        raise RuntimeError("the test loop produced no predictions (is the test split empty?)")

    # ---- baseline, files
    baseline = MeanSpectrum().fit(dm.part_targets("train"))
    base_metrics = compute_metrics(
        baseline.predict(len(res["true"])), res["true"], list(cfg.metrics), spacing=dm.spacing
    )
    best_val = ckpt_cb.best_model_score if ckpt_cb is not None else None
    metrics = {
        "dataset": dm.name,
        "model": model.name,
        "target_repr": tt.name,
        "loss": type(lit.loss_fn).__name__,
        "split": type(dm.splitter).__name__,
        "n_parameters": n_params,
        "n_train": len(dm.split.train),
        "n_val": len(dm.split.val),
        "n_test": len(dm.split.test),
        "seeds": {"train": cfg.seed, "split": cfg.split_seed, "data": cfg.data_seed},
        "test": res["metrics"],
        "baseline_mean_spectrum": base_metrics,
        "selection": {
            "monitor": cfg.monitor,
            "best_val": None if best_val is None else float(best_val),
            "checkpoint": str(best) if best else None,
        },
        "timing": timer.summary(),
        "epochs_completed": int(trainer.current_epoch),
        "units": {
            "energy": dm.records.attrs.get("energy_unit"),
            "dos": dm.records.attrs.get("dos_unit"),
        },
    }
    idx = res["idx"]
    groups = dm.groups(idx)
    metrics["kind"] = dm.records.attrs.get("kind")
    metrics["test_groups"] = grouped_metrics(
        res["pred"], res["true"], groups, list(cfg.metrics), spacing=dm.spacing
    )
    meta = _meta_columns(dm, idx)
    ev = cfg.get("evaluation") or {}
    if ev.get("derived", True) and metrics["kind"] in ("edos", "phdos"):
        probe = _fit_fermi_probe(dm, ev, cfg.seed) if metrics["kind"] == "edos" else None
        settings = dict(ev.get("settings") or {})
        if probe is not None:
            settings.setdefault("fermi_column", probe.column)
        metrics["derived"] = derived_metrics(
            res["pred"], res["true"], dm.grid, metrics["kind"], meta, settings, probe
        )
    if hasattr(tt, "reconstruction_mae"):
        val_y = torch.as_tensor(dm.part_targets("val"))
        rec = tt.reconstruct(val_y, dm.part_columns("val", tt.required_columns))
        metrics["autoencoder"] = {
            "latent": tt.latent,
            "reconstruction_mae_heldout_train": tt.reconstruction_mae,
            "reconstruction_mae_val_native": float(torch.mean(torch.abs(rec - val_y))),
        }
        log.info(
            "autoencoder (latent %d) reconstruction MAE on validation: %.4g (native units)",
            tt.latent,
            metrics["autoencoder"]["reconstruction_mae_val_native"],
        )
    write_json(run_dir / "metrics.json", metrics)
    with atomic_write(run_dir / "predictions.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                ids=dm.records.ids[idx].astype(str),
                energies=dm.grid,
                true=res["true"],
                pred=res["pred"],
                energy_unit=np.asarray(str(dm.records.attrs.get("energy_unit", ""))),
                spacing=np.asarray(dm.spacing),
                **{f"group_{k}": np.asarray(v).astype(str) for k, v in groups.items()},
                **{f"meta_{k}": v for k, v in meta.items()},
            )
    if cfg.get("plots", True):
        from dos_bench.plots import plot_quartile_examples

        plot_quartile_examples(run_dir / "predictions.npz", run_dir / "examples_by_quartile.png")
    _print_summary(metrics, run_dir)
    return metrics


META_COLUMNS = ("e_fermi", "e_fermi_abs", "band_gap", "vbm", "cbm", "n_species", "formula")


def _meta_columns(dm: Any, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Per-material metadata written beside the predictions (derived metrics and figures)."""
    out = {"n_atoms": dm.records.n_atoms[idx].astype(np.int64)}
    for col in META_COLUMNS:
        if col in dm.records.meta:
            v = dm.records.meta[col][idx]
            out[col] = v.astype(str) if v.dtype.kind in "OUS" else v.astype(np.float64)
    return out


def _fit_fermi_probe(dm: Any, ev: Any, seed: int):
    """DOSTransformer A.2: an MLP from ground-truth train spectra to the Fermi energy."""
    from dos_bench.physics import FermiProbe

    if not ev.get("fermi_probe", True):
        return None
    col = ev.get("fermi_column") or next(
        (c for c in ("e_fermi_abs", "e_fermi") if c in dm.records.meta), None
    )
    if col is None:
        return None
    target = dm.records.meta[col][dm.split.train].astype(np.float64)
    if not np.isfinite(target).all() or np.std(target) == 0:
        log.info("Fermi-energy probe skipped: %s is constant or missing on the train split", col)
        return None
    probe = FermiProbe(seed=seed, **dict(ev.get("fermi_probe_args") or {}))
    probe.fit(dm.part_targets("train"), target)
    probe.column = col
    return probe


def _print_summary(metrics: dict[str, Any], run_dir: Path) -> None:
    names = list(metrics["test"])
    width = 12
    lines = [
        f"\nTest metrics on {metrics['dataset']} ({metrics['n_test']} materials, native units):",
        f"{'model':<24}" + "".join(f"{n:>{width}}" for n in names),
        f"{metrics['model']:<24}" + "".join(f"{metrics['test'][n]:>{width}.4g}" for n in names),
        f"{'mean-spectrum baseline':<24}"
        + "".join(f"{metrics['baseline_mean_spectrum'][n]:>{width}.4g}" for n in names),
    ]
    b = metrics["baseline_mean_spectrum"].get("mae")
    m = metrics["test"].get("mae")
    if b and m is not None:
        gain = 100 * (1 - m / b)
        side = "below" if gain >= 0 else "ABOVE (worse than)"
        lines.append(f"MAE {abs(gain):.1f}% {side} the mean-spectrum baseline")
    lines.append(f"run directory: {run_dir}")
    print("\n".join(lines), flush=True)


# absolute: the packaged config directory, found the same way from a source checkout, an editable
# install and an installed wheel (``python -m``, the ``dos-train`` script, joblib/submitit workers)
CONF_DIR = str(PACKAGED_CONF_DIR)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        metrics = train(cfg)
    except (ConfigError, DataError) as exc:
        # one clear message naming the key, file or record; no traceback for bad input
        # (bad input or config fails fast, in a sweep too: it would fail every job alike)
        log.error("%s: %s", type(exc).__name__, exc)
        raise SystemExit(2) from None
    except Exception:
        if not multirun:
            raise
        # a job that fails at run time (e.g. a diverging loss) must not stop the other jobs of a
        # sweep; it has no metrics.json, so dos-tables shows it as failed
        log.exception("job failed; the sweep continues")
        return None
    return metrics["selection"]["best_val"]


if __name__ == "__main__":
    # run the importable ``dos_bench.train.main``, not this ``__main__`` copy: launchers that
    # pickle the task function (joblib, submitit) then pickle it by reference, and DATA_INFO and
    # the resolvers exist once
    from dos_bench.train import main as _main

    _main()
