"""Fetching one file over HTTP: streaming with resume, checksum verification, atomic rename.

Guarantees of :func:`fetch`:

* the real file appears only once it is complete and every known checksum (sha256, md5, git
  blob id) matched (it is renamed from ``<dest>.part``), so a half-written file never sits at
  the final path;
* an interrupted download keeps ``<dest>.part``; the next call resumes it with an HTTP
  ``Range`` request (and starts again from zero if the server ignores ranges);
* a network failure raises :class:`~dos_bench.io.DataError` naming the URL and the exact path
  where the file can be placed by hand.

Also the file digests it checks: :func:`file_sha256`, :func:`file_md5` (what InvenioRDM records
publish) and :func:`git_blob_id` (what a git tree lists).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dos_bench.io import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["USER_AGENT", "fetch", "file_md5", "file_sha256", "git_blob_id", "part_path"]

USER_AGENT = "dos_bench-downloader/0.1 (python urllib)"
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_GIT_BLOB_RE = re.compile(r"^[0-9a-f]{40}$")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_RETRY_DELAY = 1.0  # seconds before resuming an interrupted transfer (times the retry number)


# --------------------------------------------------------------------------------------------
# hashing and small helpers
# --------------------------------------------------------------------------------------------


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the lowercase hex sha256 of a file, read in chunks.

    Args:
        path: the file to hash.
        chunk: read size in bytes.
    """
    h = hashlib.sha256()
    _hash_into(Path(path), h, chunk)
    return h.hexdigest()


def _hash_into(path: Path, h: Any, chunk: int = 1 << 20) -> None:
    with open(path, "rb") as f:
        while buf := f.read(chunk):
            h.update(buf)


def git_blob_id(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the git blob id of a file: sha1 of ``b"blob <size>\\0"`` followed by its bytes.

    Args:
        path: the file.
        chunk: read size in bytes.
    """
    path = Path(path)
    h = hashlib.sha1()  # noqa: S324 - git's object id, an integrity check, not security
    h.update(f"blob {path.stat().st_size}\0".encode())
    _hash_into(path, h, chunk)
    return h.hexdigest()


def file_md5(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the lowercase hex md5 of a file (the checksum InvenioRDM publishes for its files).

    Args:
        path: the file to hash.
        chunk: read size in bytes.
    """
    h = hashlib.md5()  # noqa: S324 - a published integrity checksum, not security
    _hash_into(Path(path), h, chunk)
    return h.hexdigest()


def part_path(dest: str | Path) -> Path:
    """The partial-download file kept beside ``dest`` between attempts (``<dest>.part``).

    Args:
        dest: the final destination of a download.
    """
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _normalise_digest(value: Any, pattern: re.Pattern[str], what: str, where: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if not pattern.match(text):
        raise ConfigError(f"{where}: expected {what} or null, got {value!r}")
    return text


def _normalise_sha256(sha256: Any, where: str = "sha256") -> str | None:
    return _normalise_digest(sha256, _SHA256_RE, "64 hex digits", where)


def _normalise_git_blob(value: Any, where: str = "git_blob") -> str | None:
    return _normalise_digest(value, _GIT_BLOB_RE, "40 hex digits (a git blob id)", where)


def _normalise_md5(value: Any, where: str = "md5") -> str | None:
    return _normalise_digest(value, _MD5_RE, "32 hex digits (an md5)", where)


#: label -> hash function, for the checksums checked after the streamed sha256
_DIGESTS: dict[str, Callable[..., str]] = {"git blob id": git_blob_id, "md5": file_md5}


def _manual_hint(url: str, dest: Path, sha256: str | None) -> str:
    pin = f" (sha256 {sha256})" if sha256 else ""
    return f"To install it by hand, download {url} and save it as {dest}{pin}, then rerun."


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return str(reason) if str(reason) else type(reason).__name__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """Parse ``bytes a-b/total`` or ``bytes */total`` into ``(a, total)`` (``None`` if absent)."""
    if not header:
        return None, None
    m = re.match(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*$", header)
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


# --------------------------------------------------------------------------------------------
# fetch: streaming download with resume, verification and an atomic final rename
# --------------------------------------------------------------------------------------------


class _Interrupted(Exception):
    """A transfer failed on the network side; ``progressed`` if this attempt received data."""

    def __init__(self, message: str, progressed: bool) -> None:
        super().__init__(message)
        self.progressed = progressed


def fetch(
    url: str,
    dest: str | Path,
    sha256: str | None,
    progress: bool = True,
    timeout: float = 30,
    chunk: int = 1 << 20,
    *,
    retries: int = 3,
    refuse_html: bool = False,
    git_blob: str | None = None,
    md5: str | None = None,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial download and verifying its checksums.

    If ``dest`` already exists and matches every given checksum (or none is known) it is reused
    without any network access. Otherwise bytes stream into ``<dest>.part``; when the transfer
    completes and the checksums match, the part file is renamed onto ``dest``. An interrupted
    transfer keeps the part file and a later call sends ``Range: bytes=<size>-`` to resume it.

    Args:
        url: http(s) (or file) URL to download.
        dest: final path; parent directories are created.
        sha256: expected hex digest; ``None`` downloads without verification and logs the
            computed digest as a warning so it can be pinned in the dataset config.
        progress: show a tqdm progress bar (bytes) on stderr.
        timeout: socket timeout in seconds, for connecting and for each read.
        chunk: read size in bytes.
        retries: how many times to resume automatically within this call after a transfer
            that was cut off mid-way (only when that attempt received data; a refused
            connection or DNS failure fails at once).
        refuse_html: fail (writing nothing) when the server answers ``text/html`` — a data
            file is never a web page, a landing-page URL is (``download_dataset`` sets it).
        git_blob: expected git blob id (see :func:`git_blob_id`), checked like ``sha256``.
        md5: expected md5 hex digest (what InvenioRDM records publish), checked like ``sha256``.

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: network failure (naming the URL and where to place the file by hand), HTTP
            error status, or checksum mismatch (the partial download is deleted).
        ConfigError: a malformed ``sha256``, ``git_blob`` or ``md5``.
    """
    dest = Path(dest)
    sha256 = _normalise_sha256(sha256)
    others = {"git blob id": _normalise_git_blob(git_blob), "md5": _normalise_md5(md5)}
    pins = {label: value for label, value in others.items() if value is not None}
    if dest.is_dir():
        raise DataError(f"cannot download {url} to {dest}: a directory is in the way")
    part = part_path(dest)
    if dest.exists():
        if sha256 is None and not pins:
            log.info("%s already exists and no checksum is known: reusing it", dest)
            part.unlink(missing_ok=True)  # a stale partial download from before
            return dest
        checks = {"sha256": sha256, **pins} if sha256 is not None else pins
        bad = _first_mismatch(dest, checks, chunk)
        if bad is None:
            log.info("%s already present (%s verified)", dest, ", ".join(checks))
            part.unlink(missing_ok=True)
            return dest
        label, expected, got = bad
        log.warning(
            "%s exists but its %s is %s, expected %s: downloading it again",
            dest,
            label,
            got,
            expected,
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the directory {dest.parent}: {exc}") from exc

    failures = 0
    while True:
        try:
            digest = _download_to_part(
                url, dest, part, sha256, progress, timeout, chunk, refuse_html
            )
            break
        except _Interrupted as exc:
            if exc.progressed and failures < retries:
                failures += 1
                log.warning("%s; resuming (retry %d of %d)", exc, failures, retries)
                time.sleep(_RETRY_DELAY * failures)
                continue
            kept = ""
            if part.exists() and part.stat().st_size > 0:
                kept = f" The partial file {part} is kept: rerun to resume."
            raise DataError(f"{exc}.{kept} {_manual_hint(url, dest, sha256)}") from exc

    if sha256 is not None and digest != sha256:
        part.unlink(missing_ok=True)
        raise DataError(
            f"sha256 mismatch for {url}: expected {sha256}, got {digest}; the download was "
            f"deleted (a changed upstream file or a corrupted transfer). Rerun to try again, or "
            f"place a verified copy at {dest}."
        )
    bad = _first_mismatch(part, pins, chunk)
    if bad is not None:
        label, expected, got = bad
        part.unlink(missing_ok=True)
        raise DataError(
            f"{label} mismatch for {url}: expected {expected}, got {got}; the download was "
            f"deleted (a changed upstream file or a corrupted transfer). Rerun to try again, or "
            f"place a verified copy at {dest}."
        )
    if sha256 is None and not pins:
        log.warning(
            "no sha256 pinned for %s: downloaded %s has sha256 %s (pin it in the dataset config)",
            url,
            dest,
            digest,
        )
    elif sha256 is None:
        log.info("%s verified by %s; its sha256 is %s", dest, ", ".join(pins), digest)
    os.replace(part, dest)
    log.info("downloaded %s", dest)
    return dest


def _first_mismatch(
    path: Path, expected: Mapping[str, str], chunk: int
) -> tuple[str, str, str] | None:
    """``(label, expected, got)`` for the first checksum of ``path`` that differs, else ``None``."""
    for label, value in expected.items():
        got = file_sha256(path, chunk) if label == "sha256" else _DIGESTS[label](path, chunk)
        if got != value:
            return label, value, got
    return None


def _download_to_part(
    url: str,
    dest: Path,
    part: Path,
    sha256: str | None,
    progress: bool,
    timeout: float,
    chunk: int,
    refuse_html: bool = False,
) -> str:
    """One HTTP request: append to (or restart) ``part``; return the sha256 of the whole part."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            _, total = _content_range(exc.headers.get("Content-Range"))
            if total == offset:  # the part file already holds the whole file
                return file_sha256(part, chunk)
            log.warning("server refused to resume %s at byte %d: restarting", url, offset)
            part.unlink()
            return _download_to_part(url, dest, part, sha256, progress, timeout, chunk, refuse_html)
        raise DataError(
            f"cannot download {url}: HTTP {exc.code} {exc.reason}. "
            f"{_manual_hint(url, dest, sha256)}"
        ) from exc
    except ValueError as exc:  # unknown URL scheme and the like
        raise DataError(f"invalid download URL {url!r}: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:  # refused, DNS, timeout, reset
        raise _Interrupted(
            f"cannot download {url}: network error ({_reason(exc)})", progressed=False
        ) from exc

    with response:
        status = getattr(response, "status", None) or 200
        start, _ = _content_range(response.headers.get("Content-Range"))
        if status == 206 and (start or 0) != offset:
            if not offset:
                raise DataError(f"cannot download {url}: unexpected partial response ({start}-)")
            log.warning(
                "server resumed %s at byte %s instead of %d: restarting", url, start, offset
            )
            response.close()
            part.unlink()
            return _download_to_part(url, dest, part, sha256, progress, timeout, chunk, refuse_html)
        ctype = (response.headers.get("Content-Type") or "").lower()
        if refuse_html and ctype.startswith("text/html"):
            raise DataError(
                f"{url} answered with a web page (Content-Type {ctype}), not the data file: the "
                f"URL is probably a landing page, not the file's download link. Nothing was "
                f"written. {_manual_hint(url, dest, sha256)}"
            )
        if status != 206 and offset:
            log.info("server ignored the resume request for %s: restarting from zero", url)
            offset = 0
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else None

        hasher = hashlib.sha256()
        if offset:
            _hash_into(part, hasher, chunk)
        received = 0
        try:
            f = open(part, "ab" if offset else "wb")
        except OSError as exc:
            raise DataError(f"cannot write {part}: {exc}") from exc
        with (
            f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            # read1 returns what has arrived (one recv): a timeout loses no received bytes
            read = getattr(response, "read1", response.read)
            while True:
                try:
                    buf = read(chunk)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Interrupted(
                        f"download of {url} interrupted after {offset + received} of "
                        f"{total if total is not None else '?'} bytes ({_reason(exc)})",
                        progressed=received > 0,
                    ) from exc
                if not buf:
                    break
                try:
                    f.write(buf)
                except OSError as exc:
                    raise DataError(f"cannot write {part}: {exc}") from exc
                hasher.update(buf)
                received += len(buf)
                bar.update(len(buf))
            f.flush()
            os.fsync(f.fileno())
    if total is not None and offset + received < total:
        raise _Interrupted(
            f"download of {url} interrupted after {offset + received} of {total} bytes "
            f"(connection closed early)",
            progressed=received > 0,
        )
    return hasher.hexdigest()
