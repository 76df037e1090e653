"""Derived metrics and re-evaluation of a run directory (docs/papers/alignn_dos.md §1.5,
docs/papers/dostransformer.md §2.6, docs/papers/mat2spec.md §4.5)."""

import json

import numpy as np
import pytest

from dos_bench.evaluate import derived_metrics, evaluate_run, main
from dos_bench.io import ConfigError, DataError
from dos_bench.metrics import compute_metrics
from dos_bench.physics import FermiProbe, average_frequency, heat_capacity

E9 = np.linspace(-2.0, 2.0, 9)
GAPPED = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0])  # gap 2.5 eV
NARROW = np.array([1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # VBM -0.5, CBM 1: gap 1.5
METAL = np.ones(9)
E128 = -4.0 + 0.0625 * (np.arange(128) + 0.5)
F51 = np.arange(0.0, 1001.0, 20.0)


def _vb(positive: bool) -> np.ndarray:
    d = np.full(128, 5.0)
    if positive:
        d[(E128 > -1.75) & (E128 < -0.5)] = 0.2
    return d


def test_edos_on_fermi_centred_grid():
    true = np.stack([GAPPED, METAL, GAPPED])
    pred = np.stack([NARROW, METAL, METAL * 0.5])
    out = derived_metrics(pred, true, E9, "edos", {"band_gap": np.array([2.4, 0.0, 2.6])})
    # gaps: pred [1.5, 0, 0] vs true [2.5, 0, 2.5]
    assert out["band_gap_mae"] == pytest.approx((1.0 + 0 + 2.5) / 3)
    assert out["band_gap_n"] == 3
    assert out["band_gap_mae_vs_dft"] == pytest.approx((0.9 + 0 + 2.6) / 3)
    assert out["metal_accuracy"] == pytest.approx(2 / 3)
    # DOS(E_F): pred [0, 1, 0.5] vs true [0, 1, 0]
    assert out["dos_at_ef_mae"] == pytest.approx(0.5 / 3)
    assert out["dos_at_ef_frac_err_lt_0.02"] == pytest.approx(2 / 3)
    assert not any(k.startswith("vbgap") for k in out)
    assert "fermi_rmse" not in out


def test_edos_absolute_reference():
    # absolute grid, E_F = 1 eV: the pred is the truth shifted by one step (0.5 eV) upwards
    true = np.stack([GAPPED, GAPPED])
    pred = np.stack([GAPPED, np.roll(GAPPED, 1)])
    meta = {"e_fermi": np.array([1.0, 1.0])}
    out = derived_metrics(pred, true, E9 + 1.0, "edos", meta, {"reference": "absolute"})
    assert out["band_gap_n"] == 2 and out["band_gap_mae"] == 0.0  # same gap, shifted edges
    meta = {"e_fermi": np.array([1.0, 3.0])}  # E_F of material 2 at 3 eV: lies in the CB
    out = derived_metrics(pred, true, E9 + 1.0, "edos", meta, {"reference": "absolute"})
    assert out["metal_accuracy"] == 1.0 and out["band_gap_mae"] == 0.0
    # without the column nothing gap-related is computed
    out = derived_metrics(true, true, E9, "edos", {}, {"reference": "absolute"})
    assert "band_gap_mae" not in out and "dos_at_ef_mae" not in out


def test_edos_band_edge_grid_vb_gap():
    true = np.stack([_vb(True), _vb(True), _vb(False), _vb(False)])
    pred = np.stack([_vb(True), _vb(False), _vb(True), _vb(False)])
    out = derived_metrics(pred, true, E128, "edos")
    assert out["vbgap_precision"] == 0.5 and out["vbgap_recall"] == 0.5
    assert out["vbgap_f1"] == 0.5
    assert out["vbgap_n_true"] == 2 and out["vbgap_n_pred"] == 2
    assert "band_gap_mae" not in out and "dos_at_ef_mae" not in out  # gap removed on this grid
    forced = derived_metrics(pred, true, E128, "edos", settings={"band_gap": True})
    assert "band_gap_mae" in forced
    # forcing the VB-gap scores on an E_F-centred grid
    out = derived_metrics(GAPPED[None], GAPPED[None], E9, "edos", settings={"vb_gap": True})
    assert out["vbgap_f1"] == 0.0 and out["vbgap_n_true"] == 0


def test_edos_fermi_probe():
    rng = np.random.default_rng(0)
    pos = rng.integers(2, 7, 60)
    x = (np.arange(9)[None, :] < pos[:, None]).astype(float)
    ef = E9[pos]
    probe = FermiProbe(hidden=(16, 16, 8), epochs=3, batch_size=32).fit(x, ef)
    out = derived_metrics(x[:10] + 0.1, x[:10], E9, "edos", {"e_fermi_abs": ef[:10]}, None, probe)
    assert out["fermi_rmse"] == pytest.approx(probe.rmse(x[:10] + 0.1, ef[:10]))
    assert out["fermi_rmse_true"] == pytest.approx(probe.rmse(x[:10], ef[:10]))
    # the caller picks the column
    other = {"e_fermi_abs": ef[:10], "e_fermi": ef[:10] + 1.0}
    out2 = derived_metrics(x[:10], x[:10], E9, "edos", other, {"fermi_column": "e_fermi"}, probe)
    assert out2["fermi_rmse"] == pytest.approx(probe.rmse(x[:10], ef[:10] + 1.0))
    assert "fermi_rmse" not in derived_metrics(x[:10], x[:10], E9, "edos", {}, None, probe)


def test_phdos_cv_and_omega():
    rng = np.random.default_rng(1)
    true, pred = rng.random((3, 51)), rng.random((3, 51))
    n_atoms = np.array([2, 3, 5])
    out = derived_metrics(pred, true, F51, "phdos", {"n_atoms": n_atoms})
    d_cv = heat_capacity(F51, pred, n_atoms) - heat_capacity(F51, true, n_atoms)
    d_w = average_frequency(F51, pred) - average_frequency(F51, true)
    assert out["cv_mae"] == pytest.approx(np.mean(np.abs(d_cv)))
    assert out["cv_mse"] == pytest.approx(np.mean(d_cv**2))
    assert out["omega_mae"] == pytest.approx(np.mean(np.abs(d_w)))
    assert out["omega_mse"] == pytest.approx(np.mean(d_w**2))
    assert set(derived_metrics(pred, true, F51, "phdos")) == {"omega_mae", "omega_mse"}
    # an all-zero spectrum has no C_V: left out of the mean
    z = true.copy()
    z[0] = 0.0
    out = derived_metrics(pred, z, F51, "phdos", {"n_atoms": n_atoms})
    assert out["cv_mae"] == pytest.approx(np.mean(np.abs(d_cv[1:])))
    with pytest.raises(DataError, match="n_species"):
        derived_metrics(pred, true, F51, "phdos", {"n_atoms": n_atoms}, {"cv_convention": "e3nn"})


def test_derived_metrics_errors():
    with pytest.raises(ConfigError, match="unknown evaluation setting"):
        derived_metrics(GAPPED[None], GAPPED[None], E9, "edos", settings={"gap_tl": 0.1})
    with pytest.raises(ConfigError):
        derived_metrics(GAPPED[None], GAPPED[None], E9, "xas")
    with pytest.raises(ValueError):
        derived_metrics(GAPPED[None], GAPPED[None], E128, "edos")
    with pytest.raises(DataError):
        derived_metrics(GAPPED[None], GAPPED[None], E9, "edos", {"band_gap": np.ones(3)})


# ----------------------------------------------------------------------------- run directories
def _write_run(path, energies, true, pred, unit, groups, meta, metrics=None):
    path.mkdir(parents=True, exist_ok=True)
    np.savez(
        path / "predictions.npz",
        ids=np.array([f"m-{i}" for i in range(len(true))]),
        energies=energies,
        true=true.astype(np.float32),
        pred=pred.astype(np.float32),
        energy_unit=np.asarray(unit),
        **{f"group_{k}": np.asarray(v).astype(str) for k, v in groups.items()},
        **{f"meta_{k}": np.asarray(v) for k, v in meta.items()},
    )
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def test_evaluate_run_edos(tmp_path):
    rng = np.random.default_rng(2)
    true = np.stack([_vb(i % 3 == 0) for i in range(6)]) + rng.random((6, 128))
    pred = true + 0.3 * rng.standard_normal((6, 128))
    groups = {"n_species": [2, 2, 3, 3, 3, 1], "crystal_system": ["cubic"] * 6}
    meta = {"e_fermi": rng.random(6), "band_gap": np.zeros(6), "n_atoms": np.arange(1, 7)}
    stored = {"dataset": "toy_edos_128", "model": "mlp", "test": {"mae": 1.0, "wd": 0.1}}
    run = _write_run(tmp_path / "run", E128, true, pred, "eV", groups, meta, stored)
    res = evaluate_run(run)
    assert res["kind"] == "edos" and res["dataset"] == "toy_edos_128" and res["n_test"] == 6
    assert res["spacing"] == pytest.approx(0.0625)
    ref = compute_metrics(pred.astype(np.float32), true.astype(np.float32), ["mae", "wd"], 0.0625)
    assert res["metrics"]["mae"] == pytest.approx(ref["mae"])
    assert res["metrics"]["wd"] == pytest.approx(ref["wd"])
    assert {"re", "r2_per_sample", "frac_mae_lt_0.02", "frac_re_lt_0.2"} <= set(res["metrics"])
    assert sum(v["n"] for v in res["grouped"]["n_species"].values()) == 6
    assert np.isnan(res["grouped"]["n_species"]["1"]["r2"])
    assert {"vbgap_f1", "vbgap_precision", "vbgap_recall"} <= set(res["derived"])
    assert res["stored_test"] == stored["test"]


def test_evaluate_run_phdos_without_metrics_json(tmp_path):
    rng = np.random.default_rng(3)
    true, pred = rng.random((4, 51)), rng.random((4, 51))
    run = _write_run(
        tmp_path / "ph", F51, true, pred, "cm^-1", {}, {"n_atoms": np.array([1, 2, 2, 4])}
    )
    res = evaluate_run(run)
    assert res["kind"] == "phdos" and res["spacing"] == pytest.approx(20.0)
    assert {"cv_mae", "cv_mse", "omega_mae", "omega_mse"} == set(res["derived"])
    assert res["grouped"] == {} and res["stored_test"] is None
    assert "re" not in res["metrics"]
    # Xtal2DoS convention: WD x 0.0625 for phDOS too
    assert evaluate_run(run, spacing=0.0625)["metrics"]["wd"] == pytest.approx(
        res["metrics"]["wd"] / 320
    )


def test_evaluate_run_errors(tmp_path):
    with pytest.raises(DataError, match="predictions.npz"):
        evaluate_run(tmp_path)
    run = _write_run(tmp_path / "r", E9, GAPPED[None], GAPPED[None], "Ha", {}, {})
    with pytest.raises(DataError, match="eDOS from phDOS"):
        evaluate_run(run)
    assert evaluate_run(run, kind="edos")["derived"]["band_gap_mae"] == 0.0


def test_cli(tmp_path, capsys):
    rng = np.random.default_rng(4)
    true, pred = rng.random((3, 9)), rng.random((3, 9))
    stored = {"dataset": "d", "model": "m"}
    run = _write_run(tmp_path / "run", E9, true, pred, "eV", {"n_species": [1, 2, 2]}, {}, stored)
    out_json = tmp_path / "all.json"
    assert main([str(run), "--groups", "--json", str(out_json), "--metrics", "mae,rmse"]) == 0
    text = capsys.readouterr().out
    assert "mae" in text and "band_gap_mae" in text and "by n_species" in text
    saved = json.loads(out_json.read_text())
    assert saved[0]["metrics"]["mae"] == pytest.approx(np.mean(np.abs(pred - true)), rel=1e-6)
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(run), "--metrics", "nope"]) == 2


def test_cli_on_a_multirun_directory_evaluates_each_job_in_order(tmp_path, capsys):
    """dos-tables accepts a multirun directory; dos-evaluate does too (one column per job)."""
    rng = np.random.default_rng(5)
    sweep = tmp_path / "sweep"
    for num, model in [(0, "m0"), (1, "m1"), (10, "m10"), (2, "m2")]:
        true, pred = rng.random((3, 9)), rng.random((3, 9))
        stored = {"dataset": "d", "model": model}
        _write_run(sweep / f"{num}_seed={num}", E9, true, pred, "eV", {}, {}, stored)
    (sweep / "multirun.yaml").write_text("{}")
    (sweep / "0_seed=0" / "checkpoints").mkdir()
    assert main([str(sweep), "--metrics", "mae"]) == 0
    head = capsys.readouterr().out.splitlines()[0].split()
    assert head == ["unit", "m0", "m1", "m2", "m10"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty)]) == 2


def test_table_states_the_unit_of_every_row(tmp_path, capsys):
    """eDOS and phDOS runs side by side: one unit column, the runs' units where they differ."""
    rng = np.random.default_rng(6)
    ed = {"dataset": "e", "model": "me", "kind": "edos"}
    ed["units"] = {"energy": "eV", "dos": "states/eV/cell (spin included)"}
    ph = {"dataset": "p", "model": "mp", "kind": "phdos"}
    ph["units"] = {"energy": "cm^-1", "dos": "modes/cm^-1/cell"}
    true, pred = rng.random((3, 9)), rng.random((3, 9))
    meta = {"band_gap": np.zeros(3), "n_atoms": np.array([1, 2, 2])}
    run_e = _write_run(tmp_path / "e", E9, true, pred, "eV", {}, meta, ed)
    true, pred = rng.random((3, 51)), rng.random((3, 51))
    run_p = _write_run(tmp_path / "p", F51, true, pred, "cm^-1", {}, {"n_atoms": np.ones(3)}, ph)
    assert evaluate_run(run_e)["units"]["band_gap_mae"] == "eV"
    assert main([str(run_e), str(run_p)]) == 0
    rows = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()[2:]}
    assert "states/eV/cell | modes/cm⁻¹/cell" in rows["mae"]
    assert "(states/eV/cell)² | (modes/cm⁻¹/cell)²" in rows["mse"]
    assert "states/eV/cell | modes/cm⁻¹/cell" in rows["rmse"]
    assert "eV | cm⁻¹" in rows["wd"]
    for name, u in [
        ("r2", "–"),
        ("re", "–"),
        ("frac_mae_lt_0.02", "fraction"),
        ("band_gap_mae", "eV"),
        ("dos_at_ef_mae", "states/eV/cell"),
        ("cv_mae", "J/(K·mol)"),
        ("omega_mae", "cm⁻¹"),
    ]:
        assert rows[name].split()[1] == u, rows[name]
