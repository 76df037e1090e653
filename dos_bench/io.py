"""Small I/O helpers shared by every module: the data error type, atomic writes, hashing.

Files written through :func:`atomic_write` (caches, ``metrics.json``, ``splits.json``,
``predictions.npz``, figures):

* go to a temporary file ``.<name>.<host>.<pid>.<random>.tmp`` beside the target and are renamed
  onto it only when complete, so nothing half-written is ever left at the target;
* get the mode an ordinary ``open()`` would give them: ``0666 & ~umask`` (``0644`` under umask
  022), not the ``0600`` of :func:`tempfile.mkstemp`, so a shared data directory stays readable;
* clean up after a killed writer: the next write of the same file removes its orphaned
  temporaries (writer process gone on this host, or untouched for :data:`ORPHAN_AGE_S` seconds);
* fail with one :class:`StorageError` naming the path and the errno's meaning (disk full, quota,
  read-only file system, permission denied) instead of a bare ``OSError``.

:func:`save_cache` writes a cache file and, when its directory is read-only, keeps the object in
an in-memory cache for the rest of the process instead (one warning naming the directory).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "DataError",
    "ConfigError",
    "StorageError",
    "atomic_write",
    "ensure_writable_dir",
    "file_mode",
    "load_json_file",
    "load_npz_file",
    "memory_cache",
    "remove_orphan_temporaries",
    "save_cache",
    "stable_hash",
    "write_json",
]

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad input data: the message names the file and/or record and what is wrong."""


class ConfigError(ValueError):
    """A bad configuration value: the message names the key and what is allowed."""


class StorageError(DataError):
    """A file could not be written (disk full, quota, read-only, no permission).

    The message names the path and what the errno means; :attr:`errno` keeps the code.
    """

    def __init__(self, message: str, path: str | Path | None = None, code: int | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.errno = code


# ------------------------------------------------------------------------------- errno texts
#: what the write errors mean, in words a user can act on
_ERRNO_HINTS: dict[int, str] = {
    errno.ENOSPC: "no space left on the device; free some space or write elsewhere",
    errno.EDQUOT: "disk quota exceeded; free some space or write elsewhere",
    errno.EROFS: "read-only file system; choose a writable directory",
    errno.EACCES: "permission denied; choose a directory you can write to",
    errno.EPERM: "operation not permitted; choose a directory you can write to",
    errno.EFBIG: "file too large for this file system",
    errno.EIO: "input/output error on the device",
    errno.ENOTDIR: "a parent of the path is a file, not a directory",
    errno.EISDIR: "the path is a directory",
    errno.EEXIST: "a file is in the way where a directory is needed",
    errno.ENAMETOOLONG: "file name too long",
}
#: errno codes that mean "this storage cannot take the file" (translated even when raised by the
#: caller's code inside :func:`atomic_write`)
WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.EIO}
)
#: a cache whose directory fails with one of these is kept in memory instead (read-only data dir)
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def errno_meaning(code: int | None) -> str:
    """``ENOSPC (no space left on the device; ...)`` for an errno code."""
    if code is None:
        return "unknown error"
    name = errno.errorcode.get(code, str(code))
    return f"{name}: {_ERRNO_HINTS.get(code, os.strerror(code))}"


def _storage_error(path: Path, exc: OSError, what: str = "cannot write") -> StorageError:
    return StorageError(f"{path}: {what} ({errno_meaning(exc.errno)})", path, exc.errno)


# ------------------------------------------------------------------------------- file modes
_UMASK: int | None = None


def _read_umask() -> int:
    try:  # Linux >= 4.7 shows it without changing it (no race with other threads)
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """``0o666 & ~umask``: the mode ``open()`` gives a new file (the umask is read once)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = _read_umask()
    return 0o666 & ~_UMASK


# ------------------------------------------------------------------------------- temporaries
#: a temporary untouched this long is an orphan whatever its pid says (other hosts, pid reuse)
ORPHAN_AGE_S = 600.0
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname() or "host")[:40] or "host"
_RAND = r"[a-z0-9_]{8}"  # tempfile's random part


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}.{os.getpid()}."


def _orphan_pattern(path: Path) -> re.Pattern[str]:
    # .<name>.<host>.<pid>.<random>.tmp, or the older .<name>.<random>.tmp (no writer recorded)
    return re.compile(
        rf"^\.{re.escape(path.name)}\.(?:(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.)?{_RAND}\.tmp$"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_orphan_temporaries(path: str | Path, max_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Remove temporaries of ``path`` left by a killed writer; returns the removed files.

    A temporary ``.<name>.<host>.<pid>.<random>.tmp`` is an orphan when its writer ran on this
    host and is gone, or when nobody touched it for ``max_age_s`` seconds. Files of live writers
    (this process included) are kept.
    """
    path = Path(path)
    pattern = _orphan_pattern(path)
    removed: list[Path] = []
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*.tmp"))
    except OSError:
        return removed
    now = time.time()
    for tmp in candidates:
        m = pattern.match(tmp.name)
        if m is None:
            continue
        try:
            age = now - tmp.stat().st_mtime
        except OSError:
            continue
        pid = int(m["pid"]) if m["pid"] else None
        dead = pid is not None and m["host"] == _HOST and pid != os.getpid() and not _pid_alive(pid)
        if dead or age > max_age_s:
            try:
                tmp.unlink()
            except OSError:
                continue
            removed.append(tmp)
            log.info("removed %s, left by an interrupted writer", tmp)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with the glob metacharacters ``*?[`` escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


# ------------------------------------------------------------------------------- writing
def _mkdir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _storage_error(directory, exc, "cannot create the directory") from None


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Nothing half-written is ever left at ``path``: on an exception the temporary file is removed
    and ``path`` keeps its previous content (or stays absent). The file gets mode
    ``0666 & ~umask``; orphaned temporaries of earlier killed writers of ``path`` are removed
    first. An ``OSError`` meaning the storage cannot take the file (see :data:`WRITE_ERRNOS`)
    becomes one :class:`StorageError` naming ``path``.
    """
    path = Path(path)
    _mkdir(path.parent)
    remove_orphan_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _storage_error(path, exc) from None
    tmp_path = Path(tmp)
    try:
        try:
            os.fchmod(fd, file_mode())
        finally:
            os.close(fd)
        try:
            yield tmp_path
        except OSError as exc:
            named = exc.filename in (None, tmp, str(tmp_path), str(path))
            if exc.errno in WRITE_ERRNOS and named:
                raise _storage_error(path, exc) from None
            raise
        try:
            os.replace(tmp_path, path)
        except OSError as exc:
            raise _storage_error(path, exc) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def ensure_writable_dir(directory: str | Path, key: str | None = None) -> Path:
    """Create ``directory`` if needed and check a file can be created in it.

    Raises :class:`ConfigError` naming ``key`` (the config key that chose the directory) or, with
    no key, :class:`StorageError`; either names the directory and the errno's meaning.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if key is None:
            raise _storage_error(directory, exc, "cannot write into the directory") from None
        raise ConfigError(
            f"{key}={directory}: cannot write into this directory ({errno_meaning(exc.errno)})"
        ) from None
    return directory


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


# ------------------------------------------------------------------------------- caches
_MEMORY_CACHE: dict[str, Any] = {}
_WARNED_DIRS: set[str] = set()


def _cache_key(path: Path) -> str:
    return os.path.abspath(path)


def _existing_ancestor(directory: Path) -> Path:
    d = Path(os.path.abspath(directory))
    while not d.exists() and d != d.parent:
        d = d.parent
    return d


def memory_cache(path: str | Path) -> Any | None:
    """The object :func:`save_cache` kept in memory for ``path`` (read-only directory), or None."""
    return _MEMORY_CACHE.get(_cache_key(Path(path)))


def save_cache(obj: Any, path: str | Path, save: Callable[[Path], Any] | None = None) -> bool:
    """Write a cache file with ``save(path)`` (default ``obj.save``); True if it was written.

    When the directory is read-only (``EROFS``, ``EACCES``, ``EPERM``) the object is kept in an
    in-memory cache for the rest of this process instead (:func:`memory_cache`), with one warning
    per directory; the run goes on and the next process rebuilds it. A full disk or quota is
    still an error (:class:`StorageError` naming the file).
    """
    path = Path(path)
    try:
        (save or obj.save)(path)
        return True
    except StorageError as exc:
        if exc.errno not in READ_ONLY_ERRNOS:
            raise
        _MEMORY_CACHE[_cache_key(path)] = obj
        where = str(_existing_ancestor(path.parent))
        if where not in _WARNED_DIRS:
            _WARNED_DIRS.add(where)
            log.warning(
                "%s is not writable (%s): caches are kept in memory for this process only and "
                "rebuilt by every run (cache file %s)",
                where,
                errno.errorcode.get(exc.errno or 0, exc.errno),
                path.name,
            )
        return False


# ------------------------------------------------------------------------------- reading
_DAMAGED = "the file is damaged (truncated or corrupt"


def load_npz_file(path: str | Path) -> dict[str, Any]:
    """Every array of an ``.npz`` file; a truncated or corrupt file is one :class:`DataError`."""
    import numpy as np

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except PermissionError as exc:
        raise DataError(f"{path}: cannot read ({errno_meaning(exc.errno)})") from None
    except Exception as exc:  # zipfile / zlib / numpy raise many types on a damaged file
        raise DataError(f"{path}: {_DAMAGED}: {type(exc).__name__}: {exc})") from None


def load_json_file(path: str | Path) -> Any:
    """The JSON content of ``path``; a truncated or corrupt file is one :class:`DataError`."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except PermissionError as exc:
        raise DataError(f"{path}: cannot read ({errno_meaning(exc.errno)})") from None
    except (ValueError, OSError) as exc:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise DataError(f"{path}: {_DAMAGED}: {type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------- hashing
def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def stable_hash(obj: Any, n: int = 12) -> str:
    """A short sha256 of the canonical JSON form of ``obj`` (dict order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:n]
