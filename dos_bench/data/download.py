"""Download, verify and unpack the external datasets listed in ``conf/dataset/*.yaml``.

A downloadable dataset config has a top-level ``download`` list; each entry is::

    {url: str, sha256: str | null, path: str (relative to the data dir), unpack: null|zip|tar}

or, for a file published in an InvenioRDM record (CaltechDATA, Zenodo, ...), the record's API URL
and the file's key instead of ``url``::

    {record: https://<host>/api/records/<id>, file: str | null, sha256: str | null, path, unpack}

(``file: null`` = the record's only ``.zip``/``.tar*`` archive). The record JSON is read at
download time for the file's content link and its published checksum (see
:func:`resolve_record_file`). For Materials Project sources that need an account a dataset also
has ``requires_env: MP_API_KEY``. Toy datasets have no ``download`` key: they are generated
locally on first use.

Guarantees of :func:`fetch`:

* the real file appears only once it is complete and every known checksum (sha256, md5, git
  blob id) matched (it is renamed from ``<dest>.part``), so a half-written file never sits at
  the final path;
* an interrupted download keeps ``<dest>.part``; the next call resumes it with an HTTP
  ``Range`` request (and starts again from zero if the server ignores ranges);
* a network failure raises :class:`~dos_bench.io.DataError` naming the URL and the exact path
  where the file can be placed by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tqdm import tqdm

from dos_bench.io import ConfigError, DataError, write_json

log = logging.getLogger(__name__)

__all__ = [
    "API_BUILDERS",
    "DownloadEntry",
    "RecordFile",
    "build_from_api",
    "dataset_entries",
    "download_dataset",
    "fetch",
    "file_md5",
    "file_sha256",
    "git_blob_id",
    "part_path",
    "register_api_builder",
    "required_env",
    "resolve_record_file",
    "unpack",
    "unpack_marker",
]

USER_AGENT = "dos_bench-downloader/0.1 (python urllib)"
MP_DASHBOARD = "https://next-gen.materialsproject.org/api"
UNPACK_KINDS = ("zip", "tar")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_GIT_BLOB_RE = re.compile(r"^[0-9a-f]{40}$")
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
# what `file: null` picks in a record: its only zip or (compressed) tar archive
_ARCHIVE_RE = re.compile(r"\.(zip|tar|tar\.[a-z0-9]+|tgz|tbz2?|txz)$")
_RECORD_JSON_LIMIT = 64 << 20  # bytes: a record's JSON is small, anything larger is not one
_RETRY_DELAY = 1.0  # seconds before resuming an interrupted transfer (times the retry number)


@dataclass(frozen=True)
class DownloadEntry:
    """One validated item of a dataset's ``download`` list.

    Exactly one of ``url`` and ``record`` is set.

    Args:
        url: where to fetch the file from (http, https or file); ``None`` for a record entry.
        path: destination relative to the data directory (never absolute, never ``..``).
        sha256: expected lowercase hex digest, or ``None`` when not pinned yet.
        unpack: ``None``, ``"zip"`` or ``"tar"``; archives are extracted beside themselves.
        git_blob: the file's git blob id (40 hex digits) for files served from a git
            repository, a checksum that can be read off the repository's tree without the
            file's bytes (``git ls-tree``); ``None`` when unknown.
        record: an InvenioRDM record API URL (``https://<host>/api/records/<id>``) whose file
            is downloaded (see :func:`resolve_record_file`); ``None`` for a ``url`` entry.
        file: the file's key in that record; ``None`` = the record's only archive.
    """

    url: str | None
    path: str
    sha256: str | None = None
    unpack: str | None = None
    git_blob: str | None = None
    record: str | None = None
    file: str | None = None

    @property
    def source(self) -> str:
        """Where the entry comes from, for messages: the URL or ``record <url> file <key>``."""
        if self.record is None:
            return str(self.url)
        return f"record {self.record} file {self.file or '<its only archive>'}"


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


# --------------------------------------------------------------------------------------------
# unpacking
# --------------------------------------------------------------------------------------------


def _unsafe_name(name: str) -> bool:
    """True for absolute member names (POSIX, Windows drive, UNC) or any ``..`` component."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return True
    return ".." in PurePosixPath(norm).parts


def _escapes(base: PurePosixPath, target: str) -> bool:
    """True if the link ``target`` (relative to ``base``) points outside the extraction root."""
    norm = target.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        return True
    depth = 0
    for part in (*base.parts, *PurePosixPath(norm).parts):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> None:
    for name in zf.namelist():
        if _unsafe_name(name):
            raise DataError(
                f"refusing to unpack {archive}: member {name!r} would be written outside the "
                f"target directory (absolute path or '..')"
            )


def _check_tar(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    for m in members:
        if _unsafe_name(m.name):
            raise DataError(
                f"refusing to unpack {archive}: member {m.name!r} would be written outside the "
                f"target directory (absolute path or '..')"
            )
        if m.issym() or m.islnk():
            base = PurePosixPath(m.name).parent if m.issym() else PurePosixPath()
            if _escapes(base, m.linkname):
                raise DataError(
                    f"refusing to unpack {archive}: link {m.name!r} -> {m.linkname!r} points "
                    f"outside the target directory"
                )
        elif not (m.isfile() or m.isdir()):
            raise DataError(f"refusing to unpack {archive}: member {m.name!r} is a device or fifo")
    return members


def unpack_marker(archive: str | Path, dest_dir: str | Path) -> Path:
    """The marker file that records a finished extraction of ``archive`` into ``dest_dir``.

    Args:
        archive: the archive file.
        dest_dir: the directory it was extracted into.
    """
    archive = Path(archive)
    return Path(dest_dir) / f".{archive.name}.unpacked.json"


def _already_unpacked(archive: Path, dest_dir: Path) -> list[Path] | None:
    marker = unpack_marker(archive, dest_dir)
    try:
        info = json.loads(marker.read_text())
        st = archive.stat()
        if info["size"] != st.st_size or info["mtime_ns"] != st.st_mtime_ns:
            return None
        files = [dest_dir / rel for rel in info["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if all(p.exists() or p.is_symlink() for p in files) else None


def _move_tree(src: Path, dst: Path) -> list[str]:
    """Move every file of ``src`` onto the same relative path under ``dst`` (``os.replace``)."""
    moved: list[str] = []
    for root, dirs, files in os.walk(src):
        rel_root = Path(root).relative_to(src)
        for d in dirs:
            target = dst / rel_root / d
            if (src / rel_root / d).is_symlink():
                files.append(d)  # a symlink to a directory: move the link itself
                continue
            if target.exists() and not target.is_dir():
                raise DataError(f"cannot unpack into {target}: a file is in the way")
            target.mkdir(parents=True, exist_ok=True)
        for name in files:
            target = dst / rel_root / name
            if target.is_dir() and not target.is_symlink():
                raise DataError(f"cannot unpack onto {target}: a directory is in the way")
            os.replace(src / rel_root / name, target)
            moved.append((rel_root / name).as_posix())
    return moved


def unpack(archive: str | Path, dest_dir: str | Path, kind: str) -> list[Path]:
    """Extract a zip or tar archive into ``dest_dir`` safely.

    Every member name is checked first: an absolute name or a ``..`` component (or, for tar, a
    link pointing outside, a device or a fifo) refuses the whole archive before anything is
    written. The archive is extracted into a temporary directory inside ``dest_dir`` and the
    files are then renamed into place one by one, so no half-extracted file appears at its
    final path. A marker ``.<archive>.unpacked.json`` makes a repeated call a no-op while the
    archive is unchanged and the extracted files are still there.

    Args:
        archive: the zip or tar (optionally gz/bz2/xz-compressed) file.
        dest_dir: directory to extract into (created if needed).
        kind: ``"zip"`` or ``"tar"``.

    Returns:
        The extracted file paths.

    Raises:
        DataError: unsafe member, corrupt archive, or a filesystem error.
        ConfigError: unknown ``kind``.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if kind not in UNPACK_KINDS:
        raise ConfigError(f"unpack: expected one of {UNPACK_KINDS} or null, got {kind!r}")
    done = _already_unpacked(archive, dest_dir)
    if done is not None:
        log.info("%s already unpacked into %s", archive, dest_dir)
        return done
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".tmp", dir=dest_dir))
    except OSError as exc:
        raise DataError(f"cannot unpack {archive} into {dest_dir}: {exc}") from exc
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf, archive)
                zf.extractall(tmp)
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = _check_tar(tf, archive)
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tf.extractall(tmp, members=members)
        rel_files = _move_tree(tmp, dest_dir)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataError(
            f"{archive} is not a valid {kind} archive ({exc}); delete it and rerun the download"
        ) from exc
    except OSError as exc:
        raise DataError(f"cannot unpack {archive} into {dest_dir}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    st = archive.stat()
    write_json(
        unpack_marker(archive, dest_dir),
        {
            "archive": archive.name,
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "files": rel_files,
        },
    )
    log.info("unpacked %s into %s (%d files)", archive, dest_dir, len(rel_files))
    return [dest_dir / rel for rel in rel_files]


# --------------------------------------------------------------------------------------------
# InvenioRDM records (CaltechDATA, Zenodo, ...)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordFile:
    """One file of an InvenioRDM record, as published in the record's JSON.

    Args:
        record: the record API URL that was read.
        key: the file's key (its name in the record).
        url: the file's content link (``links.content``, else ``<record>/files/<key>/content``).
        md5: the published md5 (``checksum: "md5:<hex>"``), or ``None``.
        sha256: the published sha256 (``checksum: "sha256:<hex>"``), or ``None``.
        size: the published size in bytes, or ``None``.
    """

    record: str
    key: str
    url: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None


def _is_archive(key: str) -> bool:
    return bool(_ARCHIVE_RE.search(key.lower()))


def _read_record_json(record: str, timeout: float, hint: str) -> tuple[dict[str, Any], str]:
    """GET ``record`` as JSON; return the document and the final URL (after redirects)."""
    request = urllib.request.Request(
        record, headers={"User-Agent": USER_AGENT, "Accept": "application/json"}
    )
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DataError(
            f"cannot read the record {record}: HTTP {exc.code} {exc.reason} (the `record:` of a "
            f"download entry is an InvenioRDM record API URL, https://<host>/api/records/<id>). "
            f"{hint}"
        ) from exc
    except ValueError as exc:
        raise DataError(f"invalid record URL {record!r}: {exc}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DataError(
            f"cannot read the record {record}: network error ({_reason(exc)}). {hint}"
        ) from exc
    with response:
        final = response.geturl() or record
        ctype = (response.headers.get("Content-Type") or "").lower()
        if ctype.startswith("text/html"):
            raise DataError(
                f"{record} answered with a web page (Content-Type {ctype}), not the record's "
                f"JSON: the URL is probably the record's landing page (https://<host>/records/"
                f"<id>); use its API URL, https://<host>/api/records/<id>. Nothing was written."
            )
        try:
            body = response.read(_RECORD_JSON_LIMIT + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise DataError(
                f"cannot read the record {record}: network error ({_reason(exc)}). {hint}"
            ) from exc
    if len(body) > _RECORD_JSON_LIMIT:
        raise DataError(
            f"the record {record} answered with more than {_RECORD_JSON_LIMIT} bytes: not a "
            f"record's JSON (is `record:` the record API URL?)"
        )
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(
            f"the record {record} did not answer with JSON (Content-Type {ctype or 'none'}: "
            f"{exc}); is `record:` an InvenioRDM record API URL, https://<host>/api/records/<id>?"
        ) from exc
    if not isinstance(doc, dict):
        raise DataError(f"the record {record} answered with JSON that is not an object")
    return doc, final


def _record_entries(doc: dict[str, Any], record: str) -> dict[str, dict[str, Any]]:
    """The record's files by key, from ``files.entries`` (a mapping or a list of entries)."""
    files = doc.get("files")
    entries = files.get("entries") if isinstance(files, dict) else None
    if entries is None and "entries" in doc:  # the `/api/records/<id>/files` listing
        entries = doc["entries"]
    if entries is None:
        why = ""
        if isinstance(files, dict) and files.get("enabled") is False:
            why = " (files.enabled is false: the record has no files)"
        elif "metadata" in doc:
            why = " (its files may be restricted or embargoed)"
        raise DataError(f"the record {record} lists no files: its JSON has no files.entries{why}")
    if not isinstance(entries, (dict, list)):
        raise DataError(f"the record {record}: files.entries is neither a mapping nor a list")
    items = entries.items() if isinstance(entries, dict) else enumerate(entries)
    out: dict[str, dict[str, Any]] = {}
    for name, entry in items:
        if not isinstance(entry, dict):
            raise DataError(f"the record {record}: files.entries[{name!r}] is not an object")
        key = entry.get("key", name if isinstance(name, str) else None)
        if not isinstance(key, str) or not key:
            raise DataError(f"the record {record}: files.entries[{name!r}] has no `key`")
        out[key] = entry
    return out


def _published_checksum(entry: dict[str, Any], record: str, key: str) -> tuple[str | None, str]:
    """``(algorithm, hex)`` of an entry's ``checksum: "<algo>:<hex>"``; ``(None, "")`` if none."""
    value = entry.get("checksum")
    if value is None:
        return None, ""
    algo, sep, digest = str(value).partition(":")
    if not sep:
        raise DataError(
            f"the record {record}: file {key!r} has checksum {value!r}, expected "
            f"'<algorithm>:<hex>'"
        )
    return algo.strip().lower(), digest.strip().lower()


def resolve_record_file(
    record: str, key: str | None = None, timeout: float = 30, dest: str | Path | None = None
) -> RecordFile:
    """Look a file up in an InvenioRDM record: its content link and its published checksum.

    ``GET <record>`` with ``Accept: application/json`` returns the record JSON. Its files are
    under ``files.entries``: in InvenioRDM that is a mapping from file key to an entry with
    ``key``, ``size`` and ``checksum`` (``"md5:<hex>"``) — ``FilesSchema.entries`` and
    ``FileSchema`` in inveniosoftware/invenio-rdm-records,
    ``invenio_rdm_records/services/schemas/files.py``. The files endpoint,
    ``GET <record>/files``, answers ``{"entries": [...]}``, a list of entries that also carry
    ``links`` (``self``, ``content``, ``commit``: ``FileSchema`` in
    inveniosoftware/invenio-records-resources, ``services/files/schema.py``, and the
    ``file_links_item`` templates ``{+api}/records/{id}/files/{key}/content`` of
    invenio-rdm-records' ``services/config.py``). Both shapes are accepted (a list in
    ``files.entries`` too). Without ``links.content`` the content URL is
    ``<record>/files/<key>/content``, built on the URL the record was finally read from (an old
    record id may redirect to a new one).

    Args:
        record: the record API URL, ``https://<host>/api/records/<id>``.
        key: the file's key; ``None`` picks the record's only ``.zip``/``.tar*`` archive.
        timeout: socket timeout in seconds.
        dest: where the file will be saved, for the "install it by hand" hint.

    Returns:
        The file's :class:`RecordFile`.

    Raises:
        DataError: naming ``record`` when it cannot be read, answers HTML (a landing page) or
            something that is not a record's JSON, lists no files, has no file ``key`` (the
            keys present are listed), has several archives and ``key`` is ``None``, or
            publishes a malformed checksum.
    """
    hint = (
        f"To install it by hand, download {key or 'its archive'} from the record's page and save "
        f"it as {dest}, then rerun."
        if dest is not None
        else ""
    )
    doc, final = _read_record_json(record, timeout, hint)
    entries = _record_entries(doc, record)
    present = ", ".join(sorted(entries)) or "none"
    if key is not None:
        if key not in entries:
            raise DataError(
                f"the record {record} has no file {key!r}; its files are: {present}. Set the "
                f"download entry's `file:` to one of them."
            )
    else:
        archives = sorted(k for k in entries if _is_archive(k))
        if len(archives) != 1:
            what = "no .zip/.tar archive" if not archives else f"{len(archives)} archives"
            raise DataError(
                f"the record {record} has {what} (its files are: {present}) and the download "
                f"entry has `file: null`: set `file:` to the key of the file to download"
            )
        key = archives[0]
    entry = entries[key]
    links = entry.get("links")
    content = links.get("content") if isinstance(links, dict) else None
    if isinstance(content, str) and content:
        url = urllib.parse.urljoin(final, content)
    else:
        base = urllib.parse.urlsplit(final)._replace(query="", fragment="").geturl().rstrip("/")
        base = base.removesuffix("/files")
        url = f"{base}/files/{urllib.parse.quote(key)}/content"
    algo, digest = _published_checksum(entry, record, key)
    md5 = sha256 = None
    where = f"the record {record}: file {key!r} checksum"
    try:
        if algo == "md5":
            md5 = _normalise_md5(digest, where)
        elif algo == "sha256":
            sha256 = _normalise_sha256(digest, where)
        elif algo is None:
            log.warning("the record %s publishes no checksum for %s", record, key)
        else:
            log.warning(
                "the record %s publishes a %s checksum for %s, which is not checked",
                record,
                algo,
                key,
            )
    except ConfigError as exc:
        raise DataError(str(exc)) from exc
    size = entry.get("size")
    return RecordFile(
        record=record,
        key=key,
        url=url,
        md5=md5,
        sha256=sha256,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def _fetch_record_entry(entry: DownloadEntry, dest: Path, progress: bool) -> Path:
    """Resolve a ``record`` entry and download its file through :func:`fetch`."""
    assert entry.record is not None
    if entry.sha256 is not None and dest.is_file() and file_sha256(dest) == entry.sha256:
        log.info("%s already present (pinned sha256 verified): record not consulted", dest)
        part_path(dest).unlink(missing_ok=True)
        return dest
    found = resolve_record_file(entry.record, entry.file, dest=dest)
    if entry.sha256 is not None and found.sha256 is not None and found.sha256 != entry.sha256:
        raise DataError(
            f"the record {entry.record} publishes sha256 {found.sha256} for {found.key}, but the "
            f"dataset config pins {entry.sha256}: the upstream file changed. Check it and update "
            f"the pin; nothing was downloaded."
        )
    try:
        return fetch(
            found.url,
            dest,
            entry.sha256 or found.sha256,
            progress=progress,
            refuse_html=True,
            git_blob=entry.git_blob,
            md5=found.md5,
        )
    except DataError as exc:
        raise DataError(f"record {entry.record}, file {found.key}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# dataset configs
# --------------------------------------------------------------------------------------------


def _get(cfg: Mapping[str, Any] | DictConfig, key: str, name: str) -> Any:
    """``cfg[key]`` with interpolations resolved into plain containers (``None`` if absent)."""
    try:
        value = cfg.get(key)
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"dataset {name}: cannot resolve `{key}`: {exc}") from exc
    return value


def _dataset_name(cfg: Mapping[str, Any] | DictConfig) -> str:
    name = _get(cfg, "name", "?")
    return str(name) if name else "<unnamed>"


def dataset_entries(dataset_cfg: Mapping[str, Any] | DictConfig) -> list[DownloadEntry] | None:
    """Validate a dataset config's ``download`` list.

    Args:
        dataset_cfg: the ``dataset`` node (a dict or a composed ``DictConfig``).

    Returns:
        The entries, or ``None`` if the dataset has no ``download`` key (generated locally).

    Raises:
        ConfigError: naming the offending key (``download[i].url`` ...) and what is allowed;
            an entry names exactly one of ``url`` and ``record``.
    """
    name = _dataset_name(dataset_cfg)
    raw = _get(dataset_cfg, "download", name)
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ConfigError(f"dataset {name}: `download` must be a list of entries, got {raw!r}")
    entries = []
    for i, item in enumerate(raw):
        where = f"dataset {name}: download[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping with url/sha256/path/unpack")
        unknown = set(item) - {"url", "record", "file", "sha256", "path", "unpack", "git_blob"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        url, path = item.get("url"), item.get("path")
        record, file_key = item.get("record"), item.get("file")
        if url is not None and record is not None:
            raise ConfigError(
                f"{where}: give either `url` (a direct link) or `record` (an InvenioRDM record "
                f"API URL), not both"
            )
        if record is not None:
            if not isinstance(record, str) or not re.match(r"^https?://[^/]+/", record):
                raise ConfigError(
                    f"{where}.record: expected an InvenioRDM record API URL "
                    f"(https://<host>/api/records/<id>), got {record!r}"
                )
            if file_key is not None and (not isinstance(file_key, str) or not file_key):
                raise ConfigError(
                    f"{where}.file: expected the file's key in the record, or null for its only "
                    f"archive, got {file_key!r}"
                )
        else:
            if not isinstance(url, str) or not url:
                raise ConfigError(
                    f"{where}.url: expected a URL string (or `record:`, an InvenioRDM record API "
                    f"URL), got {url!r}"
                )
            if file_key is not None:
                raise ConfigError(f"{where}.file: only a `record` entry names a file key")
        if not isinstance(path, str) or not path or _unsafe_name(path):
            raise ConfigError(
                f"{where}.path: expected a path relative to the data dir (no '..'), got {path!r}"
            )
        unpack_kind = item.get("unpack")
        if unpack_kind is not None and unpack_kind not in UNPACK_KINDS:
            raise ConfigError(f"{where}.unpack: expected null, 'zip' or 'tar', got {unpack_kind!r}")
        sha = _normalise_sha256(item.get("sha256"), f"{where}.sha256")
        blob = _normalise_git_blob(item.get("git_blob"), f"{where}.git_blob")
        entries.append(
            DownloadEntry(
                url=url,
                path=path,
                sha256=sha,
                unpack=unpack_kind,
                git_blob=blob,
                record=record,
                file=file_key,
            )
        )
    return entries


def required_env(dataset_cfg: Mapping[str, Any] | DictConfig, name: str = "") -> list[str]:
    """The environment variables a dataset needs (its ``requires_env``; ``[]`` if none).

    Args:
        dataset_cfg: the ``dataset`` node.
        name: the dataset name, for messages (default: its ``name`` key).
    """
    name = name or _dataset_name(dataset_cfg)
    value = _get(dataset_cfg, "requires_env", name)
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"dataset {name}: `requires_env` must be a variable name, got {value!r}")
    return values


def download_dataset(
    dataset_cfg: Mapping[str, Any] | DictConfig, data_dir: str | Path, progress: bool = True
) -> list[Path]:
    """Fetch (and unpack) every entry of a dataset's ``download`` list into ``data_dir``.

    Entry ``path`` is relative to ``data_dir``; archives (``unpack: zip|tar``) are extracted into
    the directory that holds them. A ``record`` entry is first looked up in its InvenioRDM
    record (:func:`resolve_record_file`) and then fetched from its content link; the record's
    published md5/sha256 is checked, and so is a ``sha256`` pinned in the config. A dataset
    with ``requires_env`` fails early if the variable is unset; otherwise, after its downloads,
    :func:`build_from_api` is called. A dataset without a ``download`` list (the toy sets) has
    nothing to download.

    Args:
        dataset_cfg: the ``dataset`` node (a dict or a composed ``DictConfig``).
        data_dir: the data directory (``paths.data_dir``).
        progress: show progress bars.

    Returns:
        The local paths of the downloaded files (plus files built from an API).

    Raises:
        DataError: a missing API key, a network failure, a checksum mismatch, a bad archive, a
            record that cannot be resolved (naming the record URL).
        ConfigError: a malformed ``download`` list.
    """
    data_dir = Path(data_dir).expanduser()
    name = _dataset_name(dataset_cfg)
    entries = dataset_entries(dataset_cfg)
    env_vars = required_env(dataset_cfg, name)
    if entries is None and not env_vars:
        log.info("dataset %s is generated locally on first use: nothing to download", name)
        return []
    for var in env_vars:
        if not os.environ.get(var):
            raise DataError(
                f"dataset {name} is built from the Materials Project API: set the environment "
                f"variable {var} to your API key (from the Materials Project dashboard, "
                f"{MP_DASHBOARD}) and rerun"
            )
    paths: list[Path] = []
    for entry in entries or []:
        if entry.record is not None:
            dest = _fetch_record_entry(entry, data_dir / entry.path, progress)
        else:
            dest = fetch(
                str(entry.url),
                data_dir / entry.path,
                entry.sha256,
                progress=progress,
                refuse_html=True,
                git_blob=entry.git_blob,
            )
        if entry.unpack:
            unpack(dest, dest.parent, entry.unpack)
        paths.append(dest)
    if env_vars:
        paths.extend(
            build_from_api(
                dataset_cfg, data_dir, api_key=os.environ[env_vars[0]], progress=progress
            )
        )
    return paths


# --------------------------------------------------------------------------------------------
# Materials Project hook
# --------------------------------------------------------------------------------------------

#: builder name (a dataset's ``api.builder``) ->
#: ``builder(mpr, data_dir, dataset_cfg, progress) -> list[Path]`` writing that dataset's files.
API_BUILDERS: dict[str, Callable[..., list[Path]]] = {}


def register_api_builder(
    name: str,
) -> Callable[[Callable[..., list[Path]]], Callable[..., list[Path]]]:
    """Decorator registering a Materials Project builder under ``name`` (``api.builder``).

    Args:
        name: the builder name datasets refer to in ``api.builder``.
    """

    def deco(fn: Callable[..., list[Path]]) -> Callable[..., list[Path]]:
        API_BUILDERS[name] = fn
        return fn

    return deco


def build_from_api(
    dataset_cfg: Mapping[str, Any] | DictConfig,
    data_dir: str | Path,
    api_key: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Build a Materials Project dataset locally through ``mp_api`` (imported lazily).

    The work is done by the builder named in the dataset's ``api.builder`` (registered with
    :func:`register_api_builder`; the bundled one is
    :func:`dos_bench.data.mp_builder.build_mp_dos_documents`), called with an open client:
    ``mp_api.client.MPRester`` unless ``api.client`` names another class with its interface (a
    proxy, a mirror, or the fake client of the tests), opened at ``api.endpoint`` when set. The
    builder writes its files under ``data_dir`` and returns their paths.

    Args:
        dataset_cfg: the dataset config (``name``, ``source``, ``api``).
        data_dir: the data directory.
        api_key: the Materials Project API key (default: ``$MP_API_KEY``).
        progress: show progress bars.

    Raises:
        DataError: ``mp_api`` is not installed (``pip install mp-api``).
        ConfigError: the dataset has no ``api.builder`` or names an unknown builder.
    """
    import dos_bench.data.mp_builder  # noqa: F401  (registers the bundled builders)

    name = _dataset_name(dataset_cfg)
    api = _get(dataset_cfg, "api", name) or {}
    builder_name = api.get("builder") if hasattr(api, "get") else None
    builder = API_BUILDERS.get(str(builder_name))
    if builder is None:
        raise ConfigError(
            f"dataset {name}: `api.builder` must name a Materials Project builder "
            f"({sorted(API_BUILDERS)}), got {builder_name!r}"
        )
    client_cls = _api_client(name, api.get("client") or DEFAULT_MP_CLIENT)
    kwargs = {"endpoint": api["endpoint"]} if api.get("endpoint") else {}
    with client_cls(api_key or os.environ.get("MP_API_KEY"), **kwargs) as mpr:
        return list(builder(mpr, Path(data_dir), dataset_cfg, progress=progress))


#: the Materials Project client class a dataset's ``api.client`` names by default
DEFAULT_MP_CLIENT = "mp_api.client.MPRester"


def _api_client(name: str, dotted: str) -> Callable[..., Any]:
    """The client class named by ``api.client`` (``module.Class``), imported lazily."""
    import importlib

    module_name, _, attr = str(dotted).rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        if dotted == DEFAULT_MP_CLIENT:
            raise DataError(
                f"dataset {name} is built with the Materials Project client, which is not "
                f"installed: pip install mp-api"
            ) from exc
        raise ConfigError(
            f"dataset {name}: `api.client` must name an importable client class "
            f"(module.Class, default {DEFAULT_MP_CLIENT}), got {dotted!r}: {exc}"
        ) from exc
