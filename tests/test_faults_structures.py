"""Issue 12 "Structures": unknown elements, overlapping atoms, disordered sites and isolated atoms.

Each fault is one :class:`DataError` naming the file and the record. In training the published
sources respect ``strict`` (true: stop; false: skip the record, log it, count it in
``attrs["n_failed"]``); isolated atoms depend on the model's graph cutoff and are refused where
graphs are built. ``dos-predict`` names and skips a bad file, writes the others, exits 1.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dos_bench.data.graphs import GraphRecipe, build_graphs, check_isolated
from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.data.sources import JarvisEDOS, Mat2SpecEDOS, PhononE3NN, PhononTUT
from dos_bench.data.structure_checks import (
    StructureChecks,
    check_structure,
    read_structure_file,
)
from dos_bench.io import ConfigError, DataError

_spec = importlib.util.spec_from_file_location(
    "dos_sources_fixtures_faults", Path(__file__).parent / "data" / "fixtures.py"
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)

CONF = Path(__file__).resolve().parents[1] / "dos_bench" / "conf"
JARVIS_ZIP = "jarvis/edos-up_pdos-elast_interp-8-18-2021.json.zip"
CUBIC4 = [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]]


# ====================================================================== bad structures
def overlapping() -> Structure:
    """NaCl with the Cl on top of the Na (0 Å apart)."""
    return Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0, 0, 0]])


def disordered() -> Structure:
    """A (Na0.5 K0.5)Cl rock-salt cell: one site with two species at half occupancy."""
    return Structure(
        Lattice.cubic(5.64), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def lonely() -> Structure:
    """One Na atom in a 9 Å cube: its nearest neighbour (its own image) is beyond 8 Å."""
    return Structure(Lattice.cubic(9.0), ["Na"], [[0, 0, 0]])


def jarvis_atoms(elements, coords, lattice=CUBIC4) -> dict:
    return {"lattice_mat": lattice, "coords": coords, "elements": elements, "cartesian": False}


# ------------------------------------------------------------- one tiny source per case
def _jarvis(root: Path, atoms: dict, strict: bool, **kw):
    F.write_jarvis(root / JARVIS_ZIP, as_zip=True, edit={3: {"atoms": atoms}})
    return JarvisEDOS(strict=strict, **kw), "JVASP-1003", 4


def jarvis_unknown(root, strict, **kw):
    return _jarvis(root, jarvis_atoms(["Xx", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), strict, **kw)


def jarvis_overlap(root, strict, **kw):
    return _jarvis(root, jarvis_atoms(["Na", "Cl"], [[0, 0, 0], [0, 0, 0]]), strict, **kw)


def _mat2spec(root: Path, s: Structure, strict: bool, **kw):
    ids, _ = F.write_mat2spec_edos(root / "Mat2Spec_DATA")
    f = root / "Mat2Spec_DATA" / "materials_with_edos" / f"dos_{ids[2]}.json"
    f.write_text(json.dumps({"structure": s.as_dict(), "material_id": ids[2]}))
    return Mat2SpecEDOS(strict=strict, **kw), ids[2], 5


def mat2spec_overlap(root, strict, **kw):
    return _mat2spec(root, overlapping(), strict, **kw)


def mat2spec_disordered(root, strict, **kw):
    return _mat2spec(root, disordered(), strict, **kw)


def e3nn_disordered(root, strict, **kw):
    ids, _ = F.write_mat2spec_phdos(root / "Mat2Spec_DATA")
    ss = F.structures()
    ss[4] = disordered()
    with open(root / "Mat2Spec_DATA" / "phdos" / "ph_structures.pkl", "wb") as fh:
        pickle.dump(ss, fh)
    return PhononE3NN(strict=strict, **kw), ids[4], 5


def tut_unknown(root, strict, **kw):
    cell = (
        "{'numbers': array([0, 17]), 'positions': array([[0., 0., 0.], [2., 2., 2.]]), "
        "'cell': array([[4., 0., 0.], [0., 4., 0.], [0., 0., 4.]]), "
        "'pbc': array([ True,  True,  True])}"
    )
    ids, _ = F.write_tut_csv(root / "phonon_tut" / "data.csv", override={1: {"structure": cell}})
    return PhononTUT(strict=strict, **kw), ids[1], 5


CASES = {
    # case: (source factory, pattern of the reason)
    "jarvis_unknown_element": (jarvis_unknown, r"unknown element 'Xx' at site 0"),
    "jarvis_overlap": (jarvis_overlap, r"atoms 0 \(Na\) and 1 \(Cl\) are 0\.00 Å apart"),
    "mat2spec_overlap": (mat2spec_overlap, r"atoms 0 \(Na\) and 1 \(Cl\) are 0\.00 Å apart"),
    "mat2spec_disordered": (mat2spec_disordered, r"site 0 is disordered.*Na:0\.5, K:0\.5"),
    "e3nn_pickle_disordered": (e3nn_disordered, r"site 0 is disordered.*Na:0\.5, K:0\.5"),
    "tut_unknown_atomic_number": (tut_unknown, r"unknown element: atomic number 0 at site 0"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_strict_source_stops_naming_file_and_record(case, tmp_path):
    make, reason = CASES[case]
    src, rid, _ = make(tmp_path, strict=True)
    with pytest.raises(DataError, match=reason) as e:
        src.load(tmp_path)
    msg = str(e.value)
    assert rid in msg and str(tmp_path) in msg, msg  # the file and the record are named
    assert "min_distance 0.5 Å" in msg or "overlap" not in case
    assert not list(tmp_path.rglob("processed/*.npz"))  # nothing cached from a failed load


@pytest.mark.parametrize("case", list(CASES))
def test_lenient_source_skips_logs_and_counts(case, tmp_path, caplog):
    make, reason = CASES[case]
    src, rid, n_good = make(tmp_path, strict=False)
    caplog.set_level(logging.WARNING)
    rs = src.load(tmp_path)
    assert rid not in rs.ids.tolist() and len(rs) == n_good
    assert rs.attrs["n_failed"] == 1
    assert "skipped 1 bad records (strict=false)" in caplog.text
    assert rid in caplog.text
    assert any(re.search(reason, r.getMessage()) for r in caplog.records), caplog.text
    # the processed cache remembers the count
    caplog.clear()
    assert src.load(tmp_path).attrs["n_failed"] == 1
    assert "1 raw records were rejected" in caplog.text


def test_disordered_majority_option_orders_the_record(tmp_path):
    src, rid, _ = mat2spec_disordered(
        tmp_path, strict=True, structure_checks={"disordered": "majority"}
    )
    rs = src.load(tmp_path)
    i = rs.ids.tolist().index(rid)
    # ties go to the lower atomic number: Na (11) rather than K (19)
    assert rs.meta["formula"][i] == "NaCl" and sorted(rs.atoms(i)[1].tolist()) == [11, 17]
    # the option is part of the processed-cache key: refuse again -> parsed again -> refused
    with pytest.raises(DataError, match="disordered"):
        Mat2SpecEDOS().load(tmp_path)


def test_min_distance_is_an_option(tmp_path):
    close = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.1, 0, 0]])  # 0.4 Å
    with pytest.raises(DataError, match=r"0\.40 Å apart \(< structure_checks\.min_distance 0\.5"):
        check_structure(close, "x")
    assert check_structure(close, "x", StructureChecks(min_distance=0.3)) is close
    assert check_structure(close, "x", StructureChecks(min_distance=0)) is close
    src, rid, _ = _mat2spec(tmp_path, close, strict=True, structure_checks={"min_distance": 0.3})
    assert rid in src.load(tmp_path).ids.tolist()


def test_atom_too_close_to_its_own_image():
    s = Structure(Lattice([[0.3, 0, 0], [0, 4, 0], [0, 0, 4]]), ["Na"], [[0, 0, 0]])
    with pytest.raises(DataError, match=r"rec: atom 0 \(Na\) is 0\.30 Å from its own periodic"):
        check_structure(s, "rec")


@pytest.mark.parametrize(
    "options, key",
    [
        ({"min_distance": -1}, "min_distance"),
        ({"min_distance": "far"}, "min_distance"),
        ({"disordered": "shuffle"}, "disordered"),
        ({"isolated_atoms": "ignore"}, "isolated_atoms"),
        ({"min_dist": 0.5}, "unknown option"),
    ],
)
def test_bad_options_are_config_errors(options, key):
    with pytest.raises(ConfigError, match=rf"dataset\.source\.structure_checks.*{key}"):
        JarvisEDOS(structure_checks=options)


# ====================================================================== YAML wiring
def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize(
    "name",
    ["jarvis_edos", "jarvis_phdos", "mp_edos_128", "mp_edos_201", "phonon_e3nn", "phonon_tut"],
)
def test_every_published_dataset_gets_the_shared_checks(name, tmp_path):
    from hydra.utils import instantiate

    shared = (CONF / "structure_checks" / "default.yaml").read_text()
    assert "min_distance: 0.5" in shared
    cfg = _compose([f"dataset={name}", f"paths.data_dir={tmp_path}"])
    assert dict(cfg.dataset.source.structure_checks) == {
        "min_distance": 0.5,
        "disordered": "refuse",
        "isolated_atoms": "error",
    }
    cfg = _compose([f"dataset={name}", "dataset.source.structure_checks.min_distance=0.3"])
    assert instantiate(cfg.dataset.source).structure_checks.min_distance == 0.3


# ====================================================================== isolated atoms
def _datamodule(tmp_path: Path, *overrides: str):
    from hydra.utils import instantiate

    F.write_jarvis(
        tmp_path / JARVIS_ZIP,
        as_zip=True,
        edit={
            4: {"atoms": jarvis_atoms(["Na"], [[0, 0, 0]], [[9.0, 0, 0], [0, 9.0, 0], [0, 0, 9.0]])}
        },
    )
    cfg = _compose(
        [
            "dataset=jarvis_edos",
            "model=mlp",
            f"paths.data_dir={tmp_path}",
            "progress=false",
            "split.train=0.6",
            "split.val=0.2",
            "split.test=0.2",
            *overrides,
        ]
    )
    return instantiate(cfg.data)


@pytest.mark.parametrize("strict", [True, False])
def test_isolated_atom_stops_graph_building_naming_record_and_atom(tmp_path, strict):
    dm = _datamodule(tmp_path, f"dataset.source.strict={str(strict).lower()}")
    with pytest.raises(DataError) as e:
        dm.setup()
    msg = str(e.value)
    assert "dataset jarvis_edos: record JVASP-1004: atom 0 (Na)" in msg, msg
    assert "no neighbour within the graph cutoff 8 Å" in msg
    assert "dataset.source.structure_checks.isolated_atoms=warn" in msg


def test_isolated_atom_warn_policy_keeps_the_record(tmp_path, caplog):
    dm = _datamodule(tmp_path, "dataset.source.structure_checks.isolated_atoms=warn")
    caplog.set_level(logging.WARNING)
    dm.setup()
    assert "JVASP-1004" in dm.records.ids.tolist()
    assert "record JVASP-1004: atom 0 (Na) has no neighbour" in caplog.text


def test_isolated_atoms_with_self_loops_only_warn(caplog):
    grid = np.zeros(1)
    rs = RecordSet.from_records(
        [DOSRecord("ok", F.structures()[0], grid, grid), DOSRecord("far", lonely(), grid, grid)]
    )
    plain = GraphRecipe(cutoff=8.0, max_neighbors=12)
    with pytest.raises(DataError, match=r"record far: atom 0 \(Na\).*1 isolated atom\(s\) in 1"):
        check_isolated(rs, build_graphs(rs, plain, progress=False), plain)
    loops = GraphRecipe(cutoff=8.0, max_neighbors=None, self_loops=True)
    caplog.set_level(logging.WARNING)
    iso = check_isolated(rs, build_graphs(rs, loops, progress=False), loops)
    assert iso.tolist() == [2] and "graphs with self_loops" in caplog.text
    # a 9 Å cube is fine with a 10 Å cutoff (the atom's own images are neighbours)
    wide = GraphRecipe(cutoff=10.0, max_neighbors=12)
    assert check_isolated(rs, build_graphs(rs, wide, progress=False), wide).size == 0


# ====================================================================== dos-predict
CIF_HEAD = """data_{name}
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
 _symmetry_equiv_pos_as_xyz
 'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
"""

BAD_FILES = {
    # file: (content or structure, pattern of the reason on stderr)
    "unknown.cif": (
        " Qq Qq1 0 0 0 1\n Cl Cl1 0.5 0.5 0.5 1\n",
        r"unknown\.cif: unknown element 'Qq' at site 0",
    ),
    "overlap.cif": (
        " Na Na1 0 0 0 1\n Cl Cl1 0 0 0 1\n",
        r"overlap\.cif: atoms 0 \(Na1\) and 1 \(Cl1\) of the _atom_site loop are 0\.00 Å apart",
    ),
    "disordered.cif": (
        " Na Na1 0 0 0 0.5\n K K1 0 0 0 0.5\n Cl Cl1 0.5 0.5 0.5 1\n",
        r"disordered\.cif: site 0 is disordered \(partial occupancy Na:0\.5, K:0\.5",
    ),
    "broken.cif": ("this is not a cif\n", r"broken\.cif: cannot read this structure"),
    "close.vasp": (
        Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]]),
        r"close\.vasp: atoms 0 \(Na\) and 1 \(Cl\) are 0\.20 Å apart",
    ),
    "lonely.cif": (lonely(), r"lonely\.cif: record lonely: atom 0 \(Na\) has no neighbour"),
}


def _write_inputs(folder: Path, bad: list[str]) -> Path:
    folder.mkdir()
    Structure(
        Lattice.cubic(4.05), ["Al"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    ).to(filename=str(folder / "Al.cif"))
    Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).to(filename=str(folder / "NaCl.cif"))
    for name in bad:
        content, _ = BAD_FILES[name]
        if isinstance(content, Structure):
            fmt = "poscar" if name.endswith(".vasp") else "cif"
            content.to(filename=str(folder / name), fmt=fmt)
        elif name == "broken.cif":
            (folder / name).write_text("data_broken\n_cell_length_a 4.0\n" + content)
        else:
            (folder / name).write_text(CIF_HEAD.format(name=name[:-4]) + content)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir, compose_config):
    from dos_bench.train import train

    out = tmp_path_factory.mktemp("faults_predict_run")
    train(compose_config(["model=mlp", "dataset=toy_edos"], data_dir, out))
    return out / "checkpoints" / "last.ckpt"


def test_readers_name_each_bad_file(tmp_path):
    """The same messages without a model (quick, in process)."""
    folder = _write_inputs(tmp_path / "in", [n for n in BAD_FILES if n != "lonely.cif"])
    for name, (_, reason) in BAD_FILES.items():
        if name == "lonely.cif":
            continue
        with pytest.raises(DataError, match=reason):
            read_structure_file(folder / name)
    assert read_structure_file(folder / "Al.cif").composition.reduced_formula == "Al"


def test_predict_skips_each_bad_file_and_writes_the_good_ones(trained, tmp_path):
    inputs = _write_inputs(tmp_path / "in", list(BAD_FILES))
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dos_bench.predict",
            f"ckpt_path={trained}",
            f"inputs={inputs}",
            f"output_dir={out}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for name, (_, reason) in BAD_FILES.items():
        assert re.search(reason, proc.stderr), (name, proc.stderr[-3000:])
    assert f"{len(BAD_FILES)} of {len(BAD_FILES) + 2} structure files skipped" in proc.stderr
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert sorted(r["id"] for r in rows) == ["Al", "NaCl"]
    with np.load(out / "predictions.npz") as z:
        assert z["pred"].shape == (2, 300) and np.isfinite(z["pred"]).all()
    assert sorted(p.name for p in out.glob("*.png")) == ["Al.png", "NaCl.png"]


def test_predict_options_majority_and_warn(trained, tmp_path):
    """structure_checks.disordered=majority and isolated_atoms=warn let those files through."""
    from hydra import compose, initialize_config_dir

    from dos_bench.predict import predict

    inputs = _write_inputs(tmp_path / "in", ["disordered.cif", "lonely.cif", "overlap.cif"])
    out = tmp_path / "out"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            config_name="predict",
            overrides=[
                f"ckpt_path={trained}",
                f"inputs={inputs}",
                f"output_dir={out}",
                "structure_checks.disordered=majority",
                "structure_checks.isolated_atoms=warn",
            ],
        )
    assert predict(cfg) == 1  # only overlap.cif fails
    rows = {r["id"]: r for r in csv.DictReader((out / "predictions.csv").open())}
    assert sorted(rows) == ["Al", "NaCl", "disordered", "lonely"]
    assert rows["disordered"]["formula"] == "NaCl"  # majority species (tie -> lower Z: Na)
