"""docs/models.md cannot go stale: its parameter-count table is rebuilt from the configs.

For every row of the table: the dos_bench count equals the parameters of the model built from
the row's overrides (as tests/models/test_model_zoo.py builds the zoo), and the authors' counts
equal what docs/param_counts.py computes from the published layer shapes. Every model config in
conf/model/ appears in the table.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "models.md"


def _table() -> list[dict]:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- param-table:start -->\n(.*?)<!-- param-table:end -->", text, re.S)
    assert m, "docs/models.md has no param-table markers"
    lines = [ln for ln in m.group(1).strip().splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "row", "dos_bench config", "points", "dos_bench",
        "authors' (all)", "authors' (used)", "Δ vs used",
    ]  # fmt: skip
    rows = []
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        assert len(cells) == len(header), ln
        config = re.fullmatch(r"`([^`]+)`", cells[1])
        assert config, f"config cell must be one `...` span: {cells[1]!r}"
        rows.append(
            {
                "row": cells[0],
                "overrides": config.group(1).split(),
                "points": int(cells[2]),
                "ours": int(cells[3].replace(",", "")),
                "all": cells[4],
                "used": cells[5],
                "delta": cells[6],
            }
        )
    return rows


def _script():
    spec = importlib.util.spec_from_file_location("param_counts", ROOT / "docs" / "param_counts.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _build_count(overrides: list[str], points: int) -> int:
    from dos_bench.bench_utils import compose
    from dos_bench.data.features import atom_feature_table
    from dos_bench.models.model import build_model

    cfg = compose(overrides)
    dim = atom_feature_table(cfg.model.atom_features).shape[1]
    return int(build_model(cfg.model, in_dim=dim, out_dim=points).n_parameters())


ROWS = _table()


def test_table_covers_every_model_config():
    from dos_bench.bench_utils import model_names

    named = {o.split("=", 1)[1] for r in ROWS for o in r["overrides"] if o.startswith("model=")}
    assert set(model_names()) <= named, sorted(set(model_names()) - named)


@pytest.mark.parametrize("row", ROWS, ids=[r["row"] for r in ROWS])
def test_dos_bench_count_matches_the_built_model(row):
    assert _build_count(row["overrides"], row["points"]) == row["ours"]


def test_authors_counts_match_the_formula_script():
    script = _script()
    for r in ROWS:
        if r["all"] == "n/c":
            assert r["used"] == "n/c" and r["row"] not in script.AUTHORS
            continue
        a = script.AUTHORS[r["row"]]()
        assert (int(r["all"].replace(",", "")), int(r["used"].replace(",", ""))) == (
            a["all"],
            a["used"],
        ), r["row"]
        delta = 100.0 * (r["ours"] - a["used"]) / a["used"]
        assert r["delta"] == f"{delta:+.2f} %", r["row"]


def test_formula_script_reproduces_published_module_sizes():
    """Spot checks of the formulas against sizes the authors' own outputs print: the tutorial
    notebook's per-module weight counts of its E3NN (51 outputs), and the ALIGNN code's
    single-layer head as built by dos_bench with ``model.head.n_layers=1``."""
    s = _script()
    tut = s.e3nn_tut(51)["parts"]
    assert tut["conv1"] == 262144 + 262144 + (10 * 100 + 100 * 128) + 393216
    assert tut["conv2"] == 262144 + 131072 + (10 * 100 + 100 * 160) + 589824
    assert tut["conv_out"] == 104448 + 196608 + (10 * 100 + 100 * 64) + 208896
    assert s.lin(3, 4) == 16 and s.lin(3, 4, bias=False) == 12 and s.gru(2, 3) == 63
