"""The installed package is what users meet: the wheel carries every config and table spec, and
the console scripts work from an empty folder in a fresh virtual environment (issue 10, item 1).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dos_bench.config import CONF_DIR, SPEC_DIR

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["dos-train", "dos-data", "dos-predict", "dos-evaluate", "dos-hpsearch", "dos-tables"]
#: top-level folders of a checkout that are not part of the source (run outputs, data, venvs)
_NOT_SOURCE = {".venv", ".git", "outputs", "data", ".ci-data", "build", "dist", "multirun"}


def _skip_top_level(folder: str, names: list[str]) -> set[str]:
    if Path(folder) != ROOT:
        return {n for n in names if n == "__pycache__"}
    return {n for n in names if n in _NOT_SOURCE or n.endswith(".egg-info")}


def build_wheel(dest: Path) -> Path:
    """Build the wheel from a copy of the source tree (the checkout stays untouched)."""
    src = dest / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=_skip_top_level)
    out = dest / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(src)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = out.glob("dos_bench-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_carries_every_config_group_and_table_spec(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "dos_bench").rglob("*.py"))
    assert [m for m in modules if m not in names] == []
    # C kernels compiled on first use (dos_bench.models.native)
    sources = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "dos_bench").rglob("*.c"))
    assert sources and [c for c in sources if c not in names] == []
    confs = sorted(p.relative_to(CONF_DIR.parent).as_posix() for p in CONF_DIR.rglob("*.yaml"))
    specs = sorted(p.relative_to(SPEC_DIR.parent).as_posix() for p in SPEC_DIR.glob("*.yaml"))
    assert len(confs) > 100 and len(specs) >= 13
    missing = [f"dos_bench/{n}" for n in confs + specs if f"dos_bench/{n}" not in names]
    assert missing == []
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    assert {"dataset", "split", "target_repr", "model", "loss", "trainer", "experiment"} <= groups
    for g in groups:
        assert any(n.startswith(f"dos_bench/conf/{g}/") for n in names), g
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in SCRIPTS:
        assert f"{script} = " in text


def test_entry_points_compose_from_the_packaged_conf_not_the_working_directory(tmp_path):
    """`dos-predict` once looked for ../conf relative to the source tree; every entry point now
    reads dos_bench/conf, so an empty working directory is enough."""
    env = {**os.environ, "DOS_BENCH_DATA_DIR": str(tmp_path / "data")}
    for module in ("dos_bench.train", "dos_bench.predict"):
        r = subprocess.run(
            [sys.executable, "-m", module, "--cfg", "job"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_every_console_script_from_an_empty_folder(tmp_path):
    """Install torch (the local CPU wheel) and the built wheel into a new virtual environment, then
    run each console script as a user would, from an empty folder (minutes: slow)."""
    wheel_path = build_wheel(tmp_path / "w")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, timeout=900)
    subprocess.run([*pip, str(wheel_path)], check=True, timeout=900)
    work = tmp_path / "empty"
    work.mkdir()
    env = {**os.environ, "DOS_BENCH_DATA_DIR": str(work / "data"), "PYTHONPATH": ""}

    def run(*args: str) -> subprocess.CompletedProcess:
        exe = str(venv / "bin" / args[0])
        r = subprocess.run(
            [exe, *args[1:]], cwd=work, capture_output=True, text=True, env=env, timeout=900
        )
        assert r.returncode == 0, f"{args}: {r.stdout[-1500:]}\n{r.stderr[-3000:]}"
        return r

    out = run(
        "dos-train",
        "trainer=debug",
        "dataset.source.n_materials=64",
        "progress=false",
        "hydra.run.dir=run",
    )
    assert "mean-spectrum baseline" in out.stdout
    assert (work / "run" / "metrics.json").is_file()
    cifs = work / "cifs"
    cifs.mkdir()
    (cifs / "NaCl.cif").write_text(_NACL_CIF)
    run("dos-predict", "ckpt_path=run/checkpoints/last.ckpt", "inputs=cifs", "hydra.run.dir=pred")
    assert (work / "pred" / "predictions.csv").is_file()
    assert "toy_edos" in run("dos-data", "list").stdout
    assert "graph_network" in run("dos-tables", "run").stdout
    assert "mae" in run("dos-evaluate", "run").stdout
    assert "hparams_search" in run("dos-hpsearch", "--help").stdout


_NACL_CIF = """data_NaCl
_cell_length_a 5.64
_cell_length_b 5.64
_cell_length_c 5.64
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Na1 Na 0 0 0
Cl1 Cl 0.5 0.5 0.5
"""
