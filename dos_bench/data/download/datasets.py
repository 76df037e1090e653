"""Dataset configs → downloads: the ``download`` list of ``conf/dataset/*.yaml`` and the
Materials Project builds.

A downloadable dataset config has a top-level ``download`` list; each entry is::

    {url: str, sha256: str | null, path: str (relative to the data dir), unpack: null|zip|tar}

or, for a file published in an InvenioRDM record (CaltechDATA, Zenodo, ...), the record's API URL
and the file's key instead of ``url``::

    {record: https://<host>/api/records/<id>, file: str | null, sha256: str | null, path, unpack}

(``file: null`` = the record's only ``.zip``/``.tar*`` archive; see
:func:`~dos_bench.data.download.invenio.resolve_record_file`). For Materials Project sources that
need an account a dataset also has ``requires_env: MP_API_KEY`` and an ``api`` block naming its
builder (:data:`API_BUILDERS`). Toy datasets have no ``download`` key: they are generated
locally on first use.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from dos_bench.data.download.archives import UNPACK_KINDS, _unsafe_name, unpack
from dos_bench.data.download.invenio import resolve_record_file
from dos_bench.data.download.materials_project import build_mp_dos_documents
from dos_bench.data.download.transfer import (
    _normalise_git_blob,
    _normalise_sha256,
    fetch,
    file_sha256,
    part_path,
)
from dos_bench.io import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = [
    "API_BUILDERS",
    "DEFAULT_MP_CLIENT",
    "MP_DASHBOARD",
    "DownloadEntry",
    "build_from_api",
    "dataset_entries",
    "download_dataset",
    "required_env",
]

MP_DASHBOARD = "https://next-gen.materialsproject.org/api"


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
# Materials Project builds
# --------------------------------------------------------------------------------------------

#: builder name (a dataset's ``api.builder``) ->
#: ``builder(mpr, data_dir, dataset_cfg, progress) -> list[Path]`` writing that dataset's files.
#: The builders are imported here directly; a builder does not import the downloader.
API_BUILDERS: dict[str, Callable[..., list[Path]]] = {
    "mp_dos_documents": build_mp_dos_documents,
}


def build_from_api(
    dataset_cfg: Mapping[str, Any] | DictConfig,
    data_dir: str | Path,
    api_key: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Build a Materials Project dataset locally through ``mp_api`` (imported lazily).

    The work is done by the builder named in the dataset's ``api.builder`` (a key of
    :data:`API_BUILDERS`; the bundled one, ``mp_dos_documents``, is
    :func:`~dos_bench.data.download.materials_project.build_mp_dos_documents`), called with an
    open client:
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
