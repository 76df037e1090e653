"""Tiny raw-data fixtures in the exact published layouts (written into tmp dirs by the tests).

Each ``write_*`` function writes one published format for a handful of small crystals and returns
what the test needs to check the parse (ids, spectra). See ``dos_bench/data/sources/*`` for the
format references (docs/papers/alignn_dos.md §1.1, docs/papers/dostransformer.md §2.2,
docs/papers/xtal2dos.md §3.1, docs/papers/mat2spec.md §4.1). The checks every source test shares
(:func:`check_common`, :func:`no_tmp_left`) and the code cells the literal parser must refuse
(:data:`CODE_CELLS`) are at the end.
"""

from __future__ import annotations

import csv
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure
from pymatgen.electronic_structure.core import Spin
from pymatgen.electronic_structure.dos import CompleteDos, Dos

from dos_bench.data.records import RecordSet
from dos_bench.data.sources.structures import valence_electrons

JARVIS_GRID = -5.0 + 0.05 * np.arange(300)
PH_GRID = 20.0 * np.arange(51)


def structures() -> list[Structure]:
    """Six small ordered crystals covering several crystal systems."""
    return [
        Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),  # cubic
        Structure(
            Lattice.hexagonal(3.21, 5.21),
            ["Mg", "Mg"],
            [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]],
        ),  # hexagonal
        Structure(
            Lattice.tetragonal(4.59, 2.96),
            ["Ti", "Ti", "O", "O", "O", "O"],
            [
                [0, 0, 0],
                [0.5, 0.5, 0.5],
                [0.3, 0.3, 0],
                [0.7, 0.7, 0],
                [0.8, 0.2, 0.5],
                [0.2, 0.8, 0.5],
            ],
        ),  # tetragonal (rutile)
        Structure(Lattice.orthorhombic(3.1, 4.2, 5.3), ["Ga", "As"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        Structure(
            Lattice.monoclinic(3.3, 4.4, 5.5, 100), ["Fe", "O"], [[0, 0, 0], [0.5, 0.3, 0.2]]
        ),
        Structure(Lattice.cubic(2.87), ["Si"], [[0, 0, 0]]),
    ]


def _gauss(x: np.ndarray, mu: float, sigma: float, area: float) -> np.ndarray:
    return area * np.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


# ============================================================================ JARVIS edos_pdos
def jarvis_spectrum(s: Structure, normalised: bool = True) -> np.ndarray:
    """Spin-up DOS: a valence band holding ~N_val/2 states and a conduction band."""
    nval = valence_electrons(s)
    raw = _gauss(JARVIS_GRID, -3.0, 1.5, 0.45 * nval) + _gauss(JARVIS_GRID, 4.0, 1.5, 0.3 * nval)
    return raw / nval if normalised else raw


def jarvis_atoms(s: Structure) -> dict:
    return {
        "lattice_mat": s.lattice.matrix.tolist(),
        "coords": s.frac_coords.tolist(),
        "elements": [sp.symbol for sp in s.species],
        "abc": list(s.lattice.abc),
        "angles": list(s.lattice.angles),
        "cartesian": False,
        "props": ["" for _ in s],
    }


def write_jarvis(
    path: Path,
    normalised: bool = True,
    na_index: int | None = 2,
    as_zip: bool = False,
    edit: dict | None = None,
) -> dict[str, np.ndarray]:
    """A JARVIS ``edos_pdos`` JSON list (or figshare-style zip). ``edit`` maps an entry index to
    a dict of keys to overwrite. Returns ``jid -> edos_up`` for the records that have one."""
    entries, expected = [], {}
    for i, s in enumerate(structures()):
        jid = f"JVASP-{1000 + i}"
        y = jarvis_spectrum(s, normalised)
        e = {
            "jid": jid,
            "atoms": jarvis_atoms(s),
            "edos_up": "na" if i == na_index else y.tolist(),
            "pdos_elast": "na" if i % 2 else np.linspace(0, 1, 200).tolist(),
        }
        if edit and i in edit:
            e.update(edit[i])
        if i != na_index:
            expected[jid] = y
        entries.append(e)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(entries)
    if as_zip:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("edos-up_pdos-elast_interp-8-18-2021.json", text)
    else:
        path.write_text(text)
    return expected


# ============================================================================ Mat2Spec eDOS folder
def write_mat2spec_edos(
    root: Path, header: bool = True, n_cols: int = 128, n_ids: int | None = None
) -> tuple[list[str], np.ndarray]:
    """``label_edos/mpids.csv``, ``label_edos/total_dos_128.npy``, ``materials_with_edos/``."""
    ss = structures()
    ids = [f"mp-{100 + i}" for i in range(len(ss))]
    rng = np.random.default_rng(0)
    y = rng.uniform(0.0, 20.0, size=(len(ss), n_cols))
    (root / "label_edos").mkdir(parents=True, exist_ok=True)
    (root / "materials_with_edos").mkdir(parents=True, exist_ok=True)
    listed = ids[: n_ids if n_ids is not None else len(ids)]
    (root / "label_edos" / "mpids.csv").write_text(
        ("0\n" if header else "") + "".join(f"{m}\n" for m in listed)
    )
    np.save(root / "label_edos" / "total_dos_128.npy", y)
    for m, s in zip(ids, ss, strict=True):
        (root / "materials_with_edos" / f"dos_{m}.json").write_text(
            json.dumps({"structure": s.as_dict(), "material_id": m})
        )
    return ids, y


# ============================================================================ MP DOS documents
EF_ABS = 5.0  # absolute Fermi level of the synthetic documents (eV)


def _sqrt_edge(e: np.ndarray, edge: float, sign: float, width: float, amp: float) -> np.ndarray:
    x = sign * (e - edge)
    return np.where((x > 0) & (x < width), amp * np.sqrt(np.clip(x, 0, None)), 0.0)


def mp_dos_kinds() -> list[str]:
    return ["insulator", "metal", "magnetic", "polarised_nm", "insulator", "metal"]


def mp_dos_document(s: Structure, kind: str, ef_abs: float = EF_ABS) -> Dos:
    """A pymatgen ``CompleteDos`` (no projections) with its Fermi level at ``ef_abs`` (eV), of one
    of four kinds:

    * ``insulator``: VBM at E_F, gap 1.5 eV;
    * ``metal``: a band through E_F;
    * ``magnetic``: spin-polarised, spin-down band shifted up by 1 eV;
    * ``polarised_nm``: spin-polarised calculation with identical channels.
    """
    e = np.round(np.arange(ef_abs - 20.0, ef_abs + 20.0 + 1e-9, 0.01), 6)
    if kind == "insulator":
        up = _sqrt_edge(e, ef_abs, -1, 6.0, 2.0) + _sqrt_edge(e, ef_abs + 1.5, 1, 6.0, 1.5)
        dens = {Spin.up: up}
    elif kind == "metal":
        dens = {Spin.up: _sqrt_edge(e, ef_abs - 4.0, 1, 10.0, 1.0)}
    elif kind == "magnetic":
        dens = {
            Spin.up: _sqrt_edge(e, ef_abs - 4.0, 1, 10.0, 0.5),
            Spin.down: _sqrt_edge(e, ef_abs - 3.0, 1, 10.0, 0.5),
        }
    else:
        half = _sqrt_edge(e, ef_abs - 4.0, 1, 10.0, 0.5)
        dens = {Spin.up: half, Spin.down: half.copy()}
    return CompleteDos(s, Dos(ef_abs, e, dens), {})


def write_mp_dos_docs(target: Path, layout: str = "folder") -> dict[str, str]:
    """Write the documents as a folder (mixing bare ``CompleteDos`` files and wrappers), a
    ``.jsonl`` file or a JSON list of wrappers. Returns ``material_id -> kind``."""
    kinds = {}
    docs = []
    for i, (s, kind) in enumerate(zip(structures(), mp_dos_kinds(), strict=True)):
        mid = f"mp-{200 + i}"
        kinds[mid] = kind
        cdos = mp_dos_document(s, kind)
        if layout == "folder" and i % 2 == 0:
            docs.append((mid, cdos.as_dict()))  # a bare CompleteDos document, structure inside
        else:
            d = Dos(cdos.efermi, cdos.energies, cdos.densities).as_dict()
            docs.append((mid, {"material_id": mid, "dos": d, "structure": s.as_dict()}))
    if layout == "folder":
        target.mkdir(parents=True, exist_ok=True)
        for mid, d in docs:
            (target / f"{mid}.json").write_text(json.dumps(d))
    elif layout == "jsonl":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps(d) + "\n" for _, d in docs))
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps([d for _, d in docs]))
    return kinds


# ======================================================================= E3NN / Mat2Spec phonons
def ph_spectra(n: int, n_cols: int = 51) -> np.ndarray:
    rng = np.random.default_rng(1)
    y = rng.uniform(0.0, 1.0, size=(n, n_cols))
    y[:, 0] = 0.0
    return y / y.max(axis=1, keepdims=True)


def write_mat2spec_phdos(root: Path, n_cols: int = 51) -> tuple[list[str], np.ndarray]:
    """``phdos/mpids.csv`` (with header), ``phdos/ph_dos.npy``, ``phdos/ph_structures.pkl``."""
    ss = structures()
    ids = [f"mp-{300 + i}" for i in range(len(ss))]
    y = ph_spectra(len(ss), n_cols)
    d = root / "phdos"
    d.mkdir(parents=True, exist_ok=True)
    (d / "mpids.csv").write_text("0\n" + "".join(f"{m}\n" for m in ids))
    np.save(d / "ph_dos.npy", y)
    with open(d / "ph_structures.pkl", "wb") as fh:
        pickle.dump(ss, fh)
    return ids, y


class _Evil:
    """Pickles to a call of ``fn(*args)`` (what a malicious pickle does)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def write_evil_pickle(path: Path, fn, args) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump([_Evil(fn, args)], fh)


# ============================================================================ TUT data.csv
def ase_dict_repr(s: Structure) -> str:
    """``repr`` of an ASE ``Atoms.todict()`` dict, numpy arrays as ``array([...])``."""
    d = {
        "numbers": np.array(s.atomic_numbers),
        "positions": np.array(s.cart_coords),
        "cell": np.array(s.lattice.matrix),
        "pbc": np.array([True, True, True]),
    }
    return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in d.items()) + "}"


def write_tut_csv(
    path: Path, override: dict[int, dict[str, str]] | None = None
) -> tuple[list[str], np.ndarray]:
    """The tutorial ``data.csv`` layout; ``override`` maps a row to replacement cells."""
    ss = structures()
    ids = [f"mp-{400 + i}" for i in range(len(ss))]
    y = ph_spectra(len(ss))
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mp_id", "structure", "phfreq", "phdos", "pdos", "formula", "species"])
        for i, (m, s) in enumerate(zip(ids, ss, strict=True)):
            species = sorted({sp.symbol for sp in s.species})
            row = {
                "mp_id": m,
                "structure": ase_dict_repr(s),
                "phfreq": str(PH_GRID.tolist()),
                "phdos": str(y[i].tolist()),
                "pdos": "{" + ", ".join(f"{e!r}: {np.round(y[i], 3)!r}" for e in species) + "}",
                "formula": s.composition.formula.replace(" ", ""),
                "species": str(species),
            }
            row.update((override or {}).get(i, {}))
            w.writerow(
                [
                    row[c]
                    for c in ("mp_id", "structure", "phfreq", "phdos", "pdos", "formula", "species")
                ]
            )
    return ids, y


# ============================================================================ shared checks
#: where the published split files are kept beside the repository (tests skip without them)
SPLITS = Path(__file__).parents[3] / "shared" / "data" / "published_splits"
JARVIS_ZIP = "jarvis/edos-up_pdos-elast_interp-8-18-2021.json.zip"
META = {"formula", "n_species", "crystal_system", "n_atoms"}
SYSTEMS = {
    "cubic",
    "hexagonal",
    "tetragonal",
    "trigonal",
    "orthorhombic",
    "monoclinic",
    "triclinic",
}
#: cells holding code, which the phonon-tutorial reader and the literal parser must refuse
CODE_CELLS = [
    "__import__('os').system('touch {marker}')",
    "array([1]).__class__",
    "{'numbers': array([1]), 'positions': open('{marker}', 'w')}",
    "[x for x in ().__class__.__base__.__subclasses__()]",
    "(lambda: __import__('os').system('touch {marker}'))()",
    "array([1], dtype=object)",
]


def no_tmp_left(root: Path) -> None:
    left = [p for p in root.rglob("*") if p.name.endswith(".tmp")]
    assert not left, left


def check_common(rs: RecordSet, kind: str) -> None:
    assert META <= set(rs.meta)
    assert set(rs.meta["crystal_system"].tolist()) <= SYSTEMS
    assert (rs.meta["n_atoms"] == rs.n_atoms).all()
    for k in ("name", "kind", "energy_unit", "dos_unit"):
        assert k in rs.attrs
    assert rs.attrs["kind"] == kind
