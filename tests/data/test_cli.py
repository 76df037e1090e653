"""The dos-data CLI: ``download`` against a loopback HTTP server, ``list`` (no internet)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from dos_bench.data import cli
from dos_bench.data.download import dataset_entries

_spec = importlib.util.spec_from_file_location(
    "dos_data_http_server", Path(__file__).with_name("http_server.py")
)
if _spec.name not in sys.modules:  # one instance: its dataclass needs a module entry
    sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_spec.name])
H = sys.modules[_spec.name]
PAYLOAD, PAYLOAD_SHA = H.PAYLOAD, H.PAYLOAD_SHA
RECORD, ARCHIVE_KEY, ARCHIVE = H.RECORD, H.ARCHIVE_KEY, H.ARCHIVE
_publish = H.publish
_closed_port, _leftovers = H.closed_port, H.leftovers


# --------------------------------------------------------------------------------------------
# the dos-data CLI
# --------------------------------------------------------------------------------------------


def _conf_dir(tmp_path: Path, url: str) -> Path:
    conf = tmp_path / "conf"
    (conf / "dataset").mkdir(parents=True)
    (conf / "paths").mkdir()
    (conf / "train.yaml").write_text(
        "defaults:\n  - dataset: toy\n  - paths: default\n  - _self_\nprogress: true\n"
    )
    (conf / "paths" / "default.yaml").write_text(f"data_dir: {tmp_path / 'default_data'}\n")
    (conf / "dataset" / "toy.yaml").write_text("name: toy\nkind: edos\n")
    (conf / "dataset" / "remote.yaml").write_text(
        "name: remote\nkind: edos\ndownload:\n"
        f"  - url: {url}/payload.bin\n    sha256: {PAYLOAD_SHA}\n"
        "    path: remote/payload.bin\n    unpack: null\n"
    )
    (conf / "dataset" / "mp.yaml").write_text(
        "name: mp\nkind: edos\nrequires_env: MP_API_KEY\ndownload: []\n"
    )
    return conf


def test_cli_download_and_list(server, tmp_path, capsys):
    url, state = server
    conf = _conf_dir(tmp_path, url)
    data = tmp_path / "scratch"
    rc = cli.main(["download", "remote", "toy", f"paths.data_dir={data}", "--no-progress"], conf)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert (data / "remote" / "payload.bin").read_bytes() == PAYLOAD
    assert "toy: generated locally" in out
    rc = cli.main(["list", f"paths.data_dir={data}"], conf)
    out = capsys.readouterr().out
    assert rc == 0
    assert "present" in out and "remote/payload.bin" in out and "MP_API_KEY" in out


def test_cli_offline_one_line_error(tmp_path, capsys):
    conf = _conf_dir(tmp_path, f"http://127.0.0.1:{_closed_port()}")
    data = tmp_path / "offline"
    rc = cli.main(["download", "remote", f"paths.data_dir={data}", "progress=false"], conf)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dos-data: error:")
    assert str(data / "remote" / "payload.bin") in lines[0] and "Traceback" not in err
    assert _leftovers(tmp_path) == []


def test_cli_unknown_dataset_lists_known(tmp_path, capsys):
    conf = _conf_dir(tmp_path, "http://127.0.0.1:1")
    assert cli.main(["download", "nope"], conf) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'nope'" in err and "mp, remote, toy" in err


def test_cli_missing_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MP_API_KEY", raising=False)
    conf = _conf_dir(tmp_path, "http://127.0.0.1:1")
    assert cli.main(["download", "mp"], conf) == 2
    assert "MP_API_KEY" in capsys.readouterr().err


def test_cli_bad_override(tmp_path, capsys):
    conf = _conf_dir(tmp_path, "http://127.0.0.1:1")
    assert cli.main(["download", "toy", "no_such_key.x=1"], conf) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("name", ["mp_edos_128", "phonon_e3nn"])
def test_shipped_mat2spec_configs_name_the_caltech_record(name):
    [entry] = dataset_entries(cli.compose_dataset(name).dataset)
    assert entry.url is None and entry.file is None
    assert entry.record == "https://data.caltech.edu/api/records/8975"
    assert (entry.path, entry.unpack) == ("Mat2Spec_DATA.zip", "zip")


def test_cli_real_mat2spec_configs_against_a_fake_record(server, tmp_path, capsys, monkeypatch):
    """The shipped mp_edos_128 / phonon_e3nn entries work end to end, only the host swapped."""
    url, state = server
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE, "README.md": b"Mat2Spec"})
    monkeypatch.setenv("DOS_BENCH_DATA_DIR", str(tmp_path / "data"))
    record = f"dataset.download.0.record={url}{RECORD}"
    rc = cli.main(["download", "mp_edos_128", "phonon_e3nn", record, "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    data = tmp_path / "data"
    assert (data / ARCHIVE_KEY).read_bytes() == ARCHIVE
    assert (data / "Mat2Spec_DATA/label_edos/mpids.csv").read_bytes() == b"mp-1\nmp-2\n"
    assert (data / "Mat2Spec_DATA/phdos/mpids.csv").read_bytes() == b"mp-3\n"
    assert "mp_edos_128: 1 file(s) ready" in out and "phonon_e3nn: 1 file(s) ready" in out
    downloads = [r for r in state.requests if r["path"].endswith("/content")]
    assert len(downloads) == 1  # phonon_e3nn reuses the archive mp_edos_128 fetched
    assert _leftovers(tmp_path) == []
    assert cli.main(["list"]) == 0  # (an override in `list` applies to every dataset)
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ARCHIVE_KEY in ln]
    assert len(lines) == 2  # mp_edos_128 and phonon_e3nn
    line = lines[0]
    assert (
        "present, unpacked" in line and "record https://data.caltech.edu/api/records/8975" in line
    )
    assert "<its only archive>" in line and "record's checksum" in line


def test_cli_record_error_is_one_line(server, tmp_path, capsys, monkeypatch):
    url, state = server
    _publish(state, url, {"a.zip": ARCHIVE, "b.zip": ARCHIVE})
    monkeypatch.setenv("DOS_BENCH_DATA_DIR", str(tmp_path))
    rc = cli.main(["download", "mp_edos_128", f"dataset.download.0.record={url}{RECORD}"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"dos-data: error: the record {url}{RECORD} has 2 archives")
    assert list(tmp_path.iterdir()) == []


def test_cli_real_conf_toy(capsys, tmp_path):
    assert cli.main(["download", "toy_edos", f"paths.data_dir={tmp_path}"]) == 0
    assert "generated locally" in capsys.readouterr().out
    assert os.listdir(tmp_path) == []


def test_cli_list_prints_every_shipped_dataset(tmp_path, capsys, monkeypatch):
    """``dos-data list`` on the packaged configs: one header line per ``conf/dataset/*.yaml``."""
    monkeypatch.setenv("DOS_BENCH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MP_API_KEY", raising=False)
    names = cli.known_datasets()
    assert {"toy_edos", "toy_phdos", "jarvis_edos", "mp_edos_201", "phonon_tut"} <= set(names)
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    headers = [ln.split(":")[0] for ln in out.splitlines() if not ln.startswith(" ")]
    assert headers == names
    assert "toy_edos: generated locally on first use" in out
    assert "mp_edos_201: 0 download(s)" in out and "needs $MP_API_KEY (NOT set)" in out
    assert "cannot read config" not in out and list(tmp_path.iterdir()) == []
