"""The miniature published archives of ``tests/archives.py`` and their loopback server.

Checks what a user of the real archives relies on: the published member names and file shapes,
index files that partition the rows, structures varied enough for DOSTransformer's OOD splits,
a fake Materials Project client with the builder's interface, and a server that hands out the
exact bytes (and a record JSON whose checksum matches them).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import importlib.util
import io
import json
import pickle
import sys
import urllib.error
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from pymatgen.core import Lattice, Structure
from pymatgen.electronic_structure.dos import Dos
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from dos_bench.config import CONF_DIR
from dos_bench.data.download.materials_project import build_mp_dos_documents

_spec = importlib.util.spec_from_file_location(
    "dos_archives", Path(__file__).with_name("archives.py")
)
A = importlib.util.module_from_spec(_spec)
sys.modules["dos_archives"] = A
_spec.loader.exec_module(A)

SYSTEMS = {
    "cubic",
    "hexagonal",
    "tetragonal",
    "trigonal",
    "orthorhombic",
    "monoclinic",
    "triclinic",
}
PH_GRID = 20.0 * np.arange(51)
#: the header of ninarina12/phononDoS_tutorial data/data_alloy.csv (the published layout)
TUT_HEADER = ["mp_id", "structure", "phfreq", "phdos", "pdos", "formula", "species"]


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict:
    return A.write_all(tmp_path_factory.mktemp("archives"))


def _read_member(zip_path: Path, name: str) -> bytes:
    with zipfile.ZipFile(zip_path) as zf:
        return zf.read(name)


def _system(s: Structure) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SpacegroupAnalyzer(s, symprec=0.1).get_crystal_system()


def _check_variety(structures: list[Structure], what: str) -> None:
    """1-5 species and the seven crystal systems, >= 3 in each OOD evaluation group; small
    cells with sensible distances."""
    n_species = [len(s.composition.elements) for s in structures]
    systems = [_system(s) for s in structures]
    assert set(n_species) == {1, 2, 3, 4, 5}, (what, sorted(n_species))
    assert set(systems) == SYSTEMS, (what, sorted(set(systems)))
    for k in (1, 4, 5):
        assert n_species.count(k) >= 3, (what, k, n_species.count(k))
    for cs in ("monoclinic", "triclinic"):
        assert systems.count(cs) >= 3, (what, cs, systems.count(cs))
    for s in structures:
        assert len(s) <= 8, (what, s.composition)
        assert A.min_distance(s) >= 1.8, (what, s.composition, A.min_distance(s))


def _py_literal(text: str):
    """Evaluate the cell of an ASE-dict repr: literals plus ``array([...])`` calls (no eval)."""

    def conv(node):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "array":
            return np.array(conv(node.args[0]))
        if isinstance(node, ast.Dict):
            return {conv(k): conv(v) for k, v in zip(node.keys, node.values, strict=True)}
        if isinstance(node, ast.List):
            return [conv(e) for e in node.elts]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -conv(node.operand)
        if isinstance(node, ast.Constant):
            return node.value
        raise ValueError(f"unexpected syntax {ast.dump(node)[:60]}")

    return conv(ast.parse(text, mode="eval").body)


# ============================================================================ JARVIS figshare
def test_jarvis_zip_holds_the_published_record_list(archives):
    arc = archives["jarvis"]
    assert arc.path.name == "edos-up_pdos-elast_interp-8-18-2021.json.zip"
    with zipfile.ZipFile(arc.path) as zf:
        assert zf.namelist() == ["edos-up_pdos-elast_interp-8-18-2021.json"]
    records = json.loads(_read_member(arc.path, A.JARVIS_JSON))
    assert isinstance(records, list) and len(records) == arc.counts["records"] >= 35
    jids = [r["jid"] for r in records]
    assert jids == arc.ids["all"] and len(set(jids)) == len(jids)
    assert all(j.startswith("JVASP-") for j in jids)

    n_na = 0
    structures = []
    for r in records:
        assert {"jid", "atoms", "edos_up", "pdos_elast"} <= set(r)
        at = r["atoms"]
        assert {"lattice_mat", "coords", "elements", "cartesian"} <= set(at)
        s = Structure(
            Lattice(at["lattice_mat"]),
            at["elements"],
            at["coords"],
            coords_are_cartesian=at["cartesian"],
        )
        assert len(at["coords"]) == len(at["elements"]) == len(s)
        structures.append(s)
        if r["edos_up"] == "na":
            n_na += 1
        else:
            y = np.asarray(r["edos_up"], dtype=float)
            assert y.shape == (300,) and np.isfinite(y).all()
            # valence-normalised (docs/papers/alignn_dos.md §1.1)
            assert y.min() >= 0.0 and y.max() <= 0.4
            occupied = y[:100].sum() * 0.05  # ∫_{-5}^{0}: ≤ 0.5 spin-up states per electron
            assert 0.05 <= occupied <= 0.6
        if r["pdos_elast"] != "na":
            p = np.asarray(r["pdos_elast"], dtype=float)
            assert p.shape == (200,) and p.min() >= 0.0 and p.max() > 0.0
    assert n_na == arc.counts["edos_na"] >= 2
    assert arc.counts["pdos_na"] >= 2
    _check_variety(structures, "jarvis")


# ============================================================================ Mat2Spec record
def test_mat2spec_zip_has_the_published_layout(archives):
    arc = archives["mat2spec"]
    e_ids, p_ids = arc.ids["edos"], arc.ids["phdos"]
    with zipfile.ZipFile(arc.path) as zf:
        names = zf.namelist()
    files = {n for n in names if not n.endswith("/")}
    root = "Mat2Spec_DATA/"
    assert all(n.startswith(root) for n in names)
    expected = {
        root + "atom_init.json",
        root + "label_edos/mpids.csv",
        root + "label_edos/total_dos_128.npy",
        root + "phdos/mpids.csv",
        root + "phdos/ph_dos.npy",
        root + "phdos/ph_structures.pkl",
        root + "phdos/200801_trteva_indices.pkl",
    } | {f"{root}materials_with_edos/dos_{m}.json" for m in e_ids}
    assert files == expected

    def member(rel: str) -> bytes:
        return _read_member(arc.path, root + rel)

    # eDOS: ids with a header line, N x 128 states/eV, one structure document per id
    lines = member("label_edos/mpids.csv").decode().splitlines()
    assert len(lines) == len(e_ids) + 1 and lines[1:] == e_ids and not lines[0].startswith("mp-")
    edos = np.load(io.BytesIO(member("label_edos/total_dos_128.npy")), allow_pickle=False)
    assert edos.shape == (len(e_ids), 128) == (arc.counts["edos"], 128)
    assert np.isfinite(edos).all() and edos.min() >= 0.0 and (edos.max(axis=1) > 0).all()
    e_structs = []
    for m in e_ids:
        doc = json.loads(member(f"materials_with_edos/dos_{m}.json"))
        s = Structure.from_dict(doc["structure"])
        assert s.composition.reduced_formula == arc.meta[m]["formula"]
        e_structs.append(s)
    _check_variety(e_structs, "mat2spec edos")

    # phDOS: M x 51 max-normalised, structures in the same order, the index pickle
    lines = member("phdos/mpids.csv").decode().splitlines()
    assert lines[1:] == p_ids
    ph = np.load(io.BytesIO(member("phdos/ph_dos.npy")), allow_pickle=False)
    assert ph.shape == (len(p_ids), 51)
    assert ph.min() >= 0.0 and np.array_equal(ph.max(axis=1), np.ones(len(p_ids)))
    structs = pickle.loads(member("phdos/ph_structures.pkl"))
    assert isinstance(structs, list) and len(structs) == len(p_ids)
    assert all(isinstance(s, Structure) for s in structs)
    assert [len(s) for s in structs] == [arc.meta[m]["n_atoms"] for m in p_ids]
    _check_variety(structs, "mat2spec phdos")

    split = pickle.loads(member("phdos/200801_trteva_indices.pkl"))
    # train, valid, test (docs/papers/mat2spec.md §4.2)
    assert isinstance(split, list) and len(split) == 3
    assert all(isinstance(a, np.ndarray) and a.dtype == np.int64 and a.ndim == 1 for a in split)
    tr, va, te = (set(a.tolist()) for a in split)
    assert not (tr & va or tr & te or va & te)
    assert tr | va | te == set(range(len(p_ids)))
    assert len(split[0]) > len(split[1]) >= 3 and len(split[2]) >= 3
    for part, a in zip(("train", "valid", "test"), split, strict=True):
        assert np.array_equal(arc.splits[part], a)

    # CGCNN atom_init.json: "1".."100" -> 92-long 0/1 vectors, every element present
    atom_init = json.loads(member("atom_init.json"))
    assert set(atom_init) == {str(z) for z in range(1, 101)}
    vecs = np.array([atom_init[str(z)] for z in range(1, 101)], dtype=float)
    assert vecs.shape == (100, 92) and set(np.unique(vecs)) <= {0.0, 1.0}
    assert len({tuple(v) for v in vecs}) > 50  # a real embedding, not one repeated vector
    used = {el.Z for s in e_structs + structs for el in s.composition.elements}
    assert all(str(z) in atom_init for z in used)


# ============================================================================ phonon tutorial
def test_phonon_tutorial_csv_and_index_files(archives):
    arc = archives["phonon_tut"]
    with open(arc.files["data.csv"], newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == TUT_HEADER
    rows = rows[1:]
    assert len(rows) == arc.counts["rows"] == len(arc.ids["all"])
    structures = []
    for row, mid in zip(rows, arc.ids["all"], strict=True):
        cell = dict(zip(TUT_HEADER, row, strict=True))
        assert cell["mp_id"] == mid
        atoms = _py_literal(cell["structure"])
        assert set(atoms) == {"numbers", "positions", "cell", "pbc"}
        s = Structure(
            Lattice(atoms["cell"]),
            atoms["numbers"].tolist(),
            atoms["positions"],
            coords_are_cartesian=True,
        )
        structures.append(s)
        assert np.allclose(ast.literal_eval(cell["phfreq"]), PH_GRID)
        y = np.asarray(ast.literal_eval(cell["phdos"]), dtype=float)
        assert y.shape == (51,) and y.min() >= 0.0 and y.max() == 1.0
        species = ast.literal_eval(cell["species"])
        assert sorted(species) == sorted(el.symbol for el in s.composition.elements)
        assert set(_py_literal(cell["pdos"])) == set(species)
        assert " " not in cell["formula"]
    _check_variety(structures, "phonon_tut")

    parts = {}
    for part in ("train", "valid", "test"):
        text = arc.files[f"idx_{part}.txt"].read_text()
        assert text.endswith("\n")
        parts[part] = [int(tok) for tok in text.splitlines()]  # one integer per line
        assert parts[part] == arc.splits[part].tolist()
    tr, va, te = (set(parts[p]) for p in ("train", "valid", "test"))
    assert not (tr & va or tr & te or va & te) and tr | va | te == set(range(len(rows)))
    assert len(va) >= 3 and len(te) >= 3


# ============================================================================ leaderboard
def test_leaderboard_benchmark_file(archives):
    arc, jarvis = archives["leaderboard"], archives["jarvis"]
    with zipfile.ZipFile(arc.path) as zf:
        assert zf.namelist() == ["edos_pdos_ph_dos.json"]
    doc = json.loads(_read_member(arc.path, A.LEADERBOARD_JSON))
    assert set(doc) == {"train", "val", "test"}
    usable = set(jarvis.ids["edos"]) & set(jarvis.ids["pdos"])
    seen: set[str] = set()
    for entries in doc.values():
        assert isinstance(entries, dict) and len(entries) >= 3
        assert not (seen & set(entries)) and set(entries) <= usable
        seen |= set(entries)
        for target in entries.values():
            y = np.array(target.split(";"), dtype=float)
            assert y.shape == (66,) and y.min() >= 0.0 and y.max() == 1.0
    assert seen == usable  # every record with a phonon DOS is in the benchmark
    n = len(seen)
    assert len(doc["train"]) == n - len(doc["val"]) - len(doc["test"])
    assert 0.6 * n <= len(doc["train"]) <= 0.8 * n
    assert {p: list(v) for p, v in doc.items()} == arc.splits


# ============================================================================ Materials Project
def test_fake_mprester_serves_varied_non_magnetic_documents(tmp_path):
    with A.FakeMPRester("my-key", endpoint="https://api.materialsproject.org", timeout=5) as mpr:
        assert mpr.api_key == "my-key"
        fields = ["material_id", "structure", "is_magnetic", "band_gap"]
        docs = mpr.materials.summary.search(
            has_props=["dos"], is_magnetic=False, fields=fields, chunk_size=1000
        )
        everything = mpr.materials.summary.search(has_props=["dos"], fields=fields)
        assert len(docs) == 40 and len(everything) == 43
        assert all(set(d) == set(fields) and d["is_magnetic"] is False for d in docs)
        structures = [d["structure"] for d in docs]
        _check_variety(structures, "materials project")

        mid = docs[0]["material_id"]
        dos = mpr.get_dos_by_material_id(mid)
        assert isinstance(dos, Dos) and dos.structure == structures[0]
        assert mpr.dos_calls == [mid] and mpr.get_database_version()

        # the builder of mp_edos_201 / mp_edos_128_from_dos accepts it as its client
        cfg = OmegaConf.load(CONF_DIR / "dataset" / "mp_edos_201.yaml")
        folder, manifest = build_mp_dos_documents(mpr, tmp_path, cfg, progress=False)
    assert len(list(folder.glob("*.json.gz"))) == 40
    assert json.loads(manifest.read_text())["n_failed"] == 0
    assert A.FakeMPRester(api_key="x", n=5, n_magnetic=0).materials.summary.search(
        is_magnetic=False, fields=["material_id"]
    ) == [{"material_id": m} for m in A.FakeMPRester(n=5, n_magnetic=0).non_magnetic_ids]


# ============================================================================ server
def _get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers.items()), exc.read()


def test_server_serves_files_and_a_record_with_matching_checksum(archives, tmp_path):
    zip_path = archives["mat2spec"].path
    csv_path = archives["phonon_tut"].files["data.csv"]
    with A.ArchiveServer({"/files/1": zip_path, "/notes": b"hello"}) as srv:
        srv.add("/data/data.csv", csv_path)
        srv.add_record("8975", {"Mat2Spec_DATA.zip": zip_path})
        assert srv.url("/files/1").startswith("http://127.0.0.1:")

        status, headers, body = _get(srv.url("/files/1?download=1"))
        assert status == 200 and body == zip_path.read_bytes()
        assert headers["Content-Type"] == "application/zip"
        assert int(headers["Content-Length"]) == len(body)
        status, headers, body = _get(srv.url("/data/data.csv"))
        assert headers["Content-Type"] == "text/csv" and body == csv_path.read_bytes()
        assert _get(srv.url("/notes"))[2] == b"hello"
        assert _get(srv.url("/missing"))[0] == 404

        status, headers, body = _get(srv.url("/api/records/8975"))
        assert status == 200 and headers["Content-Type"] == "application/json"
        record = json.loads(body)
        assert record["id"] == "8975" and record["files"]["enabled"] is True
        entry = record["files"]["entries"]["Mat2Spec_DATA.zip"]
        assert entry["key"] == "Mat2Spec_DATA.zip"
        link = entry["links"]["content"]
        assert link == srv.url("/api/records/8975/files/Mat2Spec_DATA.zip/content")
        status, headers, content = _get(link)
        assert status == 200 and content == zip_path.read_bytes()
        assert entry["checksum"] == "md5:" + hashlib.md5(content).hexdigest()
        assert entry["size"] == len(content)
        assert _get(srv.url("/records/8975"))[1]["Content-Type"].startswith("text/html")
        assert _get(srv.url("/api/records/1"))[0] == 404
        assert [r[1] for r in srv.requests][:2] == ["/files/1", "/data/data.csv"]
    with pytest.raises(RuntimeError):
        srv.url("/files/1")  # stopped

    # every dataset's download path answers with the archive's bytes
    with A.serve_archives(archives) as srv:
        for dataset, paths in A.DATASET_URL_PATHS.items():
            for path in paths:
                status, _, body = _get(srv.url(path))
                assert status == 200, (dataset, path)
        assert _get(srv.url(A.JARVIS_FIGSHARE_PATH))[2] == archives["jarvis"].path.read_bytes()


def test_archives_are_byte_for_byte_deterministic(archives, tmp_path):
    again = A.write_all(tmp_path)
    for name, arc in archives.items():
        for key, path in arc.files.items():
            assert again[name].files[key].read_bytes() == path.read_bytes(), (name, key)
