r"""Per-element tables: the published ones read from the packages that ship them, and the
continuous attributes of ALIGNN-DOS.

**Published tables** (``pip install 'dos_bench[tables]'``, :data:`TABLES_EXTRA`).  The papers'
element tables are read from the data files of maintained packages, never recomputed or typed
in; the packages are located with :func:`importlib.util.find_spec` and their data files read
directly, so nothing of them is imported except ``jarvis.core.specie`` for its
``BASIC_FEATURES`` list.

=============================== ========================================= ===================
file                            content                                   package
=============================== ========================================= ===================
``jarvis/core/atom_init.json``  CGCNN 92-d ``atom_init`` (Xie & Grossman,  jarvis-tools
                                PRL 120, 145301, 2018): ``"1"`` ... ``"100"``
                                -> 92 values 0/1; the file Mat2Spec ships
                                as ``Mat2Spec_DATA/atom_init.json`` and
                                ALIGNN reads for ``atom_features="cgcnn"``
                                (identical to matminer's
                                ``utils/data_files/cgcnn_atom_feature.json``)
``jarvis/core/Elements.json``   JARVIS CFID element properties (Choudhary  jarvis-tools
                                et al., Phys. Rev. Mater. 2, 083801, 2018),
                                symbol -> 438 named values incl. ``Z``
``matminer/utils/data_files/    Matscholar 200-d element embeddings        matminer
matscholar_els.json``           (Tshitoyan et al., Nature 571, 95, 2019;
                                Weston et al., JCIM 59, 3692, 2019),
                                symbol -> 200 floats, 103 elements H ... Lr
                                (DOSTransformer's ``matscholar-embedding.json``)
=============================== ========================================= ===================

jarvis-tools (4.2 MB wheel) is the lighter source of the CGCNN table: matminer ships the same
file but pins ``pandas<3``; matminer is needed only for Matscholar-200.

**ALIGNN-DOS attributes.** ``alignn_dos_features`` is the five-attribute node input of
ALIGNN-DOS (Kaundinya et al., §2 "ALIGNN modeling framework"; docs/papers/alignn_dos.md §1.2):
*electronegativity, electron affinity, number of valence electrons, first ionization energy and
atomic radius*.  The authors' code (ALIGNN) defaults to the 92-d CGCNN table instead; the
paper's five attributes are a subset of the JARVIS "basic" element features (``X``,
``elec_aff``, ``ns+np+nd+nf valence``, ``first_ion_en``, ``atom_rad``,
``jarvis.core.specie.BASIC_FEATURES``).  ``alignn_dos_features`` recomputes them from
pymatgen's element data (atom feature set ``alignn5``, no extra package);
``alignn_dos_jarvis_features`` takes them from JARVIS's ``Elements.json`` (``alignn5_jarvis``).
Both are standardised the same way, so they differ only in the source of the values.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.io import ConfigError, DataError

__all__ = [
    "ALIGNN_DOS_ATTRIBUTES",
    "ALIGNN_DOS_JARVIS_KEYS",
    "PACKAGE_FILES",
    "TABLES_EXTRA",
    "alignn_dos_features",
    "alignn_dos_jarvis_features",
    "alignn_dos_jarvis_raw_attributes",
    "alignn_dos_raw_attributes",
    "jarvis_basic_keys",
    "jarvis_elements",
    "jarvis_property_table",
    "matscholar_embeddings",
    "package_data_file",
    "read_atom_init",
]

TABLES_EXTRA = "tables"
"""The optional-dependency group of ``pyproject.toml`` that installs the packages below."""

PACKAGE_FILES: dict[str, tuple[str, str, str]] = {
    "cgcnn": ("jarvis-tools", "jarvis", "core/atom_init.json"),
    "jarvis": ("jarvis-tools", "jarvis", "core/Elements.json"),
    "matscholar": ("matminer", "matminer", "utils/data_files/matscholar_els.json"),
}
"""Data file of each published table: key -> (distribution, top-level package, path inside it)."""

ALIGNN_DOS_ATTRIBUTES: tuple[str, ...] = (
    "electronegativity",
    "electron_affinity",
    "valence_electrons",
    "first_ionization_energy",
    "atomic_radius",
)
"""Column order of :func:`alignn_dos_features` and :func:`alignn_dos_jarvis_features`."""

ALIGNN_DOS_JARVIS_KEYS: tuple[tuple[str, ...], ...] = (
    ("X",),
    ("elec_aff",),
    ("nsvalence", "npvalence", "ndvalence", "nfvalence"),
    ("first_ion_en",),
    ("atom_rad",),
)
"""JARVIS ``Elements.json`` keys summed into each column of :data:`ALIGNN_DOS_ATTRIBUTES`
(docs/papers/alignn_dos.md §1.2); every key is one of ``jarvis.core.specie.BASIC_FEATURES``."""

_NOBLE_GAS_Z = (0, 2, 10, 18, 36, 54, 86)
_Z_MAX = 100

_CACHE: dict[str, Any] = {}


# ------------------------------------------------------------------------------ package files
def package_data_file(key: str, who: str = "") -> Path:
    """Path of the data file :data:`PACKAGE_FILES` ``[key]`` inside its installed package.

    The package is found with :func:`importlib.util.find_spec` (a top-level name: nothing is
    imported).

    Args:
        key: ``cgcnn``, ``jarvis`` or ``matscholar``.
        who: what needs the file, for the error message (e.g. ``atom_features='cgcnn'``).

    Raises:
        ConfigError: the package is not installed (the message names the distribution and the
            ``dos_bench[tables]`` extra), or the installed version lacks the file.
    """
    dist, package, rel = PACKAGE_FILES[key]
    who = who or f"the {key} table"
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"{who} is read from {package}/{rel} of the {dist} package, which is not "
            f"installed: pip install 'dos_bench[{TABLES_EXTRA}]' (or pip install {dist})"
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc) / rel
        if path.is_file():
            return path
    raise ConfigError(
        f"{who}: the installed {dist} package has no {package}/{rel}; "
        f"upgrade it: pip install -U 'dos_bench[{TABLES_EXTRA}]'"
    )


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not a valid JSON file ({e})") from None


def _vector(path: Path, key: str, value: Any, length: int | None) -> np.ndarray:
    """``value`` as a finite float64 vector (of ``length`` if given), or a DataError."""
    ok = isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    )
    vec = np.asarray(value, dtype=np.float64) if ok else None
    if vec is None or vec.ndim != 1 or vec.size == 0 or not np.all(np.isfinite(vec)):
        raise DataError(f"{path}: entry {key!r} is not a non-empty list of finite numbers")
    if length is not None and vec.size != length:
        raise DataError(f"{path}: entry {key!r} has {vec.size} values, the others {length}")
    return vec


def read_atom_init(path: str | Path) -> np.ndarray:
    """A CGCNN ``atom_init.json`` as an ``(n_Z, d)`` float32 table indexed by Z (row 0 zeros).

    The format is CGCNN's (``AtomCustomJSONInitializer`` of CGCNN, Mat2Spec and Xtal2DoS): a
    JSON object from atomic-number strings ``"1"`` ... ``"N"`` to equal-length lists of numbers.
    Every Z from 1 to the largest key must be present (``n_Z = N + 1``).

    Raises:
        DataError: naming the file, for a missing file, invalid JSON, a key that is not an
            atomic number, a missing or duplicated Z, or a vector of the wrong length or with
            non-numeric / non-finite values.
    """
    path = Path(path).expanduser()
    obj = _read_json(path)
    if not isinstance(obj, dict) or not obj:
        raise DataError(
            f"{path}: expected a JSON object from atomic numbers ('1', '2', ...) to lists of "
            f"numbers, got {type(obj).__name__}{' (empty)' if not obj else ''}"
        )
    rows: dict[int, np.ndarray] = {}
    length = None
    for key, value in obj.items():
        try:
            z = int(str(key).strip())
        except ValueError:
            z = 0
        if z < 1:
            raise DataError(f"{path}: key {key!r} is not an atomic number (1, 2, ...)")
        if z in rows:
            raise DataError(f"{path}: atomic number {z} appears twice (key {key!r})")
        rows[z] = _vector(path, key, value, length)
        length = rows[z].size
    missing = sorted(set(range(1, max(rows) + 1)) - set(rows))
    if missing:
        raise DataError(
            f"{path}: atomic numbers {missing[:10]}{' ...' if len(missing) > 10 else ''} are "
            f"missing (keys must cover 1 ... {max(rows)})"
        )
    table = np.zeros((max(rows) + 1, int(length or 0)), dtype=np.float32)
    for z, vec in rows.items():
        table[z] = vec
    return table


def _symbol_table(path: Path, obj: Any, z_of: dict[str, int]) -> np.ndarray:
    """``{symbol: vector}`` -> ``(max Z + 1, d)`` float64 table by Z, NaN rows where absent."""
    if not isinstance(obj, dict) or not obj:
        raise DataError(f"{path}: expected a JSON object from element symbols to vectors")
    vecs: dict[int, np.ndarray] = {}
    length = None
    for sym, value in obj.items():
        if sym not in z_of:
            raise DataError(f"{path}: key {sym!r} is not an element symbol")
        vecs[z_of[sym]] = _vector(path, sym, value, length)
        length = vecs[z_of[sym]].size
    table = np.full((max(vecs) + 1, int(length or 0)), np.nan)
    for z, vec in vecs.items():
        table[z] = vec
    return table


def matscholar_embeddings(who: str = "") -> np.ndarray:
    """Matscholar 200-d element embeddings from matminer, ``(104, 200)`` float64 by Z.

    Rows 1..103 (H ... Lr) are the values of ``matminer/utils/data_files/matscholar_els.json``
    as stored (Tshitoyan et al., Nature 571, 95 (2019); Weston et al., J. Chem. Inf. Model. 59,
    3692 (2019)); row 0 is NaN.  Symbols are mapped to Z with pymatgen ``Element``.

    Raises:
        ConfigError: matminer is not installed (names the ``dos_bench[tables]`` extra).
        DataError: the file is malformed.
    """
    if "matscholar" not in _CACHE:
        from pymatgen.core.periodic_table import Element

        path = package_data_file("matscholar", who or "the Matscholar-200 table")
        z_of = {el.symbol: el.Z for el in Element}
        _CACHE["matscholar"] = _symbol_table(path, _read_json(path), z_of)
    return _CACHE["matscholar"].copy()


def jarvis_elements(who: str = "") -> dict[str, dict[str, Any]]:
    """JARVIS-tools' ``jarvis/core/Elements.json``: symbol -> {property: value} (a copy).

    The CFID element properties (Choudhary et al., Phys. Rev. Materials 2, 083801 (2018)) that
    ``jarvis.core.specie.Specie`` serves; JARVIS stores 0 where a property is undefined (e.g.
    ``X`` of He, Ne, Ar, Tb, Yb).
    """
    if "jarvis" not in _CACHE:
        path = package_data_file("jarvis", who or "the JARVIS element table")
        obj = _read_json(path)
        if not isinstance(obj, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("Z"), int) for v in obj.values()
        ):
            raise DataError(f"{path}: expected symbol -> {{property: value}} with an integer 'Z'")
        _CACHE["jarvis"] = (path, obj)
    return {k: dict(v) for k, v in _CACHE["jarvis"][1].items()}


def jarvis_basic_keys(who: str = "") -> tuple[str, ...]:
    """``jarvis.core.specie.BASIC_FEATURES``: the 11 keys of JARVIS's ``basic`` atom features."""
    package_data_file("jarvis", who or "the JARVIS basic features")  # clear error if missing
    from jarvis.core.specie import BASIC_FEATURES

    return tuple(BASIC_FEATURES)


def jarvis_property_table(keys: tuple[str, ...], who: str = "") -> np.ndarray:
    """``(max Z + 1, len(keys))`` float64 table of JARVIS ``Elements.json`` values by Z.

    Row Z holds ``Elements.json[symbol][key]`` for the element with ``"Z" == Z``; row 0 and
    elements absent from the file are NaN.

    Raises:
        DataError: a key missing for an element, or a non-numeric value (names the file).
    """
    data = jarvis_elements(who)
    path = _CACHE["jarvis"][0]
    z_max = max(int(v["Z"]) for v in data.values())
    table = np.full((z_max + 1, len(keys)), np.nan)
    for sym, props in data.items():
        for k, key in enumerate(keys):
            v = props.get(key)
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise DataError(f"{path}: element {sym!r} has no numeric {key!r} ({v!r})")
            table[int(props["Z"]), k] = float(v)
    return table


# ------------------------------------------------------------------------------ ALIGNN-DOS
def _valence_electrons(z: int) -> int:
    """Electrons outside the preceding noble-gas core, ``Z - Z_core`` (He: 2, noble gases: 8).

    This is Magpie's ``NValence`` (= JARVIS ``nsvalence + npvalence + ndvalence + nfvalence``):
    filled d and f shells outside the core are counted (Zn 12, Ga 13, Pb 28).
    """
    core = max(c for c in _NOBLE_GAS_Z if c < z)
    return z - core


def alignn_dos_raw_attributes() -> np.ndarray:
    r"""The five raw attributes of Z = 1..100, ``(101, 5)`` float64, NaN where missing.

    ===================== ======================================================== =========
    column                pymatgen source                                          unit
    ===================== ======================================================== =========
    electronegativity     ``Element.X`` (Pauling); NaN for He, Ne, Ar              --
    electron affinity     ``Element.electron_affinity``                            eV
    valence electrons     ``Z - Z(preceding noble gas)``, see ``_valence_electrons``  count
    first ionization      ``Element.ionization_energies[0]``                       eV
    atomic radius         ``Element.atomic_radius`` (empirical, Slater 1964);      Å
                          falls back to ``atomic_radius_calculated`` (Clementi
                          1967) for He, Ne, Kr, Xe, Rn; NaN for At, Fr, Cm-Fm
    ===================== ======================================================== =========

    Row 0 is NaN everywhere.
    """
    if "alignn5_raw" not in _CACHE:
        import warnings

        from pymatgen.core import Element

        raw = np.full((_Z_MAX + 1, len(ALIGNN_DOS_ATTRIBUTES)), np.nan)
        with warnings.catch_warnings():  # pymatgen warns for every missing property
            warnings.simplefilter("ignore")
            for z in range(1, _Z_MAX + 1):
                el = Element.from_Z(z)
                ies = el.ionization_energies
                radius = el.atomic_radius
                if radius is None:
                    radius = el.atomic_radius_calculated
                values = (
                    el.X,
                    el.electron_affinity,
                    _valence_electrons(z),
                    ies[0] if ies else None,
                    radius,
                )
                for k, v in enumerate(values):
                    if v is not None and math.isfinite(float(v)):
                        raw[z, k] = float(v)
        _CACHE["alignn5_raw"] = raw
    return _CACHE["alignn5_raw"].copy()


def _standardise(raw: np.ndarray) -> np.ndarray:
    """Z-score every column of ``raw[1:]`` (NaN-aware), NaN -> 0, row 0 zeros; float32."""
    rows = raw[1:]
    mean = np.nanmean(rows, axis=0)
    std = np.nanstd(rows, axis=0)
    std = np.where(std > 0, std, 1.0)
    z = (rows - mean) / std
    table = np.zeros(raw.shape, dtype=np.float32)
    table[1:] = np.where(np.isnan(z), 0.0, z).astype(np.float32)
    return table


def alignn_dos_features() -> np.ndarray:
    r"""ALIGNN-DOS node attributes, z-scored: shape ``(101, 5)`` float32, row Z (row 0 zeros).

    Columns are :data:`ALIGNN_DOS_ATTRIBUTES` (raw values from
    :func:`alignn_dos_raw_attributes`).  Each column is standardised over Z = 1..100,

    .. math::
        f_{Z,k} = \frac{a_{Z,k} - \mu_k}{\sigma_k},

    with :math:`\mu_k` and :math:`\sigma_k` (population std) taken over the elements that have
    the value.  **Missing values are filled with the column mean**, i.e. with 0 after
    z-scoring: electronegativity of He, Ne, Ar and the atomic radius of At, Fr, Cm, Bk, Cf,
    Es, Fm (after the Clementi fallback).  Row 0 ("no element") is all zeros.

    The paper does not say how the attributes were scaled; z-scoring keeps the five inputs on
    one scale for the first ``Linear + BatchNorm`` layer.

    Returns:
        A copy of the cached table.
    """
    if "alignn5" not in _CACHE:
        _CACHE["alignn5"] = _standardise(alignn_dos_raw_attributes())
    return _CACHE["alignn5"].copy()


def alignn_dos_jarvis_raw_attributes(who: str = "") -> np.ndarray:
    """The five ALIGNN-DOS attributes of Z = 1..100 from JARVIS, ``(101, 5)`` float64.

    Column k is the sum of the JARVIS ``Elements.json`` values of
    :data:`ALIGNN_DOS_JARVIS_KEYS` ``[k]``: ``X`` (Pauling), ``elec_aff`` (eV),
    ``nsvalence + npvalence + ndvalence + nfvalence``, ``first_ion_en`` (eV), ``atom_rad`` (Å).
    Values are JARVIS's as stored, including its 0 for undefined ones (``X`` of He, Ne, Ar,
    Tb, Yb).  Row 0 is NaN.  Needs jarvis-tools (``dos_bench[tables]``).
    """
    who = who or "atom_features='alignn5_jarvis'"
    basic = set(jarvis_basic_keys(who))
    keys = tuple(k for group in ALIGNN_DOS_JARVIS_KEYS for k in group)
    unknown = sorted(set(keys) - basic)
    # the paper's attributes are a subset of BASIC_FEATURES (docs/papers/alignn_dos.md §1.2)
    if unknown:
        raise ConfigError(f"{who}: {unknown} are not in jarvis BASIC_FEATURES {sorted(basic)}")
    values = jarvis_property_table(keys, who)[: _Z_MAX + 1]
    raw = np.empty((_Z_MAX + 1, len(ALIGNN_DOS_JARVIS_KEYS)))
    col = 0
    for k, group in enumerate(ALIGNN_DOS_JARVIS_KEYS):
        raw[:, k] = values[:, col : col + len(group)].sum(axis=1)
        col += len(group)
    raw[0] = np.nan
    return raw


def alignn_dos_jarvis_features(who: str = "") -> np.ndarray:
    """ALIGNN-DOS node attributes from JARVIS, z-scored: ``(101, 5)`` float32 (row 0 zeros).

    :func:`alignn_dos_jarvis_raw_attributes` standardised exactly as
    :func:`alignn_dos_features` (column mean and population std over Z = 1..100).  Atom feature
    set ``alignn5_jarvis``.
    """
    if "alignn5_jarvis" not in _CACHE:
        _CACHE["alignn5_jarvis"] = _standardise(alignn_dos_jarvis_raw_attributes(who))
    return _CACHE["alignn5_jarvis"].copy()
