"""Cells of a fake multirun: grouping, mean (std), published values, failed and missing cells,
matching rules."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from dos_bench.reporting.cells import build_table, matches
from dos_bench.reporting.render import cell_text
from dos_bench.reporting.runs import find_runs, get_path
from dos_bench.reporting.spec import load_spec

from .helpers import SPEC, _write_run


def test_grouping_mean_std_and_published(multirun):
    root, spec_path = multirun
    spec = load_spec(spec_path)
    res = build_table(spec, find_runs(root))
    cell = res.cells[("a", "ph_rmse")]
    assert cell.n == 2 and cell.n_failed == 1
    assert cell.mean == pytest.approx(1.5 * 0.21)
    assert cell.std == pytest.approx(np.std([0.30, 0.33], ddof=1))
    assert cell.published == (0.1719, 0.0006)
    b = res.cells[("b", "e_mae")]
    assert b.mean == pytest.approx(0.16) and b.std == pytest.approx(np.std([0.15, 0.17], ddof=1))
    assert res.cells[("a", "e_frac")].mean == pytest.approx(0.82)
    assert res.cells[("a", "u_rmse")].mean == pytest.approx(0.64)
    # baseline row reads baseline_mean_spectrum; unmapped roots are not applicable
    assert res.cells[("base", "ph_mae")].mean == pytest.approx(1.0)
    assert res.cells[("base", "u_rmse")].status == "na"
    # improvement of b over the best other row (lower is better): (best - b) / best
    best_other = min(res.cells[("a", "ph_rmse")].mean, res.cells[("base", "ph_rmse")].mean)
    imp = res.cells[("improve", "ph_rmse")].values[0]
    assert imp == pytest.approx((best_other - res.cells[("b", "ph_rmse")].mean) / best_other)
    assert not res.unassigned and not res.incomplete()

    text = cell_text(res, spec.row("a"), spec.column("ph_rmse"))
    assert text.startswith("0.3150 (0.0212)")
    assert "1 failed" in text and "[paper 0.1719 (0.0006)]" in text
    assert cell_text(res, spec.row("b"), spec.column("ph_rmse")).endswith("[paper 0.12]")
    assert cell_text(res, spec.row("base"), spec.column("u_rmse")) == "n/a"


def test_failed_only_and_missing_cells(tmp_path):
    spec_path = tmp_path / "toy_table.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC, allow_unicode=True))
    root = tmp_path / "m"
    _write_run(root / "0", "A", "phdos", 0, None)
    _write_run(root / "1", "A", "edos", 0, 0.3)
    res = build_table(load_spec(spec_path), find_runs(root))
    assert res.cells[("a", "ph_rmse")].status == "failed"
    assert "FAILED (1 run)" in cell_text(res, res.spec.row("a"), res.spec.column("ph_rmse"))
    assert res.cells[("b", "ph_rmse")].status == "missing"
    assert res.cells[("a", "e_mae")].status == "ok"
    bad = {(r, c) for r, c, _ in res.incomplete()}
    assert ("a", "ph_rmse") in bad and ("b", "e_mae") in bad and ("a", "e_mae") not in bad


def test_get_path_and_matching():
    m = {
        "test": {"frac_mae_lt_0.02": 0.9, "mae": 1},
        "test_groups": {"n_species": {"1": {"rmse": 0.2}}},
    }
    assert get_path(m, "test.frac_mae_lt_0.02") == 0.9
    assert get_path(m, "test_groups.n_species.1.rmse") == 0.2
    assert get_path(m, "test.nope") is None
    cfg = {
        "target_repr": {"_target_": "dos_bench.data.transforms.MaxNorm", "latent": 8},
        "split": {"train_fraction": 0.5},
        "loss": {"c_kl": 1.1},
        "model": {"name": "E3NN"},
    }
    assert matches(cfg, {"target_repr._target_": "MaxNorm"})
    assert not matches(cfg, {"target_repr._target_": "Norm"})
    assert matches(cfg, {"target_repr.latent": 8, "split.train_fraction": 0.5})
    assert matches(cfg, {"model.name": ["E3NN", "GATGNN"], "loss.c_kl": 1.1})
    assert matches(cfg, {"loss.pred_loss": None})
    assert not matches(cfg, {"model.name": "E3NN-orig"})
