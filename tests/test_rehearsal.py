"""Reproduction rehearsal: from a published archive to a paper table, through the console scripts.

A user reproducing a paper installs dos_bench, runs ``dos-data download <dataset>``, then
``dos-train -m experiment=<table>`` and ``dos-tables``. This test walks that path on miniature,
layout-exact copies of every published archive (``tests/archives.py``) served from 127.0.0.1:
the dataset configs are the shipped ones, only their download URLs (and the checksums pinned for
the real files) are pointed at the loopback server, and the Materials Project datasets are built
through the configured client class (``dataset.api.client``) set to the fake client.

* fast (``make test``): every dataset downloaded and unpacked by ``dos-data``, then one tiny run of
  one preset per dataset (``dos-train experiment=<preset>``) and its row in ``dos-tables``;
* slow: every preset's full sweep (one tiny epoch per job, two seeds) and ``dos-tables --check``
  finding every cell filled.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dos_bench.config import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

_spec = importlib.util.spec_from_file_location("archives", ROOT / "tests" / "archives.py")
A = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("archives", A)
_spec.loader.exec_module(A)

#: dataset -> the presets that train on it (DOSTransformer's tables use two datasets)
PRESETS: dict[str, list[str]] = {
    "jarvis_edos": ["alignn_dos_table1"],
    "jarvis_phdos": ["jarvis_leaderboard_phdos"],
    "mp_edos_128": [
        "mat2spec_table2",
        "mat2spec_datasize",
        "mat2spec_ablation",
        "xtal2dos_table2",
        "xtal2dos_table4",
        "xtal2dos_table5",
    ],
    "phonon_e3nn": ["mat2spec_table1", "xtal2dos_table1", "xtal2dos_table3"],
    "phonon_tut": ["dostransformer_table1", "dostransformer_table5", "dostransformer_table6"],
    "mp_edos_201": ["dostransformer_table1", "dostransformer_table5", "dostransformer_table6"],
    "mp_edos_128_from_dos": [],  # no paper table: the 128-bin recipe rebuilt from MP documents
}

#: fast test: one single run per dataset (preset + the overrides that pick its row)
ONE_RUN: dict[str, list[str]] = {
    "jarvis_edos": ["experiment=alignn_dos_table1", "method=d_alignn"],
    "jarvis_phdos": ["experiment=jarvis_leaderboard_phdos"],
    "mp_edos_128": ["experiment=mat2spec_ablation"],
    "phonon_e3nn": ["experiment=mat2spec_table1"],
    "phonon_tut": ["experiment=dostransformer_table6", "setting=dost_phonon"],
    # the species-count OOD split: the miniature must hold unary ... quinary crystals
    "mp_edos_201": ["experiment=dostransformer_table5", "setting=dost_s1"],
    "mp_edos_128_from_dos": ["experiment=mat2spec_ablation", "dataset=mp_edos_128_from_dos"],
}

#: presets whose sweep is a subset of another's: the table is built from that preset's runs
REUSE = {
    "dostransformer_table5": "dostransformer_table1",
    "dostransformer_table6": "dostransformer_table1",
    "xtal2dos_table4": "xtal2dos_table5",
}

SHRINK = [
    "progress=false",
    "plots=false",
    "num_threads=1",
    "data.batch_size=4",
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=1",
    "++trainer.limit_val_batches=1",
    "++trainer.num_sanity_val_steps=0",
    "++trainer.log_every_n_steps=1",
]
#: ALIGNN at paper size costs ~30 s per batch on 2 cores; every ALIGNN row shares the encoder
SHRINK_ALIGNN = [
    "model.encoder.alignn_layers=1",
    "model.encoder.gcn_layers=1",
    "model.encoder.hidden=64",
    "model.head.hidden=64",
]
ALIGNN_PRESETS = {"alignn_dos_table1", "jarvis_leaderboard_phdos"}


def _shrink(preset: str) -> list[str]:
    return SHRINK + (SHRINK_ALIGNN if preset in ALIGNN_PRESETS else [])


def _download_overrides(dataset: str, server) -> list[str]:
    """Point the shipped config's download entries at the loopback copies; the checksums
    pinned for the real files cannot match a miniature, so they are unset."""
    out = []
    for i, path in enumerate(A.DATASET_URL_PATHS.get(dataset, [])):
        key = "record" if path == A.MAT2SPEC_RECORD_PATH else "url"
        out += [f"dataset.download.{i}.{key}={server.url(path)}"]
        if key == "url":
            out += [f"++dataset.download.{i}.sha256=null", f"++dataset.download.{i}.git_blob=null"]
    if dataset.startswith("mp_edos_") and dataset != "mp_edos_128":
        out += ["dataset.api.client=archives.FakeMPRester"]
    return out


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 900):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Every dataset downloaded through ``dos-data`` from the loopback copies."""
    root = tmp_path_factory.mktemp("rehearsal")
    archives = A.write_all(root / "published")
    data_dir, work = root / "data", root / "work"
    work.mkdir()
    env = {
        **os.environ,
        "DOS_BENCH_DATA_DIR": str(data_dir),
        "MP_API_KEY": "k" * 32,
        "PYTHONPATH": str(ROOT / "tests"),  # the fake MP client, named in dataset.api.client
        "PYTHONWARNINGS": "ignore",
    }
    with A.serve_archives(archives) as server:
        for dataset in PRESETS:
            args = [str(BIN / "dos-data"), "download", dataset, "--no-progress"]
            _run(args + _download_overrides(dataset, server), env, work)
        fetched = {path for method, path, _ in server.requests if method == "GET"}
    listing = _run([str(BIN / "dos-data"), "list"], env, work).stdout
    return {"env": env, "work": work, "data": data_dir, "fetched": fetched, "listing": listing}


def test_every_published_dataset_has_a_preset_plan():
    presets = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    planned = {p for ps in PRESETS.values() for p in ps}
    assert sorted(planned) == presets
    datasets = {p.stem for p in (CONF_DIR / "dataset").glob("*.yaml")} - {"toy_edos", "toy_phdos"}
    assert set(PRESETS) == datasets == set(ONE_RUN)


def test_download_fetches_and_unpacks_every_published_archive(site):
    data = site["data"]
    # the record API was asked, the archive came from its content link, and it was unpacked
    assert A.MAT2SPEC_RECORD_PATH in site["fetched"]
    assert any(p.endswith("/content") for p in site["fetched"])
    assert (data / "Mat2Spec_DATA" / "phdos" / "200801_trteva_indices.pkl").is_file()
    assert (data / "Mat2Spec_DATA" / "label_edos" / "total_dos_128.npy").is_file()
    assert (data / "phonon_tut" / "data.csv").is_file()
    assert (data / "phonon_tut" / "idx_test.txt").is_file()
    assert len(list((data / "mp_dos").glob("mp-*.json.gz"))) == 40  # the non-magnetic ones
    manifest = json.loads((data / "mp_dos.manifest.json").read_text())
    # the second MP dataset reads the same folder: built once, found complete the second time
    assert manifest["n_written"] + manifest["n_already_present"] == 40
    assert manifest["n_failed"] == 0 and manifest["query"]["is_magnetic"] is False
    for line in site["listing"].splitlines():
        assert "missing" not in line or "toy_" in line, line


@pytest.mark.parametrize("dataset", list(ONE_RUN))
def test_one_preset_run_per_dataset_on_the_published_layout(site, dataset, tmp_path):
    """`dos-train experiment=<preset>` on the downloaded files, then its row in `dos-tables`."""
    args = ONE_RUN[dataset]
    preset = args[0].split("=", 1)[1]
    run_dir = tmp_path / "run"
    cmd = [str(BIN / "dos-train"), *args, *_shrink(preset), "seed=0", f"hydra.run.dir={run_dir}"]
    out = _run(cmd, site["env"], site["work"]).stdout
    assert "mean-spectrum baseline" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dataset"] == dataset
    if dataset == "mp_edos_201":  # the DOSTransformer Fermi-energy column needs varied E_F
        assert metrics["derived"]["fermi_rmse"] > 0
    split = json.loads((run_dir / "splits.json").read_text())
    assert all(split[p] for p in ("train", "val", "test"))
    assert split.get("dropped", {}) == {}
    tables = _run([str(BIN / "dos-tables"), str(run_dir), "--table", preset], site["env"], tmp_path)
    assert "1 finished" in tables.stdout


def _sweep(preset: str, site, out: Path) -> None:
    cmd = [
        str(BIN / "dos-train"),
        "-m",
        f"experiment={preset}",
        *_shrink(preset),
        "seed=0,1",
        f"hydra.sweep.dir={out}",
        "hydra.sweep.subdir=${hydra.job.num}",
    ]
    _run(cmd, site["env"], site["work"], timeout=3000)


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset", sorted({p for ps in PRESETS.values() for p in ps if p not in REUSE})
)
def test_every_preset_fills_its_table_on_the_published_layout(site, preset, tmp_path):
    """The preset's whole sweep (one tiny epoch a job, two seeds), then `dos-tables --check`
    (and the tables that reuse its runs)."""
    out = tmp_path / "sweep"
    _sweep(preset, site, out)
    for table in [preset] + [t for t, src in REUSE.items() if src == preset]:
        r = subprocess.run(
            [str(BIN / "dos-tables"), str(out), "--table", table, "--check"],
            cwd=tmp_path,
            env=site["env"],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, f"{table}:\n{r.stdout[-4000:]}\n{r.stderr[-3000:]}"
