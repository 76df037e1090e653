"""The Materials Project builder of mp_edos_201 / mp_edos_128_from_dos, against a fake client.

The fake stands in for ``mp_api.client.MPRester`` (no account, no internet here): it answers the
summary search and ``get_dos_by_material_id`` from the synthetic DOS documents of the fixtures,
records the queries, and can fail for chosen materials.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from dos_bench.config import CONF_DIR
from dos_bench.data.download import build_from_api, download_dataset
from dos_bench.data.download.materials_project import build_mp_dos_documents
from dos_bench.data.sources.materials_project import MPDosDocuments
from dos_bench.data.spectra import GridRecipe
from dos_bench.io import ConfigError, DataError

_spec = importlib.util.spec_from_file_location(
    "dos_mp_builder_fixtures", Path(__file__).parents[1] / "fixtures.py"
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)
CONF = CONF_DIR / "dataset"


class FakeSummary:
    def __init__(self, docs):
        self.docs, self.queries = docs, []

    def search(self, **query):
        self.queries.append(query)
        docs = self.docs
        if query.get("is_magnetic") is False:
            docs = [d for d in docs if not d["is_magnetic"]]
        return [{k: d[k] for k in query["fields"]} for d in docs]


class FakeMPRester:
    """The slice of ``MPRester`` the builder uses (a context manager, as in mp-api)."""

    instances: list[FakeMPRester] = []

    def __init__(self, api_key=None, fail=(), dos_missing=()):
        self.api_key, self.fail, self.dos_missing = api_key, set(fail), set(dos_missing)
        self.dos_calls = []
        self.by_id = {}
        docs = []
        for i, (s, kind) in enumerate(zip(F.structures(), F.mp_dos_kinds(), strict=True)):
            mid = f"mp-{300 + i}"
            self.by_id[mid] = F.mp_dos_document(s, kind)
            docs.append(
                {
                    "material_id": mid,
                    "structure": s,
                    "is_magnetic": kind == "magnetic",
                    "ordering": "FM" if kind == "magnetic" else "NM",
                    "band_gap": 1.5 if kind == "insulator" else 0.0,
                    "vbm": None,
                    "cbm": None,
                    "efermi": F.EF_ABS,
                }
            )
        self.materials = types.SimpleNamespace(summary=FakeSummary(docs))
        FakeMPRester.instances.append(self)

    def get_dos_by_material_id(self, mid):
        self.dos_calls.append(mid)
        if mid in self.fail:
            raise RuntimeError("HTTP 502 from the DOS store")
        return None if mid in self.dos_missing else self.by_id[mid]

    def get_database_version(self):
        return "2026.10.01"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _dataset_cfg(name="mp_edos_201", **api):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    for k, v in api.items():
        cfg.api[k] = v
    return cfg


def test_build_writes_non_magnetic_documents_mp_dos_documents_reads(tmp_path):
    mpr = FakeMPRester()
    cfg = _dataset_cfg()
    folder, manifest = build_mp_dos_documents(mpr, tmp_path, cfg, progress=False)
    query = mpr.materials.summary.queries[0]
    assert query["has_props"] == ["dos"] and query["is_magnetic"] is False
    assert "structure" in query["fields"]
    files = sorted(p.name for p in folder.iterdir())
    n_nonmag = sum(k != "magnetic" for k in F.mp_dos_kinds())
    assert len(files) == n_nonmag and all(f.endswith(".json.gz") for f in files)
    with gzip.open(folder / files[0], "rt") as fh:
        doc = json.load(fh)
    assert doc["dos"]["@class"] == "Dos"  # projections dropped, total DOS kept
    assert doc["structure"]["@class"] == "Structure" and doc["ordering"] == "NM"
    info = json.loads(manifest.read_text())
    assert info["n_written"] == n_nonmag and info["n_failed"] == 0
    assert info["database_version"] == "2026.10.01"

    # the documents are what the source and the 201-point recipe of the config consume
    rs = MPDosDocuments(path=cfg.source.path).load(tmp_path)
    assert len(rs) == n_nonmag
    grid = GridRecipe(start=-5.0, step=0.05, n_points=201, reference="e_fermi")
    out = grid.apply(rs)
    assert out.shape == (n_nonmag, 201) and np.isfinite(out).all()


def test_build_resumes_and_records_failures(tmp_path):
    cfg = _dataset_cfg(limit=3)
    first = FakeMPRester(fail={"mp-301"})
    build_mp_dos_documents(first, tmp_path, cfg, progress=False)
    info = json.loads((tmp_path / "mp_dos.manifest.json").read_text())
    assert info["n_written"] == 2 and list(info["failed"]) == ["mp-301"]
    assert "HTTP 502" in info["failed"]["mp-301"]
    assert not list((tmp_path / "mp_dos").glob("*.tmp"))

    again = FakeMPRester()
    build_mp_dos_documents(again, tmp_path, cfg, progress=False)
    assert again.dos_calls == ["mp-301"]  # only the missing one is fetched again
    info = json.loads((tmp_path / "mp_dos.manifest.json").read_text())
    assert (info["n_written"], info["n_already_present"], info["n_failed"]) == (1, 2, 0)


def test_build_fails_when_nothing_could_be_fetched(tmp_path):
    mpr = FakeMPRester(dos_missing={f"mp-{300 + i}" for i in range(6)})
    with pytest.raises(DataError, match="no DOS could be fetched.*no DOS returned"):
        build_mp_dos_documents(mpr, tmp_path, _dataset_cfg(), progress=False)
    assert not (tmp_path / "mp_dos.manifest.json").exists()


def test_bad_api_limit_is_named(tmp_path):
    with pytest.raises(ConfigError, match="api.limit"):
        build_mp_dos_documents(FakeMPRester(), tmp_path, _dataset_cfg(limit=0), progress=False)


def test_download_dataset_runs_the_builder_through_the_client(tmp_path, monkeypatch):
    """`dos-data download mp_edos_128_from_dos` path: key from the environment, client opened."""
    FakeMPRester.instances.clear()
    fake = types.ModuleType("mp_api.client")
    fake.MPRester = FakeMPRester
    monkeypatch.setitem(sys.modules, "mp_api", types.ModuleType("mp_api"))
    monkeypatch.setitem(sys.modules, "mp_api.client", fake)
    monkeypatch.setenv("MP_API_KEY", "k" * 32)
    paths = download_dataset(_dataset_cfg("mp_edos_128_from_dos", limit=2), tmp_path, False)
    assert paths == [tmp_path / "mp_dos", tmp_path / "mp_dos.manifest.json"]
    assert FakeMPRester.instances[-1].api_key == "k" * 32
    assert len(list((tmp_path / "mp_dos").iterdir())) == 2


def test_unknown_builder_is_a_config_error(tmp_path):
    cfg = {"name": "mine", "api": {"builder": "nope"}, "source": {"path": "x"}}
    with pytest.raises(ConfigError, match=r"api.builder.*'nope'"):
        build_from_api(cfg, tmp_path, api_key="k")


def test_api_client_names_another_client_class_and_its_endpoint(tmp_path, monkeypatch):
    """`api.client` / `api.endpoint`: a proxy or mirror client with MPRester's interface."""
    FakeMPRester.instances.clear()
    mod = types.ModuleType("my_mp_mirror")
    mod.Client = FakeMPRester
    monkeypatch.setitem(sys.modules, "my_mp_mirror", mod)
    opened = []
    monkeypatch.setattr(FakeMPRester, "__init__", _recording_init(opened), raising=True)
    cfg = _dataset_cfg("mp_edos_201", limit=2, client="my_mp_mirror.Client", endpoint="http://x")
    build_from_api(cfg, tmp_path, api_key="k" * 32, progress=False)
    assert opened == [("k" * 32, "http://x")]
    assert len(list((tmp_path / "mp_dos").iterdir())) == 2


def _recording_init(opened):
    original = FakeMPRester.__init__

    def init(self, api_key=None, endpoint=None, **kw):
        opened.append((api_key, endpoint))
        original(self, api_key, **kw)

    return init


def test_unimportable_api_client_is_a_config_error(tmp_path):
    cfg = _dataset_cfg("mp_edos_201", client="no_such_module.Client")
    with pytest.raises(ConfigError, match=r"api.client.*no_such_module.Client"):
        build_from_api(cfg, tmp_path, api_key="k")
