"""Helpers shared by test modules: compose the real Hydra config and shrink it, and run
``dos-train`` as a subprocess the way a user types it (imported by name, not from a conftest,
because several ``conftest.py`` files exist under ``tests/``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dos_bench.config import CONF_DIR as PACKAGED_CONF_DIR

CONF_DIR = str(PACKAGED_CONF_DIR)
TINY_N = 96

#: overrides that shrink a `dos-train` subprocess run to the tiny toy sets on one thread
CLI_SMALL = [
    "progress=false",
    "num_threads=1",
    f"dataset.source.n_materials={TINY_N}",
    "data.batch_size=16",
]


def compose_cfg(overrides: list[str], data_dir: Path, out_dir: Path) -> DictConfig:
    base = [
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out_dir}",
        f"dataset.source.n_materials={TINY_N}",
        "progress=false",
        "trainer=debug",
        "data.batch_size=16",
        "num_threads=1",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=base + list(overrides))


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess run: the session's toy-data directory, plus ``extra``."""
    return {**os.environ, "DOS_BENCH_DATA_DIR": str(data_dir), **extra}


def train_cli(
    args: list[str],
    data_dir: Path,
    cwd: Path,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``python -m dos_bench.train <args>`` as a user types it, output captured; ``env`` replaces
    the default environment (:func:`cli_env`)."""
    cmd = [sys.executable, "-m", "dos_bench.train", *args]
    env = cli_env(data_dir) if env is None else env
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
