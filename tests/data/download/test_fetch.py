"""fetch: streaming download with resume, checksums and an atomic rename, against a loopback
HTTP server (dos_bench.data.download.transfer)."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from dos_bench.data import download
from dos_bench.data.download import fetch, part_path
from dos_bench.io import ConfigError, DataError

_spec = importlib.util.spec_from_file_location(
    "dos_data_http_server", Path(__file__).parents[1] / "http_server.py"
)
if _spec.name not in sys.modules:  # one instance: its dataclass needs a module entry
    sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_spec.name])
H = sys.modules[_spec.name]
PAYLOAD, PAYLOAD_SHA, CHUNK = H.PAYLOAD, H.PAYLOAD_SHA, H.CHUNK
_closed_port, _leftovers = H.closed_port, H.leftovers


# --------------------------------------------------------------------------------------------
# fetch
# --------------------------------------------------------------------------------------------


def test_fetch_verifies_and_writes_atomically(server, tmp_path):
    url, state = server
    dest = tmp_path / "a" / "b" / "payload.bin"
    out = fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA, progress=False, chunk=CHUNK)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert "range" not in state.requests[0]
    assert _leftovers(tmp_path) == []
    # present and verified: reused without a request
    fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA.upper(), progress=False)
    assert len(state.requests) == 1


def test_fetch_without_hash_warns_with_computed_sha(server, tmp_path, caplog):
    url, state = server
    dest = tmp_path / "payload.bin"
    with caplog.at_level(logging.WARNING, logger="dos_bench.data.download"):
        fetch(f"{url}/payload.bin", dest, None, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert PAYLOAD_SHA in caplog.text
    # exists and no hash known: reused as is
    fetch(f"{url}/payload.bin", dest, None, progress=False)
    assert len(state.requests) == 1


def test_fetch_resumes_after_cut(server, tmp_path):
    url, state = server
    half = len(PAYLOAD) // 2
    state.cut_after = half
    dest = tmp_path / "payload.bin"
    with pytest.raises(DataError, match="interrupted") as err:
        fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA, progress=False, chunk=CHUNK, retries=0)
    assert "rerun to resume" in str(err.value)
    assert not dest.exists()
    part = part_path(dest)
    assert part.read_bytes() == PAYLOAD[:half]

    fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA, progress=False, chunk=CHUNK, retries=0)
    assert state.requests[-1]["range"] == f"bytes={half}-"
    assert dest.read_bytes() == PAYLOAD
    assert not part.exists() and _leftovers(tmp_path) == []


def test_fetch_resumes_automatically_within_one_call(server, tmp_path):
    url, state = server
    state.cut_after = 10_000
    dest = tmp_path / "payload.bin"
    fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA, progress=False, chunk=CHUNK, retries=1)
    assert [r.get("range") for r in state.requests] == [None, "bytes=10000-"]
    assert dest.read_bytes() == PAYLOAD


def test_fetch_restarts_when_server_ignores_range(server, tmp_path):
    url, state = server
    state.cut_after = 30_000
    dest = tmp_path / "payload.bin"
    with pytest.raises(DataError):
        fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA, progress=False, chunk=CHUNK, retries=0)
    state.ignore_range = True
    fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA, progress=False, chunk=CHUNK)
    assert state.requests[-1]["range"] == "bytes=30000-"  # asked, got a 200, started over
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == []


def test_fetch_part_already_complete_gets_416(server, tmp_path):
    url, state = server
    dest = tmp_path / "payload.bin"
    part_path(dest).write_bytes(PAYLOAD)
    fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA, progress=False)
    assert state.requests[-1]["range"] == f"bytes={len(PAYLOAD)}-"
    assert dest.read_bytes() == PAYLOAD and _leftovers(tmp_path) == []


def test_fetch_oversized_part_restarts(server, tmp_path):
    url, state = server
    dest = tmp_path / "payload.bin"
    part_path(dest).write_bytes(b"junk" * 40_000)  # longer than the file: server answers 416
    fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA, progress=False)
    assert [r.get("range") for r in state.requests] == ["bytes=160000-", None]
    assert dest.read_bytes() == PAYLOAD and _leftovers(tmp_path) == []


def test_fetch_checksum_mismatch(server, tmp_path):
    url, state = server
    state.wrong_content = True
    dest = tmp_path / "payload.bin"
    with pytest.raises(DataError) as err:
        fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA, progress=False)
    msg = str(err.value)
    bad_sha = hashlib.sha256(b"X" * len(PAYLOAD)).hexdigest()
    assert f"expected {PAYLOAD_SHA}" in msg and f"got {bad_sha}" in msg
    assert f"{url}/payload.bin" in msg
    assert not dest.exists() and not part_path(dest).exists()
    assert list(tmp_path.iterdir()) == []


def test_fetch_replaces_a_corrupt_existing_file(server, tmp_path):
    url, _ = server
    dest = tmp_path / "payload.bin"
    dest.write_bytes(b"stale")
    fetch(f"{url}/payload.bin", dest, PAYLOAD_SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_fetch_offline_names_manual_path(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/jarvis/dft_3d.zip"
    dest = tmp_path / "data" / "jarvis" / "dft_3d.zip"
    with pytest.raises(DataError) as err:
        fetch(url, dest, PAYLOAD_SHA, progress=False, timeout=5)
    msg = str(err.value)
    assert url in msg and str(dest) in msg and PAYLOAD_SHA in msg
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_fetch_http_error(server, tmp_path):
    url, _ = server
    with pytest.raises(DataError, match="HTTP 404") as err:
        fetch(f"{url}/missing.bin", tmp_path / "m.bin", None, progress=False)
    assert f"{url}/missing.bin" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_fetch_timeout_keeps_part(server, tmp_path):
    url, state = server
    state.stall_after = 20_000
    dest = tmp_path / "payload.bin"
    with pytest.raises(DataError) as err:
        fetch(f"{url}/payload.bin", dest, None, progress=False, timeout=0.3, chunk=CHUNK, retries=0)
    state.release.set()
    assert str(dest) in str(err.value)
    assert part_path(dest).stat().st_size == 20_000 and not dest.exists()


def test_fetch_rejects_malformed_sha(tmp_path):
    with pytest.raises(ConfigError, match="64 hex"):
        fetch("http://127.0.0.1:1/x", tmp_path / "x", "abc", progress=False)


def test_git_blob_id_is_what_git_computes(tmp_path):
    f = tmp_path / "data.csv"
    f.write_bytes(PAYLOAD)
    out = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert download.git_blob_id(f) == out.stdout.strip()


def test_fetch_md5_pin(server, tmp_path):
    url, state = server
    dest = tmp_path / "p.bin"
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    fetch(f"{url}/payload.bin", dest, None, progress=False, md5=md5.upper())
    assert dest.read_bytes() == PAYLOAD
    fetch(f"{url}/payload.bin", dest, None, progress=False, md5=md5)  # verified, reused
    assert len(state.requests) == 1
    with pytest.raises(DataError, match="md5 mismatch"):
        fetch(f"{url}/payload.bin", tmp_path / "q.bin", None, progress=False, md5="0" * 32)
    assert not (tmp_path / "q.bin").exists() and _leftovers(tmp_path) == []
    with pytest.raises(ConfigError, match="32 hex"):
        fetch(f"{url}/payload.bin", tmp_path / "r.bin", None, progress=False, md5="abc")
