"""One LightningDataModule for every dataset: records → spectra → split → graphs → loaders.

The datamodule knows nothing of models. It exposes what the model and the target representation
need from the data (``atom_dim``, ``n_points``, ``grid``, the train targets) and the split ids
that the entry point writes to ``splits.json``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import RandomSampler
from torch_geometric.loader import DataLoader

from dos_bench.data.features import ATOM_FEATURE_SETS
from dos_bench.data.graphs import GraphRecipe, load_or_build_graphs, to_data_list
from dos_bench.data.records import RecordSet
from dos_bench.data.splits import Split, format_split_stats
from dos_bench.io import ConfigError, DataError

log = logging.getLogger(__name__)


def structure_fingerprint(rs: RecordSet) -> str:
    """sha256 over the ids, lattices, atomic numbers and coordinates of a record set."""
    import hashlib

    h = hashlib.sha256()
    for arr in (rs.ids.astype(str), rs.ptr, rs.lattices, rs.numbers, rs.frac_coords):
        a = np.ascontiguousarray(arr)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


__all__ = ["DOSDataModule", "EpochShuffleSampler"]


class EpochShuffleSampler(RandomSampler):
    """A random order of the training set that depends only on ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch, and every iteration re-seeds
    the sampler's generator from ``(seed, epoch)``: the order of epoch ``k`` is the same whether
    the run got there without a break or resumed from a checkpoint (which holds the epoch
    counter), however often Lightning creates the loader's iterator. A generator seeded once per
    loader would instead give a resumed run the orders of epochs 0, 1, ... again. Being a
    ``RandomSampler``, it is still swapped for a shuffling ``DistributedSampler`` under DDP, which
    also seeds by ``seed + epoch``. :attr:`loader_generator` is for the ``DataLoader`` (worker
    base seeds), re-seeded in :meth:`set_epoch` too, so that no loader draws from the global RNG.
    """

    def __init__(self, data_source, seed: int, epoch: int = 0) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = int(seed)
        self.loader_generator = torch.Generator()
        self.set_epoch(epoch)

    def _epoch_seed(self, salt: int = 0) -> int:
        # SeedSequence mixes (seed, epoch) into a well-spread 64-bit seed
        state = np.random.SeedSequence([self.seed % 2**64, self.epoch, salt]).generate_state(2)
        return int(state[0]) << 32 | int(state[1])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.loader_generator.manual_seed(self._epoch_seed(salt=1))

    def __iter__(self):
        self.generator.manual_seed(self._epoch_seed())
        yield from super().__iter__()


class DOSDataModule(L.LightningDataModule):
    """Args:
    source: object with ``load(data_dir) -> RecordSet`` and ``cache_key() -> dict``.
    recipe: spectrum recipe with ``grid``, ``spacing`` and ``apply(rs) -> (N, L)``.
    split: callable ``split(rs) -> Split``.
    graph: crystal-graph recipe keywords (``cutoff``, ``max_neighbors``, ``keep_ties``).
    atom_features: name of the atom feature table.
    data_dir: where sources cache their records; graphs go to ``cache_dir``.
    batch_size, eval_batch_size: loader batch sizes (eval defaults to batch_size).
    num_workers, pin_memory: DataLoader settings.
    shuffle_seed: seed of the training-loader shuffling.
    limit: use only the first ``limit`` records (debugging and tests); ``None`` = all.
    progress: progress bars for data generation and graph building.
    extra_columns: record metadata columns attached to every graph as ``(1,)`` float
        tensors (what a target representation needs per material, e.g. ``n_valence``).
    split_report: called with the split-statistics table (species counts and crystal systems
        per split) once the split is made; default: logged at INFO. ``dos-train`` passes one
        that prints it once per sweep (:func:`dos_bench.training.sweep.split_stats_reporter`).
    """

    def __init__(
        self,
        source: Any,
        recipe: Any,
        split: Any,
        graph: dict[str, Any] | None = None,
        atom_features: str = "cgcnn",
        data_dir: str | Path = "data",
        cache_dir: str | Path | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        shuffle_seed: int = 0,
        limit: int | None = None,
        progress: bool = True,
        name: str | None = None,
        extra_columns: list[str] | None = None,
        split_report: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        if atom_features not in ATOM_FEATURE_SETS:
            raise ConfigError(
                f"model.atom_features={atom_features!r} is unknown; choose from "
                f"{sorted(ATOM_FEATURE_SETS)}"
            )
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        self.source, self.recipe, self.splitter = source, recipe, split
        self.graph_recipe = GraphRecipe(**(graph or {}))
        self.atom_features = atom_features
        self.data_dir = Path(data_dir)
        self.cache_dir = Path(cache_dir) if cache_dir else self.data_dir / "graphs"
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.shuffle_seed, self.limit, self.progress = shuffle_seed, limit, progress
        self.name = name
        self.extra_columns = list(extra_columns or [])
        self.split_report = split_report
        self._ready = False

    # ---------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        t0 = time.perf_counter()
        rs: RecordSet = self.source.load(self.data_dir)
        if self.limit is not None:
            rs = rs.subset(np.arange(min(self.limit, len(rs))))
        self.records = rs
        self.name = self.name or rs.attrs.get("name", "dataset")
        self.targets = self.recipe.apply(rs)
        self.grid = np.asarray(self.recipe.grid, dtype=np.float64)
        self.split: Split = self.splitter(rs)
        stats = format_split_stats(rs, self.split)
        if self.split_report is not None:
            self.split_report(stats)
        else:
            log.info("%s", stats)
        # the graph cache is keyed by the structures themselves (a hash of the arrays), so a
        # changed raw file or source option can never reuse stale graphs
        dataset_key = {"structures": structure_fingerprint(rs), "name": self.name}
        graphs = load_or_build_graphs(
            rs, self.graph_recipe, self.cache_dir, dataset_key, progress=self.progress
        )
        self.data = to_data_list(rs, graphs, atom_features=self.atom_features, y=self.targets)
        for col in self.extra_columns:
            values = self._column(col)
            for d, v in zip(self.data, values, strict=True):
                setattr(d, col, torch.tensor([v], dtype=torch.float32))
        self.atom_dim = int(self.data[0].x.shape[1])
        self._ready = True
        log.info(
            "data ready: %d records, %d grid points, atom features %s (%d-d), %.1f s",
            len(rs),
            self.n_points,
            self.atom_features,
            self.atom_dim,
            time.perf_counter() - t0,
        )

    # ---------------------------------------------------------------- facts for the model
    @property
    def n_points(self) -> int:
        return int(self.targets.shape[1])

    @property
    def spacing(self) -> float:
        return float(self.recipe.spacing)

    def part_targets(self, part: str) -> np.ndarray:
        return self.targets[self.split.part(part)]

    def _column(self, col: str) -> np.ndarray:
        if col not in self.records.meta:
            raise DataError(
                f"dataset {self.name}: the target representation needs the metadata column "
                f"{col!r}, which the records do not have (columns: {sorted(self.records.meta)})"
            )
        return self.records.meta[col].astype(np.float64)

    def part_columns(self, part: str, columns) -> SimpleNamespace | None:
        """The named metadata columns of one part as ``(N,)`` tensors, or None if none asked."""
        if not columns:
            return None
        idx = self.split.part(part)
        return SimpleNamespace(
            **{c: torch.as_tensor(self._column(c)[idx], dtype=torch.float32) for c in columns}
        )

    def groups(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Group labels of records (species count, crystal system) for per-group metrics."""
        out = {}
        for col in ("n_species", "crystal_system"):
            if col in self.records.meta:
                out[col] = self.records.meta[col][index]
        return out

    # ---------------------------------------------------------------- loaders
    def _subset(self, part: str) -> list:
        return [self.data[i] for i in self.split.part(part)]

    def train_dataloader(self) -> DataLoader:
        subset = self._subset("train")
        sampler = EpochShuffleSampler(subset, self.shuffle_seed)
        return DataLoader(
            subset,
            batch_size=self.batch_size,
            sampler=sampler,
            generator=sampler.loader_generator,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loader(self, part: str) -> DataLoader:
        return DataLoader(
            self._subset(part),
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
