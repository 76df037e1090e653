"""Build the Materials Project eDOS documents of ``mp_edos_201`` / ``mp_edos_128_from_dos``.

DOSTransformer (A.1.2) and Mat2Spec (Methods, "Materials Project eDOS") both start from the
total electronic DOS of the non-magnetic Materials Project materials that have a DOS calculation
(docs/papers/dostransformer.md §2.1, docs/papers/mat2spec.md §4.1). Neither paper ships those
documents, so ``dos-data download <name>``
rebuilds them through the official client (``mp-api``, ``MPRester``) into the folder that
:class:`~dos_bench.data.sources.materials_project.MPDosDocuments` reads::

    <data_dir>/<source.path>/<material_id>.json.gz     one wrapper per material
    <data_dir>/<source.path>.manifest.json             query, counts, client/database versions

A wrapper is ``{material_id, dos, structure, is_magnetic, ordering, band_gap, vbm, cbm, efermi}``:
``dos`` is the *total* pymatgen ``Dos`` (spin channels kept, projections dropped: the recipes
never use them and they are most of a ``CompleteDos``'s size), ``structure`` the summary's
structure, the other keys the summary fields (``None`` when absent).

Steps: one summary search (``has_props=["dos"]``, ``is_magnetic=False`` when
``api.non_magnetic_only``) for the candidate list, then ``MPRester.get_dos_by_material_id`` per
material. Every file is written atomically, so an interrupted build resumes where it stopped
(files already present are kept, not fetched again); a material whose DOS cannot be fetched is
recorded in the manifest and skipped, and the build fails only when *no* material succeeded.

Options live in the dataset config under ``api`` (see ``conf/dataset/mp_edos_201.yaml``)::

    api: {builder: mp_dos_documents, non_magnetic_only: true, limit: null, chunk_size: 1000}

``api.builder: mp_dos_documents`` names :func:`build_mp_dos_documents` in
:data:`dos_bench.data.download.datasets.API_BUILDERS`; this module does not import the
downloader.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dos_bench.io import ConfigError, DataError, atomic_write, write_json

log = logging.getLogger(__name__)

__all__ = ["SUMMARY_FIELDS", "build_mp_dos_documents"]

#: summary fields copied into each wrapper (``structure`` and ``material_id`` besides)
SUMMARY_FIELDS = ("is_magnetic", "ordering", "band_gap", "vbm", "cbm", "efermi")


def _field(doc: Any, key: str) -> Any:
    """A field of an mp-api document (a pydantic model) or of a plain dict; ``None`` if absent."""
    if isinstance(doc, Mapping):
        return doc.get(key)
    return getattr(doc, key, None)


def _plain(value: Any) -> Any:
    """JSON-safe form of a summary value (enums → their value, pymatgen objects → dicts)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "value"):  # Enum (e.g. the magnetic ordering)
        return value.value
    return str(value)


def _options(dataset_cfg: Mapping[str, Any]) -> tuple[str, bool, int | None, int]:
    name = dataset_cfg.get("name", "?")
    source = dataset_cfg.get("source") or {}
    folder = source.get("path")
    if not folder or not isinstance(folder, str):
        raise ConfigError(f"dataset {name}: `source.path` (the documents folder) must be set")
    api = dataset_cfg.get("api") or {}
    limit = api.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"dataset {name}: `api.limit` must be a positive integer or null")
    chunk = api.get("chunk_size", 1000)
    if not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"dataset {name}: `api.chunk_size` must be a positive integer")
    return folder, bool(api.get("non_magnetic_only", True)), limit, chunk


def _summary_search(mpr: Any, non_magnetic_only: bool, chunk_size: int) -> list[Any]:
    query: dict[str, Any] = {"has_props": ["dos"]}
    if non_magnetic_only:
        query["is_magnetic"] = False
    fields = ["material_id", "structure", *SUMMARY_FIELDS]
    summary = mpr.materials.summary
    return list(summary.search(**query, fields=fields, chunk_size=chunk_size))


def _wrapper(mid: str, summary_doc: Any, dos: Any) -> dict[str, Any]:
    from pymatgen.electronic_structure.dos import Dos

    structure = _field(summary_doc, "structure") or getattr(dos, "structure", None)
    if structure is None:
        raise DataError(f"{mid}: neither the summary nor the DOS document has a structure")
    total = Dos(dos.efermi, dos.energies, dos.densities)
    doc = {"material_id": mid, "dos": total.as_dict(), "structure": _plain(structure)}
    doc.update({k: _plain(_field(summary_doc, k)) for k in SUMMARY_FIELDS})
    return doc


def build_mp_dos_documents(
    mpr: Any, data_dir: Path, dataset_cfg: Mapping[str, Any], progress: bool = True
) -> list[Path]:
    """Fetch the total DOS of every matching MP material into ``<data_dir>/<source.path>/``.

    Args:
        mpr: an open ``mp_api.client.MPRester`` (anything with ``materials.summary.search`` and
            ``get_dos_by_material_id``).
        data_dir: the data directory.
        dataset_cfg: the dataset config (``name``, ``source.path``, ``api``).
        progress: show a progress bar.

    Returns:
        ``[folder, manifest]``.

    Raises:
        DataError: the summary search returned nothing, or no DOS could be fetched.
        ConfigError: a bad ``api`` option.
    """
    name = dataset_cfg.get("name", "?")
    folder_name, non_magnetic_only, limit, chunk_size = _options(dataset_cfg)
    folder = Path(data_dir) / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    docs = _summary_search(mpr, non_magnetic_only, chunk_size)
    docs = sorted(docs, key=lambda d: str(_field(d, "material_id")))
    if limit is not None:
        docs = docs[:limit]
    if not docs:
        raise DataError(f"dataset {name}: the Materials Project summary search returned nothing")
    log.info("dataset %s: %d candidate materials with a DOS", name, len(docs))

    written, kept, failed = 0, 0, {}
    for doc in tqdm(docs, desc=f"{name}: MP DOS", unit="mat", disable=not progress):
        mid = str(_field(doc, "material_id"))
        dest = folder / f"{mid}.json.gz"
        if dest.exists():
            kept += 1
            continue
        try:
            dos = mpr.get_dos_by_material_id(mid)
            if dos is None:
                raise DataError("no DOS returned")
            wrapper = _wrapper(mid, doc, dos)
        except Exception as exc:  # one bad material must not stop a 30k-material build
            failed[mid] = f"{type(exc).__name__}: {exc}"
            log.warning("dataset %s: %s skipped (%s)", name, mid, failed[mid])
            continue
        with atomic_write(dest) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as fh:
            json.dump(wrapper, fh)
        written += 1

    if written + kept == 0:
        raise DataError(
            f"dataset {name}: no DOS could be fetched for any of the {len(docs)} materials "
            f"(first failure: {next(iter(failed.items()))})"
        )
    manifest = Path(data_dir) / f"{folder_name}.manifest.json"
    write_json(
        manifest,
        {
            "dataset": name,
            "query": {"has_props": ["dos"], "is_magnetic": False if non_magnetic_only else None},
            "limit": limit,
            "n_candidates": len(docs),
            "n_written": written,
            "n_already_present": kept,
            "n_failed": len(failed),
            "failed": failed,
            "mp_api_version": _version("mp_api"),
            "database_version": _database_version(mpr),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.time() - t0, 1),
        },
    )
    log.info(
        "dataset %s: %d written, %d already present, %d failed -> %s",
        name,
        written,
        kept,
        len(failed),
        folder,
    )
    return [folder, manifest]


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module.replace("_", "-"))
    except PackageNotFoundError:
        return None


def _database_version(mpr: Any) -> str | None:
    getter = getattr(mpr, "get_database_version", None)
    try:
        return str(getter()) if callable(getter) else None
    except Exception:  # informational only; an old client or a network hiccup
        return None
