"""Safe unpacking of downloaded zip and tar archives.

Every member name is checked before anything is written (absolute names, ``..`` components,
links pointing outside, devices and fifos refuse the whole archive); the archive is extracted
into a temporary directory beside the target and renamed into place file by file; a marker file
makes a repeated unpack of an unchanged archive a no-op.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from dos_bench.io import ConfigError, DataError, write_json

log = logging.getLogger(__name__)

__all__ = ["UNPACK_KINDS", "unpack", "unpack_marker"]

UNPACK_KINDS = ("zip", "tar")


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
