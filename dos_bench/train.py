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

from dos_bench.io import ConfigError, DataError, atomic_write, write_json

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


if not OmegaConf.has_resolver("data"):
    OmegaConf.register_new_resolver("data", _data_resolver, use_cache=False)
if not OmegaConf.has_resolver("wandb_offline"):
    OmegaConf.register_new_resolver("wandb_offline", _wandb_offline)


def _run_dir(cfg: DictConfig) -> Path:
    # paths.output_dir defaults to Hydra's run directory (conf/paths/default.yaml)
    return Path(cfg.paths.output_dir)


def _route_lightning_logs() -> None:
    """Send Lightning's messages through the root logger only (no doubled console lines)."""
    if not logging.getLogger().hasHandlers():
        return
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True


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


def build_loggers(cfg: DictConfig) -> list:
    return [build(c) for c in (cfg.get("logger") or {}).values() if c is not None]


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one experiment; returns the metrics dictionary written to ``metrics.json``."""
    import lightning as L
    import torch

    from dos_bench.lit import DOSLitModule, EpochTimer

    t_start = time.perf_counter()
    _route_lightning_logs()
    run_dir = _run_dir(cfg)
    done = run_dir / "metrics.json"
    if cfg.get("skip_completed", True) and done.exists():
        # a re-launched multirun skips jobs that already finished (their metrics are final)
        log.info("skipping %s: metrics.json exists (skip_completed=false to rerun)", run_dir)
        return json.loads(done.read_text())
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = _resume_path(cfg, run_dir)
    torch.set_num_threads(int(cfg.get("num_threads") or torch.get_num_threads()))

    # ---- data (seeded by its own seeds, not the training seed)
    tt = build(cfg.target_repr)
    dm = build(cfg.data, extra_columns=list(tt.required_columns), _convert_="all")
    dm.setup("fit")
    if getattr(tt, "name", "") == "valence_norm" and dm.records.attrs.get("valence_normalised"):
        raise ConfigError(
            f"target_repr=valence_norm: dataset {dm.name} is already divided by the valence "
            "electron count (see its attrs['valence_check']); use target_repr=raw"
        )
    tt.fit(dm.part_targets("train"), batch=dm.part_columns("train", tt.required_columns))
    DATA_INFO.clear()
    DATA_INFO.update(
        atom_dim=dm.atom_dim, n_points=dm.n_points, target_dim=tt.latent_dim(dm.n_points)
    )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    with atomic_write(run_dir / "config_resolved.yaml") as tmp:
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    write_json(run_dir / "splits.json", {**dm.split.ids(dm.records), "seed": cfg.split_seed})

    # ---- model
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
    loggers = build_loggers(cfg)
    try:
        callbacks = build_callbacks(cfg)
        extra = {}
        if any(type(c).__name__ == "EpochLineLogger" for c in callbacks):
            extra["enable_progress_bar"] = False
        trainer: L.Trainer = build(cfg.trainer, callbacks=callbacks + [timer], logger=loggers,
                                   **extra)
        trainer.fit(lit, datamodule=dm, ckpt_path=ckpt_path)
        metrics = _test_and_write(cfg, trainer, lit, dm, tt, model, timer, run_dir, n_params)
    finally:
        _close_loggers(loggers)
    return metrics


def _resume_path(cfg: DictConfig, run_dir: Path) -> str | None:
    """``ckpt_path=last`` continues from this run directory's ``checkpoints/last.ckpt``."""
    ckpt = cfg.get("ckpt_path")
    if ckpt in (None, ""):
        return None
    if str(ckpt) == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.exists():
            log.warning("ckpt_path=last but %s does not exist: starting from scratch", last)
            return None
        log.info("resuming from %s", last)
        return str(last)
    if not Path(ckpt).is_file():
        raise ConfigError(f"ckpt_path={ckpt}: no such checkpoint file")
    return str(ckpt)


def _close_loggers(loggers: list) -> None:
    """Always close trackers: a wandb run left open leaks into the next multirun job."""
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            import wandb

            wandb.finish()


def _test_and_write(cfg, trainer, lit, dm, tt, model, timer, run_dir: Path, n_params: int):
    import torch

    from dos_bench.metrics import compute_metrics
    from dos_bench.models.baselines import MeanSpectrum

    ckpt_cb = trainer.checkpoint_callback
    best = getattr(ckpt_cb, "best_model_path", "") if ckpt_cb is not None else ""
    trainer.test(lit, datamodule=dm, ckpt_path=best or None, verbose=False)
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
    if hasattr(tt, "reconstruction_mae"):
        val_y = torch.as_tensor(dm.part_targets("val"))
        rec = tt.reconstruct(val_y, dm.part_columns("val", tt.required_columns))
        metrics["autoencoder"] = {
            "latent": tt.latent,
            "reconstruction_mae_heldout_train": tt.reconstruction_mae,
            "reconstruction_mae_val_native": float(torch.mean(torch.abs(rec - val_y))),
        }
        log.info("autoencoder (latent %d) reconstruction MAE on validation: %.4g (native units)",
                 tt.latent, metrics["autoencoder"]["reconstruction_mae_val_native"])
    write_json(run_dir / "metrics.json", metrics)
    idx = res["idx"]
    groups = dm.groups(idx)
    with atomic_write(run_dir / "predictions.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                ids=dm.records.ids[idx].astype(str),
                energies=dm.grid,
                true=res["true"],
                pred=res["pred"],
                energy_unit=np.asarray(str(dm.records.attrs.get("energy_unit", ""))),
                **{f"group_{k}": np.asarray(v).astype(str) for k, v in groups.items()},
            )
    if cfg.get("plots", True):
        from dos_bench.plots import plot_quartile_examples

        plot_quartile_examples(run_dir / "predictions.npz", run_dir / "examples_by_quartile.png")
    _print_summary(metrics, run_dir)
    return metrics


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
        lines.append(f"MAE {100 * (1 - m / b):.1f}% below the mean-spectrum baseline")
    lines.append(f"run directory: {run_dir}")
    print("\n".join(lines), flush=True)


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        metrics = train(cfg)
    except (ConfigError, DataError) as exc:
        # one clear message naming the key, file or record; no traceback for bad input
        log.error("%s: %s", type(exc).__name__, exc)
        raise SystemExit(2) from None
    return metrics["selection"]["best_val"]


if __name__ == "__main__":
    main()
