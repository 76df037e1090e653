"""The LightningModule (dos_bench.training.module) on tiny hand-made batches: a training step
gives a finite loss that trains, a non-finite loss stops with the documented message, and the
evaluation settings (metrics, spacing, metric space) and the schedule reach the module."""

from __future__ import annotations

import functools

import lightning as L
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.loader import DataLoader

from dos_bench.data.transforms import MaxNorm, Raw
from dos_bench.losses import MSELoss
from dos_bench.models.encoders.mlp import MLPEncoder
from dos_bench.models.heads.direct import DirectHead
from dos_bench.models.model import DOSModel
from dos_bench.training.module import DOSLitModule, Evaluation, Scheduling

IN_DIM, N_POINTS = 4, 6


def _graphs(n: int = 6, seed: int = 0) -> list[Data]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        atoms = 2 + i % 3
        out.append(
            Data(
                x=torch.randn(atoms, IN_DIM, generator=g),
                edge_index=torch.zeros(2, 0, dtype=torch.long),
                y=1.0 + 5.0 * torch.rand(1, N_POINTS, generator=g),
                idx=torch.tensor([i]),
                num_nodes=atoms,
            )
        )
    return out


def _module(loss=None, transform=None, **kw) -> DOSLitModule:
    torch.manual_seed(0)
    model = DOSModel(
        MLPEncoder(IN_DIM, hidden=8, n_layers=1),
        functools.partial(DirectHead, hidden=8, n_layers=1),
        out_dim=N_POINTS,
        name="tiny",
    )
    tt = (transform or Raw()).fit(torch.cat([d.y for d in _graphs()]))
    opt = functools.partial(torch.optim.SGD, lr=0.01)
    return DOSLitModule(model, tt, loss or MSELoss(), opt, **kw)


def _trainer(**kw) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kw,
    )


def test_training_step_on_a_tiny_batch_gives_a_finite_loss_that_trains():
    lit = _module()
    batch = Batch.from_data_list(_graphs())
    loss = lit.training_step(batch, 0)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad
    before = [p.detach().clone() for p in lit.parameters()]
    loss.backward()
    opt = lit.configure_optimizers()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, lit.parameters(), strict=True))


class _NaNLoss(torch.nn.Module):
    def forward(self, pred, target, out):
        return (pred - target).pow(2).mean() * float("nan")


def test_non_finite_loss_stops_with_the_documented_message():
    lit = _module(loss=_NaNLoss())
    batch = Batch.from_data_list(_graphs())
    # the step itself does not synchronise: the first non-finite loss is kept on the device
    # and reported by the next check (every log_every_n_steps batches, epoch end, checkpoints)
    lit.training_step(batch, 3)
    lit.training_step(batch, 4)
    with pytest.raises(FloatingPointError, match="training loss is nan at epoch 0, batch 3:"):
        lit.check_finite_loss()
    lit.check_finite_loss()  # reported once; the state starts afresh
    # through a real fit too: the trainer stops at the first check, naming the first batch
    with pytest.raises(
        FloatingPointError, match="at epoch 0, batch 0: lower the learning rate or check the data"
    ):
        _trainer(log_every_n_steps=50).fit(lit, DataLoader(_graphs(), batch_size=3))


class _NaNAfter(torch.nn.Module):
    """MSE, but ``inf`` from the ``n``-th call on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, pred, target, out):
        self.calls += 1
        loss = (pred - target).pow(2).mean()
        return loss * float("inf") if self.calls > self.n else loss


def test_non_finite_loss_is_checked_at_the_logging_interval_and_before_checkpoints(tmp_path):
    lit = _module(loss=_NaNAfter(2))
    loader = DataLoader(_graphs(), batch_size=1)  # 6 batches an epoch
    with pytest.raises(FloatingPointError, match="training loss is inf at epoch 0, batch 2:"):
        _trainer(log_every_n_steps=4).fit(lit, loader)
    assert lit.loss_fn.calls == 4  # stopped at the first check, after batch 3
    # a checkpoint saved between two checks (as ModelCheckpoint(every_n_train_steps) does) is
    # refused: the weights were updated by a non-finite loss
    saved = []

    class SaveEveryBatch(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            path = tmp_path / f"step{batch_idx}.ckpt"
            trainer.save_checkpoint(path)
            saved.append(path.name)

    lit = _module(loss=_NaNAfter(1))
    with pytest.raises(FloatingPointError, match="training loss is inf at epoch 0, batch 1:"):
        _trainer(log_every_n_steps=50, callbacks=[SaveEveryBatch()]).fit(lit, loader)
    assert saved == ["step0.ckpt"] and sorted(p.name for p in tmp_path.iterdir()) == saved


def test_training_step_does_not_synchronise():
    """No ``.item()``/``bool(tensor)`` from the start to the end of a training batch in a real
    fit (step, logging, backward, optimizer step): each would wait for the device on a GPU.
    Every model config: tests/models/test_no_host_sync.py."""
    from torch.profiler import profile

    syncs: dict[int, list[str]] = {}

    class Count(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.prof = profile()
            self.prof.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.prof.__exit__(None, None, None)
            events = self.prof.events()
            syncs[batch_idx] = [e.name for e in events if e.name == "aten::_local_scalar_dense"]

    _trainer(log_every_n_steps=50, callbacks=[Count()]).fit(
        _module(), DataLoader(_graphs(), batch_size=2)
    )
    assert syncs == {0: [], 1: [], 2: []}


def test_test_loop_scores_native_spectra_with_the_evaluation_settings():
    lit = _module(evaluation=Evaluation(metrics=("mae", "wd"), spacing=0.25))
    _trainer().test(lit, DataLoader(_graphs(), batch_size=4), verbose=False)
    res = lit.test_results
    assert sorted(res["idx"].tolist()) == list(range(6))
    assert set(res["metrics"]) == {"mae", "wd"} and np.isfinite(res["metrics"]["mae"])
    true = torch.cat([d.y for d in _graphs()]).numpy()
    np.testing.assert_allclose(res["true"], true[res["idx"]], rtol=1e-6)
    assert (res["pred"] >= 0).all()  # decoded native spectra are clipped at zero


def test_normalised_metric_space_uses_the_representation():
    native = _module(transform=MaxNorm())
    normalised = _module(transform=MaxNorm(), evaluation=Evaluation(metric_space="normalised"))
    for lit in (native, normalised):
        _trainer().test(lit, DataLoader(_graphs(), batch_size=6), verbose=False)
    assert native.test_results["true"].max() > 1.0
    np.testing.assert_allclose(normalised.test_results["true"].max(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="metric_space must be native or normalised"):
        _module(evaluation=Evaluation(metric_space="latent"))


def test_schedule_settings_reach_configure_optimizers():
    sched = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    lit = _module(scheduling=Scheduling(sched, interval="step", monitor="val/wd"))
    conf = lit.configure_optimizers()
    assert isinstance(conf["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert conf["lr_scheduler"]["interval"] == "step"
    assert conf["lr_scheduler"]["monitor"] == "val/wd"
    assert isinstance(_module().configure_optimizers(), torch.optim.SGD)
