"""dos_bench.data.download and the dos-data CLI against a local HTTP server (no internet)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dos_bench.data import cli, download
from dos_bench.data.download import (
    dataset_entries,
    download_dataset,
    fetch,
    part_path,
    unpack,
)
from dos_bench.io import ConfigError, DataError

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
CHUNK = 4096


# --------------------------------------------------------------------------------------------
# a local HTTP server with Range support and failure switches
# --------------------------------------------------------------------------------------------


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: int | None = None  # first request only: send this many bytes, then hang up
    stall_after: int | None = None  # first request only: send this many bytes, then stall
    ignore_range: bool = False
    wrong_content: bool = False
    content_type: str = "application/octet-stream"
    types: dict[str, str] = field(default_factory=dict)  # path -> Content-Type (else the above)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location of a 302
    requests: list[dict[str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    state: ServerState  # set on a per-server subclass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        st = self.state
        first = not st.requests
        st.requests.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        if self.path in st.redirects:
            self.send_response(302)
            self.send_header("Location", st.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = st.files.get(self.path)
        if body is None:
            self.send_error(404, "not found")
            return
        if st.wrong_content:
            body = b"X" * len(body)
        size, start = len(body), 0
        rng = self.headers.get("Range")
        if rng and not st.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Content-Type", st.types.get(self.path, st.content_type))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        data = body[start:]
        if first and st.cut_after is not None:
            self.wfile.write(data[: st.cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if first and st.stall_after is not None:
            self.wfile.write(data[: st.stall_after])
            self.wfile.flush()
            st.release.wait(10)
            self.close_connection = True
            return
        self.wfile.write(data)


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState(files={"/payload.bin": PAYLOAD})
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _no_retry_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "_RETRY_DELAY", 0.0)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".part", ".tmp"))]


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


# --------------------------------------------------------------------------------------------
# unpack
# --------------------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


@pytest.mark.parametrize("evil", ["../evil.txt", "sub/../../evil.txt", "/abs/evil.txt"])
def test_zip_traversal_refused(tmp_path, evil):
    out = tmp_path / "out"
    out.mkdir()
    archive = _zip(tmp_path / "a.zip", {"ok.txt": b"ok", evil: b"pwned"})
    with pytest.raises(DataError, match="refusing to unpack"):
        unpack(archive, out, "zip")
    assert list(out.iterdir()) == []  # nothing extracted, no temp dir left
    assert not (tmp_path / "evil.txt").exists()


def test_tar_traversal_and_escaping_link_refused(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="refusing"):
        unpack(_tar(tmp_path / "a.tar.gz", {"../evil.txt": b"x"}), out, "tar")
    with pytest.raises(DataError, match="outside"):
        unpack(_tar(tmp_path / "b.tar.gz", {"a.txt": b"x"}, {"link": "../../etc"}), out, "tar")
    assert not out.exists() or list(out.iterdir()) == []


def test_unpack_zip_and_tar(tmp_path):
    members = {"top.txt": b"1", "dir/inner.json": b"{}"}
    z = unpack(_zip(tmp_path / "a.zip", members), tmp_path / "z", "zip")
    t = unpack(
        _tar(tmp_path / "a.tgz", members, {"dir/alias": "inner.json"}), tmp_path / "t", "tar"
    )
    assert sorted(p.relative_to(tmp_path / "z").as_posix() for p in z) == sorted(members)
    assert (tmp_path / "t" / "dir" / "inner.json").read_bytes() == b"{}"
    assert (tmp_path / "t" / "dir" / "alias").is_symlink()
    assert len(t) == 3 and _leftovers(tmp_path) == []
    # unchanged archive, files present: no re-extraction
    (tmp_path / "z" / "top.txt").write_bytes(b"edited")
    unpack(tmp_path / "a.zip", tmp_path / "z", "zip")
    assert (tmp_path / "z" / "top.txt").read_bytes() == b"edited"


def test_unpack_corrupt_archive(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid zip"):
        unpack(bad, tmp_path / "out", "zip")
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# download_dataset
# --------------------------------------------------------------------------------------------


def _dataset_cfg(url: str) -> dict:
    zip_bytes = io.BytesIO()
    with zipfile.ZipFile(zip_bytes, "w") as zf:
        zf.writestr("jarvis/dft_3d.json", b"[1, 2, 3]")
    return {
        "name": "synthetic",
        "kind": "edos",
        "download": [
            {
                "url": f"{url}/payload.bin",
                "sha256": PAYLOAD_SHA,
                "path": "syn/raw.bin",
                "unpack": None,
            },
            {"url": f"{url}/arch.zip", "sha256": None, "path": "syn/arch.zip", "unpack": "zip"},
        ],
    }, zip_bytes.getvalue()


def test_download_dataset(server, tmp_path):
    url, state = server
    cfg, zip_data = _dataset_cfg(url)
    state.files["/arch.zip"] = zip_data
    paths = download_dataset(cfg, tmp_path, progress=False)
    assert paths == [tmp_path / "syn" / "raw.bin", tmp_path / "syn" / "arch.zip"]
    assert (tmp_path / "syn" / "raw.bin").read_bytes() == PAYLOAD
    assert (tmp_path / "syn" / "jarvis" / "dft_3d.json").read_bytes() == b"[1, 2, 3]"
    assert _leftovers(tmp_path) == []
    # second run: everything present, no new requests
    n = len(state.requests)
    download_dataset(cfg, tmp_path, progress=False)
    assert len(state.requests) == n


def test_download_dataset_omegaconf_interpolation(server, tmp_path):
    from omegaconf import OmegaConf

    url, _ = server
    root = OmegaConf.create(
        {
            "base": url,
            "dataset": {
                "name": "interp",
                "download": [{"url": "${base}/payload.bin", "sha256": None, "path": "p.bin"}],
            },
        }
    )
    assert download_dataset(root.dataset, tmp_path, progress=False) == [tmp_path / "p.bin"]


def test_git_blob_id_is_what_git_computes(tmp_path):
    f = tmp_path / "data.csv"
    f.write_bytes(PAYLOAD)
    out = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert download.git_blob_id(f) == out.stdout.strip()


def test_git_blob_pin_verified_and_mismatch_deleted(server, tmp_path):
    url, state = server
    f = tmp_path / "ref.bin"
    f.write_bytes(PAYLOAD)
    blob = download.git_blob_id(f)
    entry = {"url": f"{url}/payload.bin", "sha256": None, "path": "x/p.bin", "git_blob": blob}
    cfg = {"name": "tut", "download": [entry]}
    assert download_dataset(cfg, tmp_path / "d", progress=False) == [tmp_path / "d/x/p.bin"]
    state.wrong_content = True
    with pytest.raises(DataError, match="git blob id mismatch"):
        download_dataset(cfg, tmp_path / "e", progress=False)
    assert not (tmp_path / "e/x/p.bin").exists()
    assert not part_path(tmp_path / "e/x/p.bin").exists()


def test_landing_page_url_is_refused_with_the_manual_hint(server, tmp_path):
    """A record's landing page (HTML) is never saved as the dataset's archive."""
    url, state = server
    state.content_type = "text/html; charset=utf-8"
    state.files["/records/8975"] = b"<!doctype html><html>record</html>"
    cfg = {
        "name": "m2s",
        "download": [
            {"url": f"{url}/records/8975", "sha256": None, "path": "d.zip", "unpack": "zip"}
        ],
    }
    with pytest.raises(DataError, match="landing page") as err:
        download_dataset(cfg, tmp_path, progress=False)
    assert f"save it as {tmp_path / 'd.zip'}" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither d.zip nor d.zip.part


def test_toy_dataset_has_nothing_to_download(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dos_bench.data.download"):
        assert download_dataset({"name": "toy_edos", "kind": "edos"}, tmp_path) == []
    assert "generated locally" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_requires_env_missing_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    cfg = {"name": "mp_edos_128", "requires_env": "MP_API_KEY", "download": []}
    with pytest.raises(DataError, match="MP_API_KEY") as err:
        download_dataset(cfg, tmp_path)
    assert "Materials Project dashboard" in str(err.value)


def test_requires_env_without_mp_api_says_pip_install(tmp_path, monkeypatch):
    monkeypatch.setenv("MP_API_KEY", "dummy")
    monkeypatch.setitem(sys.modules, "mp_api", None)  # make the import fail
    monkeypatch.setitem(sys.modules, "mp_api.client", None)
    cfg = {
        "name": "mp_edos_201",
        "requires_env": "MP_API_KEY",
        "api": {"builder": "mp_dos_documents"},
    }
    with pytest.raises(DataError, match="pip install mp-api"):
        download_dataset(cfg, tmp_path)


@pytest.mark.parametrize(
    "entry, key",
    [
        ({"url": "http://x/a", "path": "../a", "sha256": None}, "path"),
        ({"url": "http://x/a", "path": "/abs/a", "sha256": None}, "path"),
        ({"url": "http://x/a", "path": "a", "sha256": None, "unpack": "rar"}, "unpack"),
        ({"url": "http://x/a", "path": "a", "sha256": "nothex"}, "sha256"),
        ({"url": "http://x/a", "path": "a", "git_blob": "abc"}, "git_blob"),
        ({"path": "a"}, "url"),
        ({"url": "http://x/a", "record": "http://x/api/records/1", "path": "a"}, ""),
        ({"record": "data.caltech.edu/api/records/8975", "path": "a"}, "record"),
        ({"record": "http://x/api/records/1", "file": "", "path": "a"}, "file"),
        ({"url": "http://x/a", "file": "a.zip", "path": "a"}, "file"),
        ({"record": "http://x/api/records/1", "path": "../a"}, "path"),
    ],
)
def test_bad_download_entries(entry, key):
    where = rf"download\[0\]\.{key}" if key else r"download\[0\]: give either `url`"
    with pytest.raises(ConfigError, match=where):
        dataset_entries({"name": "bad", "download": [entry]})


# --------------------------------------------------------------------------------------------
# InvenioRDM records: a loopback fake of GET /api/records/<id> and the files' content links
# --------------------------------------------------------------------------------------------

RECORD = "/api/records/8975"
ARCHIVE_KEY = "Mat2Spec_DATA.zip"


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


ARCHIVE = _zip_bytes(
    {
        "Mat2Spec_DATA/label_edos/mpids.csv": b"mp-1\nmp-2\n",
        "Mat2Spec_DATA/phdos/mpids.csv": b"mp-3\n",
    }
)


def _publish(
    state: ServerState,
    base: str,
    files: dict[str, bytes],
    *,
    form: str = "mapping",
    links: bool = True,
    checksums: dict[str, str] | None = None,
) -> None:
    """Serve an InvenioRDM-shaped record JSON at RECORD and each file at its content path.

    ``form``: ``"mapping"`` (``files.entries`` keyed by file key, as InvenioRDM dumps a record),
    ``"list"`` (``files.entries`` a list) or ``"files"`` (the ``/files`` listing,
    ``{"entries": [...]}``). ``links=False`` leaves out ``links`` so the client must build
    ``<record>/files/<key>/content`` itself.
    """
    entries = []
    for key, data in files.items():
        content = f"{RECORD}/files/{key}/content"
        state.files[content] = data
        entry = {
            "key": key,
            "size": len(data),
            "checksum": (checksums or {}).get(key, "md5:" + hashlib.md5(data).hexdigest()),
            "mimetype": "application/zip",
        }
        if links:
            entry["links"] = {"content": base + content, "self": f"{base}{RECORD}/files/{key}"}
        entries.append(entry)
    if form == "files":
        doc: dict = {"entries": entries, "links": {"self": f"{base}{RECORD}/files"}}
    else:
        listed = {e["key"]: e for e in entries} if form == "mapping" else entries
        doc = {
            "id": "8975",
            "metadata": {"title": "Mat2Spec data"},
            "files": {"enabled": True, "count": len(entries), "entries": listed},
            "links": {"self": base + RECORD, "files": f"{base}{RECORD}/files"},
        }
    state.files[RECORD] = json.dumps(doc).encode()
    state.types[RECORD] = "application/json"


def _record_cfg(base: str, file: str | None = None, sha256: str | None = None) -> dict:
    entry = {"record": base + RECORD, "file": file, "sha256": sha256, "path": "m2s/" + ARCHIVE_KEY}
    return {"name": "mat2spec", "download": [{**entry, "unpack": "zip"}]}


def test_record_mapping_form_downloads_verifies_and_unpacks(server, tmp_path):
    url, state = server
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE, "README.txt": b"read me"})
    paths = download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert paths == [tmp_path / "m2s" / ARCHIVE_KEY]
    assert paths[0].read_bytes() == ARCHIVE
    assert (tmp_path / "m2s/Mat2Spec_DATA/phdos/mpids.csv").read_bytes() == b"mp-3\n"
    assert [r["path"] for r in state.requests] == [RECORD, f"{RECORD}/files/{ARCHIVE_KEY}/content"]
    assert state.requests[0]["accept"] == "application/json"
    assert _leftovers(tmp_path) == []
    # second run: the record is read again, the present archive passes its md5, no new download
    download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert [r["path"] for r in state.requests[2:]] == [RECORD]


@pytest.mark.parametrize("form", ["list", "files"])
def test_record_list_form_without_links_builds_the_content_url(server, tmp_path, form):
    url, state = server
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE}, form=form, links=False)
    # the content link redirects to the storage, as CaltechDATA's does
    state.redirects[f"{RECORD}/files/{ARCHIVE_KEY}/content"] = f"{url}/storage/blob"
    state.files["/storage/blob"] = ARCHIVE
    cfg = _record_cfg(url, file=ARCHIVE_KEY, sha256=hashlib.sha256(ARCHIVE).hexdigest())
    if form == "files":
        cfg["download"][0]["record"] = f"{url}{RECORD}/files"
        state.files[f"{RECORD}/files"] = state.files.pop(RECORD)
        state.types[f"{RECORD}/files"] = "application/json"
    download_dataset(cfg, tmp_path, progress=False)
    assert (tmp_path / "m2s" / ARCHIVE_KEY).read_bytes() == ARCHIVE
    assert [r["path"] for r in state.requests][1:] == [
        f"{RECORD}/files/{ARCHIVE_KEY}/content",
        "/storage/blob",
    ]
    assert (tmp_path / "m2s/Mat2Spec_DATA/label_edos/mpids.csv").exists()


def test_record_wrong_md5_leaves_nothing(server, tmp_path):
    url, state = server
    wrong = "md5:" + hashlib.md5(b"another file").hexdigest()
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE}, checksums={ARCHIVE_KEY: wrong})
    with pytest.raises(DataError, match="md5 mismatch") as err:
        download_dataset(_record_cfg(url), tmp_path, progress=False)
    msg = str(err.value)
    assert f"record {url}{RECORD}, file {ARCHIVE_KEY}" in msg
    assert wrong.removeprefix("md5:") in msg and hashlib.md5(ARCHIVE).hexdigest() in msg
    dest = tmp_path / "m2s" / ARCHIVE_KEY
    assert not dest.exists() and not part_path(dest).exists()
    assert not (tmp_path / "m2s" / "Mat2Spec_DATA").exists()


def test_record_pinned_sha256_is_checked_too(server, tmp_path):
    url, state = server
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE})  # the record's md5 is right
    with pytest.raises(DataError, match="sha256 mismatch"):
        download_dataset(_record_cfg(url, sha256="0" * 64), tmp_path, progress=False)
    assert list((tmp_path / "m2s").iterdir()) == []


def test_record_pinned_sha256_differs_from_the_published_one(server, tmp_path):
    url, state = server
    published = "sha256:" + hashlib.sha256(ARCHIVE).hexdigest()
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE}, checksums={ARCHIVE_KEY: published})
    with pytest.raises(DataError, match="upstream file changed"):
        download_dataset(_record_cfg(url, sha256="1" * 64), tmp_path, progress=False)
    assert len(state.requests) == 1 and list(tmp_path.iterdir()) == []
    # unpinned, the published sha256 is what is checked
    download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert (tmp_path / "m2s" / ARCHIVE_KEY).read_bytes() == ARCHIVE


def test_record_without_the_key_lists_the_keys(server, tmp_path):
    url, state = server
    _publish(state, url, {"other.zip": ARCHIVE, "README.txt": b"x"})
    with pytest.raises(DataError) as err:
        download_dataset(_record_cfg(url, file=ARCHIVE_KEY), tmp_path, progress=False)
    msg = str(err.value)
    assert f"the record {url}{RECORD} has no file '{ARCHIVE_KEY}'" in msg
    assert "its files are: README.txt, other.zip" in msg
    assert list(tmp_path.iterdir()) == []


def test_record_with_two_archives_needs_a_file_key(server, tmp_path):
    url, state = server
    _publish(state, url, {"a.zip": ARCHIVE, "b.tar.gz": b"tar", "notes.txt": b"n"})
    with pytest.raises(DataError, match="2 archives") as err:
        download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert "a.zip, b.tar.gz, notes.txt" in str(err.value) and "`file: null`" in str(err.value)
    assert len(state.requests) == 1 and list(tmp_path.iterdir()) == []


def test_record_url_answering_html_is_refused_as_a_landing_page(server, tmp_path):
    url, state = server
    state.content_type = "text/html; charset=utf-8"
    state.files[RECORD] = b"<!doctype html><html>Mat2Spec</html>"
    with pytest.raises(DataError, match="landing page") as err:
        download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert f"{url}{RECORD} answered with a web page" in str(err.value)
    assert "/api/records/<id>" in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "body, match",
    [
        (b"not json {", "did not answer with JSON"),
        (
            json.dumps({"id": "8975", "metadata": {}, "files": {"enabled": True}}).encode(),
            "no files.entries",
        ),
        (json.dumps({"files": {"enabled": False}}).encode(), "files.enabled is false"),
        (json.dumps([1, 2]).encode(), "not an object"),
    ],
)
def test_record_that_is_not_a_record(server, tmp_path, body, match):
    url, state = server
    state.files[RECORD] = body
    state.types[RECORD] = "application/json"
    with pytest.raises(DataError, match=match) as err:
        download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert f"{url}{RECORD}" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_record_offline_and_404_name_the_record(server, tmp_path):
    url, _ = server
    with pytest.raises(DataError, match="HTTP 404") as err:
        download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert f"{url}{RECORD}" in str(err.value)
    offline = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(DataError, match="network error") as err:
        download_dataset(_record_cfg(offline), tmp_path, progress=False)
    assert f"{offline}{RECORD}" in str(err.value)
    assert str(tmp_path / "m2s" / ARCHIVE_KEY) in str(err.value)
    assert list(tmp_path.iterdir()) == []


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


# --------------------------------------------------------------------------------------------
# the dos-data CLI
# --------------------------------------------------------------------------------------------


def _conf_dir(tmp_path: Path, url: str) -> Path:
    conf = tmp_path / "conf"
    (conf / "dataset").mkdir(parents=True)
    (conf / "paths").mkdir()
    (conf / "train.yaml").write_text(
        "defaults:\n  - dataset: toy\n  - paths: default\n  - _self_\nprogress: true\n"
    )
    (conf / "paths" / "default.yaml").write_text(f"data_dir: {tmp_path / 'default_data'}\n")
    (conf / "dataset" / "toy.yaml").write_text("name: toy\nkind: edos\n")
    (conf / "dataset" / "remote.yaml").write_text(
        "name: remote\nkind: edos\ndownload:\n"
        f"  - url: {url}/payload.bin\n    sha256: {PAYLOAD_SHA}\n"
        "    path: remote/payload.bin\n    unpack: null\n"
    )
    (conf / "dataset" / "mp.yaml").write_text(
        "name: mp\nkind: edos\nrequires_env: MP_API_KEY\ndownload: []\n"
    )
    return conf


def test_cli_download_and_list(server, tmp_path, capsys):
    url, state = server
    conf = _conf_dir(tmp_path, url)
    data = tmp_path / "scratch"
    rc = cli.main(["download", "remote", "toy", f"paths.data_dir={data}", "--no-progress"], conf)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (data / "remote" / "payload.bin").read_bytes() == PAYLOAD
    assert "toy: generated locally" in out
    rc = cli.main(["list", f"paths.data_dir={data}"], conf)
    out = capsys.readouterr().out
    assert rc == 0
    assert "present" in out and "remote/payload.bin" in out and "MP_API_KEY" in out


def test_cli_offline_one_line_error(tmp_path, capsys):
    conf = _conf_dir(tmp_path, f"http://127.0.0.1:{_closed_port()}")
    data = tmp_path / "offline"
    rc = cli.main(["download", "remote", f"paths.data_dir={data}", "progress=false"], conf)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dos-data: error:")
    assert str(data / "remote" / "payload.bin") in lines[0] and "Traceback" not in err
    assert _leftovers(tmp_path) == []


def test_cli_unknown_dataset_lists_known(tmp_path, capsys):
    conf = _conf_dir(tmp_path, "http://127.0.0.1:1")
    assert cli.main(["download", "nope"], conf) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'nope'" in err and "mp, remote, toy" in err


def test_cli_missing_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    conf = _conf_dir(tmp_path, "http://127.0.0.1:1")
    assert cli.main(["download", "mp"], conf) == 2
    assert "MP_API_KEY" in capsys.readouterr().err


def test_cli_bad_override(tmp_path, capsys):
    conf = _conf_dir(tmp_path, "http://127.0.0.1:1")
    assert cli.main(["download", "toy", "no_such_key.x=1"], conf) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("name", ["mp_edos_128", "phonon_e3nn"])
def test_shipped_mat2spec_configs_name_the_caltech_record(name):
    [entry] = dataset_entries(cli.compose_dataset(name).dataset)
    assert entry.url is None and entry.file is None
    assert entry.record == "https://data.caltech.edu/api/records/8975"
    assert (entry.path, entry.unpack) == ("Mat2Spec_DATA.zip", "zip")


def test_cli_real_mat2spec_configs_against_a_fake_record(server, tmp_path, capsys, monkeypatch):
    """The shipped mp_edos_128 / phonon_e3nn entries work end to end, only the host swapped."""
    url, state = server
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE, "README.md": b"Mat2Spec"})
    monkeypatch.setenv("DOS_BENCH_DATA_DIR", str(tmp_path / "data"))
    record = f"dataset.download.0.record={url}{RECORD}"
    rc = cli.main(["download", "mp_edos_128", "phonon_e3nn", record, "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = tmp_path / "data"
    assert (data / ARCHIVE_KEY).read_bytes() == ARCHIVE
    assert (data / "Mat2Spec_DATA/label_edos/mpids.csv").read_bytes() == b"mp-1\nmp-2\n"
    assert (data / "Mat2Spec_DATA/phdos/mpids.csv").read_bytes() == b"mp-3\n"
    assert "mp_edos_128: 1 file(s) ready" in out and "phonon_e3nn: 1 file(s) ready" in out
    downloads = [r for r in state.requests if r["path"].endswith("/content")]
    assert len(downloads) == 1  # phonon_e3nn reuses the archive mp_edos_128 fetched
    assert _leftovers(tmp_path) == []
    assert cli.main(["list"]) == 0  # (an override in `list` applies to every dataset)
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ARCHIVE_KEY in ln]
    assert len(lines) == 2  # mp_edos_128 and phonon_e3nn
    line = lines[0]
    assert (
        "present, unpacked" in line and "record https://data.caltech.edu/api/records/8975" in line
    )
    assert "<its only archive>" in line and "record's checksum" in line


def test_cli_record_error_is_one_line(server, tmp_path, capsys, monkeypatch):
    url, state = server
    _publish(state, url, {"a.zip": ARCHIVE, "b.zip": ARCHIVE})
    monkeypatch.setenv("DOS_BENCH_DATA_DIR", str(tmp_path))
    rc = cli.main(["download", "mp_edos_128", f"dataset.download.0.record={url}{RECORD}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"dos-data: error: the record {url}{RECORD} has 2 archives")
    assert list(tmp_path.iterdir()) == []


def test_cli_real_conf_toy(capsys, tmp_path):
    assert cli.main(["download", "toy_edos", f"paths.data_dir={tmp_path}"]) == 0
    assert "generated locally" in capsys.readouterr().out
    assert os.listdir(tmp_path) == []
