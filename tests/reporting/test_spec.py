"""Table specs: every bundled spec loads, a bad spec fails clearly."""

from __future__ import annotations

import pytest
import yaml

from dos_bench.io import ConfigError
from dos_bench.reporting.spec import available_specs, load_spec

from .helpers import SPEC


def test_every_bundled_spec_loads():
    names = available_specs()
    assert len(names) >= 13
    for name in names:
        spec = load_spec(name)
        assert spec.name == name and spec.columns and spec.rows
        assert spec.experiment == name


@pytest.mark.parametrize(
    "bad,match",
    [
        (
            {"rows": [{"id": "a", "labels": ["x", "y"], "match": {}, "published": {"zz": 1}}]},
            "unknown column",
        ),
        ({"columns": [{"id": "c", "metric": "test.mae", "better": "up"}]}, "better"),
        ({"rows": [{"id": "a", "labels": ["only one"], "match": {}}]}, "labels"),
        ({"colour": "red"}, "unknown key"),
    ],
)
def test_bad_spec_fails_clearly(tmp_path, bad, match):
    raw = {**SPEC, **bad}
    raw.pop("derived_rows")
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError, match=match):
        load_spec(p)
