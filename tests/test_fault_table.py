"""Issue 12: the fault table, every kind of bad input and fault in one place.

Each row is one fault: an id naming it, a set-up (a function below, with its arguments) that
writes the bad input and returns the action, what the action must give (an exception type for an
in-process call of a function, an exit code for a command-line entry point) and a regular
expression the ONE line of user-facing output must match (for an exception: its message, which
must be one line; for an exit code: stdout + stderr + log records >= WARNING + Python warnings,
exactly one non-empty line, no traceback). After every action :func:`test_fault` also checks
that nothing partial is left: no ``*.tmp`` anywhere, no new file but those the row allows (e.g.
Hydra's ``.hydra/``), every file that existed before unchanged (a previous ``metrics.json``,
results file or lock file intact).

Rows marked ``bug=`` are real bugs the row reveals: ``xfail(strict=True)`` until fixed.

Most rows call the code in process (the CLI ``main`` functions return exit codes; sources,
splitters and readers raise); a handful run ``dos-train`` as a subprocess where the entry point's
own behaviour (exit code 2, one logged line) is the point. Downloads use a loopback HTTP server
on 127.0.0.1 only (``tests/data/http_server.py``). Tests run as root, so an unwritable directory
is made with a regular file where a parent directory should be (ENOTDIR).
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import traceback
import warnings
import zipfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
from cli_support import CLI_SMALL, CONF_DIR, cli_env, compose_cfg, train_cli
from pymatgen.core import Lattice, Structure

from dos_bench.io import ConfigError, DataError, StorageError
from dos_bench.training.resume import RunDirLocked


class Fault(NamedTuple):
    id: str  # <kind>-<what is wrong>
    setup: tuple  # (set-up function name, *arguments)
    expect: type[BaseException] | int  # exception type (in process) or exit code (a CLI)
    message: str  # regex searched in the one line of output
    bug: str | None = None  # a real bug this row shows: xfail(strict=True) until fixed


SHA0 = "0" * 64

# fmt: off
FAULTS: list[Fault] = [
    # ================================================================== config (keys and values)
    Fault("config-trainer.max_epochs=abc", ("validate", "trainer.max_epochs=abc"), ConfigError,
          r"^trainer\.max_epochs: expected an integer >= 1 \(or -1 for no limit\), got 'abc'$"),
    Fault("config-trainer.max_epochs=abc-dos-train", ("train_proc", "trainer.max_epochs=abc"), 2,
          r"ConfigError: trainer\.max_epochs: expected an integer >= 1 .*got 'abc'$"),
    Fault("config-optimizer.lr=-1", ("validate", "optimizer.lr=-1"), ConfigError,
          r"^optimizer\.lr: expected a number > 0, got -1$"),
    Fault("config-monitor=val/maee", ("validate", "monitor=val/maee"), ConfigError,
          r"^monitor: 'val/maee' is not a metric this run logs; did you mean 'val/mae'\?"),
    Fault("config-split-fractions-sum-1.2", ("validate", "split.train=0.9", "split.val=0.2"),
          ConfigError, r"^split\.train/val/test: expected fractions that sum to 1, "
          r"got train=0\.9, val=0\.2, test=0\.1 \(sum 1\.2\)$"),
    Fault("config-data.batch_size=0", ("validate", "data.batch_size=0"), ConfigError,
          r"^data\.batch_size: expected an integer >= 1, got 0$"),
    Fault("config-trainer.precision=13", ("validate", "trainer.precision=13"), ConfigError,
          r"^trainer\.precision: expected one of .*'32-true'.*, got 13$"),
    Fault("config-seed=-1", ("validate", "seed=-1"), ConfigError,
          r"^seed: expected an integer >= 0, got -1$"),
    Fault("config-split.train_fraction=1.5", ("validate", "split.train_fraction=1.5"),
          ConfigError, r"^split\.train_fraction: expected a number in \(0, 1\], got 1\.5$"),
    Fault("config-model.encoder.crystal_vector=both",
          ("validate", "model=xtal2dos", "model.encoder.crystal_vector=both"), ConfigError,
          r"^model\.encoder\.crystal_vector: expected one of 'mean_composition', 'mean', "
          r"got 'both'$"),
    Fault("config-cpu_gemm=mkl", ("validate", "cpu_gemm=mkl"), ConfigError,
          r"^cpu_gemm: expected one of 'onednn', 'torch', got 'mkl'$"),
    Fault("config-model.head.kernel=flash-dos-train",
          ("train_proc", "model=xtal2dos", "model.head.kernel=flash"), 2,
          r"ConfigError: model\.head\.kernel: expected one of 'auto', 'torch', got 'flash'$"),
    Fault("config-structure_checks.min_distance=-1",
          ("build_source", "dataset.source.structure_checks.min_distance=-1"), ConfigError,
          r"dataset\.source\.structure_checks.*min_distance.*-1"),
    Fault("config-structure_checks.disordered=shuffle",
          ("build_source", "dataset.source.structure_checks.disordered=shuffle"), ConfigError,
          r"dataset\.source\.structure_checks.*disordered.*'shuffle'"),
    Fault("config-unknown-group-option-model=nope-dos-data",
          ("dos_data", "download", "toy_edos", "model=nope"), 2,
          r"^dos-data: error: cannot compose dataset 'toy_edos': .*Could not find 'model/nope'"),
    Fault("config-unknown-group-option-model=nope-dos-train", ("train_hydra", "model=nope"), 2,
          r"^dos-train: .*Could not find 'model/nope'; Available options in 'model': .*mlp"),
    Fault("config-unknown-key-dos-data", ("dos_data", "download", "toy_edos", "nokey=1"), 2,
          r"^dos-data: error: cannot compose dataset 'toy_edos': .*'nokey'"),
    Fault("config-unknown-key-dos-train", ("train_hydra", "nokey=1"), 2,
          r"^dos-train: Could not override 'nokey'"),
    Fault("config-download[0]-unknown-key",
          ("dos_data", "download", "jarvis_edos", "+dataset.download.0.mirror=http://x"), 2,
          r"^dos-data: error: dataset jarvis_edos: download\[0\]: unknown keys \['mirror'\]$"),
    Fault("config-download[0].path-absolute",
          ("dos_data", "download", "jarvis_edos", "dataset.download.0.path=/etc/x.zip"), 2,
          r"^dos-data: error: dataset jarvis_edos: download\[0\]\.path: expected a path "
          r"relative to the data dir .*'/etc/x\.zip'$"),
    Fault("config-download[0].sha256-not-hex",
          ("dos_data", "download", "jarvis_edos", "dataset.download.0.sha256=nothex"), 2,
          r"^dos-data: error: .*download\[0\]\.sha256: .*64 hex.*'nothex'"),
    Fault("config-api.client-unimportable",
          ("dos_data_mp", "download", "mp_edos_201", "dataset.api.client=no_such_mod.Client"), 2,
          r"^dos-data: error: dataset mp_edos_201: `api\.client` must name an importable client "
          r"class .*'no_such_mod\.Client'"),
    Fault("config-api-key-missing", ("dos_data_no_key", "download", "mp_edos_201"), 2,
          r"^dos-data: error: dataset mp_edos_201 .*set the environment variable MP_API_KEY"),
    Fault("config-hparams_search-bad-value-in-space",
          ("hpsearch", "+hparams_search.params.bs={keys:[data.batch_size],choices:[8,0]}"), 2,
          r"^ConfigError: hparams_search\.params\.bs \(data\.batch_size\): expected an integer "
          r">= 1, got 0$"),
    Fault("config-hparams_search-low-above-high",
          ("hpsearch", "+hparams_search.params.wd={keys:[optimizer.eps],low:0.1,high:0.01}"),
          2, r"^ConfigError: hparams_search\.params\.wd: low must be below high$"),
    Fault("config-hparams_search.direction=up", ("hpsearch", "hparams_search.direction=up"), 2,
          r"^ConfigError: hparams_search\.direction='up': minimize or maximize$"),
    Fault("config-hparams_search.sampler.name=sobol",
          ("hpsearch", "hparams_search.sampler.name=sobol"), 2,
          r"^ConfigError: hparams_search\.sampler\.name='sobol': choose one of "
          r"\['tpe', 'random', 'grid'\]$"),
    # ================================================================== data files
    Fault("data-truncated-json", ("jarvis_truncated_json",), DataError,
          r"jarvis/edos-up_pdos-elast_interp-8-18-2021\.json: not valid JSON \(Expecting"),
    Fault("data-truncated-zip", ("jarvis_truncated_zip",), DataError,
          r"edos-up_pdos-elast_interp-8-18-2021\.json\.zip"),
    Fault("data-truncated-csv", ("tut_truncated_csv",), DataError,
          r"phonon_tut/data\.csv: row \d \(mp_id mp-40\d, line \d+\): has \d fields, "
          r"the header has 7$"),
    Fault("data-truncated-npy", ("mat2spec", "truncated_npy"), DataError,
          r"label_edos/total_dos_128\.npy: cannot read"),
    Fault("data-wrong-length-grid", ("jarvis_edit", "short"), DataError,
          r"\.json\.zip: record JVASP-1003 .*299 values, expected 300"),
    Fault("data-nan-spectrum", ("jarvis_edit", "nan"), DataError,
          r"\.json\.zip: record JVASP-1001 .*NaN"),
    Fault("data-inf-spectrum", ("jarvis_edit", "inf"), DataError,
          r"\.json\.zip: record JVASP-1001 \(entry 1\) edos_up: spectrum contains NaN or infinite"),
    Fault("data-negative-spectrum", ("jarvis_edit", "negative"), DataError,
          r"\.json\.zip: record JVASP-1001 .*negative"),
    Fault("data-negative-phonon-spectrum", ("e3nn_negative",), DataError,
          r"phdos/ph_dos\.npy: record mp-303 \(row 3\).*negative"),
    Fault("data-nan-phonon-spectrum", ("e3nn_nan",), DataError,
          r"phdos/ph_dos\.npy: record mp-302 \(row 2\): spectrum contains NaN or infinite"),
    Fault("data-spectra-vs-ids-count", ("mat2spec", "count"), DataError,
          r"label_edos/mpids\.csv lists 4 material ids but .*total_dos_128\.npy has 6"),
    Fault("data-missing-file", ("mat2spec", "missing_file"), DataError,
          r"^dataset mp_edos_128: raw file 'Mat2Spec_DATA/label_edos/mpids\.csv' is missing; "
          r".*dos-data download mp_edos_128"),
    Fault("data-missing-structure-for-id", ("mat2spec", "missing_structure"), DataError,
          r"record mp-102.*missing.*materials_with_edos/dos_mp-102\.json"),
    Fault("data-malicious-structure-pickle", ("e3nn_evil_pickle",), DataError,
          r"phdos/ph_structures\.pkl.*not in the allowed list"),
    Fault("data-malicious-index-pickle", ("index_pickle_evil",), DataError,
          r"200801_trteva_indices\.pkl.*not in the allowed list"),
    Fault("data-code-in-csv-cell", ("tut_code_cell",), DataError,
          r"data\.csv: row 1 \(mp_id mp-401, line \d+\) column structure: refused to evaluate"),
    Fault("data-unknown-element", ("jarvis_edit", "unknown_element"), DataError,
          r"\.json\.zip: record JVASP-1003.*unknown element 'Xx' at site 0"),
    Fault("data-overlapping-atoms", ("jarvis_edit", "overlap"), DataError,
          r"record JVASP-1003.*atoms 0 \(Na\) and 1 \(Cl\) are 0\.00 Å apart"),
    Fault("data-disordered-site", ("mat2spec", "disordered"), DataError,
          r"dos_mp-102\.json.*site 0 is disordered.*Na:0\.5, K:0\.5"),
    Fault("data-isolated-atom", ("isolated_atom",), DataError,
          r"record far: atom 0 \(Na\) has no neighbour within the graph cutoff 8 Å"),
    Fault("data-broken-cif-dos-predict", ("broken_cif",), DataError,
          r"broken\.cif: cannot read this structure"),
    Fault("data-unknown-element-cif-dos-predict", ("unknown_element_cif",), DataError,
          r"unknown\.cif: unknown element 'Qq' at site 0"),
    Fault("data-index-file-out-of-range", ("index_files", "out_of_range"), DataError,
          r"te\.txt: test index 9 is out of range for a dataset of 6 records"),
    Fault("data-index-file-overlap", ("index_files", "overlap"), DataError,
          r"te\.txt: index 3 of the test part is also in the val part"),
    Fault("data-index-file-empty-part", ("index_files", "empty"), DataError,
          r"te\.txt: the test part lists no indices"),
    Fault("data-id-list-unknown-ids", ("id_list_unknown",), DataError,
          r"edos_pdos_ph_dos\.json\.zip!edos_pdos_ph_dos\.json: 2 of the 3 val ids .*"
          r"not among the 8 records .*first missing: JVASP-1002"),
    Fault("data-atom_init-truncated", ("atom_init", "truncated"), DataError,
          r"Mat2Spec_DATA/atom_init\.json.*not a valid JSON"),
    Fault("data-atom_init-missing-element", ("atom_init", "gap"), DataError,
          r"Mat2Spec_DATA/atom_init\.json.*atomic numbers \[3\] are missing"),
    # ================================================================== downloads (127.0.0.1)
    Fault("download-zip-path-traversal", ("dl_cli", "zip_traversal"), 2,
          r"^dos-data: error: refusing to unpack .*remote/evil\.zip: member '\.\./evil\.txt' "
          r"would be written outside the target directory"),
    Fault("download-tar-link-outside", ("dl_cli", "tar_link"), 2,
          r"^dos-data: error: refusing to unpack .*remote/evil\.tar\.gz: link 'link' -> "
          r"'\.\./\.\./etc' points outside the target directory$"),
    Fault("download-html-landing-page", ("dl_cli", "landing_page"), 2,
          r"^dos-data: error: .*/records/8975.*landing page"),
    Fault("download-wrong-sha256", ("dl_cli", "wrong_sha256"), 2,
          r"^dos-data: error: .*/payload\.bin.*expected 0{64}, got [0-9a-f]{64}"),
    Fault("download-wrong-md5-invenio-record", ("dl_record", "wrong_md5"), DataError,
          r"record http://127\.0\.0\.1:\d+/api/records/8975, file Mat2Spec_DATA\.zip.*"
          r"md5 mismatch"),
    Fault("download-wrong-git-blob", ("dl_git_blob",), DataError, r"git blob id mismatch"),
    Fault("download-cut-by-server", ("dl_cut",), DataError,
          r"payload\.bin.*interrupted.*rerun to resume"),
    Fault("download-no-server-listening", ("dl_cli", "no_server"), 2,
          r"^dos-data: error: .*http://127\.0\.0\.1:\d+/payload\.bin.*remote/payload\.bin"),
    Fault("download-http-404", ("dl_cli", "http_404"), 2,
          r"^dos-data: error: .*HTTP 404.*/missing\.bin|/missing\.bin.*HTTP 404"),
    Fault("download-record-without-the-file-key", ("dl_record", "no_key"), DataError,
          r"the record http://127\.0\.0\.1:\d+/api/records/8975 has no file 'Mat2Spec_DATA\.zip'"
          r".*its files are: README\.txt, other\.zip"),
    Fault("download-record-not-json", ("dl_record", "not_json"), DataError,
          r"/api/records/8975 did not answer with JSON"),
    Fault("download-record-two-archives-dos-data", ("dl_record_cli",), 2,
          r"^dos-data: error: the record http://127\.0\.0\.1:\d+/api/records/8975 has 2 archives"),
    Fault("download-not-a-zip", ("dl_cli", "not_a_zip"), 2,
          r"^dos-data: error: .*remote/bad\.zip is not a valid zip archive"),
    # ================================================================== runs
    Fault("run-malicious-checkpoint-dos-train", ("train_proc_evil_ckpt",), 2,
          r"ERROR.*DataError: .*evil\.ckpt: refused as a checkpoint: "
          r"torch\.load\(weights_only=True\) failed"),
    Fault("run-malicious-checkpoint", ("evil_ckpt", "safe"), DataError,
          r"evil\.ckpt: refused as a checkpoint: torch\.load\(weights_only=True\) failed "
          r"\(UnpicklingError: .*never arbitrary pickles$"),
    Fault("run-malicious-checkpoint-dos-predict", ("evil_ckpt", "predict"), DataError,
          r"evil\.ckpt: refused as a checkpoint: torch\.load\(weights_only=True\) failed"),
    Fault("run-missing-checkpoint", ("missing_ckpt",), ConfigError,
          r"^ckpt_path=.*/nope\.ckpt: no such checkpoint file$"),
    Fault("run-two-runs-one-dir-dos-train", ("train_proc_locked",), 2,
          r"ERROR.*run directory .*/run is in use by another dos_bench run \(pid \d+ on host"),
    Fault("run-two-runs-one-dir", ("run_lock",), RunDirLocked,
          r"^run directory .*/run is in use by another dos_bench run \(pid \d+ on host .*"
          r"lock file .*/run/\.dos_bench\.lock\)"),
    Fault("run-unwritable-output-dir-dos-train", ("train_proc_enotdir",), 2,
          r"ConfigError: paths\.output_dir=.*/a_file/run: cannot write into this directory "
          r"\(ENOTDIR"),
    Fault("run-unwritable-output-dir", ("enotdir",), ConfigError,
          r"^paths\.output_dir=.*/a_file/run: cannot write into this directory \(ENOTDIR: "
          r"a parent of the path is a file, not a directory\)$"),
    Fault("run-disk-full-keeps-previous-metrics", ("disk_full",), StorageError,
          r"^.*/run/metrics\.json: cannot write \(ENOSPC: no space left on the device"),
    Fault("run-evaluate-truncated-predictions", ("evaluate", "truncated_npz"), 2,
          r"^error: .*/run/predictions\.npz: the file is damaged \(truncated or corrupt"),
    Fault("run-evaluate-corrupt-metrics", ("evaluate", "corrupt_metrics"), 2,
          r"^error: .*/run/metrics\.json: the file is damaged \(truncated or corrupt"),
    Fault("run-evaluate-no-predictions", ("evaluate", "no_npz"), 2,
          r"^error: .*/run/predictions\.npz: no predictions\.npz \(is .*/run a finished run\?\)$"),
    Fault("run-evaluate-predictions-missing-array", ("evaluate", "no_pred_array"), 2,
          r"^error: .*/run/predictions\.npz: missing array\(s\) \['pred'\]$"),
    Fault("run-tables-folder-without-runs", ("tables", "no_runs"), 2,
          r"^dos-tables: no runs \(directories with metrics\.json or \.hydra/\) under "
          r"\['.*/sweep'\]$"),
    Fault("run-tables-unknown-table", ("tables", "table_nope"), 2,
          r"^dos-tables: no table spec 'nope' \(looked for .*nope\.yaml\); available: "),
    Fault("run-tables-missing-folder", ("tables", "missing_dir"), 2,
          r"^dos-tables: .*/nowhere: no such directory$"),
    Fault("run-tables-unwritable-plots-dir", ("tables", "plots_enotdir"), 2,
          r"^dos-tables: --plots=.*/a_file/figs: cannot write into this directory \(ENOTDIR"),
    Fault("run-tables-unwritable-output-file", ("tables", "output_enotdir"), 2,
          r"^dos-tables: .*a_file.*: cannot"),
]
# fmt: on


# ============================================================================ helpers
def _load(name: str, path: Path):
    """A test helper module loaded by file, one instance per name (as the other tests do)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


TESTS = Path(__file__).resolve().parent
F = _load("dos_archives_fixtures", TESTS / "data" / "fixtures.py")  # published formats
H = _load("dos_data_http_server", TESTS / "data" / "http_server.py")  # loopback server
A = _load("dos_archives", TESTS / "archives.py")  # miniature archives (atom_init.json)

JARVIS_JSON = "edos-up_pdos-elast_interp-8-18-2021.json"
JARVIS_ZIP = f"jarvis/{JARVIS_JSON}.zip"
SMALL = ["dataset=toy_phdos", "model=mlp", "trainer=debug", *CLI_SMALL]
#: files any action may create: Hydra's record of a run (config, overrides, the job log)
HYDRA_FILES = ("run/.hydra/*", "run/*.log")


class Ctx:
    """What a set-up needs (temporary folder, session toy data, monkeypatch, loopback server),
    and what it declares for the checks after the action (files the action may create, files
    that must never appear)."""

    def __init__(self, tmp: Path, data_dir: Path, mp: pytest.MonkeyPatch, stack: ExitStack):
        self.tmp, self.data_dir, self.mp, self._stack = tmp, data_dir, mp, stack
        self.may_create: list[str] = []  # glob patterns relative to tmp
        self.never: list[Path] = []  # e.g. the marker a malicious pickle would touch
        self._server: tuple[str, Any] | None = None

    def server(self) -> tuple[str, Any]:
        if self._server is None:
            self._server = self._stack.enter_context(H.serve())
        return self._server

    def allow(self, *patterns: str) -> None:
        self.may_create += patterns


# ============================================================================ the test
def _params():
    for f in FAULTS:
        marks = [pytest.mark.xfail(strict=True, reason=f.bug)] if f.bug else []
        yield pytest.param(f, id=f.id, marks=marks)


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file() or p.is_symlink():
            data = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
            out[p.relative_to(root).as_posix()] = hashlib.sha1(data).hexdigest()
    return out


def _user_lines(result: Any, capsys, caplog, caught: list) -> tuple[Any, str]:
    """(exit code, everything the user sees) of an entry point's run."""
    if isinstance(result, subprocess.CompletedProcess):
        return result.returncode, result.stdout + result.stderr
    out, err = capsys.readouterr()
    logged = [
        f"{r.levelname}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING
    ]
    shown = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        # the categories Python's default filters hide from users
        if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))
        and not issubclass(w.category, (ImportWarning, ResourceWarning))
    ]
    return result, "\n".join([out, err, *logged, *shown])


def test_fault_table_has_at_least_50_rows_with_unique_ids():
    ids = [f.id for f in FAULTS]
    assert len(ids) == len(set(ids))
    assert len([f for f in FAULTS if not f.bug]) >= 50  # the rows that pass today
    assert all(f.setup[0] in globals() for f in FAULTS)


@pytest.mark.parametrize("fault", list(_params()))
def test_fault(fault: Fault, tmp_path, data_dir, monkeypatch, capsys, caplog):
    from dos_bench.data.download import transfer

    monkeypatch.setattr(transfer, "_RETRY_DELAY", 0.0)
    tmp = tmp_path / "t"
    tmp.mkdir()
    with ExitStack() as stack:
        ctx = Ctx(tmp, data_dir, monkeypatch, stack)
        name, *args = fault.setup
        action: Callable[[], Any] = globals()[name](ctx, *args)
        before = _snapshot(tmp)
        capsys.readouterr()
        caplog.clear()
        if isinstance(fault.expect, type):
            with pytest.raises(fault.expect) as exc_info:
                action()
            text = str(exc_info.value)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    result = action()
                except Exception as exc:  # noqa: BLE001 - an uncaught error is the finding
                    result = f"uncaught {type(exc).__name__}"
                    print(traceback.format_exc(), file=sys.stderr)
            code, text = _user_lines(result, capsys, caplog, caught)
            assert code == fault.expect, text[-3000:]
    # ---- nothing ran that the input asked for (a malicious pickle or cell)
    assert not [p for p in ctx.never if p.exists()]
    # ---- one line naming the thing and what is wrong, no traceback
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert "Traceback" not in text, text[-3000:]
    assert len(lines) == 1, "\n".join(lines)[-3000:]
    assert re.search(fault.message, lines[0]), lines[0]
    # ---- nothing partial: no temporaries, no new file but the allowed ones, old files intact
    after = _snapshot(tmp)

    def allowed(rel: str) -> bool:
        return any(fnmatch.fnmatch(rel, pat) for pat in ctx.may_create)

    changed = [r for r, h in before.items() if after.get(r) != h and not allowed(r)]
    new = [r for r in after if r not in before and not allowed(r)]
    assert not changed, f"changed or removed: {changed}"
    assert not new, f"left behind: {new}"
    assert not [p for p in tmp.rglob("*") if p.name.endswith(".tmp")]


# ============================================================================ set-ups: config


def _compose(overrides: list[str], config_name: str = "train"):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def validate(ctx: Ctx, *overrides: str):
    """``validate_train_config`` on the composed config (what dos-train does first)."""
    from dos_bench.validation import validate_train_config

    cfg = compose_cfg(list(overrides), ctx.data_dir, ctx.tmp / "run")
    return lambda: validate_train_config(cfg)


def build_source(ctx: Ctx, *overrides: str):
    """Instantiate ``dataset.source`` of ``dataset=jarvis_edos`` (its structure checks)."""
    from dos_bench.config import build

    cfg = _compose(["dataset=jarvis_edos", f"paths.data_dir={ctx.tmp / 'data'}", *overrides])
    return lambda: build(cfg.dataset.source)


def dos_data(ctx: Ctx, *argv: str):
    """``dos-data <argv>`` in process, on the packaged configs, data dir in tmp."""
    from dos_bench.data import cli

    ctx.mp.setenv("DOS_BENCH_DATA_DIR", str(ctx.tmp / "data"))
    return lambda: cli.main([*argv, "--no-progress"])


def dos_data_mp(ctx: Ctx, *argv: str):
    ctx.mp.setenv("MP_API_KEY", "k" * 32)
    return dos_data(ctx, *argv)


def dos_data_no_key(ctx: Ctx, *argv: str):
    ctx.mp.delenv("MP_API_KEY", raising=False)
    return dos_data(ctx, *argv)


def train_hydra(ctx: Ctx, *overrides: str):
    """``dos-train <overrides>`` in process (the console script's ``cli``): for faults met before
    the task function runs, i.e. composition errors."""
    from hydra.core.global_hydra import GlobalHydra

    from dos_bench.train import cli as main

    ctx.mp.setattr(sys, "argv", ["dos-train", *overrides, f"hydra.run.dir={ctx.tmp / 'run'}"])

    def act():
        try:
            main()
        except SystemExit as exc:
            return exc.code
        finally:
            GlobalHydra.instance().clear()
        return 0

    return act


def _train_proc(ctx: Ctx, overrides: list[str], **env: str):
    """``python -m dos_bench.train`` as typed, on an empty data dir (nothing may be generated)."""
    data = ctx.tmp / "fresh_data"
    data.mkdir()
    args = [*SMALL, *overrides, f"hydra.run.dir={ctx.tmp / 'run'}"]
    ctx.allow(*HYDRA_FILES)
    return lambda: train_cli(args, data, ctx.tmp, env=cli_env(data, **env), timeout=300)


def train_proc(ctx: Ctx, *overrides: str):
    return _train_proc(ctx, list(overrides))


def hpsearch(ctx: Ctx, *overrides: str):
    """``dos-hpsearch hparams_search=smoke <overrides>`` in process: refused before any trial."""
    from dos_bench.hpsearch import main

    args = [
        "hparams_search=smoke",
        *overrides,
        f"hparams_search.dir={ctx.tmp / 'study'}",
        f"paths.data_dir={ctx.tmp / 'data'}",
        "trainer=debug",
    ]
    return lambda: main(args)


# ============================================================================ set-ups: data
def _jarvis_source(**kw):
    from dos_bench.data.sources import JarvisEDOS

    return JarvisEDOS(dataset="jarvis_edos", **kw)


def jarvis_truncated_json(ctx: Ctx):
    path = ctx.tmp / "jarvis" / JARVIS_JSON
    F.write_jarvis(path)
    path.write_bytes(path.read_bytes()[:500])
    return lambda: _jarvis_source(path=f"jarvis/{JARVIS_JSON}").load(ctx.tmp)


def jarvis_truncated_zip(ctx: Ctx):
    path = ctx.tmp / JARVIS_ZIP
    F.write_jarvis(path, as_zip=True)
    path.write_bytes(path.read_bytes()[:300])
    return lambda: _jarvis_source().load(ctx.tmp)


def _spectrum_with(index: int, value: float) -> list[float]:
    y = np.full(300, 0.1)
    y[index] = value
    return y.tolist()


def _atoms(elements, coords) -> dict:
    lattice = [[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]]
    return {"lattice_mat": lattice, "coords": coords, "elements": elements, "cartesian": False}


JARVIS_EDITS = {
    "short": {3: {"edos_up": [0.1] * 299}},
    "nan": {1: {"edos_up": _spectrum_with(7, float("nan"))}},
    "inf": {1: {"edos_up": _spectrum_with(3, float("inf"))}},
    "negative": {1: {"edos_up": _spectrum_with(7, -0.05)}},
    "unknown_element": {3: {"atoms": _atoms(["Xx", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])}},
    "overlap": {3: {"atoms": _atoms(["Na", "Cl"], [[0, 0, 0], [0, 0, 0]])}},
}


def jarvis_edit(ctx: Ctx, what: str):
    """The figshare zip with one entry edited; the source is strict (as shipped)."""
    F.write_jarvis(ctx.tmp / JARVIS_ZIP, as_zip=True, edit=JARVIS_EDITS[what])
    return lambda: _jarvis_source(strict=True).load(ctx.tmp)


def tut_truncated_csv(ctx: Ctx):
    from dos_bench.data.sources import PhononTUT

    path = ctx.tmp / "phonon_tut" / "data.csv"
    F.write_tut_csv(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) * 2 // 3])
    return lambda: PhononTUT(strict=True).load(ctx.tmp)


def tut_code_cell(ctx: Ctx):
    from dos_bench.data.sources import PhononTUT

    marker = ctx.tmp / "pwned"
    ctx.never.append(marker)
    cell = f"__import__('os').system('touch {marker}')"
    F.write_tut_csv(ctx.tmp / "phonon_tut" / "data.csv", {1: {"structure": cell}})
    return lambda: PhononTUT(strict=True).load(ctx.tmp)


def disordered() -> Structure:
    """(Na0.5 K0.5)Cl: one site with two species at half occupancy."""
    return Structure(
        Lattice.cubic(5.64), [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def lonely() -> Structure:
    """One Na atom in a 9 Å cube: no neighbour within 8 Å."""
    return Structure(Lattice.cubic(9.0), ["Na"], [[0, 0, 0]])


def mat2spec(ctx: Ctx, what: str):
    """The Mat2Spec eDOS folder (label_edos/, materials_with_edos/) with one fault."""
    from dos_bench.data.sources import Mat2SpecEDOS

    root = ctx.tmp / "Mat2Spec_DATA"
    if what != "missing_file":
        ids, _ = F.write_mat2spec_edos(root, n_ids=4 if what == "count" else None)
    if what == "truncated_npy":
        npy = root / "label_edos" / "total_dos_128.npy"
        npy.write_bytes(npy.read_bytes()[:-300])
    elif what == "missing_structure":
        (root / "materials_with_edos" / f"dos_{ids[2]}.json").unlink()
    elif what == "disordered":
        doc = {"structure": disordered().as_dict(), "material_id": ids[2]}
        (root / "materials_with_edos" / f"dos_{ids[2]}.json").write_text(json.dumps(doc))
    return lambda: Mat2SpecEDOS(dataset="mp_edos_128", strict=True).load(ctx.tmp)


def _e3nn(ctx: Ctx, row: int, value: float):
    from dos_bench.data.sources import PhononE3NN

    F.write_mat2spec_phdos(ctx.tmp / "Mat2Spec_DATA")
    npy = ctx.tmp / "Mat2Spec_DATA" / "phdos" / "ph_dos.npy"
    y = np.load(npy)
    y[row, 5] = value
    np.save(npy, y)
    return lambda: PhononE3NN().load(ctx.tmp)


def e3nn_negative(ctx: Ctx):
    return _e3nn(ctx, 3, -0.5)


def e3nn_nan(ctx: Ctx):
    return _e3nn(ctx, 2, float("nan"))


def e3nn_evil_pickle(ctx: Ctx):
    from dos_bench.data.sources import PhononE3NN

    marker = ctx.tmp / "pwned"
    ctx.never.append(marker)
    F.write_mat2spec_phdos(ctx.tmp / "Mat2Spec_DATA")
    pkl = ctx.tmp / "Mat2Spec_DATA" / "phdos" / "ph_structures.pkl"
    F.write_evil_pickle(pkl, os.system, (f"touch {marker}",))
    return lambda: PhononE3NN().load(ctx.tmp)


def index_pickle_evil(ctx: Ctx):
    from dos_bench.data.sources.pickles import load_index_pickle

    marker = ctx.tmp / "pwned"
    ctx.never.append(marker)
    pkl = ctx.tmp / "Mat2Spec_DATA" / "phdos" / "200801_trteva_indices.pkl"
    F.write_evil_pickle(pkl, os.system, (f"touch {marker}",))
    return lambda: load_index_pickle(pkl)


def isolated_atom(ctx: Ctx):
    from dos_bench.data.graphs import GraphRecipe, build_graphs, check_isolated
    from dos_bench.data.records import DOSRecord, RecordSet

    grid = np.zeros(1)
    rs = RecordSet.from_records(
        [DOSRecord("ok", F.structures()[0], grid, grid), DOSRecord("far", lonely(), grid, grid)]
    )
    recipe = GraphRecipe(cutoff=8.0, max_neighbors=12)
    graphs = build_graphs(rs, recipe, progress=False)
    return lambda: check_isolated(rs, graphs, recipe)


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


def broken_cif(ctx: Ctx):
    """What dos-predict reads for each input file (``read_structure_file``)."""
    from dos_bench.data.structure_checks import read_structure_file

    path = ctx.tmp / "in" / "broken.cif"
    path.parent.mkdir()
    path.write_text("data_broken\n_cell_length_a 4.0\nthis is not a cif\n")
    return lambda: read_structure_file(path)


def unknown_element_cif(ctx: Ctx):
    from dos_bench.data.structure_checks import read_structure_file

    path = ctx.tmp / "in" / "unknown.cif"
    path.parent.mkdir()
    path.write_text(CIF_HEAD.format(name="unknown") + " Qq Qq1 0 0 0 1\n Cl Cl1 0.5 0.5 0.5 1\n")
    return lambda: read_structure_file(path)


def _records(n: int):
    from dos_bench.data.records import DOSRecord, RecordSet

    s = Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])
    recs = [DOSRecord(f"m{i}", s, np.arange(3.0), np.ones(3)) for i in range(n)]
    return RecordSet.from_records(recs)


INDEX_PARTS = {
    "out_of_range": {"tr": [0, 1, 2], "va": [3], "te": [4, 5, 9]},
    "overlap": {"tr": [0, 1, 2], "va": [3], "te": [4, 3]},
    "empty": {"tr": [0, 1, 2], "va": [3], "te": []},
}


def index_files(ctx: Ctx, what: str):
    """split=index_file: idx text files (train/val/test) against 6 records."""
    from dos_bench.data.split_files import IndexFileSplit

    for name, idx in INDEX_PARTS[what].items():
        (ctx.tmp / f"{name}.txt").write_text("".join(f"{i}\n" for i in idx))
    split = IndexFileSplit(train="tr.txt", val="va.txt", test="te.txt", base_dir=str(ctx.tmp))
    rs = _records(6)
    return lambda: split(rs)


def id_list_unknown(ctx: Ctx):
    """split=id_list: a JARVIS-Leaderboard benchmark file naming ids the data lacks."""
    from dos_bench.data.split_files import IdListSplit

    def targets(ids):
        return {i: "0.5;0.5;0.5;0.5" for i in ids}

    parts = {
        "train": targets(["m0", "m1", "m2", "m3"]),
        "val": targets(["m4", "JVASP-1002", "JVASP-1174"]),
        "test": ["m5", "m6"],
    }
    path = ctx.tmp / "edos_pdos_ph_dos.json.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("edos_pdos_ph_dos.json", json.dumps(parts))
    rs = _records(8)
    return lambda: IdListSplit(str(path))(rs)


def atom_init(ctx: Ctx, what: str):
    """``model.atom_features=cgcnn_file:<Mat2Spec_DATA/atom_init.json>``, damaged."""
    from dos_bench.data.features import atom_feature_table

    path = A.write_atom_init(ctx.tmp / "Mat2Spec_DATA" / "atom_init.json")
    if what == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        vectors = json.loads(path.read_text())
        del vectors["3"]
        path.write_text(json.dumps(vectors))
    return lambda: atom_feature_table(f"cgcnn_file:{path}")


# ============================================================================ set-ups: downloads
def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar_bytes(members: dict[str, bytes], links: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


def _remote_conf(ctx: Ctx, entries: list[dict]) -> Path:
    """A config tree whose dataset ``remote`` downloads ``entries`` (as tests/data/test_cli.py)."""
    conf = ctx.tmp / "conf"
    (conf / "dataset").mkdir(parents=True)
    (conf / "paths").mkdir()
    (conf / "train.yaml").write_text(
        "defaults:\n  - dataset: remote\n  - paths: default\n  - _self_\nprogress: false\n"
    )
    (conf / "paths" / "default.yaml").write_text(f"data_dir: {ctx.tmp / 'data'}\n")
    remote = {"name": "remote", "kind": "edos", "download": entries}
    (conf / "dataset" / "remote.yaml").write_text(json.dumps(remote))
    return conf


def _served(state, path: str, body: bytes, unpack: str | None = None, sha: str | None = None):
    state.files[path] = body
    return {
        "url": None,  # filled in by the caller
        "sha256": sha if sha is not None else hashlib.sha256(body).hexdigest(),
        "path": "remote" + path,
        "unpack": unpack,
    }


def dl_cli(ctx: Ctx, what: str):
    """``dos-data download remote`` against the loopback server, one fault per case."""
    from dos_bench.data import cli

    if what == "no_server":
        url, state = f"http://127.0.0.1:{H.closed_port()}", H.ServerState()
    else:
        url, state = ctx.server()
    if what == "zip_traversal":
        evil = _zip_bytes({"ok.txt": b"ok", "../evil.txt": b"pwned"})
        entry = _served(state, "/evil.zip", evil, unpack="zip")
        ctx.allow("data/remote/evil.zip")  # the verified archive stays; nothing is extracted
    elif what == "tar_link":
        evil = _tar_bytes({"a.txt": b"x"}, {"link": "../../etc"})
        entry = _served(state, "/evil.tar.gz", evil, unpack="tar")
        ctx.allow("data/remote/evil.tar.gz")
    elif what == "landing_page":
        state.types["/records/8975"] = "text/html; charset=utf-8"
        entry = _served(state, "/records/8975", b"<!doctype html><html>Mat2Spec</html>", "zip")
        entry["sha256"] = None
    elif what == "wrong_sha256":
        entry = _served(state, "/payload.bin", H.PAYLOAD, sha=SHA0)
    elif what == "not_a_zip":
        entry = _served(state, "/bad.zip", b"this is not a zip archive", unpack="zip")
        ctx.allow("data/remote/bad.zip")  # complete and verified; unpacking it fails
    elif what == "http_404":
        entry = _served(state, "/missing.bin", b"", sha=SHA0)
        del state.files["/missing.bin"]
    else:  # no_server
        entry = _served(state, "/payload.bin", H.PAYLOAD)
    entry["url"] = url + entry["path"].removeprefix("remote")
    conf = _remote_conf(ctx, [entry])
    return lambda: cli.main(["download", "remote", "--no-progress"], conf)


def dl_record(ctx: Ctx, what: str):
    """A ``record:`` entry (InvenioRDM record API) through ``download_dataset``."""
    from dos_bench.data.download import download_dataset

    url, state = ctx.server()
    if what == "wrong_md5":
        wrong = "md5:" + hashlib.md5(b"another file").hexdigest()
        H.publish(state, url, {H.ARCHIVE_KEY: H.ARCHIVE}, checksums={H.ARCHIVE_KEY: wrong})
        cfg = H.record_cfg(url)
    elif what == "no_key":
        H.publish(state, url, {"other.zip": H.ARCHIVE, "README.txt": b"x"})
        cfg = H.record_cfg(url, file=H.ARCHIVE_KEY)
    else:  # not_json
        state.files[H.RECORD] = b"not json {"
        state.types[H.RECORD] = "application/json"
        cfg = H.record_cfg(url)
    return lambda: download_dataset(cfg, ctx.tmp / "data", progress=False)


def dl_record_cli(ctx: Ctx):
    """The shipped ``mp_edos_128`` entry, its record host swapped for the loopback server."""
    url, state = ctx.server()
    H.publish(state, url, {"a.zip": H.ARCHIVE, "b.zip": H.ARCHIVE})
    return dos_data(ctx, "download", "mp_edos_128", f"dataset.download.0.record={url}{H.RECORD}")


def dl_git_blob(ctx: Ctx):
    from dos_bench.data.download import download_dataset, git_blob_id

    url, state = ctx.server()
    ref = ctx.tmp / "ref.bin"
    ref.write_bytes(b"the published bytes")
    entry = {"url": f"{url}/payload.bin", "sha256": None, "path": "tut/data.csv"}
    cfg = {"name": "tut", "download": [{**entry, "git_blob": git_blob_id(ref)}]}
    return lambda: download_dataset(cfg, ctx.tmp / "data", progress=False)


def dl_cut(ctx: Ctx):
    """The server hangs up half way; no automatic resume (retries=0)."""
    from dos_bench.data.download import fetch

    url, state = ctx.server()
    state.cut_after = len(H.PAYLOAD) // 2
    ctx.allow("data/payload.bin.part")  # kept on purpose: the next run resumes from it
    dest = ctx.tmp / "data" / "payload.bin"
    return lambda: fetch(f"{url}/payload.bin", dest, H.PAYLOAD_SHA, progress=False, retries=0)


# ============================================================================ set-ups: runs
def _evil_ckpt(ctx: Ctx) -> Path:
    marker, evil = ctx.tmp / "pwned", ctx.tmp / "evil.ckpt"
    ctx.never.append(marker)
    F.write_evil_pickle(evil, os.system, (f"touch {marker}",))
    return evil


def train_proc_evil_ckpt(ctx: Ctx):
    evil = _evil_ckpt(ctx)
    return _train_proc(ctx, [f"ckpt_path={evil}"], TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")


def evil_ckpt(ctx: Ctx, loader: str):
    """``ckpt_path=<a pickle that runs a command>``: dos-train's loader or dos-predict's."""
    from dos_bench.predict import predict
    from dos_bench.training.resume import load_checkpoint_safely

    evil = _evil_ckpt(ctx)
    ctx.mp.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    if loader == "safe":
        return lambda: load_checkpoint_safely(evil)
    (ctx.tmp / "in").mkdir()
    (ctx.tmp / "in" / "Si.cif").write_text(
        CIF_HEAD.format(name="Si") + " Si Si1 0 0 0 1\n Si Si2 0.25 0.25 0.25 1\n"
    )
    cfg = _compose(
        [f"ckpt_path={evil}", f"inputs={ctx.tmp / 'in'}", f"output_dir={ctx.tmp / 'out'}"],
        config_name="predict",
    )
    return lambda: predict(cfg)


def missing_ckpt(ctx: Ctx):
    from dos_bench.training.resume import resume_path

    return lambda: resume_path(str(ctx.tmp / "nope.ckpt"), ctx.tmp / "run")


def _lock(run: Path, pid: int) -> Path:
    import socket

    from dos_bench.training.resume import LOCK_NAME

    run.mkdir(parents=True, exist_ok=True)
    info = {"pid": pid, "host": socket.gethostname(), "started": "then", "token": "x"}
    (run / LOCK_NAME).write_text(json.dumps(info))
    return run / LOCK_NAME


def train_proc_locked(ctx: Ctx):
    """A live process (this test) holds the run directory's lock; a second run starts there."""
    _lock(ctx.tmp / "run", os.getpid())
    return _train_proc(ctx, [])


def run_lock(ctx: Ctx):
    from dos_bench.training.resume import RunLock

    _lock(ctx.tmp / "run", os.getppid())  # the process that started pytest: alive
    return lambda: RunLock(ctx.tmp / "run").acquire()


def train_proc_enotdir(ctx: Ctx):
    (ctx.tmp / "a_file").write_text("not a directory")
    return _train_proc(ctx, [f"paths.output_dir={ctx.tmp / 'a_file' / 'run'}"])


def enotdir(ctx: Ctx):
    from dos_bench.io import ensure_writable_dir

    (ctx.tmp / "a_file").write_text("not a directory")
    out = ctx.tmp / "a_file" / "run"
    return lambda: ensure_writable_dir(out, key="paths.output_dir")


def disk_full(ctx: Ctx):
    """ENOSPC half way through writing metrics.json over a previous one (simulated)."""
    from dos_bench.io import write_json

    target = ctx.tmp / "run" / "metrics.json"
    write_json(target, {"test": {"mae": 0.1}})
    real = Path.write_text

    def full_disk(self, data, *args, **kwargs):
        if self.parent == target.parent and self.name.endswith(".tmp"):
            real(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data, *args, **kwargs)

    ctx.mp.setattr(Path, "write_text", full_disk)
    return lambda: write_json(target, {"test": {"mae": 0.2}, "more": list(range(100))})


def _finished_run(path: Path) -> Path:
    """A run directory as dos-train leaves it (predictions.npz, metrics.json, config)."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(
        path / "predictions.npz",
        ids=np.array(["a", "b", "c"]),
        energies=np.linspace(-2, 2, 50),
        true=rng.random((3, 50)),
        pred=rng.random((3, 50)),
        energy_unit=np.asarray("eV"),
    )
    metrics = {"dataset": "d", "model": "m", "kind": "edos", "test": {"mae": 0.3}}
    (path / "metrics.json").write_text(json.dumps(metrics))
    cfg = {"seed": 0, "table": "", "model": {"name": "m"}, "dataset": {"name": "d", "kind": "edos"}}
    (path / "config_resolved.yaml").write_text(json.dumps(cfg))
    return path


def evaluate(ctx: Ctx, damage: str):
    """``dos-evaluate <run> --json results.json``: a previous results.json must stay intact."""
    from dos_bench.evaluate import main

    run = _finished_run(ctx.tmp / "run")
    npz = run / "predictions.npz"
    if damage == "truncated_npz":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif damage == "corrupt_metrics":
        (run / "metrics.json").write_text('{"dataset": "d", "te')
    elif damage == "no_npz":
        npz.unlink()
    else:  # no_pred_array
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files if k != "pred"}
        np.savez(npz, **arrays)
    results = ctx.tmp / "results.json"
    results.write_text('{"previous": true}\n')
    return lambda: main([str(run), "--json", str(results)])


def tables(ctx: Ctx, what: str):
    """``dos-tables``; a previous table file (--output) must stay intact."""
    from dos_bench.reporting.cli import main

    sweep = ctx.tmp / "sweep"
    sweep.mkdir()
    previous = ctx.tmp / "table.md"
    previous.write_text("| previous table |\n")
    blocker = ctx.tmp / "a_file"
    blocker.write_text("not a directory")
    if what == "no_runs":
        (sweep / "notes.txt").write_text("no run here")
        return lambda: main([str(sweep), "--output", str(previous)])
    _finished_run(sweep / "0")
    if what == "table_nope":
        return lambda: main([str(sweep), "--table", "nope", "--output", str(previous)])
    if what == "missing_dir":
        return lambda: main([str(ctx.tmp / "nowhere"), "--output", str(previous)])
    if what == "plots_enotdir":
        return lambda: main([str(sweep), "--plots", str(blocker / "figs")])
    return lambda: main([str(sweep), "--output", str(blocker / "table.md")])  # output_enotdir
