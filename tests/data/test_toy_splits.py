"""The OOD splits on the bundled toy data: only the allowed groups in each part; stats add up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dos_bench.data.sources.toy import ToyEDOS
from dos_bench.data.splits import format_split_stats

CONF = Path(__file__).resolve().parents[2] / "conf" / "split"


@pytest.fixture(scope="module")
def toy(data_dir):
    return ToyEDOS(n_materials=240, seed=0, sigma=0.2, progress=False).load(data_dir)


def _splitter(name: str):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    cfg.seed = 0
    return instantiate(cfg)


@pytest.mark.parametrize(
    "name,column,train_groups,eval_groups",
    [
        ("species_count", "n_species", {"2", "3"}, {"1", "4", "5"}),
        (
            "crystal_system",
            "crystal_system",
            {"cubic", "hexagonal", "tetragonal", "trigonal", "orthorhombic"},
            {"monoclinic", "triclinic"},
        ),
    ],
)
def test_ood_split_groups_on_toy_data(toy, name, column, train_groups, eval_groups):
    sp = _splitter(name)(toy)
    values = np.asarray([str(v) for v in toy.meta[column].tolist()])
    assert set(values[sp.train]) <= train_groups and len(sp.train) > 0
    assert set(values[sp.val]) <= eval_groups and set(values[sp.test]) <= eval_groups
    assert len(sp.val) > 0 and len(sp.test) > 0
    # every record of an allowed group is used exactly once
    used = np.concatenate([sp.train, sp.val, sp.test])
    assert len(used) == int(np.isin(values, list(train_groups | eval_groups)).sum())
    text = format_split_stats(toy, sp)
    sizes = sp.sizes()
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "all":
            assert [int(x) for x in parts[1:4]] == [sizes["train"], sizes["val"], sizes["test"]]
            assert int(parts[4]) == sum(sizes.values())


def test_train_fraction_keeps_test_ids_on_toy_data(toy):
    full = _splitter("random")(toy)
    cfg = OmegaConf.load(CONF / "random.yaml")
    cfg.seed, cfg.train_fraction = 0, 0.125
    small = instantiate(cfg)(toy)
    assert toy.ids[small.test].tolist() == toy.ids[full.test].tolist()
    assert len(small.train) == int(np.floor(0.125 * len(full.train)))
