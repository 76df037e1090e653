"""End to end: compose the real config, train two tiny epochs, check the files a run writes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import CLI_SMALL, train_cli

from dos_bench.train import train

RUN_FILES = [
    "metrics.json",
    "predictions.npz",
    "splits.json",
    "examples_by_quartile.png",
    "config_resolved.yaml",
]


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
    assert m["dataset"] == "toy_edos" and m["model"] == "graph_network_small"
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
        sys.executable,
        "-m",
        "dos_bench.train",
        "dataset=toy_phdos",
        "model=mlp",
        "target_repr=max_norm",
        "trainer=debug",
        "progress=false",
        "num_threads=1",
        f"paths.data_dir={data_dir}",
        "dataset.source.n_materials=96",
        f"hydra.run.dir={run}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "mean-spectrum baseline" in out.stdout
    assert f"run directory: {run}" in out.stdout
    _check_run_dir(run, 51)


#: a warning in a run's output: Python's format (``Category: message`` and the ``warn(`` source
#: line), Lightning's (``<file>.py:<line>: message``) and WARNING log records
WARNING_LINE = re.compile(r"warn|\.py:\d+: ", re.IGNORECASE)

#: warnings a ``trainer=debug`` run may print that the user can act on (README "Warnings")
ALLOWED_WARNINGS = (
    "does not have many workers",  # Lightning, > 2 CPU cores: data.num_workers=N
    "GPU available but not used",  # Lightning, a GPU machine: trainer=gpu
)


def test_debug_run_output_has_only_actionable_warnings(data_dir, tmp_path):
    """``dos-train trainer=debug`` prints no warning a user cannot act on: Lightning's LeafSpec
    deprecation, the logging-interval advice, "GPU/TPU available: False" and wandb's anonymous
    notice are gone; what may remain is listed in ALLOWED_WARNINGS and the README."""
    run = tmp_path / "run"
    p = train_cli(["trainer=debug", *CLI_SMALL, f"hydra.run.dir={run}"], data_dir, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    text = (p.stdout + p.stderr).replace(str(tmp_path), "<tmp>").replace(str(data_dir), "<data>")
    lines = text.splitlines()
    unexpected = []
    for i, line in enumerate(lines):
        if not WARNING_LINE.search(line):
            continue
        if any(a in line for a in ALLOWED_WARNINGS):
            continue
        if "warn(" in line and i and any(a in lines[i - 1] for a in ALLOWED_WARNINGS):
            continue  # the source line Python prints under an allowed warning
        unexpected.append(line)
    assert not unexpected, "\n".join(unexpected)
    assert "GPU available: False" not in text and "TPU available: False" not in text
    assert "mean-spectrum baseline" in p.stdout  # the run did print its summary


@pytest.mark.parametrize(
    "override,match",
    [
        ("split.train=0.9", "sum to 1"),
        ("target_repr.link=tanh", "target_repr.link"),
    ],
)
def test_bad_config_values_fail_clearly(make_cfg, override, match):
    from dos_bench.io import ConfigError

    with pytest.raises(ConfigError, match=match):
        train(make_cfg(override))


def test_second_run_reuses_cached_graphs(make_cfg, tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    cfg = make_cfg("model=mlp", "dataset.source.seed=5", "data_seed=5")
    first = train(cfg)
    assert any("building graphs" in r.getMessage() for r in caplog.records)
    caplog.clear()
    second = train(
        make_cfg(
            "model=mlp",
            "dataset.source.seed=5",
            "data_seed=5",
            f"paths.output_dir={tmp_path / 'second'}",
        )
    )
    msgs = [r.getMessage() for r in caplog.records]
    assert any("reusing cached graphs" in m for m in msgs)
    assert not any("building graphs" in m for m in msgs)
    assert second["timing"]["time_to_first_batch_s"] < first["timing"]["time_to_first_batch_s"]


def test_corrupted_graph_cache_stops_with_file_name(make_cfg, data_dir):
    from dos_bench.io import DataError

    cfg = make_cfg("model=mlp", "data_seed=7")
    train(cfg)
    caches = sorted((data_dir / "graphs").glob("graphs-*.npz"), key=lambda p: p.stat().st_mtime)
    victim = caches[-1]
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 3])
    try:
        with pytest.raises(DataError, match=str(victim.name)):
            train(make_cfg("model=mlp", "data_seed=7", f"paths.output_dir={data_dir / 'x'}"))
    finally:
        victim.unlink()


@pytest.mark.parametrize("bad", [np.nan, -1.0])
def test_bad_spectrum_record_stops_with_record_id(make_cfg, tmp_path, bad):
    from hydra.utils import instantiate

    from dos_bench.data.records import RecordSet
    from dos_bench.io import DataError

    cfg = make_cfg("dataset=toy_phdos", "model=mlp", f"paths.data_dir={tmp_path / 'd'}")
    source = instantiate(cfg.dataset.source)
    rs = source.load(tmp_path / "d")
    rs.spectra[3, 10] = bad
    path = source.cache_path(tmp_path / "d")
    # write the damaged set as if the cache had been tampered with (bypassing validation)
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["spectra"] = rs.spectra
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(DataError, match=str(rs.ids[3])):
        train(cfg)
    with pytest.raises(DataError, match=str(rs.ids[3])):
        RecordSet.load(path)
    run = Path(cfg.paths.output_dir)
    assert not (run / "metrics.json").exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_cfg_job_resolve_prints_the_resolved_config(tmp_path):
    """``--cfg job --resolve`` needs no data: nothing in the config waits for the data's sizes."""
    cmd = [sys.executable, "-m", "dos_bench.train", "--cfg", "job", "--resolve"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "${" not in out.stdout
    assert "_target_: dos_bench.models.encoders.graph_network.GraphNetworkEncoder" in out.stdout
    assert "_partial_: true" in out.stdout and "in_dim" not in out.stdout
