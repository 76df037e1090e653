"""Per-element atom feature tables and per-structure composition vectors.

Atom feature tables are plain ``(n_Z, d)`` float32 arrays indexed by atomic number (row 0 is
all zeros and stands for "no element"), so features of all atoms of a dataset are one fancy
index: ``table[numbers]``.  Models select a table by name with the config key
``model.atom_features`` (:data:`ATOM_FEATURE_SETS`, :func:`atom_feature_table`, which raises a
:class:`~dos_bench.io.ConfigError` listing the choices for an unknown name).

=====================  =========  ============================================================
name                   shape      description (source)
=====================  =========  ============================================================
``cgcnn``              (101, 92)  the original CGCNN ``atom_init.json`` (Xie & Grossman 2018)
                                  as Mat2Spec, Xtal2DoS and GATGNN use it; read from
                                  jarvis-tools ``jarvis/core/atom_init.json``
                                  (:func:`cgcnn_features`) [tables]
``cgcnn_file:<path>``  (N+1, d)   a CGCNN-format ``atom_init.json`` file, e.g. the copy in a
                                  dataset folder
                                  (``cgcnn_file:${paths.data_dir}/Mat2Spec_DATA/atom_init.json``;
                                  :func:`~dos_bench.data.element_tables.read_atom_init`)
``cgcnn_pymatgen``     (101, 92)  CGCNN-style binned one-hots **recomputed** from pymatgen
                                  (:func:`cgcnn_pymatgen_features`); not the original values
``matscholar200``      (101,200)  Matscholar-200 embeddings of H ... Fm z-scored per column
                                  as DOSTransformer's eDOS code (:func:`matscholar200_features`,
                                  from matminer ``matscholar_els.json``) [tables]
``matscholar200_raw``  (104,200)  the same embeddings of H ... Lr as stored [tables]
``jarvis_basic``       (104, 11)  JARVIS ``basic`` atom features (``BASIC_FEATURES`` of
                                  ``Elements.json``, raw), ALIGNN's ``atom_features="basic"``
                                  (:func:`jarvis_basic_features`) [tables]
``alignn5``            (101, 5)   ALIGNN-DOS §2 five attributes from pymatgen, z-scored
                                  (:func:`~dos_bench.data.element_tables.alignn_dos_features`)
``alignn5_jarvis``     (101, 5)   the same five attributes from JARVIS ``Elements.json``
                                  (:func:`~dos_bench.data.element_tables.alignn_dos_jarvis_features`)
                                  [tables]
``onehot``             (101,100)  one-hot of Z: row Z has a 1 in column Z - 1 (Z = 1..100)
``mass_onehot``        (119,118)  one-hot of Z scaled by the atomic mass in u: row Z has
                                  ``mass(Z)`` in column Z - 1 (Z = 1..118), as the E3NN
                                  phonon-DOS models and DOSTransformer's phonon code use
=====================  =========  ============================================================

[tables]: read from a package of the optional ``tables`` extra
(``pip install 'dos_bench[tables]'``: jarvis-tools, matminer; see
:mod:`dos_bench.data.element_tables`).  Without it, selecting such a table raises one
:class:`~dos_bench.io.ConfigError` naming the package and the extra; the other tables need only
pymatgen.

Every name stands for one fixed table (a saved config therefore identifies the table its
checkpoint was trained with; :func:`atom_table_fingerprint` hashes the values for a stronger
check).  Crystal-graph caches hold no atom features (``x`` is built in memory from the table),
so the table does not enter their key.  Tables are computed or read once per process and
cached in module-level variables, except ``cgcnn_file:`` tables, which are read on every call;
the getters return copies, so callers may modify what they get.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from dos_bench.data import element_tables as ET
from dos_bench.io import ConfigError, DataError

__all__ = [
    "ATOM_FEATURE_SETS",
    "CGCNN_BLOCKS",
    "CGCNN_FILE_PREFIX",
    "N_COMPOSITION",
    "atom_feature_table",
    "atom_table_fingerprint",
    "cgcnn_block_slices",
    "cgcnn_features",
    "cgcnn_pymatgen_features",
    "composition_vectors",
    "jarvis_basic_features",
    "mass_onehot_features",
    "matscholar200_features",
    "onehot_features",
]

CGCNN_FILE_PREFIX = "cgcnn_file:"
"""``atom_features`` values starting with this are a path to a CGCNN-format ``atom_init.json``."""

N_COMPOSITION = 103
"""Length of a composition vector: element fractions of H (Z=1) ... Lr (Z=103)."""

CGCNN_BLOCKS: tuple[tuple[str, int], ...] = (
    ("group", 19),
    ("period", 7),
    ("electronegativity", 10),
    ("covalent_radius", 10),
    ("valence_electrons", 12),
    ("first_ionization_energy", 10),
    ("electron_affinity", 10),
    ("block", 4),
    ("atomic_volume", 10),
)
"""The one-hot blocks of the ``cgcnn_pymatgen`` table in column order: (property, number of
categories).  The original ``cgcnn`` table has the same nine blocks and widths, with different
bin edges and data (its group block is shifted by one category: no row of the two tables is
identical)."""

# Bin ranges of the continuous properties: (low, high, transform).  The range is cut into
# ``n`` equal-width bins on the transformed scale; values outside [low, high] go to the first
# or last bin.  The ranges cover the pymatgen values of Z = 1..100 (rounded outwards), and
# match the ranges CGCNN quotes.
_BINS: dict[str, tuple[float, float, str]] = {
    "electronegativity": (0.5, 4.0, "linear"),  # Pauling; data range 0.70 (Fr) .. 3.98 (F)
    "covalent_radius": (25.0, 250.0, "linear"),  # pm, Cordero 2008; 28 (He) .. 260 (Fr)
    "first_ionization_energy": (1.3, 3.3, "log"),  # ln(eV); 3.89 eV (Cs) .. 24.6 eV (He)
    "electron_affinity": (-3.0, 3.7, "linear"),  # eV; -1.72 (Bk) .. 3.61 (Cl)
    "atomic_volume": (1.5, 4.3, "log"),  # ln(cm^3/mol); 4.39 (B, clipped) .. 70.9 (Cs)
}

_NOBLE_GAS_CORES = (0, 2, 10, 18, 36, 54, 86)

_CACHE: dict[str, np.ndarray] = {}


def cgcnn_block_slices() -> dict[str, slice]:
    """Column slice of every block of the ``cgcnn_pymatgen`` table, keyed by property name."""
    out, start = {}, 0
    for name, n in CGCNN_BLOCKS:
        out[name] = slice(start, start + n)
        start += n
    return out


def _bin_index(value: float | None, name: str, n: int) -> int | None:
    """Bin of ``value`` for property ``name`` (None for a missing value)."""
    if value is None or not math.isfinite(value):
        return None
    lo, hi, scale = _BINS[name]
    if scale == "log":
        if value <= 0:
            return None
        value = math.log(value)
    i = int(math.floor((value - lo) / (hi - lo) * n))
    return min(max(i, 0), n - 1)


def _valence_electrons(z: int, group: int, lanthanide_or_actinide: bool) -> int:
    """Valence electron count used for the 12 ``valence_electrons`` categories (1..12)."""
    if z == 2:
        return 2
    if lanthanide_or_actinide:
        core = max(c for c in _NOBLE_GAS_CORES if c < z)
        return min(z - core, 12)
    return group if group <= 12 else group - 10


def _element_properties(z: int, covalent_radii: dict[str, float]) -> dict[str, object]:
    """Raw properties of element ``z`` from pymatgen (None where pymatgen has no value)."""
    import warnings

    from pymatgen.core import Element

    el = Element.from_Z(z)
    f_block = bool(el.is_lanthanoid or el.is_actinoid)
    with warnings.catch_warnings():  # pymatgen warns about every missing property
        warnings.simplefilter("ignore")
        x = float(el.X)
        ies = el.ionization_energies
        ea = el.electron_affinity
        mv = el.molar_volume
    radius = covalent_radii.get(el.symbol)
    return {
        "group": 18 if f_block else int(el.group) - 1,
        "period": int(el.row) - 1,
        "electronegativity": x,
        "covalent_radius": None if radius is None else 100.0 * float(radius),
        "valence_electrons": _valence_electrons(z, int(el.group), f_block) - 1,
        "first_ionization_energy": float(ies[0]) if ies and ies[0] is not None else None,
        "electron_affinity": None if ea is None else float(ea),
        "block": "spdf".index("s" if z == 2 else el.block),
        "atomic_volume": None if mv is None else float(mv),
    }


def cgcnn_features() -> np.ndarray:
    r"""The original CGCNN 92-d atom features, ``(101, 92)`` float32 (atom feature set ``cgcnn``).

    T. Xie and J. C. Grossman, "Crystal Graph Convolutional Neural Networks for an Accurate and
    Interpretable Prediction of Material Properties", Phys. Rev. Lett. 120, 145301 (2018),
    Supplementary Table S2: nine one-hot blocks (group, period, electronegativity, covalent
    radius, valence electrons, first ionization energy, electron affinity, block, atomic volume).
    Row Z (Z = 1..100) is the ``"Z"`` entry of CGCNN's ``atom_init.json`` as shipped by
    jarvis-tools (``jarvis/core/atom_init.json``, what ALIGNN reads for
    ``atom_features="cgcnn"``; the same file as matminer's ``cgcnn_atom_feature.json``); row 0
    is zeros.  Mat2Spec (``Mat2Spec_DATA/atom_init.json``, docs/papers/mat2spec.md §4.3) and
    Xtal2DoS (§3.2)
    read this file; a dataset's own copy can be used with ``cgcnn_file:<path>``.

    Raises:
        ConfigError: jarvis-tools is not installed (names the ``dos_bench[tables]`` extra).
    """
    if "cgcnn" not in _CACHE:
        path = ET.package_data_file("cgcnn", "atom_features='cgcnn'")
        _CACHE["cgcnn"] = ET.read_atom_init(path)
    return _CACHE["cgcnn"].copy()


def cgcnn_pymatgen_features() -> np.ndarray:
    r"""CGCNN-style 92-d binned one-hots recomputed from pymatgen: ``(101, 92)`` float32.

    The feature design follows T. Xie and J. C. Grossman, "Crystal Graph Convolutional Neural
    Networks for an Accurate and Interpretable Prediction of Material Properties", Phys. Rev.
    Lett. 120, 145301 (2018), Supplementary Table S2.  The values are **recomputed here from
    pymatgen's element data**; they are *not* the original CGCNN ``atom_init.json`` (that is
    :func:`cgcnn_features`, atom feature set ``cgcnn``), so a model trained with one does not
    transfer to the other.  Atom feature set ``cgcnn_pymatgen``: it needs no optional package,
    and the generic models (``mlp``, ``graph_network`` and their energy variants) use it.

    Row ``Z`` (Z = 1..100) is the concatenation of one-hot blocks (see :data:`CGCNN_BLOCKS`,
    :func:`cgcnn_block_slices`); row 0 is all zeros.

    ======================== ===== ==========================================================
    property                 n     categories / bins (pymatgen source)
    ======================== ===== ==========================================================
    group                    19    groups 1..18 (``Element.group``); category 19 for all
                                   lanthanides La-Lu and actinides Ac-Lr
                                   (``is_lanthanoid`` / ``is_actinoid``)
    period                   7     ``Element.row`` 1..7 (f-block in rows 6 and 7)
    electronegativity        10    Pauling ``Element.X``, linear bins over [0.5, 4.0]
    covalent radius          10    Cordero 2008 covalent radius (pymatgen ``CovalentRadius``)
                                   in pm, linear bins over [25, 250]
    valence electrons        12    1..12, see below
    first ionization energy  10    ln(``ionization_energies[0]`` / eV), bins over [1.3, 3.3]
    electron affinity        10    ``electron_affinity`` in eV, linear bins over [-3.0, 3.7]
    block                    4     s, p, d, f (``Element.block``; He counted as s)
    atomic volume            10    ln(``molar_volume`` / cm^3 mol^-1), bins over [1.5, 4.3]
    ======================== ===== ==========================================================

    Continuous properties use ``n`` equal-width bins on the stated range (natural-log scale
    where marked); a value outside the range goes to the nearest end bin (only boron's atomic
    volume, ln 4.39 = 1.48, falls outside).  **Missing values give an all-zero block**, no
    dedicated bin: electronegativity of He, Ne, Ar; covalent radius of Bk, Cf, Es, Fm (Z >
    96); atomic volume of At, Fr, Fm.  Every row therefore has 9 ones minus its missing
    properties.

    Valence electrons are counted as the electrons outside the preceding noble-gas core
    without completely filled inner d10 / f14 shells, which for s-, p- and d-block elements is
    the group number (groups 1-12) or group - 10 (groups 13-18), He = 2; for lanthanides and
    actinides it is Z minus the noble-gas core, clipped to 12 (the last category means "12 or
    more").  The electronic configuration from pymatgen is not used because of anomalous
    ground states such as Pd [Kr]4d10.

    Returns:
        A copy of the cached table.  The first call takes about 0.3 s, mostly importing
        pymatgen's covalent-radius table (and scipy.spatial with it); later calls only copy.
    """
    if "cgcnn_pymatgen" not in _CACHE:
        from pymatgen.core.molecule_structure_comparator import CovalentRadius

        radii = dict(CovalentRadius.radius)
        slices = cgcnn_block_slices()
        table = np.zeros((101, sum(n for _, n in CGCNN_BLOCKS)), dtype=np.float32)
        for z in range(1, 101):
            props = _element_properties(z, radii)
            for name, n in CGCNN_BLOCKS:
                value = props[name]
                if name in _BINS:
                    idx = _bin_index(value, name, n)  # type: ignore[arg-type]
                else:  # categorical property, already a 0-based category
                    idx = int(value)  # type: ignore[call-overload]
                if idx is not None:
                    table[z, slices[name].start + idx] = 1.0
        _CACHE["cgcnn_pymatgen"] = table
    return _CACHE["cgcnn_pymatgen"].copy()


def matscholar200_features(zscore: bool = True) -> np.ndarray:
    r"""Matscholar 200-d element embeddings (atom feature sets ``matscholar200[_raw]``).

    The embeddings of Tshitoyan et al., Nature 571, 95 (2019) / Weston et al., J. Chem. Inf.
    Model. 59, 3692 (2019), read from matminer's ``utils/data_files/matscholar_els.json``
    (103 elements H ... Lr; the same values as the ``matscholar-embedding.json`` that
    DOSTransformer's eDOS code reads, docs/papers/dostransformer.md §2.1).

    Args:
        zscore: as DOSTransformer's ``data/mat2graph.py``: stack the embeddings of the 100
            elements H ... Fm (Z = 1..100) in Z order and standardise every column with
            scikit-learn's ``preprocessing.scale``,

            .. math:: f_{Z,k} = (e_{Z,k} - \mu_k) / \sigma_k,

            :math:`\mu_k`, :math:`\sigma_k` = mean and population standard deviation over
            the 100 elements (a constant column would be left unscaled); Md, No, Lr have no row
            (the authors' graphs index the 100-row table), shape ``(101, 200)``.  False: the
            stored values of all 103 elements, shape ``(104, 200)``.

    Returns:
        float32 table, row 0 zeros.

    Raises:
        ConfigError: matminer is not installed (names the ``dos_bench[tables]`` extra).
    """
    key = "matscholar200" if zscore else "matscholar200_raw"
    if key not in _CACHE:
        raw = ET.matscholar_embeddings(f"atom_features={key!r}")
        if zscore:
            rows = raw[1:101]
            if np.isnan(rows).any():
                missing = (np.flatnonzero(np.isnan(rows).any(axis=1)) + 1).tolist()
                raise DataError(f"matminer matscholar_els.json: no embedding for Z = {missing}")
            std = rows.std(axis=0)
            rows = (rows - rows.mean(axis=0)) / np.where(std > 0, std, 1.0)
            table = np.zeros((101, raw.shape[1]), dtype=np.float32)
            table[1:] = rows
        else:
            table = np.where(np.isnan(raw), 0.0, raw).astype(np.float32)
        _CACHE[key] = table
    return _CACHE[key].copy()


def jarvis_basic_features() -> np.ndarray:
    """JARVIS ``basic`` atom features, ``(104, 11)`` float32 (atom feature set ``jarvis_basic``).

    Columns are ``jarvis.core.specie.BASIC_FEATURES`` in its order (``Z, coulmn, row, X,
    atom_rad, nsvalence, npvalence, ndvalence, nfvalence, first_ion_en, elec_aff``), row Z
    holds the values of jarvis-tools' ``jarvis/core/Elements.json`` for Z = 1..103 unscaled, as
    ``jarvis.core.specie.get_node_attributes(symbol, atom_features="basic")`` returns them
    (ALIGNN's ``atom_features="basic"``; docs/papers/alignn_dos.md §1.2).  Row 0 is zeros.

    Raises:
        ConfigError: jarvis-tools is not installed (names the ``dos_bench[tables]`` extra).
    """
    if "jarvis_basic" not in _CACHE:
        who = "atom_features='jarvis_basic'"
        raw = ET.jarvis_property_table(ET.jarvis_basic_keys(who), who)
        _CACHE["jarvis_basic"] = np.where(np.isnan(raw), 0.0, raw).astype(np.float32)
    return _CACHE["jarvis_basic"].copy()


def onehot_features() -> np.ndarray:
    """One-hot encoding of Z = 1..100: shape ``(101, 100)``, row Z has a 1 in column Z - 1."""
    if "onehot" not in _CACHE:
        _CACHE["onehot"] = np.eye(101, dtype=np.float32)[:, 1:]
    return _CACHE["onehot"].copy()


def mass_onehot_features() -> np.ndarray:
    """One-hot of Z = 1..118 scaled by the atomic mass (u): shape ``(119, 118)``.

    Row Z has ``Element.from_Z(Z).atomic_mass`` in column Z - 1 and zeros elsewhere; this is
    the node input of the E3NN phonon-DOS models (Chen et al., Adv. Sci. 2021) and of
    DOSTransformer's phonon code (docs/papers/dostransformer.md §2.2).
    """
    if "mass_onehot" not in _CACHE:
        from pymatgen.core import Element

        masses = np.array([float(Element.from_Z(z).atomic_mass) for z in range(1, 119)])
        table = np.zeros((119, 118), dtype=np.float32)
        table[np.arange(1, 119), np.arange(118)] = masses
        _CACHE["mass_onehot"] = table
    return _CACHE["mass_onehot"].copy()


class _AtomFeatureSets(dict):
    """The registry: a dict of names, whose ``in`` also accepts ``cgcnn_file:<path>`` values
    (so a caller that validates ``name in ATOM_FEATURE_SETS`` lets them through)."""

    def __contains__(self, key: Any) -> bool:
        return super().__contains__(key) or (
            isinstance(key, str) and key.startswith(CGCNN_FILE_PREFIX)
        )


ATOM_FEATURE_SETS: dict[str, Callable[[], np.ndarray]] = _AtomFeatureSets(
    {
        "cgcnn": cgcnn_features,
        "cgcnn_pymatgen": cgcnn_pymatgen_features,
        "matscholar200": matscholar200_features,
        "matscholar200_raw": lambda: matscholar200_features(zscore=False),
        "jarvis_basic": jarvis_basic_features,
        "alignn5": ET.alignn_dos_features,
        "alignn5_jarvis": lambda: ET.alignn_dos_jarvis_features("atom_features='alignn5_jarvis'"),
        "onehot": onehot_features,
        "mass_onehot": mass_onehot_features,
    }
)
"""Atom feature tables by name; each value returns an ``(n_Z, d)`` float32 table.  Besides the
names, ``cgcnn_file:<path>`` selects a CGCNN-format ``atom_init.json`` file (``in`` accepts it,
:func:`atom_feature_table` reads it)."""


def atom_feature_table(name: str) -> np.ndarray:
    """The ``(n_Z, d)`` float32 table ``name``: a key of :data:`ATOM_FEATURE_SETS`, or
    ``cgcnn_file:<path>`` for a CGCNN-format ``atom_init.json`` (``~`` expanded; a relative path
    is relative to the working directory).

    Raises:
        ConfigError: an unknown name (lists the choices), an empty ``cgcnn_file:`` path, or a
            table whose package is not installed (names the ``dos_bench[tables]`` extra).
        DataError: a ``cgcnn_file:`` file that is missing or malformed (names the file).
    """
    name = str(name)
    if name.startswith(CGCNN_FILE_PREFIX):
        path = name[len(CGCNN_FILE_PREFIX) :].strip()
        if not path:
            raise ConfigError(
                f"atom_features={name!r}: give the path of a CGCNN atom_init.json after "
                f"'{CGCNN_FILE_PREFIX}'"
            )
        return ET.read_atom_init(path)
    try:
        fn = dict.__getitem__(ATOM_FEATURE_SETS, name)
    except KeyError:
        raise ConfigError(
            f"atom_features={name!r} is not a known atom feature set; choose one of "
            f"{sorted(ATOM_FEATURE_SETS)} or '{CGCNN_FILE_PREFIX}<path to atom_init.json>'"
        ) from None
    return fn()


def atom_table_fingerprint(name: str) -> str:
    """sha256 (16 hex digits) of the values, dtype and shape of table ``name``: equal for equal
    tables whatever their name or source, so it can be stored beside a checkpoint."""
    table = np.ascontiguousarray(atom_feature_table(name), dtype=np.float32)
    h = hashlib.sha256(f"{table.dtype}{table.shape}".encode())
    h.update(table.tobytes())
    return h.hexdigest()[:16]


def composition_vectors(numbers: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Element fractions of every structure, shape ``(N, 103)`` float32.

    Column ``Z - 1`` holds the fraction of atoms with atomic number Z (H ... Lr), so every row
    sums to 1.

    Args:
        numbers: ``(A,)`` atomic numbers of all atoms, structure after structure.
        ptr: ``(N + 1,)`` offsets; atoms of structure ``i`` are ``numbers[ptr[i]:ptr[i+1]]``.

    Raises:
        DataError: an atomic number outside 1..103, or a structure without atoms.
    """
    numbers = np.asarray(numbers)
    ptr = np.asarray(ptr, dtype=np.int64)
    n = ptr.shape[0] - 1
    counts = np.diff(ptr)
    if np.any(counts < 1):
        raise DataError(f"structure {int(np.argmin(counts))} has no atoms")
    if numbers.shape[0] != ptr[-1]:
        raise DataError(f"{numbers.shape[0]} atomic numbers but offsets end at {ptr[-1]}")
    if numbers.size and (numbers.min() < 1 or numbers.max() > N_COMPOSITION):
        bad = int(np.argmax((numbers < 1) | (numbers > N_COMPOSITION)))
        raise DataError(
            f"atomic number {int(numbers[bad])} of atom {bad} is outside 1..{N_COMPOSITION}"
        )
    owner = np.repeat(np.arange(n, dtype=np.int64), counts)
    flat = owner * N_COMPOSITION + (numbers.astype(np.int64) - 1)
    hist = np.bincount(flat, minlength=n * N_COMPOSITION).reshape(n, N_COMPOSITION)
    return (hist / counts[:, None]).astype(np.float32)
