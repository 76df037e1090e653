"""The pieces of a run, built from its config.

* :func:`build_data`: the set-up data module and the target representation fitted on its train
  split (checked against the data set first,
  :meth:`~dos_bench.data.transforms.TargetTransform.check_dataset`).
* :func:`build_module`: the model (completed with the data's sizes,
  :func:`dos_bench.models.model.build_model`), the loss, the optimizer and the schedule in one
  :class:`~dos_bench.training.module.DOSLitModule`, carrying what a checkpoint needs to rebuild
  the model for ``dos-predict`` (the resolved config, the grid, units and sizes).
* :func:`build_callbacks`, :func:`build_loggers` (continued on resume), :func:`log_config`
  (the resolved config as every logger's hyperparameters), :func:`close_loggers`.
* :func:`route_lightning_logs`: Lightning's messages through the root logger only, without the
  lines and warnings a user cannot act on (:func:`quiet_library_noise`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dos_bench.config import build
from dos_bench.models.model import build_model, compile_model
from dos_bench.training.module import DOSLitModule, Evaluation, Scheduling
from dos_bench.training.sweep import split_stats_reporter

__all__ = [
    "build_callbacks",
    "build_data",
    "build_loggers",
    "build_module",
    "checkpoint_meta",
    "close_loggers",
    "log_config",
    "quiet_library_noise",
    "route_lightning_logs",
]

log = logging.getLogger("dos_bench.train")


def build_data(cfg: DictConfig, tt: Any = None) -> tuple[Any, Any]:
    """``(data module, target representation)``: the data (seeded by its own seeds, not the
    training seed) set up for fitting, and ``tt`` fitted on its train split unless given already
    fitted (DDP workers receive the parent's)."""
    fitted = tt is not None
    if tt is None:
        tt = build(cfg.target_repr)
    dm = build(
        cfg.data,
        extra_columns=list(tt.required_columns),
        split_report=split_stats_reporter,
        _convert_="all",
    )
    dm.setup("fit")
    tt.check_dataset(dm.name, dm.records.attrs)
    if not fitted:
        tt.fit(dm.part_targets("train"), batch=dm.part_columns("train", tt.required_columns))
    return dm, tt


def build_module(cfg: DictConfig, dm: Any, tt: Any, resolved: dict[str, Any]) -> DOSLitModule:
    """The LightningModule of a run on the set-up data ``dm`` with the fitted representation
    ``tt``; ``resolved`` (the resolved config) is saved in every checkpoint."""
    target_dim = tt.latent_dim(dm.n_points)
    model = build_model(cfg.model, in_dim=dm.atom_dim, out_dim=target_dim)
    log.info("model %s: %s parameters", model.name, f"{model.n_parameters():,}")
    compile_model(model, bool(cfg.get("compile", False)))  # torch.compile(dynamic=True)
    loss = build(cfg.loss)
    optimizer = build(cfg.optimizer)
    scheduler = build(cfg.scheduler) if cfg.get("scheduler") else None
    scheduling = None
    if scheduler is not None:
        interval = cfg.get("scheduler_interval", "epoch")
        scheduling = Scheduling(scheduler, interval, cfg.monitor)
    evaluation = Evaluation(list(cfg.metrics), dm.spacing, cfg.get("metric_space", "native"))
    lit = DOSLitModule(model, tt, loss, optimizer, scheduling, evaluation)
    lit.run_config = resolved
    lit.run_meta = checkpoint_meta(dm, target_dim)
    return lit


def checkpoint_meta(dm: Any, target_dim: int) -> dict[str, Any]:
    """What a checkpoint stores beside the config to rebuild the model for new crystals."""
    return {
        "grid": dm.grid.tolist(),
        "spacing": dm.spacing,
        "kind": dm.records.attrs.get("kind"),
        "energy_unit": dm.records.attrs.get("energy_unit"),
        "dos_unit": dm.records.attrs.get("dos_unit"),
        "atom_dim": dm.atom_dim,
        "target_dim": target_dim,
        "dataset": dm.name,
    }


def build_callbacks(cfg: DictConfig) -> list:
    return [build(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]


def build_loggers(cfg: DictConfig, resume: dict[str, Any] | None = None) -> list:
    """The configured loggers. ``resume`` (:func:`~dos_bench.training.resume.checkpoint_position`
    of the resumed checkpoint) makes the CSV logger keep its rows up to that epoch and a wandb
    logger continue the run id it wrote in this run directory."""
    from dos_bench.training.resume import wandb_run_id

    run_id = wandb_run_id(Path(cfg.paths.output_dir)) if resume else None
    loggers = []
    for node in (cfg.get("logger") or {}).values():
        if node is None:
            continue
        kwargs: dict[str, Any] = {}
        if run_id and str(node.get("_target_", "")).endswith("WandbLogger"):
            kwargs = {"id": run_id, "resume": "allow"}
        lg = build(node, **kwargs)
        _drop_wandb_anonymous(lg)
        if resume and hasattr(lg, "resume_from"):
            lg.resume_from(resume["epoch"], resume.get("epoch_row"))
        loggers.append(lg)
    return loggers


def _drop_wandb_anonymous(lg: Any) -> None:
    """Lightning's ``WandbLogger`` always passes ``anonymous`` to ``wandb.init`` (``None`` unless
    asked for), and wandb >= 0.19 warns "The anonymous setting has no effect" whenever the key is
    passed at all: leave it out."""
    init = getattr(lg, "_wandb_init", None)
    if type(lg).__name__ == "WandbLogger" and isinstance(init, dict) and not init.get("anonymous"):
        init.pop("anonymous", None)


def log_config(loggers: list, resolved: dict[str, Any]) -> None:
    """The resolved config (nested: ``optimizer.lr``, ``model.name``, ``data.batch_size``,
    ``seed``, ...) as the hyperparameters of every logger: the wandb run's config, the CSV
    logger's ``hparams.yaml``, TensorBoard's hparams. Lightning logs only a module's
    ``save_hyperparameters``, which dos_bench does not use (the checkpoint carries the config)."""
    for lg in loggers:
        lg.log_hyperparams(resolved)


def close_loggers(loggers: list) -> None:
    """Always close trackers: a wandb run left open leaks into the next multirun job."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            wandb.finish()


#: Lightning INFO lines that say nothing on a machine without the hardware they name
_NOTHING_TO_REPORT = ("GPU available: False, used: False", "TPU available: False, using: 0 TPU")


def _drop_advert(record: logging.LogRecord) -> bool:
    """Logging filter: Lightning's "Tip: try installing litlogger" line is an advert, not news,
    and "GPU available: False, used: False" / "TPU available: False" report an absence on every
    CPU run ("GPU available: True ..." is kept)."""
    msg = str(record.msg)
    return "litlogger" not in msg and not msg.startswith(_NOTHING_TO_REPORT)


def quiet_library_noise(resuming: bool = False) -> None:
    """Hide the library warnings no dos_bench user can act on (README "Warnings").

    * torch (2.13 here) deprecates ``LeafSpec``, which Lightning 2.6 itself still uses
      (``lightning/pytorch/utilities/_pytree.py``): a FutureWarning on every fit, for
      Lightning's maintainers to fix.
    * "The number of training batches (n) is smaller than the logging interval
      Trainer(log_every_n_steps=...)": dos_bench logs epoch means only (``on_step=False``), so
      the interval changes nothing that is logged; the advice to lower it would not either.
    * ``resuming``: "Checkpoint directory <run>/checkpoints exists and is not empty" is what a
      resumed run expects (a fresh run in a used directory still gets the warning).

    Filters match the message text, so any other warning of the same category still shows.
    """
    import warnings

    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )
    warnings.filterwarnings(
        "ignore", message=r"The number of training batches \(\d+\) is smaller than the logging"
    )
    if resuming:
        warnings.filterwarnings(
            "ignore", message=r"Checkpoint directory .* exists and is not empty"
        )


def route_lightning_logs() -> None:
    """Send Lightning's messages through the root logger only (no doubled console lines).

    Lightning attaches its own stderr handlers when it is first imported, so it is imported here
    before they are removed. Also installs :func:`quiet_library_noise`.
    """
    quiet_library_noise()
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
