import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.data.splits import RandomSplit, format_split_stats
from dos_bench.io import ConfigError


def _rs(n):
    s = Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])
    cs = ["cubic", "triclinic"]
    return RecordSet.from_records(
        [
            DOSRecord(f"m{i}", s, np.arange(3.0), np.ones(3), {"n_species": 1 + i % 3,
                                                             "crystal_system": cs[i % 2]})
            for i in range(n)
        ]
    )


def test_random_split_fractions_disjoint_and_seeded():
    rs = _rs(100)
    a = RandomSplit(0.7, 0.1, 0.2, seed=3)(rs)
    assert a.sizes() == {"train": 70, "val": 10, "test": 20}
    allidx = np.concatenate([a.train, a.val, a.test])
    assert sorted(allidx.tolist()) == list(range(100))
    b = RandomSplit(0.7, 0.1, 0.2, seed=3)(rs)
    c = RandomSplit(0.7, 0.1, 0.2, seed=4)(rs)
    assert (a.test == b.test).all() and not (a.test == c.test).all()
    ids = a.ids(rs)
    json.dumps(ids)
    assert len(ids["test"]) == 20


def test_random_split_bad_fractions():
    with pytest.raises(ConfigError, match="sum to 1"):
        RandomSplit(0.8, 0.3, 0.1)


def test_split_stats_add_up():
    rs = _rs(30)
    sp = RandomSplit(seed=0)(rs)
    text = format_split_stats(rs, sp)
    assert "train 24, val 3, test 3" in text
    rows = [ln.split() for ln in text.splitlines() if ln.split()[0] in ("cubic", "triclinic")]
    assert sum(int(r[-1]) for r in rows) == 30
