"""The toy datasets :class:`ToyEDOS` and :class:`ToyPhDOS`: generation and the cached records.

Materials are generated in a process pool (``n_jobs``; deterministic for the seed, independent of
the number of workers) with OpenBLAS pinned to one thread per process, assembled into one
:class:`~dos_bench.data.records.RecordSet` and cached as ``<data_dir>/<name>-<hash>.npz``
through the record cache every source shares
(:class:`~dos_bench.data.sources.cache.RecordCache`).

Everything that shapes the data enters :meth:`ToyEDOS.cache_key`, together with
:data:`GENERATOR_VERSION` (bump it whenever the physics changes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.data.records import RecordSet
from dos_bench.data.sources.cache import RecordCache
from dos_bench.data.sources.toy.electrons import EDOSParams, compute_edos, edos_window
from dos_bench.data.sources.toy.phonons import PhDOSParams, compute_phdos, phdos_max_frequency
from dos_bench.data.sources.toy.structures import StructureParams, _prototypes, make_toy_structure
from dos_bench.io import ConfigError, DataError, stable_hash

__all__ = ["GENERATOR_VERSION", "ToyEDOS", "ToyPhDOS"]

log = logging.getLogger(__name__)

#: Bump whenever the generated data change for identical constructor arguments.
GENERATOR_VERSION = 2  # 2: n_valence column


# ============================================================================ process pool
_BLAS_SET = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
             "openblas_set_num_threads64_", "openblas_set_num_threads")  # fmt: skip
_BLAS_GET = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
             "openblas_get_num_threads64_", "openblas_get_num_threads")  # fmt: skip


def _openblas_handles() -> list[tuple[Any, Any]]:
    """(get, set) thread-count functions of every OpenBLAS loaded in this process (Linux only).

    The toy generators diagonalise many small matrices; OpenBLAS threading only adds contention
    there (and oversubscribes the cores when several workers run), so generation pins it to one
    thread.  Without ``/proc/self/maps`` or OpenBLAS this returns an empty list (no-op).
    """
    import ctypes

    try:
        with open("/proc/self/maps") as fh:
            paths = {
                line.split()[-1] for line in fh if "openblas" in line.lower() and ".so" in line
            }
    except OSError:
        return []
    out = []
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        get = next((getattr(lib, n) for n in _BLAS_GET if hasattr(lib, n)), None)
        set_ = next((getattr(lib, n) for n in _BLAS_SET if hasattr(lib, n)), None)
        if get is not None and set_ is not None:
            get.restype = ctypes.c_int
            out.append((get, set_))
    return out


@contextlib.contextmanager
def _single_blas_thread() -> Iterator[None]:
    """Temporarily run OpenBLAS with one thread (restored afterwards)."""
    import ctypes

    handles = _openblas_handles()
    old = [int(get()) for get, _ in handles]
    for _, set_ in handles:
        set_(ctypes.c_int(1))
    try:
        yield
    finally:
        for (_, set_), n in zip(handles, old, strict=True):
            set_(ctypes.c_int(n))


def _init_worker() -> None:
    """Pool initializer: one OpenBLAS thread per worker process."""
    import ctypes

    for _, set_ in _openblas_handles():
        set_(ctypes.c_int(1))


def _work_chunk(task: tuple[str, StructureParams, Any, list[int]]) -> list[dict[str, Any]]:
    """Generate the materials ``indices`` (one pool task): structure, float32 spectrum, metadata."""
    kind, sp, pp, indices = task
    out = []
    for idx in indices:
        st = make_toy_structure(sp, idx)
        dos, meta = compute_edos(st, pp) if kind == "edos" else compute_phdos(st, pp)
        out.append({"index": idx, "structure": st, "dos": dos.astype(np.float32), "meta": meta})
    return out


def _chunks(n: int, size: int) -> Iterator[list[int]]:
    for a in range(0, n, size):
        yield list(range(a, min(n, a + size)))


# ============================================================================ datasets
class _ToyDataset(RecordCache):
    """Shared machinery of :class:`ToyEDOS` and :class:`ToyPhDOS`."""

    name = "toy"
    kind = "edos"

    def __init__(
        self,
        n_materials: int,
        seed: int,
        max_atoms: int,
        n_jobs: int,
        progress: bool,
        structure_params: StructureParams,
        physics: EDOSParams | PhDOSParams,
    ) -> None:
        if n_materials < 1:
            raise ValueError(f"n_materials must be >= 1, got {n_materials}")
        if max_atoms < 1:
            raise ValueError(f"max_atoms must be >= 1, got {max_atoms}")
        self.n_materials = int(n_materials)
        self.seed = int(seed)
        self.max_atoms = int(max_atoms)
        self.n_jobs = int(n_jobs) if int(n_jobs) > 0 else (os.cpu_count() or 1)
        self.progress = bool(progress)
        self.structure_params = structure_params
        self.physics = physics

    # ------------------------------------------------------------------ cache
    def cache_key(self) -> dict[str, Any]:
        """Everything that shapes the data (not ``n_jobs`` / ``progress``)."""
        return {
            "name": self.name,
            "generator_version": GENERATOR_VERSION,
            "n_materials": self.n_materials,
            "structure": asdict(self.structure_params),
            "physics": asdict(self.physics),
        }

    def cache_path(self, data_dir: str | Path) -> Path:
        return Path(data_dir) / f"{self.name}-{stable_hash(self.cache_key())}.npz"

    def load(self, data_dir: str | Path) -> RecordSet:
        """Read the cached set from ``data_dir`` or generate it and write it there atomically."""
        return self._cached(self.cache_path(data_dir), self.generate)

    def _reused(self, rs: RecordSet, path: Path) -> None:
        log.info("reusing cached %s at %s", self.name, path)
        expect = {"name": self.name, "n_materials": self.n_materials,
                  "generator_version": GENERATOR_VERSION, "seed": self.seed}  # fmt: skip
        for key, val in expect.items():
            if rs.attrs.get(key) != val:
                raise DataError(
                    f"{path}: cached attribute {key}={rs.attrs.get(key)!r} does not match "
                    f"the requested {val!r}; delete the file to regenerate"
                )

    def _made(self, rs: RecordSet, path: Path, saved: bool, seconds: float) -> None:
        log.info(
            "generated %s (%d materials) in %.1f s, %s",
            self.name, len(rs), seconds, f"saved to {path}" if saved else "kept in memory",
        )  # fmt: skip

    # ------------------------------------------------------------------ generation
    def _attrs(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "seed": self.seed,
            "n_materials": self.n_materials,
            "generator_version": GENERATOR_VERSION,
            "max_atoms": self.max_atoms,
            "structure_params": asdict(self.structure_params),
            "physics": asdict(self.physics),
        }

    def _grid(self) -> np.ndarray:
        return self.physics.grid

    def generate(self) -> RecordSet:
        """Generate all materials (``n_jobs`` processes, deterministic for the seed)."""
        from tqdm.auto import tqdm

        n = self.n_materials
        size = max(1, min(32, math.ceil(n / (4 * self.n_jobs))))
        tasks = [(self.kind, self.structure_params, self.physics, c) for c in _chunks(n, size)]
        results: list[dict[str, Any]] = []
        with tqdm(total=n, desc=self.name, unit="mat", disable=not self.progress) as bar:
            if self.n_jobs == 1 or len(tasks) == 1:
                with _single_blas_thread():
                    for t in tasks:
                        part = _work_chunk(t)
                        results.extend(part)
                        bar.update(len(part))
            else:
                _prototypes()  # parse the library once, before the workers fork
                ctx = multiprocessing.get_context()
                with ctx.Pool(min(self.n_jobs, len(tasks)), initializer=_init_worker) as pool:
                    for part in pool.imap(_work_chunk, tasks):
                        results.extend(part)
                        bar.update(len(part))
        return self._assemble(results)

    def _assemble(self, results: Sequence[dict[str, Any]]) -> RecordSet:
        prefix = self.name.replace("_", "-")
        structs = [r["structure"] for r in results]
        n_atoms = np.array([len(s.numbers) for s in structs], dtype=np.int64)
        meta: dict[str, np.ndarray] = {
            "formula": np.array([s.formula for s in structs]),
            "n_species": np.array([s.n_species for s in structs], dtype=np.int64),
            "crystal_system": np.array([s.crystal_system for s in structs]),
            "prototype": np.array([s.prototype for s in structs]),
            "n_atoms": n_atoms,
        }
        for key in results[0]["meta"]:
            meta[key] = np.array([r["meta"][key] for r in results])
        rs = RecordSet(
            ids=np.array([f"{prefix}-{r['index']:06d}" for r in results]),
            lattices=np.stack([s.lattice for s in structs]).astype(np.float64),
            numbers=np.concatenate([s.numbers for s in structs]).astype(np.int16),
            frac_coords=np.concatenate([s.frac for s in structs]).astype(np.float64) % 1.0,
            ptr=np.concatenate([[0], np.cumsum(n_atoms)]).astype(np.int64),
            energies=self._grid(),
            spectra=np.stack([r["dos"] for r in results]).astype(np.float32),
            meta=meta,
            attrs=self._attrs(),
        )
        rs.validate(source=self.name)
        return rs


class ToyEDOS(_ToyDataset):
    """Tight-binding electronic DOS of decorated AFLOW prototypes (see the module docstring).

    Spectra: states/eV per cell (spin included, 8 states per atom) on the absolute energy grid
    ``e_min .. e_max`` (eV, spacing ``de``; ``None`` = the guaranteed band window of
    :func:`edos_window`); metadata ``e_fermi``, ``vbm``, ``cbm``, ``band_gap``, ``is_metal``,
    ``n_electrons``, ``n_states``, ``n_kpoints``, ``e_band_min``, ``e_band_max`` plus the
    structural columns ``formula``, ``n_species``, ``crystal_system``, ``prototype``, ``n_atoms``.
    """

    name = "toy_edos"
    kind = "edos"

    def __init__(
        self,
        n_materials: int = 3000,
        seed: int = 0,
        max_atoms: int = 24,
        n_jobs: int = 2,
        progress: bool = True,
        *,
        p_ionic: float = 0.7,
        p_break: float = 0.35,
        scale_jitter: float = 0.03,
        sigma: float = 0.08,
        de: float = 0.02,
        e_min: float | None = None,
        e_max: float | None = None,
        k_length: float = 32.0,
        hopping_scale: float = 0.5,
        hopping_budget: float = 4.0,
        d_floor: float = 1.8,
        cutoff_x1: float = 1.15,
        cutoff_x2: float = 1.45,
        gap_tol: float = 0.1,
    ) -> None:
        physics = EDOSParams(
            sigma=float(sigma), de=float(de), e_min=0.0, e_max=0.0, k_length=float(k_length),
            hopping_scale=float(hopping_scale), budget=float(hopping_budget),
            d_floor=float(d_floor), cutoff_x1=float(cutoff_x1), cutoff_x2=float(cutoff_x2),
            gap_tol=float(gap_tol),
        )  # fmt: skip
        lo, hi = edos_window(physics)
        auto_lo, auto_hi = math.floor(lo - 0.5), math.ceil(hi + 0.5)
        e_min = float(auto_lo if e_min is None else e_min)
        e_max = float(auto_hi if e_max is None else e_max)
        if not physics.de > 0 or e_max <= e_min:
            raise ConfigError(
                f"toy_edos: need de > 0 and e_max > e_min, got {de}, {e_min}, {e_max}"
            )
        physics = dataclasses.replace(physics, e_min=e_min, e_max=e_max)
        if e_min > lo or float(physics.grid[-1]) < hi:
            raise ConfigError(
                f"toy_edos: energy grid [e_min={e_min}, e_max={e_max}] eV must contain the "
                f"guaranteed band window [{lo:.2f}, {hi:.2f}] eV (incl. 6 sigma) of these "
                f"parameters; use e_min <= {auto_lo} and e_max >= {auto_hi} (or null = auto)"
            )
        structure = StructureParams(
            seed=int(seed), max_atoms=int(max_atoms), p_ionic=float(p_ionic),
            p_break=float(p_break), scale_jitter=float(scale_jitter),
        )  # fmt: skip
        super().__init__(n_materials, seed, max_atoms, n_jobs, progress, structure, physics)

    def _attrs(self) -> dict[str, Any]:
        return {
            **super()._attrs(),
            "energy_unit": "eV",
            "dos_unit": "states/eV/cell (spin included)",
            "energy_reference": "absolute; use meta e_fermi / vbm / cbm",
            "spin_factor": 2,
            "orbitals_per_atom": 4,
        }


class ToyPhDOS(_ToyDataset):
    """Spring-model phonon DOS of decorated AFLOW prototypes (see the module docstring).

    Spectra: modes per cm^-1 per cell on ``0 .. f_max`` cm^-1 (spacing ``df``), integrating to
    ``3 n_atoms``; metadata ``n_modes``, ``max_freq``, ``n_qpoints`` plus the structural columns.
    For the same seed (and structure parameters) the structures are identical to those of
    :class:`ToyEDOS`.
    """

    name = "toy_phdos"
    kind = "phdos"

    def __init__(
        self,
        n_materials: int = 3000,
        seed: int = 0,
        max_atoms: int = 24,
        n_jobs: int = 2,
        progress: bool = True,
        *,
        p_ionic: float = 0.7,
        p_break: float = 0.35,
        scale_jitter: float = 0.03,
        sigma: float = 8.0,
        df: float = 2.0,
        f_max: float = 1500.0,
        q_length: float = 30.0,
        kappa: float = 0.009,
        ionic: float = 0.1,
        t_nonmetal: float = 2000.0,
        transverse: float = 0.15,
        background: float = 0.1,
        einstein_cap: float = 3.8,
    ) -> None:
        physics = PhDOSParams(
            sigma=float(sigma), df=float(df), f_max=float(f_max), q_length=float(q_length),
            kappa=float(kappa), ionic=float(ionic), t_nonmetal=float(t_nonmetal),
            transverse=float(transverse), background=float(background),
            einstein_cap=float(einstein_cap),
        )  # fmt: skip
        if not 0.0 <= physics.transverse <= 1.0:
            raise ConfigError(f"toy_phdos: transverse must be in [0, 1], got {transverse}")
        top = phdos_max_frequency(physics) + 6.0 * physics.sigma
        if top > physics.f_max:
            raise ConfigError(
                f"toy_phdos: f_max={f_max} cm^-1 must be >= {top:.0f} cm^-1, the guaranteed "
                f"maximum frequency of einstein_cap={einstein_cap} plus 6 sigma"
            )
        structure = StructureParams(
            seed=int(seed), max_atoms=int(max_atoms), p_ionic=float(p_ionic),
            p_break=float(p_break), scale_jitter=float(scale_jitter),
        )  # fmt: skip
        super().__init__(n_materials, seed, max_atoms, n_jobs, progress, structure, physics)

    def _attrs(self) -> dict[str, Any]:
        return {
            **super()._attrs(),
            "energy_unit": "cm^-1",
            "dos_unit": "modes/cm^-1/cell",
        }
