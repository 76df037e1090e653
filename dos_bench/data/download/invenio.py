"""InvenioRDM records (CaltechDATA, Zenodo, ...): a file's content link and published checksum.

A dataset's download entry may name a record API URL and a file key instead of a direct URL;
:func:`resolve_record_file` reads the record's JSON at download time and returns where to fetch
the file from and which checksum it must have.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dos_bench.data.download.transfer import (
    USER_AGENT,
    _normalise_md5,
    _normalise_sha256,
    _reason,
)
from dos_bench.io import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["RecordFile", "resolve_record_file"]

# what `file: null` picks in a record: its only zip or (compressed) tar archive
_ARCHIVE_RE = re.compile(r"\.(zip|tar|tar\.[a-z0-9]+|tgz|tbz2?|txz)$")
_RECORD_JSON_LIMIT = 64 << 20  # bytes: a record's JSON is small, anything larger is not one


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
