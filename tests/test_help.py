"""Every console script's --help starts with what it does and examples (issue 15, item 5)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dos_bench.config import CONF_DIR

BIN = Path(sys.executable).parent


def _help(script: str, tmp_path: Path) -> str:
    r = subprocess.run(
        [str(BIN / script), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_dos_train_help_describes_gives_examples_then_groups(tmp_path):
    text = _help("dos-train", tmp_path)
    assert text.startswith("dos-train: train one density-of-states model")
    assert "powered by Hydra" not in text
    examples = [line for line in text.splitlines() if line.startswith("  dos-train ")]
    assert len(examples) == 3
    groups_part = text.split("== Config groups")[1].split("== Not a training group ==")[0]
    rows = {line.split()[0]: line for line in groups_part.splitlines()[1:] if line.strip()}
    on_disk = {
        p.relative_to(CONF_DIR).as_posix()
        for p in CONF_DIR.rglob("*")
        if p.is_dir() and any(p.glob("*.yaml")) and p.relative_to(CONF_DIR).parts[0] != "hydra"
    }
    assert set(rows) == on_disk - {"hparams_search"}
    assert "toy_edos*" in rows["dataset"] and "graph_network_small*" in rows["model"]
    assert "hparams_search: " in text.split("== Not a training group ==")[1]


def test_dos_predict_help(tmp_path):
    text = _help("dos-predict", tmp_path)
    assert text.startswith("dos-predict: predict the DOS of new crystals")
    assert len([ln for ln in text.splitlines() if ln.startswith("  dos-predict ")]) == 3


@pytest.mark.parametrize("script", ["dos-data", "dos-evaluate", "dos-tables"])
def test_argparse_scripts_describe_and_give_three_examples(script, tmp_path):
    text = _help(script, tmp_path)
    before_options = text.split("positional arguments")[0]
    assert "examples:" in before_options
    assert len(
        [ln for ln in before_options.splitlines() if ln.startswith(f"  {script} ")]
    ) >= 3 or (
        script == "dos-data"
        and len([ln for ln in before_options.splitlines() if "dos-data " in ln]) >= 3
    )
