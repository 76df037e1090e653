"""The files of a run: what goes in before training and what comes out of the test.

* :func:`write_run_inputs` (before training, rank 0): ``config_resolved.yaml`` and
  ``splits.json`` (the record ids of each split, the split seed and the dropped records).
* :func:`run_test_and_write` (after ``fit``): tests the best checkpoint on one process and writes
  ``metrics.json`` (test metrics, the mean-spectrum baseline, per-group and derived metrics,
  selection, timing, units and whatever the target representation reports,
  :meth:`~dos_bench.data.transforms.TargetTransform.report`), ``predictions.npz`` (ids, grid, true
  and predicted test spectra in the metric space with their ``dos_unit``, ``energy_unit`` and
  ``energy_reference``, group labels and metadata columns for ``dos-evaluate``) and the figure
  ``examples_by_quartile.png``, then prints the summary (:func:`print_summary`). Every step
  after the test that takes a second or more logs its duration. Last, ``checkpoints/last.ckpt``
  becomes a link to the best checkpoint when both files are the same
  (:func:`~dos_bench.training.resume.link_last_to_best`).
* :func:`run_test_on_rank_zero`: the same after a DDP fit. ``trainer.test`` under DDP would pad the
  test set through the ``DistributedSampler`` and count some materials twice (Lightning #12862),
  so the process group is closed and rank 0 alone tests on one device.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from dos_bench.config import build
from dos_bench.io import atomic_write, write_json
from dos_bench.training.callbacks import EpochTimer
from dos_bench.training.module import DOSLitModule

__all__ = [
    "META_COLUMNS",
    "SLOW_STEP_S",
    "FitResult",
    "metric_space_units",
    "meta_columns",
    "print_summary",
    "run_test_and_write",
    "run_test_on_rank_zero",
    "write_run_inputs",
]

log = logging.getLogger(__name__)

#: per-material metadata written beside the predictions (derived metrics and figures)
META_COLUMNS = ("e_fermi", "e_fermi_abs", "band_gap", "vbm", "cbm", "n_species", "formula")

#: a step after the test taking this long (seconds) or longer logs its duration at INFO
SLOW_STEP_S = 1.0


def _took(t0: float, msg: str, *args: Any) -> None:
    """Log ``msg % args`` + `` in <s> s`` at INFO if the step since ``t0`` took
    :data:`SLOW_STEP_S` or longer, else at DEBUG."""
    dt = time.perf_counter() - t0
    level = logging.INFO if dt >= SLOW_STEP_S else logging.DEBUG
    log.log(level, msg + " in %.1f s", *args, dt)


@dataclass
class FitResult:
    """A finished fit: what the results writer needs of it.

    Attributes:
        cfg: the run's config (``paths.output_dir`` is the run directory).
        trainer: the trainer that ran ``fit`` (its checkpoint callback names the best checkpoint).
        lit: the trained module (model and fitted target representation).
        dm: the data module (split, grid, records).
        timer: the epoch timer of the fit, also attached to the test.
    """

    cfg: DictConfig
    trainer: Any
    lit: DOSLitModule
    dm: Any
    timer: EpochTimer

    @property
    def run_dir(self) -> Path:
        # paths.output_dir defaults to Hydra's run directory (conf/paths/default.yaml)
        return Path(self.cfg.paths.output_dir)


def write_run_inputs(run_dir: Path, dm: Any, resolved: dict[str, Any], split_seed: int) -> None:
    """``config_resolved.yaml`` and ``splits.json`` of a run (rank 0, before training)."""
    with atomic_write(run_dir / "config_resolved.yaml") as tmp:
        tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
    write_json(
        run_dir / "splits.json",
        {**dm.split.ids(dm.records), "seed": split_seed, "dropped": dm.split.dropped},
    )


def run_test_on_rank_zero(fit: FitResult, loggers: list, trainer_kwargs: dict[str, Any]) -> dict:
    """After a DDP fit: rank 0 tests the best checkpoint on one device and writes the files.

    The process group is closed first, so the test runs exactly as in a one-process run; the
    other ranks return only the selection.
    """
    import torch.distributed as dist

    cfg, trainer = fit.cfg, fit.trainer
    rank = trainer.global_rank
    best_val = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # every checkpoint is on disk before rank 0 reads the best one
        dist.destroy_process_group()
    if rank != 0:
        return {
            "selection": {
                "monitor": cfg.monitor,
                "best_val": None if best_val is None else float(best_val),
            }
        }
    kwargs = {k: v for k, v in trainer_kwargs.items() if k == "enable_progress_bar"}
    tester = build(
        cfg.trainer,
        devices=1,
        num_nodes=1,
        strategy="auto",
        sync_batchnorm=False,
        callbacks=[fit.timer],
        logger=loggers,
        enable_checkpointing=False,
        **kwargs,
    )
    metrics = run_test_and_write(fit, tester=tester)
    if metrics["n_test"] != len(fit.lit.test_results["idx"]):
        raise RuntimeError(
            f"tested {len(fit.lit.test_results['idx'])} materials, the test split has "
            f"{metrics['n_test']}"
        )
    return metrics


def run_test_and_write(fit: FitResult, tester: Any = None) -> dict[str, Any]:
    """Test the best checkpoint (on ``tester`` if given, else the fit trainer), write the files,
    print the summary; returns the metrics written to ``metrics.json``."""
    lit, dm, trainer = fit.lit, fit.dm, fit.trainer
    ckpt_cb = trainer.checkpoint_callback
    best = getattr(ckpt_cb, "best_model_path", "") if ckpt_cb is not None else ""
    (tester or trainer).test(
        lit, datamodule=dm, ckpt_path=best or None, verbose=False, weights_only=True
    )
    res = lit.test_results
    if res is None:
        raise RuntimeError("the test loop produced no predictions (is the test split empty?)")
    n_test = len(res["idx"])
    t0 = time.perf_counter()
    metrics = _metrics(fit, res, best)
    idx = res["idx"]
    groups = dm.groups(idx)
    metrics["kind"] = dm.records.attrs.get("kind")
    metrics["test_groups"] = _grouped(fit, res, groups)
    _took(t0, "test metrics, mean-spectrum baseline and per-group metrics of %s spectra", n_test)
    meta = meta_columns(dm, idx)
    derived = _derived(fit, res, meta, metrics["kind"])
    if derived is not None:
        metrics["derived"] = derived
    tt = lit.target_transform
    t0 = time.perf_counter()
    metrics.update(tt.report(_val_targets(dm), dm.part_columns("val", tt.required_columns)))
    _took(t0, "target representation %s: report on the validation spectra", tt.name)
    run_dir = fit.run_dir
    units = metric_space_units(fit)
    metrics["units"].update(
        dos=units["dos_unit"],
        energy_reference=units["energy_reference"],
        metric_space=units["metric_space"],
    )
    t0 = time.perf_counter()
    write_json(run_dir / "metrics.json", metrics)
    _write_predictions(run_dir / "predictions.npz", dm, res, groups, meta, units)
    _took(t0, "metrics.json and predictions.npz (%s spectra) written", f"{n_test:,}")
    if fit.cfg.get("plots", True):
        from dos_bench.reporting.spectra import plot_quartile_examples

        t0 = time.perf_counter()
        plot_quartile_examples(run_dir / "predictions.npz", run_dir / "examples_by_quartile.png")
        _took(t0, "figure examples_by_quartile.png drawn")
    if best:  # after metrics.json: a run that dies before it keeps two real files
        from dos_bench.training.resume import link_last_to_best

        t0 = time.perf_counter()
        linked = link_last_to_best(run_dir / "checkpoints" / "last.ckpt", Path(best))
        _took(
            t0, "last.ckpt compared with the best checkpoint (%s)", "linked" if linked else "kept"
        )
    print_summary(metrics, run_dir)
    return metrics


def metric_space_units(fit: FitResult) -> dict[str, str]:
    """The units of the spectra the run evaluates and writes (``metric_space``): ``dos_unit``
    (the dataset's own unit, or the per-material unit of the target representation under
    ``metric_space: normalised``, e.g. ``max-normalised``; '' when not recorded), the
    ``energy_unit`` and the ``energy_reference`` of the grid (``fermi``, ``band_edges``, ``vbm``,
    ``cbm`` or ``absolute`` for eDOS, from the dataset recipe or else the grid, see
    :func:`dos_bench.reporting.units.spectrum_units`; ``absolute`` for phDOS frequencies)."""
    from dos_bench.reporting.units import checkpoint_spectrum_units

    dm, cfg = fit.dm, fit.cfg
    attrs = dm.records.attrs
    space = str(cfg.get("metric_space", "native"))
    meta = {
        "kind": attrs.get("kind"),
        "energy_unit": attrs.get("energy_unit"),
        "dos_unit": attrs.get("dos_unit"),
        "grid": dm.grid,
    }
    config = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    units = checkpoint_spectrum_units(config, meta, normalised=space == "normalised")
    if units.normalised:
        dos = units.dos_unit
    else:
        dos = str(attrs.get("dos_unit") or "")
    return {
        "dos_unit": dos,
        "energy_unit": str(attrs.get("energy_unit") or ""),
        "energy_reference": units.reference or "absolute",
        "metric_space": space,
    }


def _metrics(fit: FitResult, res: dict[str, Any], best: str) -> dict[str, Any]:
    """The head of ``metrics.json``: what ran, the test metrics against the mean-spectrum
    baseline, the checkpoint selection, timing and units."""
    from dos_bench.metrics import compute_metrics
    from dos_bench.models.baselines import MeanSpectrum

    cfg, dm, lit, trainer = fit.cfg, fit.dm, fit.lit, fit.trainer
    baseline = MeanSpectrum().fit(dm.part_targets("train"))
    base_metrics = compute_metrics(
        baseline.predict(len(res["true"])), res["true"], list(cfg.metrics), spacing=dm.spacing
    )
    ckpt_cb = trainer.checkpoint_callback
    best_val = ckpt_cb.best_model_score if ckpt_cb is not None else None
    return {
        "dataset": dm.name,
        "model": lit.model.name,
        "target_repr": lit.target_transform.name,
        "loss": type(lit.loss_fn).__name__,
        "split": type(dm.splitter).__name__,
        "n_parameters": lit.model.n_parameters(),
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
        "timing": fit.timer.summary(),
        "epochs_completed": int(trainer.current_epoch),
        "units": {
            "energy": dm.records.attrs.get("energy_unit"),
            "dos": dm.records.attrs.get("dos_unit"),
        },
    }


def _grouped(fit: FitResult, res: dict[str, Any], groups: dict[str, Any]) -> dict[str, Any]:
    from dos_bench.metrics import grouped_metrics

    return grouped_metrics(
        res["pred"], res["true"], groups, list(fit.cfg.metrics), spacing=fit.dm.spacing
    )


def _derived(
    fit: FitResult, res: dict[str, Any], meta: dict[str, np.ndarray], kind: str | None
) -> dict[str, float] | None:
    """Derived physical quantities (``evaluation.derived``; eDOS and phDOS only)."""
    from dos_bench.derived import derived_metrics

    ev = fit.cfg.get("evaluation") or {}
    if not ev.get("derived", True) or kind not in ("edos", "phdos"):
        return None
    probe = _fit_fermi_probe(fit.dm, ev, fit.cfg.seed) if kind == "edos" else None
    settings = dict(ev.get("settings") or {})
    if probe is not None:
        settings.setdefault("fermi_column", probe.column)
    t0 = time.perf_counter()
    out = derived_metrics(res["pred"], res["true"], fit.dm.grid, kind, meta, settings, probe)
    what = "band gaps, DOS at E_F, VB gaps" if kind == "edos" else "heat capacities, mean frequency"
    _took(t0, "derived quantities (%s) of %s test spectra", what, f"{len(res['pred']):,}")
    return out


def _val_targets(dm: Any) -> Any:
    import torch

    return torch.as_tensor(dm.part_targets("val"))


def meta_columns(dm: Any, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Per-material metadata written beside the predictions (derived metrics and figures)."""
    out = {"n_atoms": dm.records.n_atoms[idx].astype(np.int64)}
    for col in META_COLUMNS:
        if col in dm.records.meta:
            v = dm.records.meta[col][idx]
            out[col] = v.astype(str) if v.dtype.kind in "OUS" else v.astype(np.float64)
    return out


def _fit_fermi_probe(dm: Any, ev: Any, seed: int):
    """DOSTransformer A.2: an MLP from ground-truth train spectra to the Fermi energy."""
    from dos_bench.physics import FermiProbe

    if not ev.get("fermi_probe", True):
        return None
    col = ev.get("fermi_column") or next(
        (c for c in ("e_fermi_abs", "e_fermi") if c in dm.records.meta), None
    )
    if col is None:
        return None
    target = dm.records.meta[col][dm.split.train].astype(np.float64)
    if not np.isfinite(target).all() or np.std(target) == 0:
        log.info("Fermi-energy probe skipped: %s is constant or missing on the train split", col)
        return None
    probe = FermiProbe(seed=seed, **dict(ev.get("fermi_probe_args") or {}))
    t0 = time.perf_counter()
    probe.fit(dm.part_targets("train"), target)
    _took(t0, "Fermi-energy probe fitted on %s spectra", f"{len(target):,}")
    probe.column = col
    return probe


def _write_predictions(
    path: Path,
    dm: Any,
    res: dict[str, Any],
    groups: dict[str, Any],
    meta: dict[str, np.ndarray],
    units: dict[str, str],
) -> None:
    idx = res["idx"]
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                ids=dm.records.ids[idx].astype(str),
                energies=dm.grid,
                true=res["true"],
                pred=res["pred"],
                energy_unit=np.asarray(units["energy_unit"]),
                energy_reference=np.asarray(units["energy_reference"]),
                dos_unit=np.asarray(units["dos_unit"]),
                kind=np.asarray(str(dm.records.attrs.get("kind") or "")),
                spacing=np.asarray(dm.spacing),
                **{f"group_{k}": np.asarray(v).astype(str) for k, v in groups.items()},
                **{f"meta_{k}": v for k, v in meta.items()},
            )


def print_summary(metrics: dict[str, Any], run_dir: Path) -> None:
    """The test metrics of the model and of the mean-spectrum baseline, and the run directory."""
    names = list(metrics["test"])
    width = 12
    units = metrics.get("units") or {}
    space = "native units"
    if units.get("metric_space") == "normalised":
        space = f"normalised spectra: {units.get('dos') or 'per-material units'}"
    lines = [
        f"\nTest metrics on {metrics['dataset']} ({metrics['n_test']} materials, {space}):",
        f"{'model':<24}" + "".join(f"{n:>{width}}" for n in names),
        f"{metrics['model']:<24}" + "".join(f"{metrics['test'][n]:>{width}.4g}" for n in names),
        f"{'mean-spectrum baseline':<24}"
        + "".join(f"{metrics['baseline_mean_spectrum'][n]:>{width}.4g}" for n in names),
    ]
    b = metrics["baseline_mean_spectrum"].get("mae")
    m = metrics["test"].get("mae")
    if b and m is not None:
        gain = 100 * (1 - m / b)
        side = "below" if gain >= 0 else "ABOVE (worse than)"
        lines.append(f"MAE {abs(gain):.1f}% {side} the mean-spectrum baseline")
    lines.append(f"run directory: {run_dir}")
    print("\n".join(lines), flush=True)
