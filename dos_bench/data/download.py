"""Download, verify and unpack the external datasets listed in ``conf/dataset/*.yaml``.

A downloadable dataset config has a top-level ``download`` list; each entry is::

    {url: str, sha256: str | null, path: str (relative to the data dir), unpack: null|zip|tar}

and, for Materials Project sources that need an account, ``requires_env: MP_API_KEY``. Toy
datasets have no ``download`` key: they are generated locally on first use.

Guarantees of :func:`fetch`:

* the real file appears only once it is complete and its sha256 matched (it is renamed from
  ``<dest>.part``), so a half-written file never sits at the final path;
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
    "build_from_api",
    "dataset_entries",
    "download_dataset",
    "fetch",
    "file_sha256",
    "git_blob_id",
    "part_path",
    "register_api_builder",
    "required_env",
    "unpack",
    "unpack_marker",
]

USER_AGENT = "dos_bench-downloader/0.1 (python urllib)"
MP_DASHBOARD = "https://next-gen.materialsproject.org/api"
UNPACK_KINDS = ("zip", "tar")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_GIT_BLOB_RE = re.compile(r"^[0-9a-f]{40}$")
_RETRY_DELAY = 1.0  # seconds before resuming an interrupted transfer (times the retry number)


@dataclass(frozen=True)
class DownloadEntry:
    """One validated item of a dataset's ``download`` list.

    Args:
        url: where to fetch the file from (http, https or file).
        path: destination relative to the data directory (never absolute, never ``..``).
        sha256: expected lowercase hex digest, or ``None`` when not pinned yet.
        unpack: ``None``, ``"zip"`` or ``"tar"``; archives are extracted beside themselves.
        git_blob: the file's git blob id (40 hex digits) for files served from a git
            repository, a checksum that can be read off the repository's tree without the
            file's bytes (``git ls-tree``); ``None`` when unknown.
    """

    url: str
    path: str
    sha256: str | None = None
    unpack: str | None = None
    git_blob: str | None = None


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
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial download and verifying its sha256.

    If ``dest`` already exists and matches ``sha256`` (or no hash is known) it is reused without
    any network access. Otherwise bytes stream into ``<dest>.part``; when the transfer completes
    and the checksum matches, the part file is renamed onto ``dest``. An interrupted transfer
    keeps the part file and a later call sends ``Range: bytes=<size>-`` to resume it.

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

    Returns:
        ``dest`` as a :class:`~pathlib.Path`.

    Raises:
        DataError: network failure (naming the URL and where to place the file by hand), HTTP
            error status, or checksum mismatch (the partial download is deleted).
        ConfigError: a malformed ``sha256``.
    """
    dest = Path(dest)
    sha256 = _normalise_sha256(sha256)
    git_blob = _normalise_git_blob(git_blob)
    if dest.is_dir():
        raise DataError(f"cannot download {url} to {dest}: a directory is in the way")
    part = part_path(dest)
    if dest.exists():
        if sha256 is None and git_blob is not None:
            got = git_blob_id(dest, chunk)
            if got == git_blob:
                log.info("%s already present (git blob id verified)", dest)
                part.unlink(missing_ok=True)
                return dest
            log.warning(
                "%s exists but its git blob id is %s, expected %s: downloading it again",
                dest,
                got,
                git_blob,
            )
        elif sha256 is None:
            log.info("%s already exists and no sha256 is pinned: reusing it", dest)
            part.unlink(missing_ok=True)  # a stale partial download from before
            return dest
        got = file_sha256(dest, chunk)
        if got == sha256:
            log.info("%s already present (sha256 verified)", dest)
            part.unlink(missing_ok=True)
            return dest
        log.warning(
            "%s exists but its sha256 is %s, expected %s: downloading it again", dest, got, sha256
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
    if git_blob is not None and (got := git_blob_id(part, chunk)) != git_blob:
        part.unlink(missing_ok=True)
        raise DataError(
            f"git blob id mismatch for {url}: expected {git_blob}, got {got}; the download was "
            f"deleted (a changed upstream file or a corrupted transfer). Rerun to try again, or "
            f"place a verified copy at {dest}."
        )
    if sha256 is None:
        log.warning(
            "no sha256 pinned for %s: downloaded %s has sha256 %s (pin it in the dataset config)",
            url,
            dest,
            digest,
        )
    os.replace(part, dest)
    log.info("downloaded %s", dest)
    return dest


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
        ConfigError: naming the offending key (``download[i].url`` ...) and what is allowed.
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
        unknown = set(item) - {"url", "sha256", "path", "unpack", "git_blob"}
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
        url, path = item.get("url"), item.get("path")
        if not isinstance(url, str) or not url:
            raise ConfigError(f"{where}.url: expected a URL string, got {url!r}")
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
            DownloadEntry(url=url, path=path, sha256=sha, unpack=unpack_kind, git_blob=blob)
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
    the directory that holds them. A dataset with ``requires_env`` fails early if the variable
    is unset; otherwise, after its downloads, :func:`build_from_api` is called. A dataset
    without a ``download`` list (the toy sets) has nothing to download.

    Args:
        dataset_cfg: the ``dataset`` node (a dict or a composed ``DictConfig``).
        data_dir: the data directory (``paths.data_dir``).
        progress: show progress bars.

    Returns:
        The local paths of the downloaded files (plus files built from an API).

    Raises:
        DataError: a missing API key, a network failure, a checksum mismatch, a bad archive.
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
        dest = fetch(
            entry.url,
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
    :func:`dos_bench.data.mp_builder.build_mp_dos_documents`), called with an open
    ``mp_api.client.MPRester``; it writes its files under ``data_dir`` and returns their paths.

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
    try:
        from mp_api.client import MPRester
    except ImportError as exc:
        raise DataError(
            f"dataset {name} is built with the Materials Project client, which is not "
            f"installed: pip install mp-api"
        ) from exc
    with MPRester(api_key or os.environ.get("MP_API_KEY")) as mpr:
        return list(builder(mpr, Path(data_dir), dataset_cfg, progress=progress))
