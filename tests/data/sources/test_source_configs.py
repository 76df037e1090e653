"""The shipped dataset YAMLs: download entries, source and recipe wiring, end to end."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from dos_bench.config import CONF_DIR as PACKAGED_CONF_DIR
from dos_bench.io import DataError

_spec = importlib.util.spec_from_file_location(
    "dos_sources_fixtures", Path(__file__).parents[1] / "fixtures.py"
)
F = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(F)


# =========================================================================== YAML wiring
CONF = PACKAGED_CONF_DIR
DATASETS = [
    "jarvis_edos",
    "mp_edos_128",
    "mp_edos_201",
    "mp_edos_128_from_dos",
    "phonon_e3nn",
    "phonon_tut",
]


def _compose(name: str, data_dir: Path):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[f"dataset={name}", f"paths.data_dir={data_dir}", "progress=false"],
        )


def download_entries_valid(dataset_cfg) -> bool:
    from dos_bench.data.download import dataset_entries

    return all((e.url or e.record).startswith("https://") for e in dataset_entries(dataset_cfg))


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_yaml(name, tmp_path):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = _compose(name, tmp_path)
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    assert ds["name"] == name and ds["kind"] in ("edos", "phdos")
    assert isinstance(ds["download"], list)
    for entry in ds["download"]:
        # a direct file URL, or an InvenioRDM record resolved to its file at download time
        assert ("url" in entry) != ("record" in entry)
        assert {"sha256", "path", "unpack"} <= set(entry)
        assert set(entry) <= {"url", "record", "file", "sha256", "path", "unpack", "git_blob"}
        link = entry.get("url") or entry["record"]
        assert link.startswith("https://") and not Path(entry["path"]).is_absolute()
    if name.startswith("mp_edos_") and name != "mp_edos_128":
        assert ds["requires_env"] == "MP_API_KEY"
        from dos_bench.data.download import API_BUILDERS

        assert ds["api"]["builder"] in API_BUILDERS
    assert download_entries_valid(cfg.dataset)
    src = instantiate(cfg.dataset.source)
    rec = instantiate(cfg.dataset.recipe)
    assert src.dataset == name and hasattr(rec, "apply")
    with pytest.raises(DataError, match=rf"dos-data download {name}"):
        src.load(tmp_path)


def test_yaml_pipeline_end_to_end(tmp_path):
    from hydra.utils import instantiate

    F.write_mat2spec_phdos(tmp_path / "Mat2Spec_DATA")
    F.write_mp_dos_docs(tmp_path / "mp_dos")
    cfg = _compose("phonon_e3nn", tmp_path)
    rs = instantiate(cfg.dataset.source).load(cfg.paths.data_dir)
    assert instantiate(cfg.dataset.recipe).apply(rs).shape == (6, 51)
    shapes = {}
    for name in ("mp_edos_201", "mp_edos_128_from_dos"):
        cfg = _compose(name, tmp_path)
        rs = instantiate(cfg.dataset.source).load(cfg.paths.data_dir)
        shapes[name] = instantiate(cfg.dataset.recipe).apply(rs).shape
    assert shapes == {"mp_edos_201": (5, 201), "mp_edos_128_from_dos": (5, 128)}
    # the two MP datasets share one processed file
    assert len(list((tmp_path / "processed").glob("mp_dos-*.npz"))) == 1
