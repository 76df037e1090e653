"""Miniature, layout-exact copies of the published data archives, and a loopback server.

Each ``write_*`` function writes one published archive, in the member names and file formats of
the real one, for a few dozen small synthetic crystals, and returns an :class:`Archive` (written
paths, ids, counts, index splits, per-material metadata). :class:`FakeMPRester` stands in for the
Materials Project client and :class:`ArchiveServer` serves the files (and a fake InvenioRDM
record API) from ``127.0.0.1``, so ``dos-data download <dataset>`` can be rehearsed end to end.

The formats follow (docs/papers/alignn_dos.md §1.1, docs/papers/dostransformer.md §2.1, §2.2,
docs/papers/xtal2dos.md §3.1, docs/papers/mat2spec.md §4.1, docs/data/phonon_sources.md §5) and the
published split files
(zhantaochen/phonondos_e3nn ``models/200801_trteva_indices.pkl``, ninarina12/phononDoS_tutorial
``data/idx_*.txt``, ``data/data_alloy.csv`` for the CSV columns):

* **JARVIS figshare ``edos_pdos``** (file 29216859, :func:`write_jarvis_figshare`): a zip holding
  ``edos-up_pdos-elast_interp-8-18-2021.json``, a JSON list of ``{jid, atoms, edos_up,
  pdos_elast}``; ``atoms`` is a JARVIS ``Atoms`` dict (``lattice_mat``, ``coords``,
  ``elements``, ``abc``, ``angles``, ``cartesian``, ``props``); ``edos_up`` 300 floats on
  −5 … 9.95 eV (0.05 eV, E_F = 0), already divided by the valence-electron count (so in
  [0, ~0.36] and ∫_{−5}^{0} ≈ 0.1–0.5, as in ALIGNN's sample), or ``"na"``; ``pdos_elast`` 200
  floats on 0 … 995 cm⁻¹ (5 cm⁻¹) or ``"na"`` (its normalisation is not documented; here max 1).
* **Mat2Spec data record** (data.caltech.edu record 8975, :func:`write_mat2spec_record`):
  ``Mat2Spec_DATA.zip`` with ``Mat2Spec_DATA/atom_init.json``, ``label_edos/mpids.csv``,
  ``label_edos/total_dos_128.npy`` (N×128 states/eV, gap removed), ``materials_with_edos/
  dos_<mpid>.json`` (key ``structure``), ``phdos/mpids.csv``, ``phdos/ph_dos.npy`` (M×51, row max
  exactly 1), ``phdos/ph_structures.pkl`` (list of pymatgen Structures, same order),
  ``phdos/200801_trteva_indices.pkl`` (list of three int64 arrays train, valid, test; disjoint,
  covering every row, unsorted like the published one).

  *Zip layout*: the Mat2Spec README (gomes-lab/Mat2Spec, ``README.md``) only says "Datasets for
  this work are avaiable at https://data.caltech.edu/records/8975. Please download the data folder
  and unzip it under the main folder 'Mat2Spec'", and the code reads ``../Mat2Spec_DATA/...``
  from ``Mat2Spec_Codes/`` (``train_Mat2Spec.py``, ``Mat2Spec/data.py``). That a folder is
  unzipped into the main folder suggests the zip holds the top-level ``Mat2Spec_DATA/`` folder,
  but the README does not state the member names: writing ``Mat2Spec_DATA/`` inside the zip is
  an **assumption** (it is what the configs expect: ``<data_dir>/Mat2Spec_DATA/...`` after
  unzipping next to the zip).

  *mpids.csv*: the authors read it with ``pandas.read_csv`` (default ``header=0``) and use
  ``len(pd_data)`` rows next to the ``.npy`` rows (``train_Mat2Spec.py``), so the file has a header
  line; its text is not known, ``0`` (what pandas writes for an unnamed column) is used here.

  *atom_init.json*: the CGCNN element embedding (Mat2Spec README, "Initial element embeddings":
  Xie & Grossman's CGCNN), read by ``AtomCustomJSONInitializer`` in ``Mat2Spec/data.py`` as a JSON
  object from atomic-number strings to vectors (the code's comment says 100 keys). Copies of the
  CGCNN file in public repositories (e.g. neelr/clamp ``atom_init.json``) map ``"1"`` … ``"100"``
  to **92**-long lists of integers 0/1. The vectors written here have that shape (segment
  one-hots of pymatgen element properties), not CGCNN's values.
* **Phonon tutorial** (ninarina12/phononDoS_tutorial ``data/``, :func:`write_phonon_tutorial`):
  ``data.csv`` with columns ``mp_id, structure, phfreq, phdos, pdos, formula, species``
  (``structure`` = the ``repr`` of an ASE ``Atoms.todict()`` dict, numpy arrays as
  ``array(...)``; ``phfreq`` 0 … 1000 cm⁻¹ step 20; ``phdos`` 51 values, max 1) and
  ``idx_{train,valid,test}.txt`` (one row index per line, unsorted, disjoint, covering all rows).
* **JARVIS-Leaderboard phonon DOS benchmark** (:func:`write_jarvis_leaderboard_phdos`):
  ``edos_pdos_ph_dos.json.zip`` holding ``edos_pdos_ph_dos.json`` =
  ``{"train": {jid: "v1;...;v66"}, "val": {...}, "test": {...}}``, 66 values per spectrum in
  [0, 1] with max 1, jids of the miniature JARVIS file (those with both ``edos_up`` and
  ``pdos_elast``), split ~70/15/15. The file has no frequency grid (docs/data/phonon_sources.md
  §5.3); the values are the
  record's synthetic phonon curve sampled on −300 … 1000 cm⁻¹ in 20 cm⁻¹ steps, the grid that
  ``conf/dataset/jarvis_phdos.yaml`` adopts (0 below 0 cm⁻¹).
* **Materials Project** (:class:`FakeMPRester`): the calls of
  ``dos_bench/data/download/materials_project.py``
  (``materials.summary.search``, ``get_dos_by_material_id``, ``get_database_version``) answered
  from ``tests/data/fixtures.py::mp_dos_document`` documents.

Structures: every miniature draws small cells (≤ 8 atoms, nearest-neighbour distance ≥ 1.8 Å)
from decorated AFLOW prototypes (:func:`dos_bench.data.sources.toy.make_toy_structure`), picked
round-robin over the number of species (1–5) and the seven crystal systems (pymatgen
``SpacegroupAnalyzer(symprec=0.1)``), so DOSTransformer's out-of-distribution splits (train on
binary + ternary / on cubic … orthorhombic; evaluate on unary, quaternary, quinary / on monoclinic,
triclinic) have members in every group. Everything is deterministic (fixed seeds, fixed zip
timestamps): writing an archive twice gives identical bytes.

Import it like ``tests/data/fixtures.py`` is imported (``importlib.util.spec_from_file_location``),
or as ``tests.archives`` when the repository root is on ``sys.path``.
"""

from __future__ import annotations

import csv
import hashlib
import html
import importlib.util
import io
import json
import pickle
import sys
import threading
import types
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import numpy as np
from pymatgen.core import Element, Structure

from dos_bench.data.sources.toy import CRYSTAL_SYSTEMS, StructureParams, make_toy_structure


def _load_fixtures() -> types.ModuleType:
    """``tests/data/fixtures.py``, loaded the way the data tests load it."""
    name = "dos_archives_fixtures"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).with_name("data") / "fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


F = _load_fixtures()

__all__ = [
    "Archive",
    "ArchiveServer",
    "atom_init_vectors",
    "DATASET_URL_PATHS",
    "EVAL_SPECIES",
    "EVAL_SYSTEMS",
    "FakeMPRester",
    "JARVIS_FIGSHARE_PATH",
    "JARVIS_JSON",
    "JARVIS_ZIP",
    "LEADERBOARD_JSON",
    "LEADERBOARD_PATH",
    "LEADERBOARD_ZIP",
    "MAT2SPEC_RECORD_ID",
    "MAT2SPEC_RECORD_PATH",
    "MAT2SPEC_ZIP",
    "MiniStructure",
    "TUT_PATHS",
    "group_counts",
    "min_distance",
    "miniature_structures",
    "serve_archives",
    "write_all",
    "write_atom_init",
    "write_jarvis_figshare",
    "write_jarvis_leaderboard_phdos",
    "write_mat2spec_record",
    "write_phonon_tutorial",
]

# ----------------------------------------------------------------------------- published names
JARVIS_JSON = "edos-up_pdos-elast_interp-8-18-2021.json"
JARVIS_ZIP = JARVIS_JSON + ".zip"
MAT2SPEC_ZIP = "Mat2Spec_DATA.zip"
MAT2SPEC_DIR = "Mat2Spec_DATA"
MAT2SPEC_RECORD_ID = "8975"
E3NN_INDEX_PICKLE = "200801_trteva_indices.pkl"
TUT_FILES = ("data.csv", "idx_train.txt", "idx_valid.txt", "idx_test.txt")
TUT_COLUMNS = ("mp_id", "structure", "phfreq", "phdos", "pdos", "formula", "species")
LEADERBOARD_JSON = "edos_pdos_ph_dos.json"
LEADERBOARD_ZIP = LEADERBOARD_JSON + ".zip"

#: URL paths that mirror the published URLs (served by :func:`serve_archives`)
JARVIS_FIGSHARE_PATH = "/files/29216859"
TUT_COMMIT = "39baaac815d414ffebff9695c6dcf62270526cb2"
TUT_PATHS = {name: f"/ninarina12/phononDoS_tutorial/{TUT_COMMIT}/data/{name}" for name in TUT_FILES}
LEADERBOARD_COMMIT = "4f1356e3304d64d28217161b870af68668653911"  # as pinned in jarvis_phdos.yaml
LEADERBOARD_PATH = (
    f"/usnistgov/jarvis_leaderboard/{LEADERBOARD_COMMIT}/jarvis_leaderboard/benchmarks/AI/Spectra/"
    + LEADERBOARD_ZIP
)
MAT2SPEC_RECORD_PATH = f"/api/records/{MAT2SPEC_RECORD_ID}"
#: the URL path of each ``download`` entry of a dataset config, in config order (Mat2Spec: the
#: InvenioRDM record API URL; its ``files.entries`` give the content link)
DATASET_URL_PATHS: dict[str, list[str]] = {
    "jarvis_edos": [JARVIS_FIGSHARE_PATH],
    "mp_edos_128": [MAT2SPEC_RECORD_PATH],
    "phonon_e3nn": [MAT2SPEC_RECORD_PATH],
    "phonon_tut": [TUT_PATHS[n] for n in TUT_FILES],
    "jarvis_phdos": [JARVIS_FIGSHARE_PATH, LEADERBOARD_PATH],
}

JARVIS_EDOS_GRID = -5.0 + 0.05 * np.arange(300)  # eV, E_F = 0 (docs/papers/alignn_dos.md §1.1)
JARVIS_PDOS_GRID = 5.0 * np.arange(200)  # cm^-1, np.arange(0, 1000, 5)
PH_GRID = F.PH_GRID  # 0 ... 1000 cm^-1, step 20 (51 points)
EDOS128_CENTRES = -4.0 + 0.0625 * (np.arange(128) + 0.5)  # eV from the band edges, gap removed
#: the benchmark's 66-point grid (cm^-1) as adopted by dataset=jarvis_phdos: -300 ... 1000, step 20
LEADERBOARD_GRID = -300.0 + 20.0 * np.arange(66)

#: DOSTransformer's evaluation groups of its two OOD scenarios (docs/papers/dostransformer.md §2.3)
EVAL_SPECIES = (1, 4, 5)
EVAL_SYSTEMS = ("monoclinic", "triclinic")

MIN_DISTANCE = 1.8  # Å
MAX_ATOMS = 8
POOL_SEED = 2024
POOL_SIZE = 480
_ZIP_DATE = (2021, 8, 18, 0, 0, 0)


# ============================================================================ structures
@dataclass(frozen=True)
class MiniStructure:
    """One miniature crystal and its descriptive metadata."""

    structure: Structure
    formula: str
    n_species: int
    crystal_system: str
    prototype: str

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "formula": self.formula,
            "n_species": self.n_species,
            "n_atoms": len(self.structure),
            "crystal_system": self.crystal_system,
            "prototype": self.prototype,
        }


def min_distance(s: Structure) -> float:
    """Shortest interatomic distance, periodic images included (Å)."""
    _, _, _, d = s.get_neighbor_list(6.0, exclude_self=True)
    return float(np.min(d)) if len(d) else float("inf")


@lru_cache(maxsize=1)
def _pool() -> tuple[MiniStructure, ...]:
    """Candidate crystals: decorated prototypes with ≤ 8 atoms and distances ≥ 1.8 Å."""
    params = StructureParams(
        seed=POOL_SEED, max_atoms=MAX_ATOMS, species_weights=(0.2, 0.2, 0.2, 0.2, 0.2)
    )
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(POOL_SIZE):
            t = make_toy_structure(params, i)
            s = t.to_pymatgen()
            if len(s) > MAX_ATOMS or min_distance(s) < MIN_DISTANCE:
                continue
            if any(el.Z > 100 for el in s.composition.elements):
                continue
            out.append(MiniStructure(s, t.formula, t.n_species, t.crystal_system, t.prototype))
    return tuple(out)


def miniature_structures(n: int, salt: int) -> list[MiniStructure]:
    """``n`` distinct crystals, round-robin over 1–5 species × the seven crystal systems.

    The k-th pick wants ``1 + k % 5`` species and crystal system ``k % 7`` (5 and 7 are coprime,
    so the first 35 picks visit every combination); an empty combination falls back to another
    species count in the same crystal system. ``salt`` shuffles the candidate order, so
    different archives get different crystals; the result is deterministic in ``(n, salt)``.
    """
    pool = _pool()
    order = np.random.default_rng(salt).permutation(len(pool))
    cells: dict[tuple[int, str], list[int]] = {}
    for j in order:
        m = pool[int(j)]
        cells.setdefault((m.n_species, m.crystal_system), []).append(int(j))
    systems = tuple(reversed(CRYSTAL_SYSTEMS))  # cubic first
    used: set[int] = set()
    seen: set[tuple[str, str]] = set()
    picked: list[MiniStructure] = []

    def take(ns: int, cs: str) -> bool:
        for j in cells.get((ns, cs), []):
            key = (pool[j].formula, pool[j].prototype)
            if j not in used and key not in seen:
                used.add(j)
                seen.add(key)
                # a fresh object: pymatgen caches lattice data on use, which would leak into
                # pickles (ph_structures.pkl) and make the bytes depend on earlier calls
                fresh = Structure.from_dict(pool[j].structure.as_dict())
                picked.append(replace(pool[j], structure=fresh))
                return True
        return False

    for k in range(n):
        ns, cs = 1 + k % 5, systems[k % 7]
        if take(ns, cs):
            continue
        if any(take(alt, cs) for alt in sorted(range(1, 6), key=lambda a: (abs(a - ns), a))):
            continue
        if not any(take(ns, other) for other in systems):
            raise RuntimeError(f"the structure pool ran out after {len(picked)} crystals")
    return picked


# ============================================================================ archive record
@dataclass
class Archive:
    """What a writer produced.

    Attributes:
        path: the file a download fetches (a zip, or ``data.csv`` for the tutorial).
        files: every written file, by its published name.
        ids: material ids by part (``"all"`` always; others per archive).
        counts: sizes a test can check.
        splits: published index splits (``train``, ``valid``/``val``, ``test``) when the archive
            has them: row indices (arrays) or ids (lists).
        meta: per material id, ``formula``, ``n_species``, ``n_atoms``, ``crystal_system``,
            ``prototype``.
    """

    path: Path
    files: dict[str, Path]
    ids: dict[str, list[str]]
    counts: dict[str, int]
    splits: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)


def _zip_write(path: Path, members: Iterable[tuple[str, bytes | None]]) -> None:
    """A deflated zip with fixed timestamps (``None`` content = a directory entry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            if data is None:
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"")
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o100644 << 16
                zf.writestr(info, data)


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _gauss(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sigma) ** 2)


def _split_indices(n: int, fractions: tuple[float, float], seed: int) -> list[np.ndarray]:
    """Shuffled row indices cut into train / valid / test (int64, unsorted, as published)."""
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    n_va = max(1, round(fractions[0] * n))
    n_te = max(1, round(fractions[1] * n))
    n_tr = n - n_va - n_te
    return [perm[:n_tr], perm[n_tr : n_tr + n_va], perm[n_tr + n_va :]]


# ============================================================================ spectra
def _jarvis_edos(rng: np.random.Generator) -> np.ndarray:
    """Valence-normalised spin-up eDOS on −5 … 9.95 eV: a valence band, a gap or not, a CB."""
    e = JARVIS_EDOS_GRID
    gap = float(rng.choice([0.0, rng.uniform(0.4, 3.0)]))
    vb = sum(
        rng.uniform(0.3, 1.0) * _gauss(e, rng.uniform(-4.5, -0.8), rng.uniform(0.5, 1.4))
        for _ in range(2)
    )
    cb = sum(
        rng.uniform(0.3, 1.0) * _gauss(e, gap + rng.uniform(0.8, 6.0), rng.uniform(0.6, 1.8))
        for _ in range(2)
    )
    vb = vb * (e <= 0.0)
    cb = cb * (e >= gap)
    if gap == 0.0:  # a metal: smooth states through E_F
        y = vb + cb + 0.15 * _gauss(e, 0.0, 2.0)
    else:
        y = vb + cb
    occ = float(np.sum(y[e <= 0.0]) * 0.05)  # ∫_{-5}^{0}: 0.1-0.5 for the published data
    y = y * rng.uniform(0.12, 0.45) / max(occ, 1e-12)
    peak = float(y.max())
    if peak > 0.36:
        y = y * 0.36 / peak
    return np.round(y, 8)


def _phonon_curve(freq: np.ndarray, rng: np.random.Generator, w_max: float) -> np.ndarray:
    """A max-normalised phonon DOS: Debye ω² acoustic part and optical peaks below ``w_max``."""
    acoustic = (freq / (0.45 * w_max)) ** 2 * (freq <= 0.45 * w_max)
    y = 0.8 * acoustic + 0.2 * _gauss(freq, 0.42 * w_max, 0.06 * w_max)
    for _ in range(int(rng.integers(1, 4))):
        y = y + rng.uniform(0.3, 1.0) * _gauss(
            freq, rng.uniform(0.55, 0.95) * w_max, rng.uniform(0.03, 0.08) * w_max
        )
    y = np.where(freq <= w_max, y, 0.0)
    y[0] = 0.0
    return y / y.max()


def _phonon_w_max(s: Structure, rng: np.random.Generator) -> float:
    """Highest frequency (cm⁻¹): lighter crystals vibrate faster; inside the 0 … 1000 window."""
    mass = float(np.mean([site.specie.atomic_mass for site in s]))
    return float(np.clip(2200.0 / np.sqrt(mass) * rng.uniform(0.85, 1.15), 160.0, 960.0))


def _edos128(s: Structure, rng: np.random.Generator) -> np.ndarray:
    """Mat2Spec-style 128-bin total DOS (states/eV per cell): VB bins 0–63, CB bins 64–127."""
    x = EDOS128_CENTRES
    scale = len(s) * rng.uniform(0.8, 2.0)
    vb = np.sqrt(np.clip(-x, 0, None)) * 0.6 + sum(
        rng.uniform(0.5, 2.0) * _gauss(x, rng.uniform(-3.8, -0.6), rng.uniform(0.3, 0.9))
        for _ in range(2)
    )
    cb = np.sqrt(np.clip(x, 0, None)) * 0.5 + rng.uniform(0.5, 2.0) * _gauss(
        x, rng.uniform(0.8, 3.5), rng.uniform(0.4, 1.0)
    )
    y = np.where(x < 0, vb, cb) * scale
    return np.round(y, 6)


# ============================================================================ 1. JARVIS figshare
@lru_cache(maxsize=4)
def _jarvis_records(n: int) -> tuple[tuple[dict[str, Any], ...], dict[str, MiniStructure]]:
    """The JSON records (deterministic in ``n``) and the crystal of each jid."""
    minis = miniature_structures(n, salt=1)
    rng = np.random.default_rng(101)
    records, by_id = [], {}
    for i, m in enumerate(minis):
        jid = f"JVASP-{10000 + 7 * i}"
        edos = _jarvis_edos(rng)
        pdos = _phonon_curve(JARVIS_PDOS_GRID, rng, _phonon_w_max(m.structure, rng))
        records.append(
            {
                "jid": jid,
                "atoms": F.jarvis_atoms(m.structure),
                "edos_up": "na" if i % 13 == 5 else edos.tolist(),
                "pdos_elast": "na" if i % 7 == 3 else np.round(pdos, 8).tolist(),
            }
        )
        by_id[jid] = m
    return tuple(records), by_id


def write_jarvis_figshare(target_dir: str | Path, n: int = 40) -> Archive:
    """``<target_dir>/edos-up_pdos-elast_interp-8-18-2021.json.zip`` (figshare file 29216859).

    A few records have ``edos_up == "na"`` and a few ``pdos_elast == "na"``.
    ``ids``: ``all``, ``edos`` (edos_up present), ``pdos`` (pdos_elast present), ``both``.
    """
    records, by_id = _jarvis_records(n)
    path = Path(target_dir) / JARVIS_ZIP
    _zip_write(path, [(JARVIS_JSON, json.dumps(list(records)).encode())])
    ids = {
        "all": [r["jid"] for r in records],
        "edos": [r["jid"] for r in records if r["edos_up"] != "na"],
        "pdos": [r["jid"] for r in records if r["pdos_elast"] != "na"],
    }
    ids["both"] = [j for j in ids["edos"] if j in set(ids["pdos"])]
    counts = {
        "records": len(records),
        "edos": len(ids["edos"]),
        "edos_na": len(records) - len(ids["edos"]),
        "pdos": len(ids["pdos"]),
        "pdos_na": len(records) - len(ids["pdos"]),
    }
    meta = {jid: m.meta for jid, m in by_id.items()}
    return Archive(path, {JARVIS_ZIP: path}, ids, counts, meta=meta)


# ============================================================================ 4. leaderboard
def write_jarvis_leaderboard_phdos(target_dir: str | Path, n_jarvis: int = 40) -> Archive:
    """``<target_dir>/edos_pdos_ph_dos.json.zip`` over the jids of the ``n_jarvis`` JARVIS file.

    The spectra are the JARVIS record's ``pdos_elast`` curve sampled on :data:`LEADERBOARD_GRID`
    (0 at negative frequencies) and max-normalised; ``splits`` maps ``train``/``val``/``test``
    to jid lists (~70/15/15).
    """
    records, by_id = _jarvis_records(n_jarvis)
    usable = [r for r in records if r["edos_up"] != "na" and r["pdos_elast"] != "na"]
    perm = np.random.default_rng(66).permutation(len(usable))
    n_val = round(0.15 * len(usable))
    n_test = round(0.15 * len(usable))
    n_train = len(usable) - n_val - n_test
    parts = {
        "train": perm[:n_train],
        "val": perm[n_train : n_train + n_val],
        "test": perm[n_train + n_val :],
    }
    doc: dict[str, dict[str, str]] = {}
    for part, idx in parts.items():
        doc[part] = {}
        for j in idx:
            r = usable[int(j)]
            pdos = np.asarray(r["pdos_elast"], dtype=float)
            y = np.interp(LEADERBOARD_GRID, JARVIS_PDOS_GRID, pdos, left=0.0, right=0.0)
            y = np.clip(y, 0.0, None)
            y = y / y.max()
            doc[part][r["jid"]] = ";".join(repr(float(v)) for v in y)
    path = Path(target_dir) / LEADERBOARD_ZIP
    _zip_write(path, [(LEADERBOARD_JSON, json.dumps(doc).encode())])
    splits = {part: list(d) for part, d in doc.items()}
    ids = {"all": [j for part in ("train", "val", "test") for j in splits[part]], **splits}
    counts = {part: len(v) for part, v in splits.items()}
    meta = {j: by_id[j].meta for j in ids["all"]}
    return Archive(path, {LEADERBOARD_ZIP: path}, ids, counts, splits=splits, meta=meta)


# ============================================================================ 2. Mat2Spec record
def _onehot(value: float | None, edges: np.ndarray) -> list[int]:
    out = [0] * (len(edges) + 1)
    if value is not None and np.isfinite(value):
        out[int(np.searchsorted(edges, value))] = 1
    return out


def _category(index: int | None, size: int) -> list[int]:
    out = [0] * size
    if index is not None and 0 <= index < size:
        out[index] = 1
    return out


def atom_init_vectors() -> dict[str, list[int]]:
    """``"1"`` … ``"100"`` → a 92-long 0/1 list (one-hots of pymatgen element properties).

    Segments: group 18, period 9, block 4, electronegativity 10, atomic radius 10,
    ``(Z - 1) mod 12`` 12, first ionisation energy 10, atomic mass 10, molar volume 9.
    """
    blocks = {"s": 0, "p": 1, "d": 2, "f": 3}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, 101):
            el = Element.from_Z(z)

            def num(getter, el=el) -> float | None:
                try:
                    v = getter(el)
                    return None if v is None else float(v)
                except Exception:
                    return None

            ie = num(lambda e: e.ionization_energies[0] if e.ionization_energies else None)
            vec = (
                _category(el.group - 1, 18)
                + _category(el.row - 1, 9)
                + _category(blocks.get(el.block), 4)
                + _onehot(num(lambda e: e.X), np.linspace(0.8, 3.6, 9))
                + _onehot(num(lambda e: e.atomic_radius), np.linspace(0.4, 2.4, 9))
                + _category((z - 1) % 12, 12)
                + _onehot(ie, np.linspace(4.0, 22.0, 9))
                + _onehot(num(lambda e: e.atomic_mass), np.linspace(10, 250, 9))
                + _onehot(num(lambda e: e.molar_volume), np.linspace(5, 40, 8))
            )
            assert len(vec) == 92, (z, len(vec))
            out[str(z)] = vec
    return out


def write_atom_init(path: str | Path) -> Path:
    """The CGCNN-shaped ``atom_init.json`` (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(atom_init_vectors()))
    return path


def _mpids_csv(ids: list[str]) -> bytes:
    return ("0\n" + "".join(f"{m}\n" for m in ids)).encode()


def write_mat2spec_record(target_dir: str | Path, n_edos: int = 40, n_phonon: int = 30) -> Archive:
    """``<target_dir>/Mat2Spec_DATA.zip`` (data.caltech.edu record 8975).

    ``ids``: ``edos`` (label_edos/mpids.csv order), ``phdos`` (phdos/mpids.csv order), ``all``.
    ``splits``: ``train``/``valid``/``test`` row-index arrays of the phonon index pickle.
    """
    d = MAT2SPEC_DIR
    e_minis = miniature_structures(n_edos, salt=2)
    p_minis = miniature_structures(n_phonon, salt=3)
    rng = np.random.default_rng(202)
    e_ids = [f"mp-{20000 + 11 * i}" for i in range(n_edos)]
    p_ids = [f"mp-{30000 + 13 * i}" for i in range(n_phonon)]
    edos = np.stack([_edos128(m.structure, rng) for m in e_minis]).astype(np.float64)
    phdos = np.stack(
        [_phonon_curve(PH_GRID, rng, _phonon_w_max(m.structure, rng)) for m in p_minis]
    ).astype(np.float64)
    split = _split_indices(n_phonon, (0.1, 0.1), seed=801)

    members: list[tuple[str, bytes | None]] = [
        (f"{d}/", None),
        (f"{d}/atom_init.json", json.dumps(atom_init_vectors()).encode()),
        (f"{d}/label_edos/", None),
        (f"{d}/label_edos/mpids.csv", _mpids_csv(e_ids)),
        (f"{d}/label_edos/total_dos_128.npy", _npy_bytes(edos)),
        (f"{d}/materials_with_edos/", None),
    ]
    for mid, m in zip(e_ids, e_minis, strict=True):
        doc = {"structure": m.structure.as_dict()}
        members.append((f"{d}/materials_with_edos/dos_{mid}.json", json.dumps(doc).encode()))
    members += [
        (f"{d}/phdos/", None),
        (f"{d}/phdos/mpids.csv", _mpids_csv(p_ids)),
        (f"{d}/phdos/ph_dos.npy", _npy_bytes(phdos)),
        (f"{d}/phdos/ph_structures.pkl", pickle.dumps([m.structure for m in p_minis])),
        (f"{d}/phdos/{E3NN_INDEX_PICKLE}", pickle.dumps(split)),
    ]
    path = Path(target_dir) / MAT2SPEC_ZIP
    _zip_write(path, members)
    meta = {i: m.meta for i, m in zip(e_ids, e_minis, strict=True)}
    meta.update({i: m.meta for i, m in zip(p_ids, p_minis, strict=True)})
    return Archive(
        path,
        {MAT2SPEC_ZIP: path},
        {"edos": e_ids, "phdos": p_ids, "all": e_ids + p_ids},
        {
            "edos": n_edos,
            "phdos": n_phonon,
            "train": len(split[0]),
            "valid": len(split[1]),
            "test": len(split[2]),
        },
        splits={"train": split[0], "valid": split[1], "test": split[2]},
        meta=meta,
    )


# ============================================================================ 3. tutorial CSV
def write_phonon_tutorial(target_dir: str | Path, n: int = 30) -> Archive:
    """``data.csv`` and ``idx_{train,valid,test}.txt`` of the phonon tutorial in ``target_dir``.

    ``splits``: ``train``/``valid``/``test`` row-index arrays (the txt files' content).
    """
    target = Path(target_dir)
    target.mkdir(parents=True, exist_ok=True)
    minis = miniature_structures(n, salt=4)
    rng = np.random.default_rng(303)
    ids = [f"mp-{40000 + 17 * i}" for i in range(n)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TUT_COLUMNS)
    for mid, m in zip(ids, minis, strict=True):
        s = m.structure
        y = _phonon_curve(PH_GRID, rng, _phonon_w_max(s, rng))
        species = [el.symbol for el in s.composition.elements]
        frac = {el.symbol: s.composition.get_atomic_fraction(el) for el in s.composition.elements}
        pdos = "{" + ", ".join(f"{e!r}: {np.round(y * frac[e], 6)!r}" for e in species) + "}"
        w.writerow(
            [
                mid,
                F.ase_dict_repr(s),
                str(PH_GRID.tolist()),
                str(y.tolist()),
                pdos,
                s.composition.formula.replace(" ", ""),
                str(species),
            ]
        )
    files = {"data.csv": target / "data.csv"}
    files["data.csv"].write_text(buf.getvalue(), encoding="utf-8")
    split = _split_indices(n, (0.1, 0.1), seed=12)
    for name, idx in zip(("train", "valid", "test"), split, strict=True):
        p = target / f"idx_{name}.txt"
        p.write_text("".join(f"{int(i)}\n" for i in idx))
        files[p.name] = p
    return Archive(
        files["data.csv"],
        files,
        {"all": ids},
        {"rows": n, "train": len(split[0]), "valid": len(split[1]), "test": len(split[2])},
        splits={"train": split[0], "valid": split[1], "test": split[2]},
        meta={i: m.meta for i, m in zip(ids, minis, strict=True)},
    )


# ============================================================================ 5. Materials Project
class _FakeSummary:
    """``MPRester().materials.summary``: ``search(**query)`` over the miniature documents."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.queries: list[dict[str, Any]] = []

    def search(self, **query: Any) -> list[dict[str, Any]]:
        self.queries.append(query)
        docs = self.docs
        if query.get("is_magnetic") is not None:
            docs = [d for d in docs if d["is_magnetic"] == query["is_magnetic"]]
        if query.get("has_props") and "dos" in query["has_props"]:
            docs = [d for d in docs if d["has_dos"]]
        ids = query.get("material_ids")
        if ids:
            docs = [d for d in docs if d["material_id"] in set(ids)]
        fields = query.get("fields")
        keep = fields if fields else [k for k in docs[0] if k != "has_dos"] if docs else []
        return [{k: d.get(k) for k in keep} for d in docs]


class FakeMPRester:
    """The slice of ``mp_api.client.MPRester`` that the Materials Project builder uses
    (``dos_bench/data/download/materials_project.py``).

    Serves ``n`` non-magnetic documents (insulators with a 1.5 eV gap, metals, and spin-polarised
    calculations with identical channels, cycling; ``tests/data/fixtures.py::mp_dos_document``)
    plus ``n_magnetic`` magnetic ones that a ``is_magnetic=False`` search leaves out. The
    crystals cover 1–5 species and the seven crystal systems (``MiniStructure.meta`` in
    :attr:`meta`). Use as a context manager, like the real client; any extra constructor
    arguments (``endpoint``, ``use_document_model``, ...) are accepted and ignored.

    Attributes:
        api_key: the key it was given.
        dos_calls: material ids passed to ``get_dos_by_material_id``, in order.
        instances: every instance created (class attribute), for tests that pass the class.
    """

    instances: list[FakeMPRester] = []
    DATABASE_VERSION = "2021.03.22"
    KINDS = ("insulator", "metal", "polarised_nm")

    def __init__(
        self,
        api_key: str | None = None,
        endpoint: str | None = None,
        *args: Any,
        n: int = 40,
        n_magnetic: int = 3,
        fail: Iterable[str] = (),
        dos_missing: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        self.api_key, self.endpoint = api_key, endpoint
        self.fail, self.dos_missing = set(fail), set(dos_missing)
        self.dos_calls: list[str] = []
        self.closed = False
        minis = miniature_structures(n + n_magnetic, salt=5)
        self.by_id: dict[str, Any] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.kinds: dict[str, str] = {}
        docs = []
        for i, m in enumerate(minis):
            kind = "magnetic" if i >= n else self.KINDS[i % len(self.KINDS)]
            mid = f"mp-{50000 + 19 * i}"
            self.kinds[mid] = kind
            self.meta[mid] = m.meta
            # Fermi levels differ between materials, as in the MP data (the DOSTransformer
            # Fermi-energy probe is fitted to them and skipped when they are constant)
            ef = F.EF_ABS + 0.35 * ((7 * i) % 11) - 1.75
            self.by_id[mid] = F.mp_dos_document(m.structure, kind, ef)
            insulator = kind == "insulator"
            docs.append(
                {
                    "material_id": mid,
                    "structure": m.structure,
                    "formula_pretty": m.formula,
                    "nsites": len(m.structure),
                    "nelements": m.n_species,
                    "is_magnetic": kind == "magnetic",
                    "ordering": "FM" if kind == "magnetic" else "NM",
                    "band_gap": 1.5 if insulator else 0.0,
                    "vbm": ef if insulator else None,
                    "cbm": ef + 1.5 if insulator else None,
                    "efermi": ef,
                    "has_dos": True,
                }
            )
        self.docs = docs
        self.materials = types.SimpleNamespace(summary=_FakeSummary(docs))
        FakeMPRester.instances.append(self)

    @property
    def non_magnetic_ids(self) -> list[str]:
        return [d["material_id"] for d in self.docs if not d["is_magnetic"]]

    def get_dos_by_material_id(self, material_id: str) -> Any:
        self.dos_calls.append(material_id)
        if material_id in self.fail:
            raise RuntimeError(f"HTTP 502 from the DOS store for {material_id}")
        if material_id in self.dos_missing:
            return None
        return self.by_id[material_id]

    def get_database_version(self) -> str:
        return self.DATABASE_VERSION

    def __enter__(self) -> FakeMPRester:
        return self

    def __exit__(self, *exc: Any) -> bool:
        self.closed = True
        return False


# ============================================================================ 6. loopback server
_CONTENT_TYPES = {
    ".zip": "application/zip",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".json": "application/json",
    ".html": "text/html",
}


def _content_type(name: str) -> str:
    return _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


@dataclass
class _Route:
    data: bytes
    content_type: str


class ArchiveServer:
    """Serve files and bytes from ``http://127.0.0.1:<port>`` (a ``ThreadingHTTPServer``).

    ``routes`` maps URL paths (``/files/29216859``) to a file path or bytes; the Content-Type
    follows the file name (``.zip`` → ``application/zip``, ``.csv`` → ``text/csv``, ``.txt`` →
    ``text/plain``, ``.json`` → ``application/json``; for a route without a suffix, the source
    file's name) unless given with :meth:`add`. Query strings are ignored. ``GET`` and ``HEAD``
    are answered; an unknown path is a 404. No ``Range`` support (the whole file, 200).

    :meth:`add_record` adds a fake InvenioRDM record: ``GET /api/records/<id>`` answers
    ``{"id", "files": {"enabled": true, "entries": {key: {key, size, checksum: "md5:<hex>",
    links: {content, self}}}}}``, ``/api/records/<id>/files`` the ``{"entries": [...]}``
    listing, ``/api/records/<id>/files/<key>/content`` the bytes and ``/records/<id>`` an HTML
    landing page.

    Attributes:
        requests: ``(method, path, headers)`` of every request, in order.
    """

    def __init__(self, routes: Mapping[str, str | Path | bytes] | None = None) -> None:
        self._routes: dict[str, _Route] = {}
        self._records: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for path, content in (routes or {}).items():
            self.add(path, content)

    # -- content -----------------------------------------------------------------------------
    def add(
        self, path: str, content: str | Path | bytes, content_type: str | None = None
    ) -> ArchiveServer:
        """Serve ``content`` (a file, read now, or bytes) at URL path ``path``."""
        path = "/" + path.lstrip("/")
        if isinstance(content, bytes):
            data, name = content, path
        else:
            data, name = Path(content).read_bytes(), str(content)
        if content_type is None:
            content_type = _content_type(path if Path(path).suffix else name)
        self._routes[path] = _Route(data, content_type)
        return self

    def add_record(self, record_id: str, files: Mapping[str, str | Path | bytes]) -> ArchiveServer:
        """A fake InvenioRDM record ``record_id`` holding ``files`` (key → file or bytes)."""
        self._records[str(record_id)] = {
            key: c if isinstance(c, bytes) else Path(c).read_bytes() for key, c in files.items()
        }
        return self

    def record_json(self, record_id: str) -> dict[str, Any]:
        """The record document served at ``/api/records/<record_id>``."""
        entries = {key: self._entry(record_id, key, data) for key, data in self._files(record_id)}
        return {
            "id": str(record_id),
            "metadata": {"title": f"miniature of record {record_id}"},
            "files": {"enabled": True, "entries": entries},
            "links": {"self": self.url(f"/api/records/{record_id}")},
        }

    def _files(self, record_id: str) -> list[tuple[str, bytes]]:
        return list(self._records[str(record_id)].items())

    def _entry(self, record_id: str, key: str, data: bytes) -> dict[str, Any]:
        base = f"/api/records/{record_id}/files/{quote(key)}"
        return {
            "key": key,
            "size": len(data),
            "checksum": "md5:" + hashlib.md5(data).hexdigest(),  # noqa: S324 - InvenioRDM's
            "mimetype": _content_type(key),
            "links": {"self": self.url(base), "content": self.url(base + "/content")},
        }

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running (use it as a context manager)")
        return int(self._httpd.server_address[1])

    def url(self, path: str = "/") -> str:
        """``http://127.0.0.1:<port><path>``."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> ArchiveServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                self._answer(send_body=True)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(send_body=False)

            def _answer(self, send_body: bool) -> None:
                path = unquote(urlsplit(self.path).path)
                with server._lock:
                    server.requests.append((self.command, path, dict(self.headers.items())))
                found = server._lookup(path)
                if found is None:
                    data, ctype, status = b"not found\n", "text/plain", 404
                else:
                    data, ctype = found
                    status = 200
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if send_body:
                    self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ArchiveServer:
        return self.start()

    def __exit__(self, *exc: Any) -> bool:
        self.stop()
        return False

    # -- routing -----------------------------------------------------------------------------
    def _lookup(self, path: str) -> tuple[bytes, str] | None:
        if path in self._routes:
            r = self._routes[path]
            return r.data, r.content_type
        parts = [p for p in path.split("/") if p]
        if len(parts) == 2 and parts[0] == "records" and parts[1] in self._records:
            rid = parts[1]
            page = (
                f"<!DOCTYPE html><html><head><title>Record {html.escape(rid)}</title></head>"
                f"<body><h1>Record {html.escape(rid)}</h1></body></html>"
            )
            return page.encode(), "text/html; charset=utf-8"
        if len(parts) < 3 or parts[:2] != ["api", "records"] or parts[2] not in self._records:
            return None
        rid, rest = parts[2], parts[3:]
        files = self._records[rid]
        if not rest:
            return json.dumps(self.record_json(rid)).encode(), "application/json"
        if rest == ["files"]:
            listing = {"entries": [self._entry(rid, k, d) for k, d in files.items()]}
            return json.dumps(listing).encode(), "application/json"
        if len(rest) >= 2 and rest[0] == "files":
            key = "/".join(rest[1:-1]) if rest[-1] == "content" else "/".join(rest[1:])
            if key in files:
                if rest[-1] == "content":
                    return files[key], _content_type(key)
                return json.dumps(self._entry(rid, key, files[key])).encode(), "application/json"
        return None


# ============================================================================ all at once
def write_all(target_dir: str | Path) -> dict[str, Archive]:
    """Every miniature under ``target_dir/<name>/``: keys ``jarvis``, ``mat2spec``,
    ``phonon_tut``, ``leaderboard``."""
    root = Path(target_dir)
    return {
        "jarvis": write_jarvis_figshare(root / "jarvis"),
        "mat2spec": write_mat2spec_record(root / "mat2spec"),
        "phonon_tut": write_phonon_tutorial(root / "phonon_tut"),
        "leaderboard": write_jarvis_leaderboard_phdos(root / "leaderboard"),
    }


def serve_archives(archives: Mapping[str, Archive]) -> ArchiveServer:
    """An (unstarted) :class:`ArchiveServer` with the archives of :func:`write_all` at the URL
    paths of :data:`DATASET_URL_PATHS` (Mat2Spec as record 8975)."""
    server = ArchiveServer()
    if "jarvis" in archives:
        server.add(JARVIS_FIGSHARE_PATH, archives["jarvis"].path, "application/zip")
    if "mat2spec" in archives:
        server.add_record(MAT2SPEC_RECORD_ID, {MAT2SPEC_ZIP: archives["mat2spec"].path})
    if "phonon_tut" in archives:
        for name in TUT_FILES:
            server.add(TUT_PATHS[name], archives["phonon_tut"].files[name])
    if "leaderboard" in archives:
        server.add(LEADERBOARD_PATH, archives["leaderboard"].path)
    return server


def group_counts(meta: Mapping[str, Mapping[str, Any]]) -> tuple[Counter, Counter]:
    """``(Counter of n_species, Counter of crystal_system)`` over ``Archive.meta``-like dicts."""
    return (
        Counter(int(m["n_species"]) for m in meta.values()),
        Counter(str(m["crystal_system"]) for m in meta.values()),
    )
