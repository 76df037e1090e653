"""JARVIS-Leaderboard phonon DOS: the multimae metric, the submission file, dos-evaluate
--jarvis-submission (format facts: dos_bench/reporting/leaderboard.py)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import yaml
from sklearn.metrics import mean_absolute_error

from dos_bench.evaluate import main as evaluate_main
from dos_bench.io import ConfigError, DataError
from dos_bench.metrics import METRICS, compute_metrics, get_metric, mae, multimae, per_sample
from dos_bench.reporting.leaderboard import (
    CSV_NAME,
    REQUIRED_METADATA,
    ZIP_NAME,
    join_spectrum,
    read_submission,
    score_submission,
    split_spectrum,
    submission_from_run,
    write_submission,
)


# ----------------------------------------------------------------------------- metric
def test_multimae_by_hand():
    pred = np.array([[0.0, 1.0], [2.0, 3.0]])
    true = np.array([[1.0, 1.0], [0.0, 0.0]])
    # |0-1| + |1-1| + |2-0| + |3-0| = 6 over 4 values
    assert multimae(pred, true) == 1.5
    assert get_metric("multimae") is multimae and "multimae" in METRICS
    assert compute_metrics(pred, true, ["multimae"]) == {"multimae": 1.5}
    # spectra of different lengths: all values concatenated (errors 1 | 0, 0, 0 -> 1/4), not the
    # mean of per-sample MAEs (1 and 0 -> 0.5)
    assert multimae([[0.0], [1.0, 1.0, 1.0]], [[1.0], [1.0, 1.0, 1.0]]) == 0.25
    with pytest.raises(ValueError):
        multimae([[0.0, 1.0]], [[0.0]])
    with pytest.raises(ValueError):
        multimae(np.zeros((2, 3)), np.zeros((3, 2)))


def test_multimae_is_sklearn_on_concatenation_and_equals_mae_for_equal_lengths():
    rng = np.random.default_rng(0)
    pred, true = rng.random((7, 66)), rng.random((7, 66))
    ref = mean_absolute_error(true.reshape(-1), pred.reshape(-1))
    assert multimae(pred, true) == pytest.approx(ref, rel=1e-12)
    assert multimae(pred, true) == pytest.approx(mae(pred, true), rel=1e-12)
    assert multimae(pred, true) == pytest.approx(per_sample("mae", pred, true).mean(), rel=1e-12)


# ----------------------------------------------------------------------------- file format
def test_spectrum_strings():
    assert join_spectrum([0, 3.559472361303051e-07, 1]) == "0.0;3.559472361303051e-07;1.0"
    y = np.array([0.0, 0.1, 1 / 3, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(split_spectrum(join_spectrum(y), "x"), y.astype(np.float64))
    with pytest.raises(DataError, match="where: spectrum field 'x'"):
        split_spectrum("0.1;x", "where")


def test_written_file_has_the_leaderboard_layout(tmp_path):
    ids = ["JVASP-1", "JVASP-22", "JVASP-3"]
    true = np.array([[0.0, 1.0], [0.5, 1.0], [1.0, 0.25]])
    pred = np.array([[0.1, 0.9], [0.5, 0.75], [1.0, 0.0]])
    path = write_submission(tmp_path, ids, true, pred)
    assert path == tmp_path / ZIP_NAME
    with zipfile.ZipFile(path) as zf:
        (info,) = zf.infolist()
        assert info.filename == CSV_NAME == "AI-Spectra-ph_dos-edos_pdos-test-multimae.csv"
        assert info.compress_type == zipfile.ZIP_DEFLATED
        text = zf.read(CSV_NAME).decode()
    assert text == (
        "id,target,prediction\n"
        "JVASP-1,0.0;1.0,0.1;0.9\n"
        "JVASP-22,0.5;1.0,0.5;0.75\n"
        "JVASP-3,1.0;0.25,1.0;0.0\n"
    )
    sub = read_submission(path)
    assert sub.ids == ids
    np.testing.assert_array_equal(np.stack(sub.target), true)
    np.testing.assert_array_equal(np.stack(sub.prediction), pred)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(DataError, match="duplicate id"):
        write_submission(tmp_path, ["a", "a", "b"], true, pred)
    with pytest.raises(DataError, match="not finite"):
        write_submission(tmp_path, ids, true, np.where(pred > 0.8, np.nan, pred))


def test_reader_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,target\nJVASP-1,0.0;1.0\n")
    with pytest.raises(DataError, match=r"bad.csv: header .* lacks column\(s\) \['prediction'\]"):
        read_submission(bad)
    bad.write_text("id,target,prediction\nJVASP-1,0.0;1.0,0.0;1.0\nJVASP-2,0.0;1.0,0.0\n")
    with pytest.raises(DataError, match=r"bad.csv: line 3 \(id JVASP-2\): target has 2 values"):
        read_submission(bad)


# ----------------------------------------------------------------------------- from a run
def _bench(path, test_ids, true):
    data = {
        "train": {"JVASP-90": join_spectrum(np.ones(66)), "JVASP-91": join_spectrum(np.ones(66))},
        "val": {"JVASP-92": join_spectrum(np.ones(66))},
        "test": {i: join_spectrum(y) for i, y in zip(test_ids, true, strict=True)},
    }
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("edos_pdos_ph_dos.json", json.dumps(data))
    return path


def _run(tmp_path, n=5, points=66, seed=0):
    """A finished run as dos-train writes it (float32 spectra, metrics from compute_metrics)."""
    rng = np.random.default_rng(seed)
    true = rng.random((n, points)).astype(np.float32)
    true /= true.max(axis=1, keepdims=True)
    pred = np.clip(true + rng.normal(0, 0.05, true.shape), 0, None).astype(np.float32)
    ids = [f"JVASP-{10 + i}" for i in range(n)]
    run = tmp_path / "run"
    run.mkdir()
    np.savez(
        run / "predictions.npz",
        ids=np.asarray(ids),
        energies=-300.0 + 20.0 * np.arange(points),
        true=true,
        pred=pred,
        energy_unit=np.asarray("cm^-1"),
        spacing=np.asarray(20.0),
    )
    test = compute_metrics(pred, true, ["multimae", "mae"], spacing=20.0)
    metrics = {"dataset": "jarvis_phdos", "model": "D-ALIGNN", "kind": "phdos", "test": test}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run, ids, true, pred, test["multimae"]


def test_submission_round_trip_through_dos_evaluate(tmp_path, capsys):
    run, ids, true, _, stored = _run(tmp_path)
    bench = _bench(tmp_path / "bench.json.zip", ids, true)
    meta = tmp_path / "meta.yaml"
    fields = {
        "team_name": "us",
        "author_email": "a@b.c",
        "project_url": "https://example.org",
        "git_url": "https://example.org/git",
        "software_used": "dos_bench",
        "hardware_used": "2 CPU cores",
    }
    meta.write_text(yaml.safe_dump(fields))
    out = tmp_path / "contrib"
    rc = evaluate_main(
        [
            str(run),
            "--jarvis-submission",
            str(out),
            "--jarvis-benchmark",
            str(bench),
            "--jarvis-metadata",
            str(meta),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert ZIP_NAME in printed and "multimae against the benchmark file" in printed
    sub = read_submission(out / ZIP_NAME)
    assert sub.ids == ids
    # re-read CSV -> the leaderboard's multimae = the run's metrics.json test multimae
    assert multimae(sub.prediction, sub.target) == pytest.approx(stored, rel=1e-12, abs=0)
    board = score_submission(out / ZIP_NAME, bench)
    assert board["multimae"] == pytest.approx(stored, rel=1e-12, abs=0)
    assert board["n_matched"] == len(ids) and not board["missing"] and not board["extra"]
    md = json.loads((out / "metadata.json").read_text())
    assert set(REQUIRED_METADATA) <= set(md)
    assert md["model_name"] == "D-ALIGNN" and md["git_url"] == ["https://example.org/git"]
    assert md["time_taken_seconds"] == {ZIP_NAME: ""}


def test_benchmark_found_from_the_run_config(tmp_path):
    run, ids, true, _, stored = _run(tmp_path)
    (tmp_path / "data").mkdir()
    _bench(tmp_path / "data" / "jl.json.zip", ids, true)
    (run / "config_resolved.yaml").write_text(
        yaml.safe_dump(
            {
                "metric_space": "native",
                "paths": {"data_dir": str(tmp_path / "data")},
                "dataset": {"source": {"benchmark": "jl.json.zip"}},
            }
        )
    )
    res = submission_from_run(run, tmp_path / "out")
    assert res["leaderboard"]["multimae"] == pytest.approx(stored, rel=1e-12, abs=0)
    assert res["stored_multimae"] == stored and res["metadata"] is None


def test_submission_errors(tmp_path, capsys):
    run, ids, true, _, _ = _run(tmp_path)
    other = _bench(tmp_path / "other.json.zip", ["JVASP-1", *ids[1:]], true)
    with pytest.raises(
        DataError, match=r"5 test ids are not the 5 test ids .*\(1 missing, 1 extra"
    ):
        submission_from_run(run, tmp_path / "out", benchmark=other)
    assert not (tmp_path / "out" / ZIP_NAME).exists()
    with pytest.raises(ConfigError, match=r"metadata: .* key\(s\) \['project_url', 'git_url', 'au"):
        submission_from_run(run, tmp_path / "out", metadata={"team_name": "x"})
    assert not (tmp_path / "out" / ZIP_NAME).exists()  # metadata is checked before writing
    rc = evaluate_main(
        [str(run), "--jarvis-submission", str(tmp_path / "o"), "--jarvis-benchmark", str(other)]
    )
    assert rc == 2 and "test ids" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_main([str(run), str(run), "--jarvis-submission", str(tmp_path / "o")])
    (tmp_path / "b").mkdir()
    run51, *_ = _run(tmp_path / "b", points=51)
    with pytest.raises(DataError, match="needs 66 points"):
        submission_from_run(run51, tmp_path / "out")
    (run / "config_resolved.yaml").write_text(yaml.safe_dump({"metric_space": "normalised"}))
    with pytest.raises(DataError, match="metric_space='normalised'"):
        submission_from_run(run, tmp_path / "out")
