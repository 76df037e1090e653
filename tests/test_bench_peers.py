"""``scripts/bench.py peers``: the per-model worker's JSON, the skip line without ``alignn`` and
one table row for a worker killed by a signal (no ``alignn`` needed)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dos_bench import bench_utils
from dos_bench.bench_utils import peer_worker_command

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``scripts/bench.py`` as a module (its import sets the BLAS thread variables: restored)."""
    for lib in ("OMP", "OPENBLAS", "MKL", "NUMEXPR"):
        monkeypatch.setenv(f"{lib}_NUM_THREADS", "1")
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_script", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def worker_result() -> dict[str, Any]:
    """One real worker run: D-ALIGNN, 2 crystals, 1 timed step per phase, 1 thread."""
    cmd = peer_worker_command("d_alignn", batch_size=2, steps=1, threads=1, warmup=1)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _args(**kw: Any) -> argparse.Namespace:
    base = dict(
        peers_batch=2, peers_steps=1, peers_rounds=1, peers_timeout=120.0, threads=1,
        cpu_allocator="retain", peers_warmup=0,
    )  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_worker_prints_positive_figures(worker_result):
    r = worker_result
    assert r["model"] == "d_alignn" and r["graphs"] == 2 and r["threads"] == 1
    assert r["warmup"] == 1
    assert len(r["record_ids"]) == 2
    for key in ("params", "atoms", "edges", "line_graph_edges", "rss_built_mb", "peak_rss_mb"):
        assert r[key] > 0, key
    assert r["peak_rss_mb"] >= r["rss_built_mb"]
    for phase in ("train", "infer"):
        assert r[phase]["flops"] > 0 and r[phase]["first_step_s"] > 0
        assert len(r[phase]["times"]) == 1 and r[phase]["median"] > 0
    assert r["train"]["flops"] > r["infer"]["flops"]


def test_skipped_in_one_line_without_alignn(bench, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "alignn", None)  # import alignn -> ImportError
    res = bench.bench_peers(_args())
    assert len(res.metrics) == 1 and not res.tables
    msg = str(res.metrics[0].value)
    assert msg.startswith("skipped: alignn not importable (") and "\n" not in msg
    assert "peers: skipped: alignn not importable" in capsys.readouterr().err


def test_killed_worker_is_one_row_and_not_rerun(bench, monkeypatch, worker_result, tmp_path):
    saved = tmp_path / "ours.json"
    saved.write_text(json.dumps(worker_result))
    calls: list[str] = []

    def fake_command(model: str, *a: Any, **kw: Any) -> list[str]:
        calls.append(model)
        if model == "d_alignn":
            return [sys.executable, "-c", f"print(open({str(saved)!r}).read())"]
        kill = "import os, sys; print('allocating', file=sys.stderr); os.kill(os.getpid(), 9)"
        return [sys.executable, "-c", kill]

    monkeypatch.setattr(bench_utils, "peer_worker_command", fake_command)
    monkeypatch.setattr(bench_utils, "alignn_peer_version", lambda: "test")
    res = bench.bench_peers(_args(peers_rounds=3))
    assert calls == ["d_alignn", "alignn", "d_alignn", "d_alignn"]  # ABBA; killed: not rerun
    rows = {r[0]: r for r in res.tables[0].rows}
    ours, peer = rows["D-ALIGNN (dos_bench)"], rows["alignn (PyPI) ALIGNNAtomWisePure"]
    assert peer[-1] == "killed by signal 9 (out of memory?); last stderr: allocating"
    assert float(ours[3]) > 0 and float(ours[4]) > 0  # train graphs/s, GFLOP/step
    assert "D-ALIGNN / alignn" not in rows  # no ratio without the peer
    assert res.details["summary"]["d_alignn"]["train"]["steps"] == 3
    values = {m.name: str(m.value) for m in res.metrics}
    assert values["D-ALIGNN / alignn"].startswith("not compared (alignn: killed by signal 9")


def test_ratio_row_and_targets(bench, monkeypatch, worker_result, tmp_path):
    slow = json.loads(json.dumps(worker_result))
    for phase in ("train", "infer"):
        slow[phase]["times"] = [3 * t for t in slow[phase]["times"]]
    slow["peak_rss_mb"] *= 1.25
    paths = {"d_alignn": worker_result, "alignn": slow}
    for m, r in paths.items():
        (tmp_path / f"{m}.json").write_text(json.dumps(r))

    def fake_command(model: str, *a: Any, **kw: Any) -> list[str]:
        return [sys.executable, "-c", f"print(open({str(tmp_path / (model + '.json'))!r}).read())"]

    monkeypatch.setattr(bench_utils, "peer_worker_command", fake_command)
    monkeypatch.setattr(bench_utils, "alignn_peer_version", lambda: "test")
    res = bench.bench_peers(_args())
    ratio = res.tables[0].rows[-1]
    assert ratio[0] == "D-ALIGNN / alignn" and ratio[3] == "3.00x" and ratio[8] == "0.80x"
    assert ratio[-1].endswith(": met")
    met = {m.name: m.met for m in res.metrics if m.met is not None}
    assert met == {"train graphs/s, D-ALIGNN / alignn": True, "peak RSS, D-ALIGNN / alignn": True}
