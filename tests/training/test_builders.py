"""The Lightning pieces built from the config (dos_bench.training.builders), and the layering of
the training package (it never imports an entry point; data and models never import it)."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from dos_bench.training import builders


def test_lightning_messages_print_once_and_without_the_advert(monkeypatch):
    """Under Hydra (root handler set) Lightning's lines go through the root logger only."""
    root = logging.getLogger()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    monkeypatch.setattr(root, "handlers", [handler])
    builders.route_lightning_logs()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        assert logging.getLogger(name).handlers == []
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    rank_zero.info("GPU available: False, used: False")  # said on every CPU run: dropped
    rank_zero.info("TPU available: False, using: 0 TPU cores")
    rank_zero.info("GPU available: True (cuda), used: True")
    rank_zero.info("💡 Tip: try installing [litlogger](https://pypi.org/project/litlogger/)")
    assert [r.getMessage() for r in records] == ["GPU available: True (cuda), used: True"]


def test_only_warnings_nobody_can_act_on_are_hidden(monkeypatch):
    """Lightning's own LeafSpec deprecation and the logging-interval advice (dos_bench logs epoch
    means only) are hidden; other warnings of the same categories still show."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        builders.quiet_library_noise()
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) "
            "and treespec.is_leaf()` instead.",
            FutureWarning,
            stacklevel=1,
        )
        warnings.warn(
            "The number of training batches (4) is smaller than the logging interval "
            "Trainer(log_every_n_steps=10). Set a lower value for log_every_n_steps if you want "
            "to see logs for the training epoch.",
            UserWarning,
            stacklevel=1,
        )
        warnings.warn("something else is deprecated", FutureWarning, stacklevel=1)
        warnings.warn(
            "The 'train_dataloader' does not have many workers", UserWarning, stacklevel=1
        )
    assert [str(w.message) for w in seen] == [
        "something else is deprecated",
        "The 'train_dataloader' does not have many workers",
    ]


def test_wandb_logger_is_built_without_the_anonymous_setting(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "paths": {"output_dir": str(tmp_path)},
            "logger": {
                "wandb": {
                    "_target_": "lightning.pytorch.loggers.WandbLogger",
                    "project": "p",
                    "save_dir": str(tmp_path),
                    "offline": True,
                }
            },
        }
    )
    (lg,) = builders.build_loggers(cfg)
    assert "anonymous" not in lg._wandb_init and lg._wandb_init["project"] == "p"


class _Records:
    attrs = {"kind": "phdos", "energy_unit": "cm^-1", "dos_unit": "states/cm^-1"}


class _Data:
    """What build_module reads of a set-up data module."""

    name, atom_dim, n_points, spacing = "tiny", 7, 11, 0.5
    grid = np.linspace(0.0, 5.0, 11)
    records = _Records()


@pytest.mark.parametrize("repr_override,out_dim", [("raw", 11), ("autoencoder", 12)])
def test_module_is_built_with_the_sizes_of_the_data(make_cfg, repr_override, out_dim):
    """The encoder gets the data's atom-feature size, the head the representation's length, and
    the checkpoint meta records both (dos-predict rebuilds the model from them)."""
    from dos_bench.config import build

    cfg = make_cfg(
        "model=mlp", "model.encoder.hidden=8", "model.head.hidden=8", f"target_repr={repr_override}"
    )
    tt = build(cfg.target_repr)
    lit = builders.build_module(cfg, _Data(), tt, {"resolved": True})
    assert lit.model.encoder.net[0].in_features == _Data.atom_dim
    assert lit.model.out_dim == out_dim
    assert lit.run_config == {"resolved": True}
    assert lit.run_meta["atom_dim"] == 7 and lit.run_meta["target_dim"] == out_dim
    assert lit.run_meta["grid"] == _Data.grid.tolist() and lit.run_meta["kind"] == "phdos"
    assert lit.metric_names == tuple(cfg.metrics) and lit.spacing == 0.5


def test_scheduler_settings_reach_the_optimizer_config(make_cfg):
    from dos_bench.config import build

    cfg = make_cfg("model=mlp", "model.encoder.hidden=8", "model.head.hidden=8")
    lit = builders.build_module(cfg, _Data(), build(cfg.target_repr), {})
    conf = lit.configure_optimizers()
    if cfg.get("scheduler"):
        assert conf["lr_scheduler"]["monitor"] == cfg.monitor
        assert conf["lr_scheduler"]["interval"] == cfg.get("scheduler_interval", "epoch")
    else:
        assert lit.scheduler_factory is None


LAYERS = """
import sys
import dos_bench.data.datamodule, dos_bench.data.transforms, dos_bench.models.model
assert not [m for m in sys.modules if m.startswith("dos_bench.training")], "data/models -> training"
import dos_bench.training.builders, dos_bench.training.callbacks, dos_bench.training.distributed
import dos_bench.training.module, dos_bench.training.results, dos_bench.training.resume
import dos_bench.training.allocator
entry = {"dos_bench.train", "dos_bench.predict", "dos_bench.evaluate", "dos_bench.hpsearch"}
assert not entry & set(sys.modules), entry & set(sys.modules)
print("ok")
"""


def test_layers_only_point_down():
    """Data and models never import training; training never imports an entry point."""
    out = subprocess.run([sys.executable, "-c", LAYERS], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
