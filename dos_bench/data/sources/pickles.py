"""Restricted unpickling of the published pickles (Mat2Spec's ``ph_structures.pkl``, the E3NN
split pickle).

Pickles are read only from paths the user configured, through :class:`RestrictedUnpickler`,
which resolves a short whitelist of globals (:data:`PICKLE_WHITELIST`: numpy arrays and dtypes,
builtin containers, and pymatgen classes as inert placeholders) and refuses every other global
with a message naming the file. Structures are rebuilt from the placeholders with pymatgen's
public constructors (:func:`load_structure_pickle`) and checked like every other structure.
"""

from __future__ import annotations

import io
import pickle
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.structure_checks import StructureChecks, check_structure, check_symbols
from dos_bench.io import DataError

__all__ = [
    "PICKLE_WHITELIST",
    "RestrictedUnpickler",
    "load_index_pickle",
    "load_structure_pickle",
    "restricted_pickle_load",
]


def _np_global(module: str, name: str) -> Any:
    """``numpy.core.X.name`` or ``numpy._core.X.name`` from whichever numpy is installed."""
    import importlib

    sub = module.split(".")[-1]
    try:
        mod = importlib.import_module(f"numpy._core.{sub}")
    except ImportError:  # numpy < 2
        mod = importlib.import_module(f"numpy.core.{sub}")
    return getattr(mod, name)


class _Placeholder:
    """Inert stand-in for a whitelisted pymatgen class.

    It records constructor arguments and the pickled state and does nothing else; structures
    are rebuilt from these records with pymatgen's public constructors
    (:func:`_placeholder_to_structure`), so no pymatgen (or any other) code runs while
    unpickling, and pickles written by old pymatgen versions still load.
    """

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Placeholder:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname} placeholder>"

    def get(self, *keys: str) -> Any:
        st = self.state
        if isinstance(st, tuple) and len(st) == 2 and isinstance(st[1], dict):
            st = {**(st[0] or {}), **st[1]}  # (dict, slots) form
        if isinstance(st, dict):
            for k in keys:
                if k in st:
                    return st[k]
        return None


@cache
def _placeholder_class(module: str, name: str) -> type:
    return type(name, (_Placeholder,), {"qualname": f"{module}.{name}"})


def _safe_codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as used by protocol-2 pickles of bytes (latin-1 text → bytes) only."""
    if not isinstance(obj, str) or encoding.lower().replace("-", "") not in ("latin1", "utf8"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for latin-1 text")
    return obj.encode(encoding, errors)


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 pickles) restricted to placeholders."""
    if not (isinstance(cls, type) and issubclass(cls, _Placeholder)) or base is not object:
        raise pickle.UnpicklingError("copyreg._reconstructor used with a non-whitelisted class")
    return cls.__new__(cls)


_PYMATGEN_CLASSES = {
    "pymatgen.core.structure": {"Structure", "IStructure"},
    "pymatgen.core.sites": {"PeriodicSite", "Site"},
    "pymatgen.core.lattice": {"Lattice"},
    "pymatgen.core.composition": {"Composition"},
    "pymatgen.core.periodic_table": {"Element", "Species", "Specie", "DummySpecies", "DummySpecie"},
    "pymatgen.electronic_structure.core": {"Magmom", "Spin", "Orbital"},
}
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_BUILTIN_GLOBALS = {
    "set",
    "frozenset",
    "list",
    "dict",
    "tuple",
    "complex",
    "float",
    "int",
    "bool",
    "str",
    "bytes",
    "bytearray",
    "slice",
    "range",
    "object",
}

#: every global a restricted pickle may name (anything else is refused)
PICKLE_WHITELIST: dict[str, list[str]] = {
    "builtins": sorted(_BUILTIN_GLOBALS),
    "collections": ["OrderedDict", "defaultdict"],
    "copyreg": ["_reconstructor"],
    "_codecs": ["encode"],
    **{
        m: sorted(n for mm, n in _NUMPY_GLOBALS if mm == m)
        for m in sorted({m for m, _ in _NUMPY_GLOBALS})
    },
    **{m: sorted(v) for m, v in _PYMATGEN_CLASSES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`PICKLE_WHITELIST` globals.

    numpy arrays and dtypes, builtin containers and scalars are real objects; the pymatgen
    classes (only when ``allow_pymatgen``) become inert placeholders. Every other global —
    ``os.system``, ``subprocess.Popen``, ``builtins.eval``, any class — raises
    ``UnpicklingError`` before anything is called.
    """

    def __init__(self, fh: io.BufferedIOBase, allow_pymatgen: bool = False) -> None:
        super().__init__(fh)
        self.allow_pymatgen = allow_pymatgen

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _BUILTIN_GLOBALS:
            import builtins

            return getattr(builtins, name)
        if module == "collections" and name in ("OrderedDict", "defaultdict"):
            import collections

            return getattr(collections, name)
        if module == "copyreg" and name == "_reconstructor":
            return _safe_reconstructor
        if module == "_codecs" and name == "encode":
            return _safe_codecs_encode
        if (module, name) in _NUMPY_GLOBALS:
            if module == "numpy":
                return getattr(np, name)
            return _np_global(module, name)
        if self.allow_pymatgen and name in _PYMATGEN_CLASSES.get(module, ()):
            return _placeholder_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not in the allowed list")


def restricted_pickle_load(path: str | Path, allow_pymatgen: bool = False) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; refusals raise :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pickle file not found")
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh, allow_pymatgen=allow_pymatgen).load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: refused or unreadable pickle ({exc})") from None
    except Exception as exc:  # EOFError on truncation, TypeError/ValueError on bad opcodes
        raise DataError(
            f"{path}: cannot unpickle ({type(exc).__name__}: {exc}); damaged or not a pickle"
        ) from None


def load_index_pickle(path: str | Path) -> list[np.ndarray]:
    """A pickled list/tuple of integer index arrays, e.g. E3NN's ``200801_trteva_indices.pkl``
    (three int64 arrays in the order train, valid, test; docs/papers/mat2spec.md §4.2,
    docs/data/phonon_sources.md §5.1).

    Only numpy and builtin globals are allowed. Returns int64 1-D arrays.
    """
    path = Path(path)
    obj = restricted_pickle_load(path, allow_pymatgen=False)
    if isinstance(obj, dict):
        obj = list(obj.values())
    if not isinstance(obj, (list, tuple)) or not obj:
        raise DataError(f"{path}: expected a list of index arrays, got {type(obj).__name__}")
    out = []
    for i, a in enumerate(obj):
        arr = np.asarray(a)
        integral = arr.dtype.kind in "iu" or (
            arr.dtype.kind == "f" and bool(np.all(arr == np.round(arr)))
        )
        if arr.ndim != 1 or not integral:
            raise DataError(
                f"{path}: entry {i} is not a 1-D integer array (dtype {arr.dtype}, "
                f"shape {arr.shape})"
            )
        arr = arr.astype(np.int64)
        if (arr < 0).any():
            raise DataError(f"{path}: entry {i} has negative indices")
        out.append(arr)
    return out


def _symbol_of(sp: Any, where: str) -> str:
    if isinstance(sp, str):
        return re.sub(r"[^A-Za-z]", "", sp)
    if isinstance(sp, _Placeholder):
        name = type(sp).__name__
        if name == "Element":
            if sp.args and isinstance(sp.args[0], str):
                return sp.args[0]
            sym = sp.get("_symbol", "symbol", "_value_")
            if isinstance(sym, str):
                return sym
        if name in ("Species", "Specie"):
            el = sp.get("_el", "el")
            if el is not None:
                return _symbol_of(el, where)
            if sp.args:
                return _symbol_of(sp.args[0], where)
        if name in ("DummySpecies", "DummySpecie"):
            raise DataError(f"{where}: structure contains a dummy species")
    raise DataError(f"{where}: cannot read a species from {sp!r}")


def _placeholder_to_structure(obj: Any, where: str, checks: StructureChecks | None = None) -> Any:
    """Rebuild a pymatgen Structure from the placeholders of a pickled Structure, checked
    (:func:`check_structure`; a partially occupied site is rebuilt with its occupancies so that
    ``structure_checks.disordered`` decides)."""
    from pymatgen.core import Lattice, Structure

    if not (isinstance(obj, _Placeholder) and type(obj).__name__ in ("Structure", "IStructure")):
        raise DataError(f"{where}: expected a pymatgen Structure, got {obj!r}")
    try:
        lat = obj.get("_lattice", "lattice")
        matrix = lat.get("_matrix", "matrix") if isinstance(lat, _Placeholder) else None
        if matrix is None:
            raise ValueError("no lattice matrix")
        matrix = np.asarray(matrix, dtype=np.float64).reshape(3, 3)
        sites = obj.get("_sites", "sites")
        if sites is None:
            raise ValueError("no sites")
        species, fracs = [], []
        inv = np.linalg.inv(matrix)
        for k, site in enumerate(sites):
            if not isinstance(site, _Placeholder):
                raise ValueError(f"site {k} is {site!r}")
            comp = site.get("_species", "species")
            data = comp.get("_data", "_elmap") if isinstance(comp, _Placeholder) else comp
            if not isinstance(data, dict) or not data:
                raise ValueError(f"site {k} has no species")
            occ = {_symbol_of(sp, where): float(v) for sp, v in data.items()}
            check_symbols(list(occ), f"{where} site {k}")
            if len(occ) == 1 and abs(next(iter(occ.values())) - 1.0) <= 1e-6:
                species.append(next(iter(occ)))
            else:  # disordered: check_structure refuses or orders it
                species.append(occ)
            frac = site.get("_frac_coords", "_fcoords", "frac_coords")
            if frac is None:
                cart = site.get("_coords", "coords")
                if cart is None:
                    raise ValueError(f"site {k} has no coordinates")
                frac = np.asarray(cart, dtype=np.float64) @ inv
            fracs.append(np.asarray(frac, dtype=np.float64).reshape(3))
        s = Structure(Lattice(matrix), species, np.asarray(fracs))
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"{where}: pymatgen cannot rebuild the pickled structure ({type(exc).__name__}: {exc})"
        ) from None
    return check_structure(s, where, checks)


def load_structure_pickle(
    path: str | Path,
    ids: list[str] | None = None,
    checks: StructureChecks | None = None,
    collect_errors: bool = False,
) -> list[Any]:
    """A pickled list of pymatgen Structures (Mat2Spec ``phdos/ph_structures.pkl``,
    docs/papers/mat2spec.md §4.1), read with :class:`RestrictedUnpickler` (pymatgen classes as
    placeholders) and rebuilt
    as real, checked Structures. Errors name the file and the record (``ids[i]`` when given).

    With ``collect_errors`` a bad entry does not raise: its place in the list holds the
    :class:`DataError`, for the caller to raise inside its per-record ``strict`` guard (a broken
    or refused file as a whole still raises)."""
    path = Path(path)
    obj = restricted_pickle_load(path, allow_pymatgen=True)
    if isinstance(obj, dict):
        obj = list(obj.values())
    if not isinstance(obj, (list, tuple)):
        raise DataError(f"{path}: expected a list of pymatgen Structures, got {type(obj).__name__}")
    out = []
    for i, item in enumerate(obj):
        rec = ids[i] if ids is not None and i < len(ids) else f"#{i}"
        try:
            out.append(_placeholder_to_structure(item, f"{path}: record {rec} (entry {i})", checks))
        except DataError as exc:
            if not collect_errors:
                raise
            out.append(exc)
    return out
