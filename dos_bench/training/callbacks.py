"""Callbacks a training run attaches to the Lightning trainer.

* :class:`EpochTimer`: wall seconds per training / evaluation epoch and the time to the first
  training batch (``metrics.json["timing"]``; DOSTransformer Table 6).
* :class:`EpochLineLogger`: one log line per epoch instead of a progress bar
  (``callbacks=cluster``).
* :class:`ResumeState`: the RNG states and the epoch's training-metrics row saved in every
  checkpoint, put back after ``ckpt_path=last`` so that a resumed run continues exactly
  (:mod:`dos_bench.training.resume`).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["EpochLineLogger", "EpochTimer", "ResumeState"]

log = logging.getLogger(__name__)


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
            log.info("time to the first training batch: %.2f s", self.time_to_first_batch)

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


class ResumeState(Callback):
    """What a checkpoint needs beyond Lightning's own state for an exact resume.

    * RNG states (torch, CUDA, numpy, Python), captured when the checkpoint is written (at the end
      of a training epoch, after its validation and learning-rate step) and applied in the next
      ``on_train_epoch_start``: the first epoch a resumed run trains starts from the RNG state the
      uninterrupted run had at the same point. Nothing between the two draws from the global
      generators (the sanity check runs in Lightning's ``isolate_rng``; the training loader draws
      from its own per-epoch generator). numpy's state is stored as a tensor so that the
      checkpoint stays loadable with ``weights_only=True``.
    * ``epoch_row``: the epoch's training-metrics row exactly as Lightning is about to log it.
      Lightning logs it only after the end-of-epoch checkpoint is written; if the process dies in
      between, :class:`~dos_bench.training.resume.ResumableCSVLogger` adds the row on resume.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._epoch_row: dict[str, Any] | None = None

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # the epoch-level values Lightning logs after the on_train_epoch_end hooks
        # (fit_loop.on_advance_end -> update_train_epoch_metrics), with the same epoch and step
        try:  # Lightning internals (2.x): without them the row is simply not kept
            logged = trainer._logger_connector.metrics["log"]
            step = int(trainer.fit_loop.epoch_loop._batches_that_stepped) - 1
        except (AttributeError, AssertionError, KeyError, TypeError):
            self._epoch_row = None
            return
        row = {k: float(v.item() if hasattr(v, "item") else v) for k, v in logged.items()}
        row.setdefault("epoch", int(trainer.current_epoch))
        row["step"] = step
        self._epoch_row = row if trainer.loggers else None

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, py_state, gauss_next = random.getstate()
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "kind": str(kind),
                "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                "pos": int(pos),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            },
            "python": {"version": int(version), "state": list(py_state), "gauss_next": gauss_next},
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        if self._epoch_row is not None:
            state["epoch_row"] = dict(self._epoch_row)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_row = None
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        if "torch" not in state:
            return  # a checkpoint written without RNG states
        torch.set_rng_state(state["torch"].cpu())
        npst = state["numpy"]
        np.random.set_state(
            (
                npst["kind"],
                npst["keys"].numpy().astype(np.uint32),
                npst["pos"],
                npst["has_gauss"],
                npst["cached_gaussian"],
            )
        )
        py = state["python"]
        random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
        if "cuda" in state and torch.cuda.is_available():
            cuda = state["cuda"]
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
            else:
                log.warning(
                    "checkpoint has CUDA RNG states of %d devices, %d are visible: "
                    "CUDA RNG not restored",
                    len(cuda),
                    torch.cuda.device_count(),
                )
        log.info("RNG states restored from the checkpoint (epoch %d)", trainer.current_epoch)
