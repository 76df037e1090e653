"""Random and group splits, the split statistics (dos_bench.data.splits)."""

import json
import random

import numpy as np
import pytest
import sklearn.model_selection
from pymatgen.core import Lattice, Structure

from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.data.splits import (
    GroupSplit,
    RandomSplit,
    format_split_stats,
    sklearn_train_test_split,
)
from dos_bench.io import ConfigError, DataError

CS = ["cubic", "hexagonal", "tetragonal", "trigonal", "orthorhombic", "monoclinic", "triclinic"]


def _rs(n):
    s = Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])
    return RecordSet.from_records(
        [
            DOSRecord(
                f"m{i}",
                s,
                np.arange(3.0),
                np.ones(3),
                {"n_species": 1 + i % 6, "crystal_system": CS[i % 7]},
            )
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


def test_random_split_bad_values():
    with pytest.raises(ConfigError, match="sum to 1"):
        RandomSplit(0.8, 0.3, 0.1)
    with pytest.raises(ConfigError, match="procedure"):
        RandomSplit(procedure="magic")
    with pytest.raises(ConfigError, match="train_fraction"):
        RandomSplit(train_fraction=0.0)


@pytest.mark.parametrize("n", [10, 37, 1001])
@pytest.mark.parametrize("kw", [{"train_size": 0.8}, {"test_size": 0.2}, {"test_size": 0.5}])
def test_sklearn_train_test_split_reimplementation(n, kw):
    sk = sklearn.model_selection
    ref_train, ref_test = sk.train_test_split(np.arange(n), random_state=1, **kw)
    tr, te = sklearn_train_test_split(n, seed=1, **kw)
    assert (tr == ref_train).all() and (te == ref_test).all()


def test_mat2spec_procedure_matches_authors_recipe():
    """docs/papers/mat2spec.md §4.2: seed-1 shuffle, train_test_split 0.8, then halves (first
    output = test)."""
    sk = sklearn.model_selection
    n = 203
    order = list(range(n))
    random.seed(1)
    random.shuffle(order)
    train, rest = sk.train_test_split(order, train_size=0.8, random_state=1)
    test, val = sk.train_test_split(rest, test_size=0.5, random_state=1)
    ours = RandomSplit(0.8, 0.1, 0.1, seed=1, procedure="mat2spec")(_rs(n))
    assert ours.train.tolist() == list(train)
    assert ours.val.tolist() == list(val) and ours.test.tolist() == list(test)
    assert len(test) == len(rest) // 2


def test_dostransformer_procedure_matches_authors_recipe():
    sk = sklearn.model_selection
    n = 389
    train, rest = sk.train_test_split(list(range(n)), test_size=0.2, random_state=0)
    val, test = sk.train_test_split(rest, test_size=0.5, random_state=0)
    ours = RandomSplit(0.8, 0.1, 0.1, seed=0, procedure="dostransformer")(_rs(n))
    assert ours.train.tolist() == list(train)
    assert ours.val.tolist() == list(val) and ours.test.tolist() == list(test)


def test_species_count_split_groups():
    rs = _rs(120)
    sp = GroupSplit("n_species", [2, 3], [1, 4, 5], seed=0)(rs)
    ns = rs.meta["n_species"]
    assert set(ns[sp.train].tolist()) == {2, 3}
    assert set(ns[sp.val].tolist()) | set(ns[sp.test].tolist()) == {1, 4, 5}
    assert 6 not in set(ns[np.concatenate([sp.train, sp.val, sp.test])].tolist())
    assert abs(len(sp.val) - len(sp.test)) <= 1


def test_crystal_system_split_groups_and_recompute():
    rs = _rs(70)
    sp = GroupSplit("crystal_system", CS[:5], CS[5:], seed=0)(rs)
    cs = rs.meta["crystal_system"]
    assert set(cs[sp.train].tolist()) == set(CS[:5])
    assert set(cs[np.concatenate([sp.val, sp.test])].tolist()) == {"monoclinic", "triclinic"}
    # recomputing from the (all cubic) structures puts everything in the train groups
    with pytest.raises(DataError, match="only 0 records in the evaluation groups"):
        GroupSplit("crystal_system", CS[:5], CS[5:], recompute_crystal_system=True)(rs)


def test_group_split_errors():
    with pytest.raises(ConfigError, match="both train and eval"):
        GroupSplit("n_species", [1, 2], [2])
    with pytest.raises(DataError, match="no metadata column 'spacegroup'"):
        GroupSplit("spacegroup", [1], [2])(_rs(10))


def test_train_fraction_keeps_val_and_test():
    rs = _rs(400)
    full = RandomSplit(seed=2)(rs)
    for r in (0.5, 0.25, 0.125):
        sub = RandomSplit(seed=2, train_fraction=r)(rs)
        assert (sub.test == full.test).all() and (sub.val == full.val).all()
        assert len(sub.train) == int(np.floor(r * len(full.train)))
        assert set(sub.train.tolist()) <= set(full.train.tolist())
    g = GroupSplit("n_species", [2, 3], [1, 4, 5], train_fraction=0.5)(rs)
    g_full = GroupSplit("n_species", [2, 3], [1, 4, 5])(rs)
    assert (g.test == g_full.test).all() and len(g.train) == len(g_full.train) // 2


def test_split_stats_add_up():
    rs = _rs(30)
    sp = RandomSplit(seed=0)(rs)
    text = format_split_stats(rs, sp)
    assert "train 24, val 3, test 3" in text
    rows = [ln.split() for ln in text.splitlines() if ln.split()[0] in CS]
    assert sum(int(r[-1]) for r in rows) == 30
    all_rows = [ln.split() for ln in text.splitlines() if ln.split()[0] == "all"]
    assert all(r[1:] == ["24", "3", "3", "30"] for r in all_rows)
