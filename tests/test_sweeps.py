"""Real sweeps: parallel multirun (joblib launcher), SLURM launcher configs, Optuna search."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from cli_support import CLI_SMALL, CONF_DIR, train_cli

from dos_bench.hpsearch import SearchParam, format_override, parse_space, run_search
from dos_bench.io import ConfigError

SMALL = ["trainer=debug", "plots=false", *CLI_SMALL]
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", re.M)


def _span(log: Path) -> tuple[datetime, datetime]:
    stamps = [datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f") for s in STAMP.findall(log.read_text())]
    return stamps[0], stamps[-1]


@pytest.mark.slow  # 14 s: four training subprocesses; `make test-all`
def test_joblib_launcher_runs_four_jobs_in_parallel(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "model=mlp,graph_network", "seed=0,1", "hydra/launcher=joblib"]
    with_bars = [a for a in SMALL if a != "progress=false"]  # progress=true, the default
    args += ["hydra.launcher.n_jobs=2", *with_bars, f"hydra.sweep.dir={sweep}"]
    out = train_cli(args, data_dir, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr
    # parallel jobs share the terminal: no progress bars, one log line per epoch instead
    assert "it/s" not in out.stdout + out.stderr and "━" not in out.stdout + out.stderr
    assert (out.stdout + out.stderr).count("epoch 2/2 (") == 4
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 4
    seen = set()
    for job in jobs:
        m = json.loads((job / "metrics.json").read_text())
        seen.add((m["model"], m["seeds"]["train"]))
    assert seen == {("mlp", 0), ("mlp", 1), ("graph_network", 0), ("graph_network", 1)}
    # two workers: at least two jobs were running at the same time
    spans = [_span(job / "train.log") for job in jobs]
    overlaps = sum(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])
    assert overlaps >= 1, spans
    assert not (tmp_path / "outputs").exists()
    # dos-tables reads the sweep: one row per model, mean over the two seeds in every cell
    tables = subprocess.run(
        [sys.executable, "-m", "dos_bench.reporting.cli", str(sweep), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tables.returncode == 0, tables.stdout + tables.stderr
    assert "graph_network" in tables.stdout and "| mlp" in tables.stdout
    assert "missing" not in tables.stdout and "FAILED" not in tables.stdout


def test_split_statistics_print_once_per_sweep(data_dir, tmp_path):
    """Two jobs on the same split: the 17-line table once (first job), then one line saying
    where it is; a job with another split prints its own table."""
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=0,1", "model=mlp", *SMALL, f"hydra.sweep.dir={sweep}"]
    out = train_cli(args, data_dir, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert text.count("crystal_system     train") == 1 and text.count("n_species     train") == 1
    assert text.count("split sizes: train 77, val 10, test 9") == 2  # one line in every job
    assert text.count("tables as printed earlier in this sweep") == 1
    (saved,) = sweep.glob(".split_stats-*.txt")
    assert "\nn_species " in saved.read_text() and "\ncrystal_system " in saved.read_text()
    logs = sorted(sweep.glob("*/train.log"))
    assert len(logs) == 2
    assert "crystal_system" in logs[0].read_text() and str(saved) in logs[1].read_text()
    # the same sweep directory again with another split: a different table is printed
    args = ["-m", "split_seed=1", "model=mlp", *SMALL, f"hydra.sweep.dir={sweep}"]
    again = train_cli(args, data_dir, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("crystal_system     train") == 1
    assert len(list(sweep.glob(".split_stats-*.txt"))) == 2


@pytest.mark.parametrize("launcher,tasks", [("slurm_ddp", 2), ("slurm_sweep", 1)])
def test_slurm_launcher_configs_compose(launcher, tasks):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[f"hydra/launcher={launcher}", f"hydra.launcher.gpus_per_node={tasks}"],
            return_hydra_config=True,
        )
    la = cfg.hydra.launcher
    assert la._target_.endswith("SlurmLauncher")
    assert la.tasks_per_node == la.gpus_per_node == tasks


# ---------------------------------------------------------------------------- Optuna driver
def test_search_space_entries():
    p = SearchParam("lr", {"low": 5.0e-4, "high": 1.0e-2, "step": 5.0e-4})
    grid = p.grid()
    assert len(grid) == 20 and grid[0] == 5e-4 and grid[-1] == 1e-2 and grid[8] == 0.0045
    d = SearchParam("d", {"keys": ["model.encoder.hidden", "model.head.d"], "choices": [64]})
    assert d.overrides(64) == ["model.encoder.hidden=64", "model.head.d=64"]
    assert SearchParam("n", {"low": 1, "high": 4}).is_int
    assert format_override("a b") == "'a b'" and format_override(1e-4) == "0.0001"
    assert format_override(None) == "null" and format_override([1, 2]) == "[1,2]"
    with pytest.raises(ConfigError, match="hparams_search.params.x"):
        SearchParam("x", {"low": 1.0})
    with pytest.raises(ConfigError, match="unknown fields"):
        SearchParam("x", {"choices": [1], "type": "int"})


@pytest.mark.parametrize("name,n_grid", [("dostransformer", 243), ("mat2spec_grid", 240)])
def test_paper_search_spaces_compose(name, n_grid, tmp_path):
    """Every sampled key exists in the composed config (typos fail before any trial)."""
    from hydra import compose, initialize_config_dir

    text = (Path(CONF_DIR) / "hparams_search" / f"{name}.yaml").read_text()
    params = yaml.safe_load(text)["hparams_search"]["params"]
    space = parse_space(params)
    size = 1
    for p in space:
        size *= len(p.grid())
    assert size == n_grid
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for pick in (0, -1):
            ov = [o for p in space for o in p.overrides(p.grid()[pick])]
            cfg = compose("train", overrides=[f"+hparams_search={name}", *ov])
            for o in ov:
                key, value = o.split("=", 1)
                node = cfg
                for part in key.split("."):
                    node = node[part]
                assert str(node) == value or float(node) == float(value), o


def test_optuna_two_trials_then_resume(data_dir, tmp_path, capsys):
    out = tmp_path / "hps"
    args = [
        "hparams_search=smoke",
        f"paths.data_dir={data_dir}",
        *SMALL,
        f"hparams_search.dir={out}",
    ]
    summary = run_search(args)
    assert summary["n_complete"] == 2 and summary["best_trial"] in (0, 1)
    best = yaml.safe_load((out / "best_params.yaml").read_text())
    assert set(best["best_params"]) == {"optimizer.lr", "model.head.hidden"}
    assert best["best_value"] == summary["best_value"]
    assert Path(best["best_run_dir"], "metrics.json").is_file()
    metrics = json.loads(Path(best["best_run_dir"], "metrics.json").read_text())
    assert metrics["selection"]["best_val"] == pytest.approx(best["best_value"])
    assert "+hparams_search=smoke" in best["command"] and "model.head.hidden=" in best["command"]
    with open(out / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE"] and "test_mae" in rows[0]
    assert (out / "study.db").is_file() and "rerun with" in capsys.readouterr().out

    # the same command with a larger budget resumes the study: one more trial, not three
    summary = run_search([*args, "hparams_search.n_trials=3"])
    assert summary["n_trials"] == 3 and (out / "trial_002" / "metrics.json").is_file()


def test_optuna_bad_key_fails_before_training(data_dir, tmp_path):
    args = [
        "hparams_search=smoke",
        f"paths.data_dir={data_dir}",
        *SMALL,
        f"hparams_search.dir={tmp_path / 'hps'}",
        "hparams_search.params={model.head.widht:[1,2]}",
    ]
    with pytest.raises(ConfigError, match="widht"):
        run_search(args)
    assert not list((tmp_path / "hps").glob("trial_*"))


def test_group_overrides_do_not_nest_job_directories(data_dir, tmp_path):
    """`-m model/head=...` (any encoder with any head) gives one flat directory per job."""
    sweep = tmp_path / "sweep"
    args = ["-m", "model=mlp", "model/head=direct,energy_embedding"]
    out = train_cli([*args, *SMALL, f"hydra.sweep.dir={sweep}"], data_dir, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    for num, (job, head) in enumerate(zip(jobs, ["direct", "energy_embedding"], strict=True)):
        assert job.name.startswith(f"{num}_") and f"model.head={head}" in job.name.split(",")
        assert (job / "metrics.json").is_file()


def test_sixteen_override_multirun_fits_the_file_system_and_tables_read_it(data_dir, tmp_path):
    """A table preset passes ~16 overrides: the job directory name is cut and hashed instead of
    failing with `File name too long`; dos-tables reads the sweep."""
    sweep = tmp_path / "sweep"
    many = [
        "optimizer.lr=0.00123456789",
        "optimizer.weight_decay=0.0000123456789",
        "model.encoder.hidden=32",
        "model.head.hidden=32",
        "data.eval_batch_size=64",
        "split.train=0.8",
        "split.val=0.1",
        "split.test=0.1",
        "split_seed=0",
        "data_seed=0",
        "monitor=val/mae",
        "metric_space=native",
        "plots=false",
        "evaluation.derived=false",
        "evaluation.fermi_probe=false",
        "experiment_name=a_rather_long_experiment_name_for_the_directory",
    ]
    args = ["-m", "model=mlp", *many, "seed=0,1"]
    out = train_cli([*args, *SMALL, f"hydra.sweep.dir={sweep}"], data_dir, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2 and all(len(j.name) <= 125 for j in jobs)  # "<num>_" + 120
    assert jobs[0].name != jobs[1].name and all("~" in j.name for j in jobs)
    assert all((j / "metrics.json").is_file() for j in jobs)
    from dos_bench.reporting.cli import main as tables_main

    assert tables_main([str(sweep)]) == 0
