"""dataset=jarvis_phdos: the JARVIS-Leaderboard phonon-DOS benchmark (targets) joined with the
JARVIS edos_pdos file (structures) on miniature files in the published layouts."""

from __future__ import annotations

import importlib.util
import json
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dos_bench.config import CONF_DIR
from dos_bench.data.download import dataset_entries
from dos_bench.data.sources.jarvis import JarvisLeaderboardPhDOS
from dos_bench.data.spectra import NativeRecipe
from dos_bench.io import DataError
from dos_bench.reporting.leaderboard import join_spectrum

_spec = importlib.util.spec_from_file_location(
    "dos_jlb_fixtures", Path(__file__).parents[1] / "fixtures.py"
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)

JARVIS_ZIP = "jarvis/edos-up_pdos-elast_interp-8-18-2021.json.zip"
BENCH_ZIP = "jarvis_leaderboard/edos_pdos_ph_dos.json.zip"
GRID = -300.0 + 20.0 * np.arange(66)
PARTS = {
    "train": ["JVASP-1000", "JVASP-1001", "JVASP-1002"],
    "val": ["JVASP-1003"],
    "test": ["JVASP-1005", "JVASP-1004"],  # not sorted: the file's order is kept
}


def _spectrum(k: int, n: int = 66) -> np.ndarray:
    """A max-normalised phonon-DOS-like spectrum (zero below 0 cm^-1, as the benchmark)."""
    f = -300.0 + 20.0 * np.arange(n)
    y = np.exp(-0.5 * ((f - 150.0 - 60.0 * k) / 80.0) ** 2) * (f >= 0)
    return y / y.max()


def write_benchmark(root: Path, parts=None, edit=None, as_zip=True) -> dict[str, np.ndarray]:
    """``edos_pdos_ph_dos.json`` (in its zip) with ``;``-joined spectra; ``edit`` maps a jid to
    a replacement value (string or list). Returns jid -> the spectrum written."""
    parts = PARTS if parts is None else parts
    data, expected, k = {}, {}, 0
    for part, ids in parts.items():
        data[part] = {}
        for jid in ids:
            y = _spectrum(k)
            k += 1
            data[part][jid] = join_spectrum(y)
            expected[jid] = y
            if edit and jid in edit:
                data[part][jid] = edit[jid]
    path = root / (BENCH_ZIP if as_zip else BENCH_ZIP[: -len(".zip")])
    path.parent.mkdir(parents=True, exist_ok=True)
    if as_zip:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("edos_pdos_ph_dos.json", json.dumps(data))
    else:
        path.write_text(json.dumps(data))
    return expected


@pytest.fixture
def data_dir(tmp_path):
    F.write_jarvis(tmp_path / JARVIS_ZIP, as_zip=True)
    return tmp_path


def test_loads_every_benchmark_id_with_its_structure(data_dir):
    expected = write_benchmark(data_dir)
    rs = JarvisLeaderboardPhDOS().load(data_dir)
    ids = [i for p in ("train", "val", "test") for i in PARTS[p]]
    assert rs.ids.tolist() == ids
    np.testing.assert_allclose(rs.energies, GRID)
    for i, jid in enumerate(ids):
        np.testing.assert_allclose(rs.spectra[i], expected[jid], rtol=1e-6, atol=1e-7)
    parts = {
        p: [i for i, q in zip(rs.ids, rs.meta["leaderboard_part"], strict=True) if q == p]
        for p in PARTS
    }
    assert parts == PARTS
    # structure of JVASP-1003 = the fixture's 4th crystal (orthorhombic GaAs)
    s = rs.structure(ids.index("JVASP-1003"))
    ref = F.structures()[3]
    assert s.composition == ref.composition
    np.testing.assert_allclose(s.lattice.matrix, ref.lattice.matrix, atol=1e-8)
    assert rs.meta["crystal_system"][ids.index("JVASP-1003")] == "orthorhombic"
    assert rs.attrs["kind"] == "phdos" and rs.attrs["energy_unit"] == "cm^-1"
    assert rs.attrs["n_per_part"] == {"train": 3, "val": 1, "test": 2}
    assert "-300" in rs.attrs["grid_source"]
    assert (rs.meta["n_atoms"] == rs.n_atoms).all()
    # only the ids the benchmark lists are records (the JARVIS file has six crystals)
    write_benchmark(
        data_dir, parts={"train": ["JVASP-1000"], "val": ["JVASP-1001"], "test": ["JVASP-1002"]}
    )
    assert len(JarvisLeaderboardPhDOS().load(data_dir)) == 3
    assert NativeRecipe(spacing=20.0).apply(rs).shape == (6, 66)


def test_extracted_json_files_and_processed_cache(data_dir, caplog):
    write_benchmark(data_dir, as_zip=False)
    src = JarvisLeaderboardPhDOS()
    rs1 = src.load(data_dir)  # the .zip names are configured; the extracted .json are found
    with caplog.at_level(logging.INFO):
        rs2 = src.load(data_dir)
    assert "reusing processed" in caplog.text
    assert rs1.ids.tolist() == rs2.ids.tolist()
    assert len(list((data_dir / "processed").glob("jarvis_phdos-*.npz"))) == 1


def test_missing_structure_names_benchmark_file_and_jid(data_dir, caplog):
    parts = {**PARTS, "test": [*PARTS["test"], "JVASP-9999"]}
    write_benchmark(data_dir, parts=parts)
    with pytest.raises(DataError) as err:
        JarvisLeaderboardPhDOS().load(data_dir)
    msg = str(err.value)
    assert "edos_pdos_ph_dos.json.zip" in msg and "test id JVASP-9999" in msg
    assert "no structure" in msg and "edos-up_pdos-elast_interp" in msg
    # strict: false skips it with a log line, the others load
    with caplog.at_level(logging.WARNING):
        rs = JarvisLeaderboardPhDOS(strict=False).load(data_dir)
    assert len(rs) == 6 and "JVASP-9999" not in rs.ids
    assert "JVASP-9999" in caplog.text and rs.attrs["n_failed"] == 1


@pytest.mark.parametrize(
    "value,match",
    [
        (join_spectrum(_spectrum(0, 65)), "65 values, expected 66"),
        (join_spectrum(np.r_[_spectrum(0)[:-1], np.nan]), "NaN"),
        ("0.0;abc" + ";0.0" * 64, "'abc' is not a number"),
        (join_spectrum(np.r_[-0.5, _spectrum(0)[1:]]), "negative"),
        (12.5, "expected a ';'-joined string"),
    ],
)
def test_bad_spectrum_names_file_part_and_jid(data_dir, value, match, caplog):
    write_benchmark(data_dir, edit={"JVASP-1003": value})
    with pytest.raises(DataError, match=match) as err:
        JarvisLeaderboardPhDOS().load(data_dir)
    assert "edos_pdos_ph_dos.json.zip: val id JVASP-1003" in str(err.value)
    with caplog.at_level(logging.WARNING):
        rs = JarvisLeaderboardPhDOS(strict=False).load(data_dir)
    assert "JVASP-1003" not in rs.ids and len(rs) == 5
    assert "JVASP-1003" in caplog.text


def test_benchmark_structure_errors(data_dir):
    write_benchmark(data_dir, parts={**PARTS, "val": ["JVASP-1000"]})
    with pytest.raises(DataError, match="val id JVASP-1000: id also listed in part 'train'"):
        JarvisLeaderboardPhDOS().load(data_dir)
    write_benchmark(data_dir, parts={"train": PARTS["train"], "test": PARTS["test"]})
    with pytest.raises(DataError, match=r"no part\(s\) \['val'\]"):
        JarvisLeaderboardPhDOS().load(data_dir)
    assert len(JarvisLeaderboardPhDOS(parts=["train", "test"]).load(data_dir)) == 5
    with zipfile.ZipFile(data_dir / BENCH_ZIP, "w") as zf:
        zf.writestr("edos_pdos_ph_dos.json", json.dumps([1, 2]))
    with pytest.raises(DataError, match="expected a JSON dict"):
        JarvisLeaderboardPhDOS().load(data_dir)
    (data_dir / BENCH_ZIP).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="edos_pdos_ph_dos.json.zip"):
        JarvisLeaderboardPhDOS().load(data_dir)
    (data_dir / BENCH_ZIP).unlink()
    with pytest.raises(DataError, match="dos-data download jarvis_phdos"):
        JarvisLeaderboardPhDOS(dataset="jarvis_phdos").load(data_dir)


# ----------------------------------------------------------------------------- configuration
@pytest.fixture(scope="module")
def cfg():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["dataset=jarvis_phdos", "split=jarvis_leaderboard"])


def test_config_source_split_and_downloads(cfg, data_dir):
    write_benchmark(data_dir)
    src = instantiate(cfg.dataset.source)
    assert isinstance(src, JarvisLeaderboardPhDOS) and src.n_points == 66
    rs = src.load(data_dir)
    split_cfg = OmegaConf.to_container(cfg.split, resolve=False)
    split_cfg["base_dir"] = str(data_dir)
    split = instantiate(split_cfg)(rs)
    assert [rs.ids[split.part(p)].tolist() for p in ("train", "val", "test")] == [
        PARTS["train"],
        PARTS["val"],
        PARTS["test"],
    ]
    assert instantiate(cfg.dataset.recipe).spacing == 20.0
    # the structures file is the jarvis_edos entry (fetched once); the benchmark is pinned
    entries = dataset_entries(cfg.dataset)
    edos = OmegaConf.load(CONF_DIR / "dataset" / "jarvis_edos.yaml")
    assert (entries[0].url, entries[0].path) == (edos.download[0].url, edos.download[0].path)
    bench = entries[1]
    assert bench.path == cfg.dataset.source.benchmark == cfg.split.path == BENCH_ZIP
    assert "/usnistgov/jarvis_leaderboard/4f1356e3304d64d28217161b870af68668653911/" in bench.url
    assert bench.url.endswith("jarvis_leaderboard/benchmarks/AI/Spectra/edos_pdos_ph_dos.json.zip")
    assert bench.git_blob == "98f59168d0665e23e51df60fc3d715a5b5176ba4" and bench.sha256
