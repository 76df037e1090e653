"""Fixtures of the data-layer tests: the loopback HTTP server (``tests/data/http_server.py``)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dos_bench.data.download import transfer

_spec = importlib.util.spec_from_file_location(
    "dos_data_http_server", Path(__file__).with_name("http_server.py")
)
if _spec.name not in sys.modules:  # one instance: its dataclass needs a module entry
    sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_spec.name])
H = sys.modules[_spec.name]


@pytest.fixture
def server() -> Iterator[tuple[str, object]]:
    """``(base URL, ServerState)`` of a loopback server holding ``/payload.bin``."""
    with H.serve() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resume an interrupted transfer at once (no back-off) in every data test."""
    monkeypatch.setattr(transfer, "_RETRY_DELAY", 0.0)
