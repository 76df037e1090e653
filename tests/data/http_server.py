"""A loopback HTTP server for the download and ``dos-data`` tests (no internet), and the fake
InvenioRDM record it can publish.

:func:`serve` runs a :class:`ServerState`-driven server on 127.0.0.1 with ``Range`` support and
failure switches (cut or stalled first transfer, ignored ranges, wrong content, content types,
redirects); :func:`publish` serves an InvenioRDM-shaped record JSON at :data:`RECORD` and its
files at their content links. The ``server`` fixture (``tests/data/conftest.py``) wraps
:func:`serve`.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
CHUNK = 4096


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


@contextmanager
def serve() -> Iterator[tuple[str, ServerState]]:
    """``(base URL, state)`` of a loopback server holding ``/payload.bin``."""
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


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".part", ".tmp"))]


# --------------------------------------------------------------------------------------------
# InvenioRDM records: a loopback fake of GET /api/records/<id> and the files' content links
# --------------------------------------------------------------------------------------------

RECORD = "/api/records/8975"
ARCHIVE_KEY = "Mat2Spec_DATA.zip"


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


ARCHIVE = zip_bytes(
    {
        "Mat2Spec_DATA/label_edos/mpids.csv": b"mp-1\nmp-2\n",
        "Mat2Spec_DATA/phdos/mpids.csv": b"mp-3\n",
    }
)


def publish(
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


def record_cfg(base: str, file: str | None = None, sha256: str | None = None) -> dict:
    entry = {"record": base + RECORD, "file": file, "sha256": sha256, "path": "m2s/" + ARCHIVE_KEY}
    return {"name": "mat2spec", "download": [{**entry, "unpack": "zip"}]}
