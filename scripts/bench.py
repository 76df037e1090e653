"""Speed and size figures of dos_bench components: measured and reported, never asserted.

Usage::

    python scripts/bench.py              # every section
    python scripts/bench.py graphs       # named sections only
    python scripts/bench.py --list       # the available sections

Every section prints an aligned table (metric, value, unit, target) and writes its figures as
JSON to ``outputs/bench/<section>.json``.  Measurements run on one CPU core: BLAS/OpenMP pools
are limited to one thread before numpy and torch are imported, ``torch.set_num_threads(1)``,
and the process is pinned to a single core where the OS allows it (``--no-pin`` to skip).
Timings are the best of ``--repeats`` runs.

To add a section, write ``def bench_<name>(args) -> SectionResult`` and register it in
:data:`SECTIONS`.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------- helpers
@dataclass
class Metric:
    """One row of a section's table."""

    name: str
    value: float | int | str
    unit: str = ""
    target: str = ""  # e.g. "<= 300"; empty when there is none
    met: bool | None = None  # whether the target is met (None: no target)


@dataclass
class SectionResult:
    metrics: list[Metric]
    details: dict[str, Any] = field(default_factory=dict)


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls of ``fn`` (seconds)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def fmt(value: float | int | str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if value == 0 or 0.01 <= abs(value) < 1e6:
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return f"{value:.3e}"


def print_table(title: str, metrics: list[Metric]) -> None:
    rows = [("metric", "value", "unit", "target")]
    for m in metrics:
        target = m.target
        if m.met is not None:
            target = f"{target} ({'met' if m.met else 'MISSED'})"
        rows.append((m.name, fmt(m.value), m.unit, target))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    line = "-+-".join("-" * w for w in widths)
    print(f"\n== {title} ==")
    for k, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].rjust(widths[1])]
        cells += [r[2].ljust(widths[2]), r[3].ljust(widths[3])]
        print(" | ".join(cells).rstrip())
        if k == 0:
            print(line)


def pin_one_core() -> str:
    """Pin the process to one CPU (the last one it may use); describe what was done."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    return f"pinned to cpu {cpus[-1]} of {cpus}"


# ---------------------------------------------------------------------------------------- graphs
def _prototype_structures() -> list[Any]:
    """The 288 AFLOW prototype structures shipped with pymatgen."""
    import pymatgen.analysis.prototypes as prototypes
    from pymatgen.core import Structure

    path = Path(os.path.dirname(prototypes.__file__)) / "aflow_prototypes.json.gz"
    with gzip.open(path, "rt") as fh:
        entries = json.load(fh)
    return [Structure.from_dict(e["snl"]) for e in entries]


def _supercell(structure: Any, target: int = 50, lo: int = 40, hi: int = 60) -> Any | None:
    """A diagonal supercell with about ``target`` atoms (None if none falls in [lo, hi]).

    The multiplier m closest to target / n is split into three integer factors that keep the
    supercell as isotropic as possible.
    """
    n = len(structure)
    best_m = min(range(1, max(1, hi // n) + 1), key=lambda m: abs(n * m - target))
    if not lo <= n * best_m <= hi:
        return None
    abc = np.array(structure.lattice.abc)
    best, best_score = (1, 1, 1), float("inf")
    for a in range(1, best_m + 1):
        for b in range(1, best_m // a + 1):
            if best_m % (a * b):
                continue
            c = best_m // (a * b)
            lengths = abc * (a, b, c)
            score = lengths.max() / lengths.min()
            if score < best_score:
                best, best_score = (a, b, c), score
    return structure.make_supercell(list(best), in_place=False)


def bench_graphs(args: argparse.Namespace) -> SectionResult:
    """Neighbour search vs full graph build, cache size, Data conversion and batching."""
    import torch
    from pymatgen.optimization.neighbors import find_points_in_spheres
    from torch_geometric.loader import DataLoader

    from dos_bench.data.features import cgcnn_features
    from dos_bench.data.graphs import (
        NEIGHBOR_TOL,
        GraphRecipe,
        GraphSet,
        build_graphs,
        to_data_list,
    )
    from dos_bench.data.records import DOSRecord, RecordSet

    torch.set_num_threads(1)
    cutoff, k, batch_size = 8.0, 12, 64
    recipe = GraphRecipe(cutoff=cutoff, max_neighbors=k)

    protos = _prototype_structures()
    structures = [s for s in (_supercell(p) for p in protos) if s is not None]
    rs = RecordSet.from_records(
        [DOSRecord(f"proto-{i}", s, np.zeros(1), np.zeros(1)) for i, s in enumerate(structures)]
    )
    n_struct, n_atoms = len(rs), int(rs.ptr[-1])
    atoms = rs.n_atoms
    reps = args.repeats

    # (a) bare pymatgen neighbour list on pre-built structures
    def bare() -> None:
        for s in structures:
            s.get_neighbor_list(cutoff)

    # reference: the cython routine alone, on pre-computed arrays
    arrays = []
    for i in range(n_struct):
        lat, _, frac = rs.atoms(i)
        arrays.append((np.ascontiguousarray(frac @ lat), np.ascontiguousarray(lat)))
    pbc = np.ones(3, dtype=np.int64)

    def raw() -> None:
        for cart, lat in arrays:
            find_points_in_spheres(cart, cart, cutoff, pbc, lat, NEIGHBOR_TOL)

    # (b) our full build
    def full() -> None:
        build_graphs(rs, recipe, progress=False)

    bare(), raw(), full()  # warm up caches and lazy imports
    t_bare = t_raw = t_full = float("inf")
    for _ in range(max(1, reps)):  # interleave to share any background load fairly
        t_bare = min(t_bare, best_time(bare, 1))
        t_raw = min(t_raw, best_time(raw, 1))
        t_full = min(t_full, best_time(full, 1))
    gs = build_graphs(rs, recipe, progress=False)
    n_pairs = sum(
        len(find_points_in_spheres(c, c, cutoff, pbc, lt, NEIGHBOR_TOL)[0]) for c, lt in arrays
    )

    # (c) bytes per atom of the cache file
    with tempfile.TemporaryDirectory() as tmp:
        path = gs.save(Path(tmp) / "graphs.npz")
        file_bytes = path.stat().st_size
        t_load = best_time(lambda: GraphSet.load(path), reps)

    # (d) Data objects and collated batches
    cgcnn_features()  # table cached before timing
    t_data = best_time(lambda: to_data_list(rs, gs, "cgcnn", y=np.zeros((n_struct, 1))), reps)
    data = to_data_list(rs, gs, "cgcnn", y=np.zeros((n_struct, 1)))
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=0)
    torch.manual_seed(0)
    for _ in loader:  # warm up
        pass
    n_batches, t0 = 0, time.perf_counter()
    while True:
        for _ in loader:
            n_batches += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= args.min_time:
            break
    batches_per_s = n_batches / elapsed

    ratio = t_full / t_bare
    bpa = file_bytes / n_atoms
    metrics = [
        Metric("structures (~50-atom prototype supercells)", n_struct),
        Metric(
            "atoms per structure (min / mean / max)",
            f"{atoms.min()} / {atoms.mean():.1f} / {atoms.max()}",
        ),
        Metric("candidate pairs within cutoff per atom", n_pairs / n_atoms),
        Metric("edges per atom", gs.src.shape[0] / n_atoms),
        Metric("(a) Structure.get_neighbor_list(8.0)", n_struct / t_bare, "structures/s"),
        Metric("    find_points_in_spheres alone", n_struct / t_raw, "structures/s"),
        Metric("(b) build_graphs (full)", n_struct / t_full, "structures/s"),
        Metric("    full build / bare neighbour list", ratio, "x", "<= 1.5", ratio <= 1.5),
        Metric("    full build / find_points_in_spheres", t_full / t_raw, "x"),
        Metric("(c) graph cache size", bpa, "bytes/atom", "<= 300", bpa <= 300),
        Metric("    GraphSet.load", n_struct / t_load, "structures/s"),
        Metric("(d) to_data_list", n_struct / t_data, "structures/s"),
        Metric(f"    DataLoader batches (batch size {batch_size})", batches_per_s, "batches/s"),
        Metric("    DataLoader structures", batches_per_s * batch_size, "structures/s"),
    ]
    details = {
        "cutoff": cutoff,
        "max_neighbors": k,
        "n_structures": n_struct,
        "n_atoms": n_atoms,
        "atoms_per_structure": {
            "min": int(atoms.min()),
            "mean": float(atoms.mean()),
            "max": int(atoms.max()),
        },
        "candidate_pairs_per_atom": n_pairs / n_atoms,
        "edges_per_atom": gs.src.shape[0] / n_atoms,
        "seconds": {
            "bare_get_neighbor_list": t_bare,
            "find_points_in_spheres": t_raw,
            "build_graphs": t_full,
            "graphset_load": t_load,
            "to_data_list": t_data,
        },
        "bare_structures_per_s": n_struct / t_bare,
        "raw_structures_per_s": n_struct / t_raw,
        "full_structures_per_s": n_struct / t_full,
        "ratio_full_over_bare": ratio,
        "ratio_full_over_raw": t_full / t_raw,
        "cache_bytes": file_bytes,
        "cache_bytes_per_atom": bpa,
        "dtypes": {
            "src": str(gs.src.dtype),
            "dist": str(gs.dist.dtype),
            "shift": str(gs.shift.dtype),
        },
        "to_data_list_structures_per_s": n_struct / t_data,
        "batch_size": batch_size,
        "batches_per_s": batches_per_s,
    }
    return SectionResult(metrics, details)


SECTIONS: dict[str, Callable[[argparse.Namespace], SectionResult]] = {
    "graphs": bench_graphs,
}
"""Benchmark sections by name, run in this order by default."""


# ---------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sections", nargs="*", help=f"sections to run (default: all of {', '.join(SECTIONS)})"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats (best is kept)")
    parser.add_argument(
        "--min-time", type=float, default=2.0, help="seconds spent on throughput loops"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "outputs" / "bench", help="directory of the JSON results"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU core")
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args(argv)

    if args.list:
        for name, fn in SECTIONS.items():
            print(f"{name:12s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    names = args.sections or list(SECTIONS)

    import torch
    import torch_geometric

    from dos_bench.io import write_json

    pinning = "not pinned (--no-pin)" if args.no_pin else pin_one_core()
    torch.set_num_threads(1)
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "cpu_pinning": pinning,
        "threads": 1,
    }
    print(f"dos_bench bench: {pinning}; single-threaded numpy/torch; best of {args.repeats}")
    for name in names:
        t0 = time.perf_counter()
        result = SECTIONS[name](args)
        print_table(f"{name} ({time.perf_counter() - t0:.1f} s)", result.metrics)
        out = args.out / f"{name}.json"
        write_json(
            out,
            {
                "section": name,
                "env": env,
                "metrics": [m.__dict__ for m in result.metrics],
                "results": result.details,
            },
        )
        print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
