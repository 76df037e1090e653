"""One LightningModule for every model (design.md "Layers of the package").

Training happens in representation space (the target representation's ``encode`` and ``link``);
validation and test metrics are computed on native-unit spectra after ``decode``. Under DDP the
per-rank predictions are gathered first (:func:`dos_bench.training.distributed.gather_predictions`).
The module's settings beyond the model, the representation, the loss and the optimizer come as
two small parameter objects, :class:`Evaluation` and :class:`Scheduling`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from dos_bench.data.transforms import TargetTransform
from dos_bench.metrics import compute_metrics

__all__ = ["DOSLitModule", "Evaluation", "Scheduling"]

METRIC_SPACES = ("native", "normalised")


@dataclass(frozen=True)
class Evaluation:
    """How validation and test spectra are scored.

    Attributes:
        metrics: names of the metrics logged on validation and test.
        spacing: grid spacing for the Wasserstein distance.
        metric_space: ``native`` (default: decoded spectra in the dataset's units) or
            ``normalised``: both spectra re-expressed in the target representation's per-material
            normalisation (:meth:`~dos_bench.data.transforms.TargetTransform.normalise`), e.g.
            states/eV/electron for ``valence_norm`` as ALIGNN-DOS reports.
    """

    metrics: Sequence[str] = ("mae", "mse", "rmse", "r2", "wd")
    spacing: float = 1.0
    metric_space: str = "native"


@dataclass(frozen=True)
class Scheduling:
    """The learning-rate schedule.

    Attributes:
        scheduler: partial scheduler constructor taking the optimizer.
        interval: ``epoch`` or ``step``.
        monitor: metric a plateau scheduler follows.
    """

    scheduler: Callable[..., Any]
    interval: str = "epoch"
    monitor: str = "val/mae"


class DOSLitModule(L.LightningModule):
    """Args:
    model: a :class:`dos_bench.models.model.DOSModel`.
    target_transform: the fitted target representation.
    loss: objective on (linked prediction, encoded target).
    optimizer: partial optimizer constructor taking the parameters.
    scheduling: the learning-rate schedule (:class:`Scheduling`), or ``None`` for none.
    evaluation: metric names, grid spacing and metric space (:class:`Evaluation`).
    """

    def __init__(
        self,
        model: nn.Module,
        target_transform: TargetTransform,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduling: Scheduling | None = None,
        evaluation: Evaluation | None = None,
    ) -> None:
        super().__init__()
        evaluation = evaluation or Evaluation()
        if evaluation.metric_space not in METRIC_SPACES:
            raise ValueError(
                f"metric_space must be native or normalised, got {evaluation.metric_space!r}"
            )
        self.metric_space = evaluation.metric_space
        self.model = model
        self.target_transform = target_transform
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduling.scheduler if scheduling else None
        self.metric_names = tuple(evaluation.metrics)
        self.spacing = float(evaluation.spacing)
        self.scheduler_interval = scheduling.interval if scheduling else "epoch"
        self.monitor = scheduling.monitor if scheduling else "val/mae"
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
        return self.target_transform.normalise(spectra, batch)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        """The loss of one batch; a non-finite loss stops the run with a
        :class:`FloatingPointError` naming the epoch and the first such batch.

        The test runs on the loss's device without a host synchronisation per step: the first
        non-finite loss is recorded in device tensors and :meth:`check_finite_loss` reads them
        every ``trainer.log_every_n_steps`` batches, before validation and every checkpoint, and
        at the end of every epoch and of training (one synchronisation each).
        """
        loss, _, _ = self._shared_step(batch)
        self._record_non_finite(loss, batch_idx)
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

    # ---------------------------------------------------------------- non-finite losses
    def _record_non_finite(self, loss: Tensor, batch_idx: int) -> None:
        """Keep the first non-finite loss since the last check (its value and batch) on device."""
        bad = ~torch.isfinite(loss.detach())
        state = getattr(self, "_non_finite", None)
        if state is None:
            value = loss.detach().clone()
            index = torch.full((), batch_idx, dtype=torch.long, device=loss.device)
            self._non_finite = (bad, value, index, self.current_epoch)
            return
        flag, value, index, epoch = state
        first = bad & ~flag
        self._non_finite = (
            flag | bad,
            torch.where(first, loss.detach(), value),
            torch.where(first, batch_idx, index),
            epoch,
        )

    def check_finite_loss(self) -> None:
        """Raise :class:`FloatingPointError` if a training loss since the last check was not
        finite, naming the epoch and the first such batch (one host synchronisation; under DDP
        every process raises when one of them saw it, so that none waits for the others)."""
        state = getattr(self, "_non_finite", None)
        self._non_finite = None
        if state is None:
            return
        flag, value, index, epoch = state
        bad = bool(flag)
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            if trainer.strategy.reduce_boolean_decision(bad, all=False) and not bad:
                raise FloatingPointError(
                    f"training loss is not finite on another process at epoch {epoch}:"
                    " lower the learning rate or check the data"
                )
        if bad:
            raise FloatingPointError(
                f"training loss is {float(value)} at epoch {epoch}, batch {int(index)}:"
                " lower the learning rate or check the data"
            )

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        trainer = self._trainer
        every = max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1)) if trainer else 1
        if (batch_idx + 1) % every == 0:
            self.check_finite_loss()

    def on_train_epoch_end(self) -> None:
        self.check_finite_loss()

    def on_validation_start(self) -> None:
        self.check_finite_loss()

    def on_train_end(self) -> None:
        self.check_finite_loss()

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
            # on the union, each record once (gather_predictions)
            from dos_bench.training.distributed import gather_predictions

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
        self.check_finite_loss()  # never save weights a non-finite loss has updated
        checkpoint["dos_bench_config"] = self.run_config
        checkpoint["dos_bench_meta"] = self.run_meta

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.run_config = checkpoint.get("dos_bench_config", self.run_config)
        self.run_meta = checkpoint.get("dos_bench_meta", self.run_meta)
