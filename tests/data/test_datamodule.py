"""DOSDataModule on toy data: records → spectra → split → graphs → loaders of the set size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate

from dos_bench.data.datamodule import DOSDataModule
from dos_bench.data.sources.toy import ToyEDOS
from dos_bench.data.spectra import GridRecipe
from dos_bench.data.splits import RandomSplit
from dos_bench.io import ConfigError

N = 40


def _module(data_dir: Path, **kw) -> DOSDataModule:
    return DOSDataModule(
        source=ToyEDOS(n_materials=N, seed=3, n_jobs=1, progress=False),
        recipe=GridRecipe(start=-5.0, step=0.05, n_points=300, reference="e_fermi"),
        split=RandomSplit(0.6, 0.2, 0.2, seed=1),
        data_dir=data_dir,
        progress=False,
        **kw,
    )


@pytest.fixture(scope="module")
def dm(tmp_path_factory) -> DOSDataModule:
    m = _module(tmp_path_factory.mktemp("dm"), batch_size=8, eval_batch_size=5)
    m.setup()
    return m


def test_setup_exposes_what_the_model_needs(dm):
    assert len(dm.data) == N and dm.name == "toy_edos"
    assert dm.n_points == 300 and dm.grid.shape == (300,) and dm.spacing == pytest.approx(0.05)
    assert dm.atom_dim == dm.data[0].x.shape[1] > 0
    parts = [dm.split.part(p) for p in ("train", "val", "test")]
    assert [len(p) for p in parts] == [24, 8, 8]
    assert len(np.unique(np.concatenate(parts))) == N  # disjoint, every record used
    np.testing.assert_array_equal(dm.part_targets("train"), dm.targets[parts[0]])
    dm.setup()  # a second call is a no-op
    assert len(dm.data) == N


def test_loaders_yield_batches_of_the_configured_size(dm):
    train = list(dm.train_dataloader())
    assert [b.num_graphs for b in train] == [8, 8, 8]
    assert train[0].y.reshape(8, -1).shape == (8, 300)
    for loader, n in ((dm.val_dataloader(), 8), (dm.test_dataloader(), 8)):
        sizes = [b.num_graphs for b in loader]
        assert sizes == [5, 3] and sum(sizes) == n
    # the training loader serves its part exactly once per epoch (in a shuffled order)
    got = np.concatenate([b.y.reshape(b.num_graphs, -1).numpy() for b in train])
    want = dm.part_targets("train").astype(np.float32)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, want.tolist()))


def test_records_and_graphs_are_cached_in_the_data_dir(tmp_path):
    first = _module(tmp_path, batch_size=4)
    first.setup()
    records = sorted(p.name for p in tmp_path.glob("toy_edos-*.npz"))
    graphs = sorted(p.name for p in (tmp_path / "graphs").iterdir())
    assert len(records) == 1 and graphs
    again = _module(tmp_path, batch_size=4)
    again.setup()
    assert sorted(p.name for p in tmp_path.glob("toy_edos-*.npz")) == records
    assert sorted(p.name for p in (tmp_path / "graphs").iterdir()) == graphs
    np.testing.assert_array_equal(again.targets, first.targets)


def test_bad_batch_size_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.batch_size"):
        _module(tmp_path, batch_size=0)


def test_the_composed_config_builds_the_datamodule(make_cfg):
    cfg = make_cfg("data.batch_size=16", "data.eval_batch_size=32")
    dm = instantiate(cfg.data)
    dm.setup()
    assert isinstance(dm, DOSDataModule) and len(dm.data) == cfg.dataset.source.n_materials
    assert {b.num_graphs for b in list(dm.train_dataloader())[:-1]} == {16}
    assert next(iter(dm.val_dataloader())).num_graphs == min(32, len(dm.split.part("val")))
