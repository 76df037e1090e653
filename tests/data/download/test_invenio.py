"""Files published in InvenioRDM records, against a loopback fake of the record API
(dos_bench.data.download.invenio, through download_dataset)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from dos_bench.data.download import download_dataset, part_path
from dos_bench.io import DataError

_spec = importlib.util.spec_from_file_location(
    "dos_data_http_server", Path(__file__).parents[1] / "http_server.py"
)
if _spec.name not in sys.modules:  # one instance: its dataclass needs a module entry
    sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_spec.name])
H = sys.modules[_spec.name]
RECORD, ARCHIVE_KEY, ARCHIVE = H.RECORD, H.ARCHIVE_KEY, H.ARCHIVE
_publish, _record_cfg = H.publish, H.record_cfg
_closed_port, _leftovers = H.closed_port, H.leftovers


def test_record_mapping_form_downloads_verifies_and_unpacks(server, tmp_path):
    url, state = server
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE, "README.txt": b"read me"})
    paths = download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert paths == [tmp_path / "m2s" / ARCHIVE_KEY]
    assert paths[0].read_bytes() == ARCHIVE
    assert (tmp_path / "m2s/Mat2Spec_DATA/phdos/mpids.csv").read_bytes() == b"mp-3\n"
    assert [r["path"] for r in state.requests] == [RECORD, f"{RECORD}/files/{ARCHIVE_KEY}/content"]
    assert state.requests[0]["accept"] == "application/json"
    assert _leftovers(tmp_path) == []
    # second run: the record is read again, the present archive passes its md5, no new download
    download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert [r["path"] for r in state.requests[2:]] == [RECORD]


@pytest.mark.parametrize("form", ["list", "files"])
def test_record_list_form_without_links_builds_the_content_url(server, tmp_path, form):
    url, state = server
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE}, form=form, links=False)
    # the content link redirects to the storage, as CaltechDATA's does
    state.redirects[f"{RECORD}/files/{ARCHIVE_KEY}/content"] = f"{url}/storage/blob"
    state.files["/storage/blob"] = ARCHIVE
    cfg = _record_cfg(url, file=ARCHIVE_KEY, sha256=hashlib.sha256(ARCHIVE).hexdigest())
    if form == "files":
        cfg["download"][0]["record"] = f"{url}{RECORD}/files"
        state.files[f"{RECORD}/files"] = state.files.pop(RECORD)
        state.types[f"{RECORD}/files"] = "application/json"
    download_dataset(cfg, tmp_path, progress=False)
    assert (tmp_path / "m2s" / ARCHIVE_KEY).read_bytes() == ARCHIVE
    assert [r["path"] for r in state.requests][1:] == [
        f"{RECORD}/files/{ARCHIVE_KEY}/content",
        "/storage/blob",
    ]
    assert (tmp_path / "m2s/Mat2Spec_DATA/label_edos/mpids.csv").exists()


def test_record_wrong_md5_leaves_nothing(server, tmp_path):
    url, state = server
    wrong = "md5:" + hashlib.md5(b"another file").hexdigest()
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE}, checksums={ARCHIVE_KEY: wrong})
    with pytest.raises(DataError, match="md5 mismatch") as err:
        download_dataset(_record_cfg(url), tmp_path, progress=False)
    msg = str(err.value)
    assert f"record {url}{RECORD}, file {ARCHIVE_KEY}" in msg
    assert wrong.removeprefix("md5:") in msg and hashlib.md5(ARCHIVE).hexdigest() in msg
    dest = tmp_path / "m2s" / ARCHIVE_KEY
    assert not dest.exists() and not part_path(dest).exists()
    assert not (tmp_path / "m2s" / "Mat2Spec_DATA").exists()


def test_record_pinned_sha256_is_checked_too(server, tmp_path):
    url, state = server
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE})  # the record's md5 is right
    with pytest.raises(DataError, match="sha256 mismatch"):
        download_dataset(_record_cfg(url, sha256="0" * 64), tmp_path, progress=False)
    assert list((tmp_path / "m2s").iterdir()) == []


def test_record_pinned_sha256_differs_from_the_published_one(server, tmp_path):
    url, state = server
    published = "sha256:" + hashlib.sha256(ARCHIVE).hexdigest()
    _publish(state, url, {ARCHIVE_KEY: ARCHIVE}, checksums={ARCHIVE_KEY: published})
    with pytest.raises(DataError, match="upstream file changed"):
        download_dataset(_record_cfg(url, sha256="1" * 64), tmp_path, progress=False)
    assert len(state.requests) == 1 and list(tmp_path.iterdir()) == []
    # unpinned, the published sha256 is what is checked
    download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert (tmp_path / "m2s" / ARCHIVE_KEY).read_bytes() == ARCHIVE


def test_record_without_the_key_lists_the_keys(server, tmp_path):
    url, state = server
    _publish(state, url, {"other.zip": ARCHIVE, "README.txt": b"x"})
    with pytest.raises(DataError) as err:
        download_dataset(_record_cfg(url, file=ARCHIVE_KEY), tmp_path, progress=False)
    msg = str(err.value)
    assert f"the record {url}{RECORD} has no file '{ARCHIVE_KEY}'" in msg
    assert "its files are: README.txt, other.zip" in msg
    assert list(tmp_path.iterdir()) == []


def test_record_with_two_archives_needs_a_file_key(server, tmp_path):
    url, state = server
    _publish(state, url, {"a.zip": ARCHIVE, "b.tar.gz": b"tar", "notes.txt": b"n"})
    with pytest.raises(DataError, match="2 archives") as err:
        download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert "a.zip, b.tar.gz, notes.txt" in str(err.value) and "`file: null`" in str(err.value)
    assert len(state.requests) == 1 and list(tmp_path.iterdir()) == []


def test_record_url_answering_html_is_refused_as_a_landing_page(server, tmp_path):
    url, state = server
    state.content_type = "text/html; charset=utf-8"
    state.files[RECORD] = b"<!doctype html><html>Mat2Spec</html>"
    with pytest.raises(DataError, match="landing page") as err:
        download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert f"{url}{RECORD} answered with a web page" in str(err.value)
    assert "/api/records/<id>" in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "body, match",
    [
        (b"not json {", "did not answer with JSON"),
        (
            json.dumps({"id": "8975", "metadata": {}, "files": {"enabled": True}}).encode(),
            "no files.entries",
        ),
        (json.dumps({"files": {"enabled": False}}).encode(), "files.enabled is false"),
        (json.dumps([1, 2]).encode(), "not an object"),
    ],
)
def test_record_that_is_not_a_record(server, tmp_path, body, match):
    url, state = server
    state.files[RECORD] = body
    state.types[RECORD] = "application/json"
    with pytest.raises(DataError, match=match) as err:
        download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert f"{url}{RECORD}" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_record_offline_and_404_name_the_record(server, tmp_path):
    url, _ = server
    with pytest.raises(DataError, match="HTTP 404") as err:
        download_dataset(_record_cfg(url), tmp_path, progress=False)
    assert f"{url}{RECORD}" in str(err.value)
    offline = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(DataError, match="network error") as err:
        download_dataset(_record_cfg(offline), tmp_path, progress=False)
    assert f"{offline}{RECORD}" in str(err.value)
    assert str(tmp_path / "m2s" / ARCHIVE_KEY) in str(err.value)
    assert list(tmp_path.iterdir()) == []
