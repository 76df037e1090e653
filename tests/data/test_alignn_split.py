"""``split.procedure: alignn`` — ALIGNN's ``get_id_train_val_test`` (issue 11, item 7).

The reference below is written from reading usnistgov/alignn ``alignn/data.py``: sizes are
``int(ratio × N)``; with ``keep_data_order`` off the list ``0 … N−1`` is shuffled with the
standard-library generator seeded by ``split_seed``; train is taken from the front, test from
the back and validation from just in front of test.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from pymatgen.core import Lattice, Structure

from dos_bench.config import CONF_DIR
from dos_bench.data.records import DOSRecord, RecordSet
from dos_bench.data.splits import RandomSplit, alignn_split_indices
from dos_bench.io import ConfigError


class _Sized:
    """Only ``len()`` of the record set matters to :class:`RandomSplit`."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _records(n: int) -> RecordSet:
    s = Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])
    return RecordSet.from_records(
        [DOSRecord(f"jvasp-{i}", s, np.arange(3.0), np.ones(3), {}) for i in range(n)]
    )


def _reference(n: int, ratios: tuple[float, float, float], seed: int, shuffle: bool = True):
    """ALIGNN's choice, re-stated: the global ``random`` module as ALIGNN uses it."""
    sizes = [int(r * n) for r in ratios]
    positions = list(range(n))
    if shuffle:
        state = random.getstate()
        try:
            random.seed(seed)
            random.shuffle(positions)
        finally:
            random.setstate(state)
    reverse = positions[::-1]
    n_train, n_val, n_test = sizes
    test = reverse[:n_test][::-1]
    val = reverse[n_test : n_test + n_val][::-1]
    train = positions[:n_train]
    return train, val, test


def test_jarvis_sizes_alignn_vs_simple() -> None:
    n = 55_659
    tr, va, te = alignn_split_indices(n, 0.7, 0.1, 0.2, seed=123)
    assert (len(tr), len(va), len(te)) == (38_961, 5_565, 11_131)
    got = RandomSplit(0.7, 0.1, 0.2, seed=123, procedure="alignn")(_Sized(n))
    assert got.sizes() == {"train": 38_961, "val": 5_565, "test": 11_131}
    assert len(set(got.train) | set(got.val) | set(got.test)) == n - 2  # two left over
    simple = RandomSplit(0.7, 0.1, 0.2, seed=123, procedure="simple")(_Sized(n))
    assert simple.sizes() == {"train": 38_961, "val": 5_566, "test": 11_132}


@pytest.mark.parametrize("n", [10, 37, 101, 1000])
@pytest.mark.parametrize("seed", [123, 0, 7])
@pytest.mark.parametrize("ratios", [(0.7, 0.1, 0.2), (0.8, 0.1, 0.1), (0.6, 0.25, 0.15)])
def test_membership_matches_the_reference(n, seed, ratios) -> None:
    ref = _reference(n, ratios, seed)
    got = alignn_split_indices(n, *ratios, seed=seed)
    for a, b in zip(got, ref, strict=True):
        assert a.tolist() == list(b)


def test_record_set_path_and_no_test_part() -> None:
    rs = _records(53)
    got = RandomSplit(0.7, 0.1, 0.2, seed=123, procedure="alignn")(rs)
    ref = _reference(53, (0.7, 0.1, 0.2), 123)
    assert [got.train.tolist(), got.val.tolist(), got.test.tolist()] == [list(x) for x in ref]
    assert got.ids(rs)["test"] == [f"jvasp-{i}" for i in ref[2]]
    # no test part: validation is the last n_val positions (ALIGNN's n_test == 0 branch)
    tr, va, te = alignn_split_indices(40, 0.9, 0.1, 0.0, seed=5)
    ref = _reference(40, (0.9, 0.1, 0.0), 5)
    assert tr.tolist() == ref[0] and va.tolist() == ref[1] and te.size == 0


def test_keep_data_order() -> None:
    got = RandomSplit(0.7, 0.1, 0.2, procedure="alignn", keep_data_order=True)(_Sized(20))
    assert got.train.tolist() == list(range(14))
    assert got.val.tolist() == [14, 15] and got.test.tolist() == [16, 17, 18, 19]
    assert [x.tolist() for x in alignn_split_indices(20, 0.7, 0.1, 0.2, 9, True)] == [
        list(x) for x in _reference(20, (0.7, 0.1, 0.2), 9, shuffle=False)
    ]
    with pytest.raises(ConfigError, match="keep_data_order"):
        RandomSplit(procedure="simple", keep_data_order=True)


def test_global_random_state_is_untouched() -> None:
    random.seed(99)
    before = random.random()
    random.seed(99)
    alignn_split_indices(100, 0.7, 0.1, 0.2, seed=123)
    assert random.random() == before


def test_alignn_preset_uses_the_alignn_split() -> None:
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=["experiment=alignn_dos_table1"])
    assert cfg.split.procedure == "alignn" and cfg.split_seed == 123
    assert (cfg.split.train, cfg.split.val, cfg.split.test) == (0.7, 0.1, 0.2)
    splitter = instantiate(cfg.split)
    assert splitter(_Sized(55_659)).sizes() == {"train": 38_961, "val": 5_565, "test": 11_131}
