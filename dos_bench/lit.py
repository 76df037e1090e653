"""One LightningModule for every model (design.md "Layers of the package").

Training happens in representation space (the target representation's ``encode`` and ``link``);
validation and test metrics are computed on native-unit spectra after ``decode``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from dos_bench.data.transforms import TargetTransform
from dos_bench.metrics import compute_metrics

__all__ = ["DOSLitModule", "EpochTimer", "EpochLineLogger"]


class DOSLitModule(L.LightningModule):
    """Args:
    model: a :class:`dos_bench.models.model.DOSModel`.
    target_transform: the fitted target representation.
    loss: objective on (linked prediction, encoded target).
    optimizer: partial optimizer constructor taking the parameters.
    scheduler: partial scheduler constructor taking the optimizer, or ``None``.
    metrics: names of the native-unit metrics logged on validation and test.
    spacing: grid spacing for the Wasserstein distance.
    scheduler_interval: ``epoch`` or ``step``.
    monitor: metric a plateau scheduler follows.
    metric_space: ``native`` (default: decoded spectra in the dataset's units) or
        ``normalised``: both spectra re-expressed in the target representation's per-material
        normalisation (the inner one for an autoencoder), e.g. states/eV/electron for
        ``valence_norm`` as ALIGNN-DOS reports.
    """

    def __init__(
        self,
        model: nn.Module,
        target_transform: TargetTransform,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        metrics: Sequence[str] = ("mae", "mse", "rmse", "r2", "wd"),
        spacing: float = 1.0,
        scheduler_interval: str = "epoch",
        monitor: str = "val/mae",
        metric_space: str = "native",
    ) -> None:
        super().__init__()
        if metric_space not in ("native", "normalised"):
            raise ValueError(f"metric_space must be native or normalised, got {metric_space!r}")
        self.metric_space = metric_space
        self.model = model
        self.target_transform = target_transform
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.metric_names = tuple(metrics)
        self.spacing = float(spacing)
        self.scheduler_interval = scheduler_interval
        self.monitor = monitor
        self.run_config: dict[str, Any] | None = None  # the resolved config, saved in checkpoints
        self.run_meta: dict[str, Any] | None = None  # grid, units, sizes: rebuilds the model
        self._eval_outputs: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {}
        self.test_results: dict[str, Any] | None = None

    # ---------------------------------------------------------------- core
    def forward(self, batch) -> dict[str, Tensor]:
        return self.model(batch)

    def _shared_step(self, batch) -> tuple[Tensor, Tensor, Tensor]:
        y = batch.y.float()
        z, scale = self.target_transform.encode(y, batch)
        # the head's label branch (Mat2Spec) reads the native spectrum or the encoded one, as the
        # head declares; the loss always compares in representation space
        native = getattr(self.model, "label_input", "representation") == "native"
        out = self.model(batch, target=y if native else z)
        out = {
            k: self.target_transform.link(v) if k.startswith("pred") else v for k, v in out.items()
        }
        loss = self.loss_fn(out["pred"], z, out)
        return loss, out["pred"], scale

    def _to_metric_space(self, spectra: Tensor, batch) -> Tensor:
        if self.metric_space == "native":
            return spectra
        tt = getattr(self.target_transform, "inner", self.target_transform)
        return tt.encode(spectra, batch)[0]

    def training_step(self, batch, batch_idx: int) -> Tensor:
        loss, _, _ = self._shared_step(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}:"
                " lower the learning rate or check the data"
            )
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=batch.num_graphs,
            sync_dist=True,
        )
        for k, v in (getattr(self.loss_fn, "last_components", None) or {}).items():
            self.log(
                f"train/loss_{k}",
                v,
                on_step=False,
                on_epoch=True,
                batch_size=batch.num_graphs,
                sync_dist=True,
            )
        return loss

    def _eval_step(self, batch, stage: str) -> None:
        loss, pred, scale = self._shared_step(batch)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            batch_size=batch.num_graphs,
            prog_bar=stage == "val",
            sync_dist=True,
        )  # epoch-level: one all-reduce an epoch
        native = self.target_transform.decode(pred.float(), scale)
        true = batch.y.float()
        if self.metric_space != "native":
            native, true = self._to_metric_space(native, batch), self._to_metric_space(true, batch)
        self._eval_outputs.setdefault(stage, []).append(
            (batch.idx.detach().cpu(), native.detach().cpu(), true.detach().cpu())
        )

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _collect(self, stage: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        outs = self._eval_outputs.pop(stage, [])
        if not outs:
            return None
        idx = torch.cat([o[0] for o in outs]).numpy()
        pred = torch.cat([o[1] for o in outs]).numpy()
        true = torch.cat([o[2] for o in outs]).numpy()
        return idx, pred, true

    def _is_distributed(self) -> bool:
        trainer = self._trainer
        return (
            trainer is not None
            and trainer.world_size > 1
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        )

    def _epoch_metrics(self, stage: str) -> dict[str, float] | None:
        if self._is_distributed():
            # every rank holds a padded shard (DistributedSampler); all ranks compute the metrics
            # on the union, each record once (dos_bench.distributed.gather_predictions)
            from dos_bench.distributed import gather_predictions

            local = self._collect(stage)
            idx, pred, true = gather_predictions(*(local or (None, None, None)))
            if idx is None:
                return None
        else:
            collected = self._collect(stage)
            if collected is None:
                return None
            idx, pred, true = collected
        metrics = compute_metrics(pred, true, self.metric_names, spacing=self.spacing)
        for k, v in metrics.items():
            self.log(f"{stage}/{k}", v, prog_bar=(k == "mae"), sync_dist=True)
        if stage == "test":
            self.test_results = {"idx": idx, "pred": pred, "true": true, "metrics": metrics}
        return metrics

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_metrics("test")

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(optimizer=opt)
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": sched,
                "interval": self.scheduler_interval,
                "monitor": self.monitor,
            },
        }

    # ---------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dos_bench_config"] = self.run_config
        checkpoint["dos_bench_meta"] = self.run_meta

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.run_config = checkpoint.get("dos_bench_config", self.run_config)
        self.run_meta = checkpoint.get("dos_bench_meta", self.run_meta)


class EpochTimer(Callback):
    """Wall seconds per training epoch and per evaluation epoch (DOSTransformer Table 6).

    Also records the time from process start to the first training batch, which shows the graph
    cache at work (``time_to_first_batch_s``).
    """

    def __init__(self, t_start: float | None = None) -> None:
        self.t_start = t_start if t_start is not None else time.perf_counter()
        self.train_epochs: list[float] = []
        self.val_epochs: list[float] = []
        self.test_epochs: list[float] = []
        self.time_to_first_batch: float | None = None
        self._t0: dict[str, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.time_to_first_batch is None:
            self.time_to_first_batch = time.perf_counter() - self.t_start
            import logging

            logging.getLogger(__name__).info(
                "time to the first training batch: %.2f s", self.time_to_first_batch
            )

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0["train"] = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.train_epochs.append(time.perf_counter() - self._t0["train"])

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._t0["val"] = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.val_epochs.append(time.perf_counter() - self._t0["val"])

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._t0["test"] = time.perf_counter()

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self.test_epochs.append(time.perf_counter() - self._t0["test"])

    def summary(self) -> dict[str, float | None]:
        def mean(x: list[float]) -> float | None:
            return float(np.mean(x)) if x else None

        return {
            "train_epoch_s": mean(self.train_epochs),
            "val_epoch_s": mean(self.val_epochs),
            "test_epoch_s": mean(self.test_epochs),
            "n_train_epochs": len(self.train_epochs),
            "time_to_first_batch_s": self.time_to_first_batch,
        }


class EpochLineLogger(Callback):
    """One log line per epoch instead of a progress bar (cluster logs; style.md "Progress bars").

    Selected with ``callbacks=cluster``; the trainer's progress bar is then switched off.
    """

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # Lightning 2 runs validation before this hook, so the epoch's val metrics are in
        import logging

        m = trainer.callback_metrics
        parts = [
            f"{k}={float(v):.4g}"
            for k, v in sorted(m.items())
            if k.startswith(("train/loss", "val/")) and v.numel() == 1
        ]
        logging.getLogger("dos_bench.train").info(
            "epoch %d/%d (%.1f s): %s",
            trainer.current_epoch + 1,
            trainer.max_epochs,
            time.perf_counter() - self._t0,
            " ".join(parts),
        )
