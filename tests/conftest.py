"""Shared fixtures: compose the real Hydra config and shrink it (lightning-hydra-template style).
The plain helpers live in ``tests/cli_support.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import compose_cfg
from omegaconf import DictConfig


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One toy-data directory for the whole session (tiny sets are generated once)."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(data_dir, tmp_path):
    def _make(*overrides: str) -> DictConfig:
        return compose_cfg(list(overrides), data_dir, tmp_path / "run")

    return _make


@pytest.fixture(scope="session")
def compose_config():
    """``compose(overrides, data_dir, out_dir)`` for module- or session-scoped fixtures."""
    return compose_cfg
