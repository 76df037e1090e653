"""The pieces of a run, built from its config.

* :func:`build_data`: the set-up data module and the target representation fitted on its train
  split (checked against the data set first,
  :meth:`~dos_bench.data.transforms.TargetTransform.check_dataset`).
* :func:`build_module`: the model (completed with the data's sizes,
  :func:`dos_bench.models.model.build_model`), the loss, the optimizer and the schedule in one
  :class:`~dos_bench.training.module.DOSLitModule`, carrying what a checkpoint needs to rebuild
  the model for ``dos-predict`` (the resolved config, the grid, units and sizes).
* :func:`build_callbacks`, :func:`build_loggers` (continued on resume), :func:`close_loggers`.
* :func:`route_lightning_logs`: Lightning's messages through the root logger only.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dos_bench.config import build
from dos_bench.models.model import build_model
from dos_bench.training.module import DOSLitModule, Evaluation, Scheduling

__all__ = [
    "build_callbacks",
    "build_data",
    "build_loggers",
    "build_module",
    "checkpoint_meta",
    "close_loggers",
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
    dm = build(cfg.data, extra_columns=list(tt.required_columns), _convert_="all")
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
        if resume and hasattr(lg, "resume_from"):
            lg.resume_from(resume["epoch"], resume.get("epoch_row"))
        loggers.append(lg)
    return loggers


def close_loggers(loggers: list) -> None:
    """Always close trackers: a wandb run left open leaks into the next multirun job."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            wandb.finish()


def _drop_advert(record: logging.LogRecord) -> bool:
    """Logging filter: Lightning's "Tip: try installing litlogger" line is an advert, not news."""
    return "litlogger" not in str(record.msg)


def route_lightning_logs() -> None:
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
