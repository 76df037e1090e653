"""Fixtures shared by the model tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dos_bench.models import native


@pytest.fixture
def without_compiler(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No C compiler on this machine: ``$CC`` points nowhere and ``cc`` is not on the path.
    The cached kernel libraries are forgotten before and after, so the test loads (and fails
    to build) them afresh and later tests get the real ones back."""
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.setattr(native.shutil, "which", lambda _: None)
    for library in (native.gated_library, native.attention_library, native.gemm_library):
        library.cache_clear()
    yield
    for library in (native.gated_library, native.attention_library, native.gemm_library):
        library.cache_clear()
