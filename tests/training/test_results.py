"""The run files written after a fit (dos_bench.training.results), on the tiny toy data with an
untrained model: metrics.json, predictions.npz, splits.json, config_resolved.yaml, the figure, the
summary, and the sections a target representation adds (an autoencoder's reconstruction error)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import yaml

from dos_bench.config import build
from dos_bench.data.transforms import Autoencoder, MaxNorm
from dos_bench.training.builders import build_module
from dos_bench.training.callbacks import EpochTimer
from dos_bench.training.results import (
    FitResult,
    print_summary,
    run_test_and_write,
    write_run_inputs,
)


@pytest.mark.parametrize("mae,line", [(2.0, "MAE 50.0% below"), (5.0, "MAE 25.0% ABOVE")])
def test_summary_says_whether_the_model_beats_the_baseline(capsys, tmp_path, mae, line):
    metrics = {
        "dataset": "toy_edos",
        "n_test": 3,
        "model": "m",
        "test": {"mae": mae, "rmse": 1.0},
        "baseline_mean_spectrum": {"mae": 4.0, "rmse": 2.0},
    }
    print_summary(metrics, tmp_path)
    out = capsys.readouterr().out
    assert line in out and f"run directory: {tmp_path}" in out


def _fit(make_cfg, tt=None, *overrides: str, dataset: str = "toy_phdos") -> FitResult:
    """An untrained model on a tiny toy set, as a finished fit looks to the writer."""
    cfg = make_cfg(
        f"dataset={dataset}",
        "model=mlp",
        "model.encoder.hidden=8",
        "model.head.hidden=8",
        *overrides,
    )
    tt = tt or build(cfg.target_repr)
    dm = build(cfg.data, extra_columns=list(tt.required_columns), _convert_="all")
    dm.setup("fit")
    tt.fit(dm.part_targets("train"))
    L.seed_everything(cfg.seed)
    lit = build_module(cfg, dm, tt, {})
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        callbacks=[timer],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
    return FitResult(cfg, trainer, lit, dm, timer)


def test_test_and_write_writes_the_run_files(make_cfg, capsys):
    fit = _fit(make_cfg)
    m = run_test_and_write(fit)
    run = fit.run_dir
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert m["dataset"] == "toy_phdos" and m["model"] == "mlp" and m["kind"] == "phdos"
    assert m["n_parameters"] == fit.lit.model.n_parameters()
    assert m["selection"] == {"monitor": "val/mae", "best_val": None, "checkpoint": None}
    assert m["timing"]["n_train_epochs"] == 0 and m["timing"]["test_epoch_s"] > 0
    assert set(m["test"]) == set(m["baseline_mean_spectrum"]) == set(fit.cfg.metrics)
    assert {"cv_mae", "omega_mae"} <= set(m["derived"])  # phDOS derived quantities
    assert "autoencoder" not in m
    with np.load(run / "predictions.npz") as z:
        assert z["pred"].shape == z["true"].shape == (m["n_test"], 51)
        ids = fit.dm.records.ids[fit.dm.split.test].astype(str)
        assert sorted(z["ids"].tolist()) == sorted(ids.tolist())
        assert "meta_n_atoms" in z and float(z["spacing"]) == pytest.approx(fit.dm.spacing)
        assert str(z["dos_unit"]) == "modes/cm^-1/cell" and str(z["energy_unit"]) == "cm^-1"
        assert str(z["energy_reference"]) == "absolute"
    assert m["units"] == {
        "energy": "cm^-1",
        "dos": "modes/cm^-1/cell",
        "energy_reference": "absolute",
        "metric_space": "native",
    }
    assert (run / "examples_by_quartile.png").is_file()
    out = capsys.readouterr().out
    assert "mean-spectrum baseline" in out and f"run directory: {run}" in out


def test_representation_adds_its_report(make_cfg):
    """An autoencoder reports its latent size and reconstruction error in metrics.json."""
    tt = Autoencoder(MaxNorm(), latent=4, hidden=[16], epochs=2)
    m = run_test_and_write(_fit(make_cfg, tt, "plots=false"))
    ae = m["autoencoder"]
    assert ae["latent"] == 4 and ae["reconstruction_mae_heldout_train"] == tt.reconstruction_mae
    assert np.isfinite(ae["reconstruction_mae_val_native"])
    assert m["target_repr"] == "autoencoder" and m["n_parameters"] > 0


def test_run_inputs_are_the_resolved_config_and_the_splits(make_cfg, tmp_path):
    fit = _fit(make_cfg, None, "plots=false")
    write_run_inputs(tmp_path, fit.dm, {"seed": 3, "model": {"name": "x"}}, 7)
    assert yaml.safe_load((tmp_path / "config_resolved.yaml").read_text())["seed"] == 3
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert splits["seed"] == 7 and len(splits["test"]) == len(fit.dm.split.test)
    assert not set(splits["train"]) & set(splits["test"])


def test_normalised_metric_space_units_and_the_steps_after_the_test(make_cfg, monkeypatch, caplog):
    """eDOS on an E_F grid in max-normalised metric space: predictions.npz and metrics.json say
    so; every step after the test logs its duration once it takes SLOW_STEP_S or longer."""
    from dos_bench.training import results

    overrides = (
        "target_repr=max_norm",
        "metric_space=normalised",
        "evaluation.fermi_probe_args.epochs=2",
    )
    fit = _fit(make_cfg, None, *overrides, dataset="toy_edos")
    monkeypatch.setattr(results, "SLOW_STEP_S", 0.0)
    with caplog.at_level(logging.INFO, logger="dos_bench.training.results"):
        m = run_test_and_write(fit)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    for start in (
        "test metrics, mean-spectrum baseline and per-group metrics of",
        "Fermi-energy probe fitted on 77 spectra in ",
        "derived quantities (band gaps, DOS at E_F, VB gaps) of 9 test spectra in ",
        "metrics.json and predictions.npz (9 spectra) written in ",
        "figure examples_by_quartile.png drawn in ",
    ):
        assert any(ln.startswith(start) and ln.endswith(" s") for ln in lines), (start, lines)
    assert m["units"]["dos"] == "max-normalised" and m["units"]["energy_reference"] == "fermi"
    assert m["units"]["metric_space"] == "normalised"
    with np.load(fit.run_dir / "predictions.npz") as z:
        assert str(z["dos_unit"]) == "max-normalised" and str(z["energy_reference"]) == "fermi"
    # fast steps stay at DEBUG
    caplog.clear()
    monkeypatch.setattr(results, "SLOW_STEP_S", 1e9)
    with caplog.at_level(logging.INFO, logger="dos_bench.training.results"):
        run_test_and_write(_fit(make_cfg, None, *overrides, "plots=false", dataset="toy_edos"))
    assert not [r for r in caplog.records if " in " in r.getMessage() and r.levelno >= logging.INFO]
