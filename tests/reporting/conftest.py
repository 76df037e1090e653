"""The fake multirun of the table tests (runs of tests/reporting/helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .helpers import SPEC, VALUES, _write_run


@pytest.fixture
def multirun(tmp_path: Path) -> tuple[Path, Path]:
    spec_path = tmp_path / "toy_table.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC, allow_unicode=True, sort_keys=False))
    root = tmp_path / "multirun"
    k = 0
    for (model, kind), vals in VALUES.items():
        for seed, v in enumerate(vals):
            _write_run(root / "sub" / str(k), model, kind, seed, v, resolved=k % 2 == 0)
            # checkpoints/ and csv/ inside a run are not runs
            (root / "sub" / str(k) / "checkpoints").mkdir()
            k += 1
    _write_run(root / "sub" / str(k), "A", "phdos", 2, None)  # one failed run
    (root / "multirun.yaml").write_text("{}")
    return root, spec_path
