"""Sources of the data sets: each yields a :class:`~dos_bench.data.records.RecordSet`.

A source has ``name``, ``cache_key() -> dict`` and ``load(data_dir) -> RecordSet``; the records
are cached as one ``.npz`` (:class:`~.cache.RecordCache`). The published-data sources
(:class:`~.base.CachedSource`) look raw files up under ``data_dir`` (never downloaded) and cache
the processed records as ``data_dir/processed/<name>-<hash>.npz``; the toy sets are generated.

Sources, their YAML configs and the paper tables they serve:

* :class:`~.jarvis.JarvisEDOS` — ``jarvis_edos`` — ALIGNN-DOS (Table 1, Figs. 4–7).
* :class:`~.jarvis.JarvisLeaderboardPhDOS` — ``jarvis_phdos`` — the JARVIS-Leaderboard phonon-DOS
  benchmark (its file is read by :mod:`~.jarvis_leaderboard`).
* :class:`~.materials_project.Mat2SpecEDOS` — ``mp_edos_128`` — Mat2Spec Table 2, Xtal2DoS
  Tables 2 and 4.
* :class:`~.materials_project.MPDosDocuments` — ``mp_edos_201`` (DOSTransformer Tables 1, 5) and
  ``mp_edos_128_from_dos`` (the Mat2Spec recipe rebuilt from MP documents).
* :class:`~.phonon.PhononE3NN` — ``phonon_e3nn`` — Mat2Spec Table 1, Xtal2DoS Tables 1 and 3.
* :class:`~.phonon.PhononTUT` — ``phonon_tut`` — DOSTransformer Table 1 (phonon columns).
* :class:`~.toy.ToyEDOS`, :class:`~.toy.ToyPhDOS` — ``toy_edos``, ``toy_phdos`` — the bundled
  physical toy sets.

The shared pieces, by concern: :mod:`~.cache` (the record cache), :mod:`~.base` (source base
classes), :mod:`~.readers` (raw files, spectra), :mod:`~.structures` (structure formats and
metadata), :mod:`~.literals` (safe literal parser), :mod:`~.pickles` (restricted unpickling).
"""

from dos_bench.data.sources.base import CachedSource
from dos_bench.data.sources.jarvis import JarvisEDOS, JarvisLeaderboardPhDOS
from dos_bench.data.sources.literals import parse_literal
from dos_bench.data.sources.materials_project import Mat2SpecEDOS, MPDosDocuments
from dos_bench.data.sources.phonon import PhononE3NN, PhononTUT
from dos_bench.data.sources.pickles import load_index_pickle, restricted_pickle_load
from dos_bench.data.sources.readers import load_index_txt
from dos_bench.data.sources.toy import ToyEDOS, ToyPhDOS

__all__ = [
    "CachedSource",
    "JarvisEDOS",
    "JarvisLeaderboardPhDOS",
    "Mat2SpecEDOS",
    "MPDosDocuments",
    "PhononE3NN",
    "PhononTUT",
    "ToyEDOS",
    "ToyPhDOS",
    "load_index_pickle",
    "load_index_txt",
    "parse_literal",
    "restricted_pickle_load",
]
