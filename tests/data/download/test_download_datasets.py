"""download_dataset and the download lists of dataset configs, against a loopback HTTP server
(dos_bench.data.download.datasets)."""

from __future__ import annotations

import importlib.util
import io
import logging
import sys
import zipfile
from pathlib import Path

import pytest

from dos_bench.data import download
from dos_bench.data.download import dataset_entries, download_dataset, part_path
from dos_bench.io import ConfigError, DataError

_spec = importlib.util.spec_from_file_location(
    "dos_data_http_server", Path(__file__).parents[1] / "http_server.py"
)
if _spec.name not in sys.modules:  # one instance: its dataclass needs a module entry
    sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_spec.name])
H = sys.modules[_spec.name]
PAYLOAD, PAYLOAD_SHA = H.PAYLOAD, H.PAYLOAD_SHA
_leftovers = H.leftovers


# --------------------------------------------------------------------------------------------
# download_dataset
# --------------------------------------------------------------------------------------------


def _dataset_cfg(url: str) -> dict:
    zip_bytes = io.BytesIO()
    with zipfile.ZipFile(zip_bytes, "w") as zf:
        zf.writestr("jarvis/dft_3d.json", b"[1, 2, 3]")
    return {
        "name": "synthetic",
        "kind": "edos",
        "download": [
            {
                "url": f"{url}/payload.bin",
                "sha256": PAYLOAD_SHA,
                "path": "syn/raw.bin",
                "unpack": None,
            },
            {"url": f"{url}/arch.zip", "sha256": None, "path": "syn/arch.zip", "unpack": "zip"},
        ],
    }, zip_bytes.getvalue()


def test_download_dataset(server, tmp_path):
    url, state = server
    cfg, zip_data = _dataset_cfg(url)
    state.files["/arch.zip"] = zip_data
    paths = download_dataset(cfg, tmp_path, progress=False)
    assert paths == [tmp_path / "syn" / "raw.bin", tmp_path / "syn" / "arch.zip"]
    assert (tmp_path / "syn" / "raw.bin").read_bytes() == PAYLOAD
    assert (tmp_path / "syn" / "jarvis" / "dft_3d.json").read_bytes() == b"[1, 2, 3]"
    assert _leftovers(tmp_path) == []
    # second run: everything present, no new requests
    n = len(state.requests)
    download_dataset(cfg, tmp_path, progress=False)
    assert len(state.requests) == n


def test_download_dataset_omegaconf_interpolation(server, tmp_path):
    from omegaconf import OmegaConf

    url, _ = server
    root = OmegaConf.create(
        {
            "base": url,
            "dataset": {
                "name": "interp",
                "download": [{"url": "${base}/payload.bin", "sha256": None, "path": "p.bin"}],
            },
        }
    )
    assert download_dataset(root.dataset, tmp_path, progress=False) == [tmp_path / "p.bin"]


def test_git_blob_pin_verified_and_mismatch_deleted(server, tmp_path):
    url, state = server
    f = tmp_path / "ref.bin"
    f.write_bytes(PAYLOAD)
    blob = download.git_blob_id(f)
    entry = {"url": f"{url}/payload.bin", "sha256": None, "path": "x/p.bin", "git_blob": blob}
    cfg = {"name": "tut", "download": [entry]}
    assert download_dataset(cfg, tmp_path / "d", progress=False) == [tmp_path / "d/x/p.bin"]
    state.wrong_content = True
    with pytest.raises(DataError, match="git blob id mismatch"):
        download_dataset(cfg, tmp_path / "e", progress=False)
    assert not (tmp_path / "e/x/p.bin").exists()
    assert not part_path(tmp_path / "e/x/p.bin").exists()


def test_landing_page_url_is_refused_with_the_manual_hint(server, tmp_path):
    """A record's landing page (HTML) is never saved as the dataset's archive."""
    url, state = server
    state.content_type = "text/html; charset=utf-8"
    state.files["/records/8975"] = b"<!doctype html><html>record</html>"
    cfg = {
        "name": "m2s",
        "download": [
            {"url": f"{url}/records/8975", "sha256": None, "path": "d.zip", "unpack": "zip"}
        ],
    }
    with pytest.raises(DataError, match="landing page") as err:
        download_dataset(cfg, tmp_path, progress=False)
    assert f"save it as {tmp_path / 'd.zip'}" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither d.zip nor d.zip.part


def test_toy_dataset_has_nothing_to_download(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="dos_bench.data.download"):
        assert download_dataset({"name": "toy_edos", "kind": "edos"}, tmp_path) == []
    assert "generated locally" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_requires_env_missing_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    cfg = {"name": "mp_edos_128", "requires_env": "MP_API_KEY", "download": []}
    with pytest.raises(DataError, match="MP_API_KEY") as err:
        download_dataset(cfg, tmp_path)
    assert "Materials Project dashboard" in str(err.value)


def test_requires_env_without_mp_api_says_pip_install(tmp_path, monkeypatch):
    monkeypatch.setenv("MP_API_KEY", "dummy")
    monkeypatch.setitem(sys.modules, "mp_api", None)  # make the import fail
    monkeypatch.setitem(sys.modules, "mp_api.client", None)
    cfg = {
        "name": "mp_edos_201",
        "requires_env": "MP_API_KEY",
        "api": {"builder": "mp_dos_documents"},
    }
    with pytest.raises(DataError, match="pip install mp-api"):
        download_dataset(cfg, tmp_path)


@pytest.mark.parametrize(
    "entry, key",
    [
        ({"url": "http://x/a", "path": "../a", "sha256": None}, "path"),
        ({"url": "http://x/a", "path": "/abs/a", "sha256": None}, "path"),
        ({"url": "http://x/a", "path": "a", "sha256": None, "unpack": "rar"}, "unpack"),
        ({"url": "http://x/a", "path": "a", "sha256": "nothex"}, "sha256"),
        ({"url": "http://x/a", "path": "a", "git_blob": "abc"}, "git_blob"),
        ({"path": "a"}, "url"),
        ({"url": "http://x/a", "record": "http://x/api/records/1", "path": "a"}, ""),
        ({"record": "data.caltech.edu/api/records/8975", "path": "a"}, "record"),
        ({"record": "http://x/api/records/1", "file": "", "path": "a"}, "file"),
        ({"url": "http://x/a", "file": "a.zip", "path": "a"}, "file"),
        ({"record": "http://x/api/records/1", "path": "../a"}, "path"),
    ],
)
def test_bad_download_entries(entry, key):
    where = rf"download\[0\]\.{key}" if key else r"download\[0\]: give either `url`"
    with pytest.raises(ConfigError, match=where):
        dataset_entries({"name": "bad", "download": [entry]})
