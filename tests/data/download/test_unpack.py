"""unpack: safe zip/tar extraction (dos_bench.data.download.archives)."""

from __future__ import annotations

import importlib.util
import io
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from dos_bench.data.download import unpack
from dos_bench.io import DataError

_spec = importlib.util.spec_from_file_location(
    "dos_data_http_server", Path(__file__).parents[1] / "http_server.py"
)
if _spec.name not in sys.modules:  # one instance: its dataclass needs a module entry
    sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules[_spec.name])
H = sys.modules[_spec.name]
_leftovers = H.leftovers


# --------------------------------------------------------------------------------------------
# unpack
# --------------------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


@pytest.mark.parametrize("evil", ["../evil.txt", "sub/../../evil.txt", "/abs/evil.txt"])
def test_zip_traversal_refused(tmp_path, evil):
    out = tmp_path / "out"
    out.mkdir()
    archive = _zip(tmp_path / "a.zip", {"ok.txt": b"ok", evil: b"pwned"})
    with pytest.raises(DataError, match="refusing to unpack"):
        unpack(archive, out, "zip")
    assert list(out.iterdir()) == []  # nothing extracted, no temp dir left
    assert not (tmp_path / "evil.txt").exists()


def test_tar_traversal_and_escaping_link_refused(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DataError, match="refusing"):
        unpack(_tar(tmp_path / "a.tar.gz", {"../evil.txt": b"x"}), out, "tar")
    with pytest.raises(DataError, match="outside"):
        unpack(_tar(tmp_path / "b.tar.gz", {"a.txt": b"x"}, {"link": "../../etc"}), out, "tar")
    assert not out.exists() or list(out.iterdir()) == []


def test_unpack_zip_and_tar(tmp_path):
    members = {"top.txt": b"1", "dir/inner.json": b"{}"}
    z = unpack(_zip(tmp_path / "a.zip", members), tmp_path / "z", "zip")
    t = unpack(
        _tar(tmp_path / "a.tgz", members, {"dir/alias": "inner.json"}), tmp_path / "t", "tar"
    )
    assert sorted(p.relative_to(tmp_path / "z").as_posix() for p in z) == sorted(members)
    assert (tmp_path / "t" / "dir" / "inner.json").read_bytes() == b"{}"
    assert (tmp_path / "t" / "dir" / "alias").is_symlink()
    assert len(t) == 3 and _leftovers(tmp_path) == []
    # unchanged archive, files present: no re-extraction
    (tmp_path / "z" / "top.txt").write_bytes(b"edited")
    unpack(tmp_path / "a.zip", tmp_path / "z", "zip")
    assert (tmp_path / "z" / "top.txt").read_bytes() == b"edited"


def test_unpack_corrupt_archive(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a valid zip"):
        unpack(bad, tmp_path / "out", "zip")
    assert _leftovers(tmp_path) == []
