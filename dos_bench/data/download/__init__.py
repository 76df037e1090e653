"""Download, verify and unpack the external datasets listed in ``conf/dataset/*.yaml``.

The public API of ``dos-data download``; the modules, in the order a download runs:

* :mod:`~.datasets` — a dataset config's ``download`` list (:func:`dataset_entries`,
  :func:`required_env`) and :func:`download_dataset`, which fetches and unpacks every entry and
  builds the Materials Project datasets (:func:`build_from_api`, :data:`API_BUILDERS`);
* :mod:`~.invenio` — files published in InvenioRDM records: :func:`resolve_record_file`;
* :mod:`~.transfer` — :func:`fetch`: HTTP download with resume, sha256/md5/git-blob checks and an
  atomic rename (named ``transfer`` so that the module does not shadow the function);
* :mod:`~.archives` — :func:`unpack`: safe zip/tar extraction;
* :mod:`~.materials_project` — the Materials Project builder of ``mp_edos_201`` /
  ``mp_edos_128_from_dos`` (:func:`build_mp_dos_documents`).

Training never downloads: the sources only look their raw files up
(:mod:`dos_bench.data.sources`).
"""

from dos_bench.data.download.archives import UNPACK_KINDS, unpack, unpack_marker
from dos_bench.data.download.datasets import (
    API_BUILDERS,
    DEFAULT_MP_CLIENT,
    MP_DASHBOARD,
    DownloadEntry,
    build_from_api,
    dataset_entries,
    download_dataset,
    required_env,
)
from dos_bench.data.download.invenio import RecordFile, resolve_record_file
from dos_bench.data.download.materials_project import build_mp_dos_documents
from dos_bench.data.download.transfer import (
    USER_AGENT,
    fetch,
    file_md5,
    file_sha256,
    git_blob_id,
    part_path,
)

__all__ = [
    "API_BUILDERS",
    "DEFAULT_MP_CLIENT",
    "MP_DASHBOARD",
    "UNPACK_KINDS",
    "USER_AGENT",
    "DownloadEntry",
    "RecordFile",
    "build_from_api",
    "build_mp_dos_documents",
    "dataset_entries",
    "download_dataset",
    "fetch",
    "file_md5",
    "file_sha256",
    "git_blob_id",
    "part_path",
    "required_env",
    "resolve_record_file",
    "unpack",
    "unpack_marker",
]
