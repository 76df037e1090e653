"""Splits read from published files: index files and id lists (dos_bench.data.split_files)."""

import hashlib
import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pymatgen.core import Lattice, Structure

from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.data.split_files import IdListSplit, IndexFileSplit
from dos_bench.io import ConfigError, DataError

CS = ["cubic", "hexagonal", "tetragonal", "trigonal", "orthorhombic", "monoclinic", "triclinic"]


def _rs(n):
    s = Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])
    return RecordSet.from_records(
        [
            DOSRecord(
                f"m{i}",
                s,
                np.arange(3.0),
                np.ones(3),
                {"n_species": 1 + i % 6, "crystal_system": CS[i % 7]},
            )
            for i in range(n)
        ]
    )


def test_index_file_text_and_errors(tmp_path):
    for name, idx in [("tr", [0, 1, 2]), ("va", [3]), ("te", [4, 5])]:
        (tmp_path / f"{name}.txt").write_text("\n".join(map(str, idx)) + "\n")
    sp = IndexFileSplit(train="tr.txt", val="va.txt", test="te.txt", base_dir=str(tmp_path))
    s = sp(_rs(6))
    assert s.sizes() == {"train": 3, "val": 1, "test": 2}
    with pytest.raises(DataError, match="out of range"):
        sp(_rs(5))
    (tmp_path / "va.txt").write_text("2\n")
    with pytest.raises(DataError, match="overlap"):
        sp(_rs(6))
    with pytest.raises(ConfigError, match="either split.path"):
        IndexFileSplit(path="a.pkl", train="tr.txt", val="va.txt", test="te.txt")


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "published_splits"
CONF = Path(__file__).resolve().parents[2] / "conf" / "split"


def test_published_phonon_split_files_load():
    """The real split files of the phonon papers (docs/data/phonon_sources.md §5): pickle and text
    formats."""
    pkl = IndexFileSplit(path=str(SHARED / "e3nn_phdos_200801_trteva_indices.pkl"))
    tr, va, te = pkl.load_indices()
    assert (len(tr), len(va), len(te)) == (1220, 152, 152)
    assert len(np.unique(np.concatenate([tr, va, te]))) == 1524
    txt = IndexFileSplit(
        train="tutorial_phdos_idx_train.txt",
        val="tutorial_phdos_idx_valid.txt",
        test="tutorial_phdos_idx_test.txt",
        base_dir=str(SHARED),
    )
    tr, va, te = txt.load_indices()
    assert (len(tr), len(va), len(te)) == (1192, 141, 189)
    assert max(map(np.max, (tr, va, te))) <= 1521


def _rs_rows(rows, n_rows=None):
    """Records that carry the ``source_row`` of a published table (as the phonon sources do)."""
    s = Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])
    recs = [DOSRecord(f"m{r}", s, np.arange(3.0), np.ones(3), {"source_row": r}) for r in rows]
    return RecordSet.from_records(recs, attrs={"n_rows": n_rows} if n_rows else None)


def _write_txt(folder, parts):
    for name, idx in parts.items():
        (folder / f"{name}.txt").write_text("".join(f"{i}\n" for i in idx))
    return {"train": "tr.txt", "val": "va.txt", "test": "te.txt", "base_dir": str(folder)}


def test_index_file_rows_that_did_not_load_need_allow_subset(tmp_path, caplog):
    # rows 0..7 were published; rows 2 and 7 failed to load, so records sit at shifted positions
    rs = _rs_rows([0, 1, 3, 4, 5, 6], n_rows=8)
    kw = _write_txt(tmp_path, {"tr": [0, 1, 2, 3], "va": [4, 7], "te": [5, 6]})
    with pytest.raises(DataError) as exc:
        IndexFileSplit(**kw)(rs)
    msg = str(exc.value)
    assert msg.startswith(f"{tmp_path / 'tr.txt'}: train index 2 points at a published row")
    assert "dataset of 6 records of 8 published rows" in msg and "split.allow_subset=true" in msg
    with caplog.at_level(logging.WARNING, logger="dos_bench.data.split_files"):
        sp = IndexFileSplit(**kw, allow_subset=True)(rs)
    assert rs.ids[sp.train].tolist() == ["m0", "m1", "m3"]
    assert rs.ids[sp.val].tolist() == ["m4"] and rs.ids[sp.test].tolist() == ["m5", "m6"]
    assert sp.dropped == {"train": 1, "val": 1, "test": 0}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "drops 1 of the 4 train indices" in warnings[0]
    assert "drops 1 of the 2 val indices" in warnings[1]
    # an index beyond the published rows is out of range (not "did not load")
    _write_txt(tmp_path, {"tr": [0, 1, 3], "va": [4], "te": [5, 6, 8]})
    with pytest.raises(
        DataError,
        match=r"te\.txt: test index 8 is out of range for a dataset of 6 records of 8 published",
    ):
        IndexFileSplit(**kw)(rs)


def test_index_file_overlap_and_empty_parts_are_errors_even_with_allow_subset(tmp_path):
    kw = _write_txt(tmp_path, {"tr": [0, 1, 2], "va": [3], "te": [4, 3]})
    for allow in (False, True):
        with pytest.raises(
            DataError, match=r"te\.txt: index 3 of the test part is also in the val"
        ):
            IndexFileSplit(**kw, allow_subset=allow)(_rs(6))
    _write_txt(tmp_path, {"te": [4, 4]})
    with pytest.raises(DataError, match=r"te\.txt: index 4 appears twice in the test part"):
        IndexFileSplit(**kw, allow_subset=True)(_rs(6))
    _write_txt(tmp_path, {"te": []})
    for allow in (False, True):
        with pytest.raises(DataError, match=r"te\.txt: the test part lists no indices"):
            IndexFileSplit(**kw, allow_subset=allow)(_rs(6))
    _write_txt(tmp_path, {"te": [9, 10]})
    with pytest.raises(DataError, match=r"te\.txt: the test part is empty on a dataset of 6 rec"):
        IndexFileSplit(**kw, allow_subset=True)(_rs(6))


@pytest.fixture
def published(tmp_path):
    """The real published split files, copied under a data dir as the configs expect them."""
    pkl = tmp_path / "Mat2Spec_DATA" / "phdos" / "200801_trteva_indices.pkl"
    pkl.parent.mkdir(parents=True)
    shutil.copy(SHARED / "e3nn_phdos_200801_trteva_indices.pkl", pkl)
    (tmp_path / "phonon_tut").mkdir()
    for part in ("train", "valid", "test"):
        shutil.copy(
            SHARED / f"tutorial_phdos_idx_{part}.txt", tmp_path / "phonon_tut" / f"idx_{part}.txt"
        )
    return tmp_path


def _published_split(data_dir, name, **over):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    base = OmegaConf.load(CONF / "index_file.yaml")
    cfg = OmegaConf.merge(base, {k: v for k, v in cfg.items() if k != "defaults"})
    cfg.base_dir = str(data_dir)
    return instantiate(OmegaConf.merge(cfg, over))


def test_published_e3nn_pickle_must_fit_the_data(published, caplog):
    pkl = published / "Mat2Spec_DATA" / "phdos" / "200801_trteva_indices.pkl"
    with pytest.raises(DataError) as exc:
        _published_split(published, "e3nn_phdos_indices")(_rs(24))
    msg = str(exc.value)
    assert msg.startswith(
        f"{pkl}: train index 1523 is out of range for a dataset of 24 records (1203 of the 1220 "
        "train indices are; published row order; split.allow_subset=true"
    )
    # records carrying their published row (as the phonon sources build them): same error
    with pytest.raises(DataError, match=re.escape(f"{pkl}: train index 1523 is out of range")):
        _published_split(published, "e3nn_phdos_indices")(_rs_rows(range(24)))
    tr, va, te = _published_split(published, "e3nn_phdos_indices").load_indices()
    with caplog.at_level(logging.WARNING, logger="dos_bench.data.split_files"):
        sp = _published_split(published, "e3nn_phdos_indices", allow_subset=True)(_rs(24))
    assert sp.sizes() == {"train": 17, "val": 3, "test": 4}
    assert sp.dropped == {"train": 1203, "val": 149, "test": 148}
    assert sp.train.tolist() == tr[tr < 24].tolist() and sp.test.tolist() == te[te < 24].tolist()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(" indices")[0].split("drops ")[1] for w in warnings] == [
        "1203 of the 1220 train",
        "149 of the 152 val",
        "148 of the 152 test",
    ]
    # the subset survives train_fraction subsampling, counts and all
    half = _published_split(published, "e3nn_phdos_indices", allow_subset=True, train_fraction=0.5)(
        _rs(24)
    )
    assert len(half.train) == 8 and half.dropped == sp.dropped
    # on the full published table the file applies exactly, nothing dropped
    full = _published_split(published, "e3nn_phdos_indices")(_rs(1524))
    assert full.sizes() == {"train": 1220, "val": 152, "test": 152} and full.dropped == {}


def test_published_tutorial_indices_must_fit_the_data(published):
    with pytest.raises(DataError) as exc:
        _published_split(published, "tutorial_phdos_indices")(_rs(19))
    assert str(exc.value).startswith(
        f"{published / 'phonon_tut' / 'idx_train.txt'}: train index 1521 is out of range for a "
        "dataset of 19 records"
    )
    # the tutorial's first 19 rows are all training rows: the subset leaves validation empty
    with pytest.raises(DataError) as exc:
        _published_split(published, "tutorial_phdos_indices", allow_subset=True)(_rs(19))
    assert str(exc.value).startswith(
        f"{published / 'phonon_tut' / 'idx_valid.txt'}: the val part is empty on a dataset of "
        "19 records: none of its 141 indices is present"
    )
    # tutorial records carry their CSV row; 80 published rows of which row 70 did not load
    rows = [r for r in range(80) if r != 70]
    rs = _rs_rows(rows)
    sp = _published_split(published, "tutorial_phdos_indices", allow_subset=True)(rs)
    assert sp.sizes() == {"train": 71, "val": 3, "test": 5}
    assert sp.dropped == {"train": 1192 - 71, "val": 141 - 3, "test": 189 - 5}
    listed = _published_split(published, "tutorial_phdos_indices").load_indices()
    for part, idx in zip(("train", "val", "test"), listed, strict=True):
        want = [f"m{i}" for i in idx.tolist() if i < 80 and i != 70]
        assert rs.ids[sp.part(part)].tolist() == want
    with pytest.raises(DataError, match=r"idx_train\.txt: train index 1521 is out of range"):
        _published_split(published, "tutorial_phdos_indices")(_rs_rows(rows))


def test_published_split_paths_match_the_downloads(tmp_path):
    """The split configs read the files where the dataset downloads put them."""
    cfg = OmegaConf.load(CONF.parent / "dataset" / "phonon_tut.yaml")
    downloaded = {e["path"] for e in cfg.download}
    tut = OmegaConf.load(CONF / "tutorial_phdos_indices.yaml")
    assert {tut.train, tut.val, tut.test} <= downloaded
    e3nn = OmegaConf.load(CONF / "e3nn_phdos_indices.yaml")
    root = OmegaConf.load(CONF.parent / "dataset" / "phonon_e3nn.yaml").source.root
    assert e3nn.path == f"{root}/phdos/200801_trteva_indices.pkl"
    for e in cfg.download:
        if e["path"].startswith("phonon_tut/idx_"):
            src = SHARED / f"tutorial_phdos_{Path(e['path']).name}"
            assert hashlib.sha256(src.read_bytes()).hexdigest() == e["sha256"]
            assert e["url"].endswith("/data/" + Path(e["path"]).name)


# ----------------------------------------------------------------------------- id lists
def _leaderboard_zip(folder, parts, name="edos_pdos_ph_dos.json.zip", extra=None):
    """A JSON in the JARVIS-Leaderboard benchmark shape, zipped as the benchmark file is."""
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("edos_pdos_ph_dos.json", json.dumps(parts))
        for member, text in (extra or {}).items():
            zf.writestr(member, text)
    return path


def _targets(ids):
    return {i: ";".join(["0.5"] * 4) for i in ids}


def test_id_list_dict_and_list_forms(tmp_path):
    rs = _rs(10)
    as_dict = {
        "train": _targets(["m3", "m0", "m1", "m2", "m4"]),
        "val": _targets(["m5", "m6"]),
        "test": _targets(["m9", "m7"]),
    }
    _leaderboard_zip(tmp_path, as_dict)
    sp = IdListSplit("edos_pdos_ph_dos.json.zip", base_dir=str(tmp_path))(rs)
    assert rs.ids[sp.train].tolist() == ["m3", "m0", "m1", "m2", "m4"]
    assert rs.ids[sp.test].tolist() == ["m9", "m7"] and sp.dropped == {}
    as_list = {"tr": list(as_dict["train"]), "va": list(as_dict["val"]), "te": ["m9", "m7"]}
    (tmp_path / "ids.json").write_text(json.dumps(as_list))
    sp2 = IdListSplit(str(tmp_path / "ids.json"), train_key="tr", val_key="va", test_key="te")(rs)
    assert all((sp2.part(p) == sp.part(p)).all() for p in ("train", "val", "test"))
    with pytest.raises(DataError, match=r"ids\.json: no val part: key 'val' is missing"):
        IdListSplit(str(tmp_path / "ids.json"), train_key="tr")(rs)
    with pytest.raises(ConfigError, match="three different"):
        IdListSplit("x.json", val_key="train")


def test_id_list_unknown_ids_need_allow_subset(tmp_path, caplog):
    rs = _rs(8)
    z = _leaderboard_zip(
        tmp_path,
        {
            "train": _targets(["m0", "m1", "m2", "m3"]),
            "val": _targets(["m4", "JVASP-1002", "JVASP-1174"]),
            "test": ["m5", "m6"],
        },
    )
    with pytest.raises(DataError) as exc:
        IdListSplit(str(z))(rs)
    assert str(exc.value) == (
        f"{z}!edos_pdos_ph_dos.json: 2 of the 3 val ids ('val') are not among the 8 records of "
        "the dataset (first missing: JVASP-1002); split.allow_subset=true applies the file to "
        "the records present"
    )
    with caplog.at_level(logging.WARNING, logger="dos_bench.data.split_files"):
        sp = IdListSplit(str(z), allow_subset=True)(rs)
    assert sp.sizes() == {"train": 4, "val": 1, "test": 2}
    assert sp.dropped == {"train": 0, "val": 2, "test": 0}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "drops 2 of the 3 val ids" in warnings[0]


def test_id_list_overlap_empty_and_zip_members(tmp_path):
    rs = _rs(8)
    z = _leaderboard_zip(tmp_path, {"train": ["m0", "m1"], "val": ["m2"], "test": ["m3", "m1"]})
    for allow in (False, True):
        with pytest.raises(DataError, match="'m1' of the test part is also in the train part"):
            IdListSplit(str(z), allow_subset=allow)(rs)
    z = _leaderboard_zip(tmp_path, {"train": ["m0", "m1"], "val": {}, "test": ["m3"]})
    with pytest.raises(DataError, match=r"json: the val part lists no ids"):
        IdListSplit(str(z), allow_subset=True)(rs)
    z = _leaderboard_zip(tmp_path, {"train": ["m0", "m1"], "val": ["JVASP-1"], "test": ["m3"]})
    with pytest.raises(DataError, match=r"the val part is empty on a dataset of 8 records"):
        IdListSplit(str(z), allow_subset=True)(rs)
    parts = {"train": ["m0", "m1"], "val": ["m2"], "test": ["m3"]}
    z = _leaderboard_zip(tmp_path, parts, extra={"other.json": "[]"})
    with pytest.raises(DataError, match=re.escape(f"{z}: expected one .json member")):
        IdListSplit(str(z))(rs)
    sp = IdListSplit(str(z), member="edos_pdos_ph_dos.json")(rs)
    assert sp.sizes() == {"train": 2, "val": 1, "test": 1}
    with pytest.raises(DataError, match="not found"):
        IdListSplit(str(tmp_path / "missing.json.zip"))(rs)


def test_jarvis_leaderboard_config_reads_the_benchmark_zip(tmp_path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF.parent), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["split=jarvis_leaderboard", f"paths.data_dir={tmp_path}"],
        )
    assert cfg.split.allow_subset is False and cfg.split.member is None
    (tmp_path / "jarvis_leaderboard").mkdir()
    parts = {"train": _targets(["m0", "m1", "m2"]), "val": _targets(["m3"]), "test": ["m4"]}
    _leaderboard_zip(tmp_path / "jarvis_leaderboard", parts)
    sp = instantiate(cfg.split)(_rs(5))
    assert sp.sizes() == {"train": 3, "val": 1, "test": 1}
