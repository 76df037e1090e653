"""End to end: compose the real config, train two tiny epochs, check the files a run writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dos_bench.train import train

RUN_FILES = ["metrics.json", "predictions.npz", "splits.json", "examples_by_quartile.png",
             "config_resolved.yaml"]


def _check_run_dir(run: Path, n_points: int) -> dict:
    for f in RUN_FILES:
        assert (run / f).is_file(), f
    ckpts = list((run / "checkpoints").glob("*.ckpt"))
    assert any(c.name == "last.ckpt" for c in ckpts) and len(ckpts) >= 2
    m = json.loads((run / "metrics.json").read_text())
    for k in ("mae", "mse", "rmse", "r2", "wd"):
        assert np.isfinite(m["test"][k]) and np.isfinite(m["baseline_mean_spectrum"][k])
    with np.load(run / "predictions.npz") as z:
        assert z["pred"].shape == z["true"].shape == (m["n_test"], n_points)
        assert z["energies"].shape == (n_points,)
        assert (z["pred"] >= 0).all()
    splits = json.loads((run / "splits.json").read_text())
    assert len(splits["test"]) == m["n_test"]
    assert not set(splits["train"]) & set(splits["test"])
    assert not list(run.rglob("*.tmp"))
    return m


def test_train_default_two_epochs(make_cfg, tmp_path):
    cfg = make_cfg()
    m = train(cfg)
    run = Path(cfg.paths.output_dir)
    m2 = _check_run_dir(run, 300)
    assert m2 == json.loads(json.dumps(m))
    assert m["dataset"] == "toy_edos" and m["model"] == "graph_network"
    assert m["timing"]["n_train_epochs"] == 2 and m["timing"]["train_epoch_s"] > 0
    assert m["selection"]["monitor"] == "val/mae" and m["selection"]["checkpoint"]
    assert m["seeds"] == {"train": 0, "split": 0, "data": 0}


def test_train_phdos_mlp_sum_norm_mae(make_cfg):
    cfg = make_cfg("dataset=toy_phdos", "model=mlp", "target_repr=sum_norm", "loss=mae")
    m = train(cfg)
    _check_run_dir(Path(cfg.paths.output_dir), 51)
    assert m["target_repr"] == "sum_norm" and m["loss"] == "MAELoss"


def test_cli_entry_point(data_dir, tmp_path):
    """The real command line (Hydra run dir, console logging) on the cached tiny data."""
    run = tmp_path / "cli"
    cmd = [
        sys.executable, "-m", "dos_bench.train", "dataset=toy_phdos", "model=mlp",
        "target_repr=max_norm", "trainer=debug", "progress=false", "num_threads=1",
        f"paths.data_dir={data_dir}", "dataset.source.n_materials=96", f"hydra.run.dir={run}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mean-spectrum baseline" in out.stdout
    assert f"run directory: {run}" in out.stdout
    _check_run_dir(run, 51)


@pytest.mark.parametrize("override,match", [
    ("split.train=0.9", "sum to 1"),
    ("target_repr.link=tanh", "target_repr.link"),
])
def test_bad_config_values_fail_clearly(make_cfg, override, match):
    from dos_bench.io import ConfigError

    with pytest.raises(ConfigError, match=match):
        train(make_cfg(override))
