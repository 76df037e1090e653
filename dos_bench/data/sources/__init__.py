"""Sources of the published data sets: each yields a :class:`~dos_bench.data.records.RecordSet`.

A source has ``name``, ``cache_key() -> dict`` and ``load(data_dir) -> RecordSet``; raw files are
looked up under ``data_dir`` (never downloaded) and the processed records are cached as
``data_dir/processed/<name>-<hash>.npz``.

Sources, their YAML configs and the paper tables they serve:

* :class:`~.jarvis.JarvisEDOS` — ``jarvis_edos`` — ALIGNN-DOS (Table 1, Figs. 4–7).
* :class:`~.materials_project.Mat2SpecEDOS` — ``mp_edos_128`` — Mat2Spec Table 2, Xtal2DoS
  Tables 2 and 4.
* :class:`~.materials_project.MPDosDocuments` — ``mp_edos_201`` (DOSTransformer Tables 1, 5) and
  ``mp_edos_128_from_dos`` (the Mat2Spec recipe rebuilt from MP documents).
* :class:`~.phonon.PhononE3NN` — ``phonon_e3nn`` — Mat2Spec Table 1, Xtal2DoS Tables 1 and 3.
* :class:`~.phonon.PhononTUT` — ``phonon_tut`` — DOSTransformer Table 1 (phonon columns).
"""

from dos_bench.data.sources.common import (
    CachedSource,
    load_index_pickle,
    load_index_txt,
    parse_literal,
    restricted_pickle_load,
)
from dos_bench.data.sources.jarvis import JarvisEDOS
from dos_bench.data.sources.materials_project import Mat2SpecEDOS, MPDosDocuments
from dos_bench.data.sources.phonon import PhononE3NN, PhononTUT

__all__ = [
    "CachedSource",
    "JarvisEDOS",
    "Mat2SpecEDOS",
    "MPDosDocuments",
    "PhononE3NN",
    "PhononTUT",
    "load_index_pickle",
    "load_index_txt",
    "parse_literal",
    "restricted_pickle_load",
]
