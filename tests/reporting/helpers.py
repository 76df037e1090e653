"""Fake run directories and prediction files shared by the reporting tests (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

SPEC = {
    "name": "toy_table",
    "title": "Toy table",
    "source": "tests",
    "format": ".4f",
    "row_header": ["Model", "Energy"],
    "notes": ["a note"],
    "columns": [
        {
            "id": "ph_rmse",
            "group": "Phonon",
            "label": "RMSE",
            "metric": "test.rmse",
            "match": {"dataset.kind": "phdos"},
        },
        {
            "id": "ph_mae",
            "group": "Phonon",
            "label": "MAE",
            "metric": "test.mae",
            "match": {"dataset.kind": "phdos"},
        },
        {
            "id": "e_mae",
            "group": "Electron",
            "label": "MAE",
            "metric": "test.mae",
            "match": {"dataset.kind": "edos", "split._target_": "RandomSplit"},
        },
        {
            "id": "e_frac",
            "group": "Electron",
            "label": "frac",
            "format": ".3f",
            "metric": "test.frac_mae_lt_0.02|derived.frac_mae_lt_0.02",
            "match": {"dataset.kind": "edos"},
            "better": "higher",
        },
        {
            "id": "u_rmse",
            "label": "Unary RMSE",
            "metric": "test_groups.n_species.1.rmse",
            "match": {"dataset.kind": "edos"},
        },
    ],
    "rows": [
        {
            "id": "a",
            "labels": ["Model A", "✗"],
            "match": {"model.name": "A"},
            "published": {"ph_rmse": [0.1719, 0.0006], "e_mae": 0.25},
        },
        {
            "id": "b",
            "labels": ["Model B", "✓"],
            "match": {"model.name": "B"},
            "published": {"ph_rmse": 0.12},
        },
        {
            "id": "base",
            "labels": ["Mean baseline", ""],
            "match": {"model.name": "A"},
            "metric_map": {"test": "baseline_mean_spectrum"},
        },
    ],
    "derived_rows": [
        {
            "id": "improve",
            "labels": ["improve", ""],
            "kind": "improvement",
            "target": "b",
            "published": {"ph_rmse": 0.10},
        },
    ],
}

# (model, kind) -> test values per seed
VALUES = {
    ("A", "phdos"): [0.20, 0.22],
    ("B", "phdos"): [0.10, 0.11],
    ("A", "edos"): [0.30, 0.34],
    ("B", "edos"): [0.15, 0.17],
}


def _write_run(
    d: Path,
    model: str,
    kind: str,
    seed: int,
    value: float | None,
    table: str = "toy_table",
    resolved: bool = True,
) -> None:
    cfg = {
        "seed": seed,
        "table": table,
        "monitor": "val/mae",
        "model": {"name": model, "_target_": "dos_bench.models.model.DOSModel"},
        "dataset": {"name": f"toy_{kind}", "kind": kind},
        "split": {"_target_": "dos_bench.data.splits.RandomSplit", "train_fraction": 1.0},
        "experiment_name": "${dataset.name}-${model.name}",
        "paths": {"output_dir": "${hydra:runtime.output_dir}"},
    }
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if value is None:  # failed run: Hydra wrote .hydra/, the job never wrote its files
        return
    if resolved:
        (d / "config_resolved.yaml").write_text(yaml.safe_dump(cfg))
    metrics = {
        "model": model,
        "test": {"mae": value, "rmse": 1.5 * value, "frac_mae_lt_0.02": 0.5 + value},
        "baseline_mean_spectrum": {"mae": 1.0, "rmse": 2.0, "frac_mae_lt_0.02": 0.1},
        "test_groups": {"n_species": {"1": {"rmse": 2 * value, "n": 3}}},
        "timing": {"train_epoch_s": 1.0},
    }
    (d / "metrics.json").write_text(json.dumps(metrics))


def _write_sweep_run(d: Path, seed: int, mae: float, kind: str = "edos") -> None:
    """A finished run of an ad-hoc sweep (no `table` key) with its predictions and units."""
    _write_run(d, "graph_network", kind, seed, mae, table="")
    rng = np.random.default_rng(seed)
    if kind == "edos":
        grid, unit, dos_unit = np.arange(-5.0, 5.0, 0.1), "eV", "states/eV/cell (spin included)"
    else:
        grid, unit, dos_unit = np.arange(0.0, 1001.0, 20.0), "cm^-1", "max-normalised"
    true = np.abs(rng.normal(1.0, 0.5, (12, grid.size)))
    true[:, np.abs(grid) < 0.5] = 0.0  # gapped at E_F for eDOS
    np.savez(
        d / "predictions.npz",
        ids=np.array([f"m{i}" for i in range(12)]),
        energies=grid,
        true=true,
        pred=np.clip(true + rng.normal(0, 0.1, true.shape), 0, None),
        energy_unit=np.asarray(unit),
        meta_formula=np.array(["NaCl", "GaAs", "MgO", "ZnS"] * 3),
    )
    metrics = json.loads((d / "metrics.json").read_text())
    metrics.update(kind=kind, units={"energy": unit, "dos": dos_unit})
    (d / "metrics.json").write_text(json.dumps(metrics))


PNG = b"\x89PNG\r\n\x1a\n"

FORMULAS = ["NaCl", "GaAs", "MgO", "Si", "LiF", "CuZn", "BaTiO3", "ZnS", "AlN", "KBr", "Fe", "CsI"]


def _predictions(path: Path, seed: int = 0, n: int = 24, formulas: bool = True) -> Path:
    """Gapped toy spectra on an E_F-relative grid, predictions = truth + noise."""
    rng = np.random.default_rng(seed)
    e = np.linspace(-5.0, 5.0, 101)
    gaps = rng.uniform(0.0, 3.0, n)
    true = np.zeros((n, e.size))
    for i, g in enumerate(gaps):
        vb, cb = e < -g / 2, e > g / 2
        true[i, vb] = 1.0 + np.sin(3 * e[vb] + i) ** 2
        true[i, cb] = 0.5 + np.cos(2 * e[cb] + i) ** 2
    pred = np.clip(
        true + rng.normal(0, 0.05 * (1 + np.arange(n)[:, None] / n), true.shape), 0, None
    )
    arrays = {
        "ids": np.array([f"toy-{i:03d}" for i in range(n)]),
        "energies": e,
        "true": true,
        "pred": pred,
        "energy_unit": np.asarray("eV"),
        "group_n_species": np.array([str(1 + i % 4) for i in range(n)]),
    }
    if formulas:
        arrays["meta_formula"] = np.array([FORMULAS[i % len(FORMULAS)] for i in range(n)])
    np.savez(path, **arrays)
    return path


def _is_png(p: Path | None) -> bool:
    return p is not None and Path(p).is_file() and Path(p).read_bytes()[:8] == PNG


def _run_dir(
    d: Path,
    *,
    kind: str,
    energy_unit: str,
    dos_unit: str,
    grid: np.ndarray,
    recipe: dict | None = None,
    metric_space: str = "native",
    target_repr: dict | None = None,
    n: int = 12,
) -> Path:
    """A run directory as dos-train writes it: predictions.npz, metrics.json (units) and
    config_resolved.yaml (dataset recipe, metric_space, target_repr)."""
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    true = np.abs(rng.normal(1.0, 0.5, (n, grid.size)))
    np.savez(
        d / "predictions.npz",
        ids=np.array([f"m{i}" for i in range(n)]),
        energies=grid,
        true=true,
        pred=true + rng.normal(0, 0.1, true.shape),
        energy_unit=np.asarray(energy_unit),
    )
    (d / "metrics.json").write_text(
        json.dumps({"kind": kind, "units": {"energy": energy_unit, "dos": dos_unit}})
    )
    cfg = {
        "metric_space": metric_space,
        "dataset": {"kind": kind, "recipe": recipe or {"_target_": "x.NativeRecipe"}},
        "target_repr": target_repr or {"_target_": "dos_bench.data.transforms.Raw"},
    }
    (d / "config_resolved.yaml").write_text(yaml.safe_dump(cfg))
    return d


FERMI_GRID = np.round(np.arange(-5.0, 10.0, 0.05), 4)

BAND_EDGE_GRID = -4.0 + 0.0625 * (np.arange(128) + 0.5)

PH_GRID = np.arange(0.0, 1001.0, 20.0)

GRID_RECIPE = {"_target_": "dos_bench.data.spectra.GridRecipe", "reference": "e_fermi"}
