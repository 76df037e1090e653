"""Speed and size figures of dos_bench components: measured and reported, never asserted.

(Over 500 lines on purpose: one command-line script with a section per benchmark.)

Usage::

    python scripts/bench.py                      # every section (~1 h on 2 cores)
    python scripts/bench.py graphs pipeline      # named sections only
    python scripts/bench.py alignn attention     # D-ALIGNN line graph; attention dropout cost
    python scripts/bench.py compile --models mlp,d_alignn   # torch.compile vs eager
    python scripts/bench.py peers                # D-ALIGNN vs the alignn package (PyPI)
    python scripts/bench.py models --models mlp,graph_network
    python scripts/bench.py --quick              # a fast subset of models, fewer steps
    python scripts/bench.py models --precision both   # fp32 and bf16 autocast (slow)
    python scripts/bench.py models --profile     # + where each step's time goes
    python scripts/bench.py --list               # the available sections

Every section prints aligned tables and writes its figures as JSON to
``outputs/bench/<section>.json``.  BLAS/OpenMP pools are limited to one thread before numpy and
torch are imported.  The ``graphs`` section runs on one core (``torch.set_num_threads(1)``, the
process pinned to a single core where the OS allows it; ``--no-pin`` to skip); the ``models``,
``pipeline``, ``allocator``, ``alignn``, ``attention``, ``compile`` and ``peers`` sections
use every CPU the process may use
(``torch.set_num_threads(--threads)``, default all of them).  Timings are best-of or median of
repeats as each table says; the load average is recorded before and after each section.

To add a section, write ``def bench_<name>(args) -> SectionResult`` and register it in
:data:`SECTIONS` (and in :data:`SECTION_THREADS` if it must run on one core).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
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
class Table:
    """A wide table (one row per item, e.g. per model) printed after a section's metrics."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class SectionResult:
    metrics: list[Metric]
    details: dict[str, Any] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    extra: dict[str, SectionResult] = field(default_factory=dict)  # more JSON files by name


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


def print_grid(table: Table) -> None:
    """Columns left-aligned for the first, right-aligned for the others."""
    rows = [table.header, *table.rows]
    n = len(table.header)
    widths = [max(len(r[c]) for r in rows) for c in range(n)]
    print(f"\n-- {table.title} --")
    for k, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [r[c].rjust(widths[c]) for c in range(1, n)]
        print(" | ".join(cells).rstrip())
        if k == 0:
            print("-+-".join("-" * w for w in widths))
    if table.note:
        print(table.note)


ALL_CPUS: list[int] = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
"""The CPUs this process may use, read before any pinning."""


def pin_one_core() -> str:
    """Pin the process to one CPU (the last one it may use); describe what was done."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    os.sched_setaffinity(0, {ALL_CPUS[-1]})
    return f"pinned to cpu {ALL_CPUS[-1]} of {ALL_CPUS}"


def unpin() -> str:
    """Allow every CPU the process could use at start again."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(ALL_CPUS))
    return f"cpus {ALL_CPUS}"


def load_average() -> tuple[float, float, float]:
    """1-, 5- and 15-minute load averages (zeros where the OS has none)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def cpu_model() -> str:
    """``lscpu``'s model name (``/proc/cpuinfo`` as a fallback)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def progress(msg: str) -> None:
    """A progress line of a long section (stderr, so that tables stay together on stdout)."""
    print(f"  {msg}", file=sys.stderr, flush=True)


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


# ---------------------------------------------------------------------------------------- models
BATCH_SIZE = 64
"""Materials in the fixed batch of the ``models`` section."""
ATOMS = 20
"""Atoms per material aimed at (the toy_edos materials with the closest atom counts)."""
OUT_DIM = 300
"""Output points of every model (the ALIGNN-DOS eDOS grid of ``dataset=toy_edos``)."""
TRANSFORMER_HEADS = ("xtal2dos", "e3nn2dos", "dostransformer")
DERIVED_MODELS = ("ae_alignn",)
QUICK_MODELS = ("mlp", "graph_network", "gatgnn", "e3nn", "dostransformer")
EFF_TARGET, EFF_TARGET_TRANSFORMER = 0.50, 0.70
EFF_TARGETS = {"xtal2dos": 0.85}
"""Per-model efficiency targets (issue 14: Xtal2DoS at >= 85 % of the fp32 matmul peak)."""

_FP32_RESULTS: dict[str, dict[str, Any]] = {}
"""fp32 results of the ``models`` section of this run, by model (``pipeline`` reuses them)."""


def _model_list(args: argparse.Namespace) -> list[str]:
    from dos_bench.bench_utils import model_names

    names = model_names()
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in names]
        if unknown:
            raise SystemExit(f"unknown model(s) {unknown}; choose from {names}")
        return wanted
    if args.quick:
        return [m for m in QUICK_MODELS if m in names]
    # a config that builds the same network as another one is listed after it (deduplication
    # then measures the primary one): AE-ALIGNN's network is D-ALIGNN's at out_dim 300
    return sorted(names, key=lambda m: (m in DERIVED_MODELS, m))


def _fixed_batch_records() -> tuple[Any, np.ndarray]:
    from dos_bench.bench_utils import load_records, pick_materials

    records = load_records()
    return records, pick_materials(records.rs.n_atoms, BATCH_SIZE, ATOMS)


def _measure_model(
    name: str, records: Any, index: np.ndarray, precision: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Build one model, count the FLOPs of one training and one inference step (these calls
    are the first warm-up), then time steps (see :func:`dos_bench.bench_utils.time_steps`)."""
    from dos_bench.bench_utils import (
        build_case,
        classify_profile,
        count_flops,
        frozen,
        make_batch,
        step_stats,
        time_steps,
    )

    batch = make_batch(records, index, name)
    case = build_case(name, batch, records.targets, out_dim=OUT_DIM, precision=precision)
    out: dict[str, Any] = {
        "model": name,
        "display_name": case.display,
        "precision": precision,
        "params": case.n_params,
        "graphs": case.n_graphs,
        "atoms": case.n_atoms,
        "edges": case.n_edges,
        **case.extra,
    }
    try:
        for phase, fn in (("train", case.train_step), ("infer", case.infer_step)):
            with frozen(case.model) if phase == "infer" else contextlib.nullcontext():
                flops, first, per_op = count_flops(fn)
            times = time_steps(
                fn, args.budget, args.min_steps, args.max_steps, first, args.long_step
            )
            out[phase] = {
                "flops": flops,
                "gflop_per_graph": flops / case.n_graphs / 1e9,
                "flops_by_op": per_op,
                "first_step_s": first,
                "times_s": times,
                **step_stats(times),
            }
        if args.profile:
            out["profile"] = {
                "train": classify_profile(case.train_step),
                "infer": classify_profile(case.infer_step),
            }
    finally:
        case.release()
        gc.collect()
    return out


def _efficiency(res: dict[str, Any], phase: str, peak: float, which: str = "best") -> float:
    """Counted FLOP/s of a step over the mm peak: the one measured just before this model
    (``res["mm_peak_flops"]``) if there is one, else ``peak``."""
    return res[phase]["flops"] / res[phase][which] / res.get("mm_peak_flops", peak)


def _eff_target(name: str) -> float:
    if name in EFF_TARGETS:
        return EFF_TARGETS[name]
    return EFF_TARGET_TRANSFORMER if name in TRANSFORMER_HEADS else EFF_TARGET


def _rate(res: dict[str, Any], phase: str) -> str:
    g = res["graphs"]
    return f"{g / res[phase]['median']:,.1f} ({g / res[phase]['best']:,.1f})"


def _models_fp32_table(rows: list[dict[str, Any]], peak: float) -> Table:
    out = []
    for r in rows:
        if "error" in r:
            out.append(
                [r["model"], "-", "-", "-", "-", "-", "-", "-", "-", "-", f"FAILED: {r['error']}"]
            )
            continue
        et, ei = _efficiency(r, "train", peak), _efficiency(r, "infer", peak)
        target = _eff_target(r["model"])
        missed = [p for p, e in (("train", et), ("infer", ei)) if e < target]
        verdict = "met" if not missed else "MISSED " + "+".join(missed)
        same = f" (= {r['same_as']})" if r.get("same_as") else ""
        out.append(
            [
                r["model"] + same,
                f"{r['params'] / 1e6:.2f}M",
                f"{r['edges']:,}",
                _rate(r, "train"),
                _rate(r, "infer"),
                f"{r['train']['gflop_per_graph']:.3f}",
                f"{r['infer']['gflop_per_graph']:.3f}",
                f"{100 * et:.0f}",
                f"{100 * ei:.0f}",
                f"{r['train']['n']}/{r['infer']['n']}",
                f">= {100 * target:.0f}% {verdict}",
            ]
        )
    header = [
        "model", "params", "edges", "train graphs/s med (best)", "infer graphs/s med (best)",
        "train GFLOP/graph", "infer GFLOP/graph", "train eff %", "infer eff %", "steps",
        "target",
    ]  # fmt: skip
    note = (
        "eff % = counted FLOP / best step time / fp32 matmul 2048x2048 peak measured just "
        "before the model (best of 5 of torch.mm and oneDNN, the faster; the load changes).  "
        "FLOPs: "
        "dos_bench.bench_utils.count_flops (torch's FlopCounterMode + the fused CPU attention "
        "kernel, causal attention as its triangle),\none step: matmul/conv/attention ops only "
        "(scatter, gather, index, elementwise and norm ops count zero, though they take time).  "
        "train = target encode + forward + link + MSE + backward + AdamW step.  steps = timed "
        "train/infer steps after warm-up (graphs/s: median, best in brackets).\nHere every "
        "transformer head trains with its configured attention dropout (xtal2dos, e3nn2dos: "
        "0.1, torch's unfused attention); xtal2dos's >= 85% (issue 14) is judged for the "
        "default C kernel with dropout 0 in section attention, where both are timed."
    )
    return Table("models, fp32", header, out, note)


def _models_bf16_table(
    rows: list[dict[str, Any]], fp32: dict[str, Any], peak: float, ref_source: str
) -> Table:
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["model"], "-", "-", "-", "-", "-", "-", f"FAILED: {r['error']}"])
            continue
        ref = fp32.get(r["model"])
        su = ["-", "-"]
        if ref and "error" not in ref:
            su = [f"{ref[p]['median'] / r[p]['median']:.2f}x" for p in ("train", "infer")]
        out.append(
            [
                r["model"] + (f" (= {r['same_as']})" if r.get("same_as") else ""),
                _rate(r, "train"),
                _rate(r, "infer"),
                su[0],
                su[1],
                f"{100 * _efficiency(r, 'train', peak):.0f}",
                f"{100 * _efficiency(r, 'infer', peak):.0f}",
                "",
            ]
        )
    header = [
        "model", "train graphs/s med (best)", "infer graphs/s med (best)",
        "train speed-up vs fp32", "infer speed-up vs fp32", "train eff % (bf16 mm)",
        "infer eff % (bf16 mm)", "",
    ]  # fmt: skip
    note = (
        "bf16: forward and loss under torch.autocast('cpu', dtype=torch.bfloat16), backward "
        "and AdamW outside; speed-up = fp32 median step / bf16 median step (fp32 from "
        f"{ref_source})."
    )
    return Table("models, bf16 autocast", header, out, note)


def _profile_table(rows: list[dict[str, Any]]) -> Table:
    kinds = [
        "matmul", "scatter/index", "elementwise/norm/other", "copy/cat", "alloc/fill",
        "optimizer", "python/dispatch (unaccounted)",
    ]  # fmt: skip
    out = []
    for r in rows:
        for phase in ("train", "infer"):
            p = r.get("profile", {}).get(phase)
            if not p:
                continue
            top = p["top_ops"][0] if p["top_ops"] else {"op": "-", "self_s": 0.0}
            out.append(
                [
                    f"{r['model']} {phase}",
                    f"{p['wall_s']:.3f}",
                    *[f"{100 * p['share'].get(k, 0.0):.0f}" for k in kinds],
                    f"{p['aten_calls']:,}",
                    f"{top['op'].removeprefix('aten::')} {100 * top['self_s'] / p['wall_s']:.0f}%",
                ]
            )
    header = [
        "model step", "wall s", "matmul %", "scatter/index %", "elementwise %", "copy/cat %",
        "alloc %", "optim %", "python %", "aten calls", "top op (self time)",
    ]  # fmt: skip
    note = (
        "torch.profiler, one step after the timed ones: self CPU time of aten ops by kind, as a "
        "share of the step's wall time (profiler overhead inflates 'python' for many small ops)."
    )
    return Table("where the time goes", header, out, note)


def bench_models(args: argparse.Namespace) -> SectionResult:
    """Every model config: train/infer graphs/s, GFLOP/graph and efficiency vs the matmul peak."""
    import torch

    from dos_bench.bench_utils import compose, mm_peak, mm_rates, network_signature

    torch.set_num_threads(args.threads)
    names = _model_list(args)
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    records, index = _fixed_batch_records()
    atoms = records.rs.n_atoms[index]
    fp32_rates = mm_rates("fp32")
    peaks = {"fp32": max(fp32_rates.values())}
    if "bf16" in precisions:
        peaks["bf16"] = mm_peak("bf16")
    load0 = load_average()
    fp32_ref = dict(_FP32_RESULTS)
    ref_source = "this run"
    if "bf16" in precisions and "fp32" not in precisions and not fp32_ref:
        path = args.out / "models.json"
        if path.exists():  # speed-ups against the last fp32 run
            ref_source = f"{path}, an earlier run: loads may differ"
            for r in json.loads(path.read_text()).get("results", {}).get("rows", []):
                fp32_ref[r["model"]] = r
    results: dict[str, list[dict[str, Any]]] = {}
    for prec in precisions:
        rows: list[dict[str, Any]] = []
        seen: dict[str, dict[str, Any]] = {}
        for k, name in enumerate(names):
            t0 = time.perf_counter()
            sig = network_signature(compose([f"model={name}"]).model)
            if sig in seen and not args.no_dedup:
                row = {**seen[sig], "model": name, "same_as": seen[sig]["model"]}
                rows.append(row)
                progress(f"[{prec} {k + 1}/{len(names)}] {name}: same network as {row['same_as']}")
                continue
            try:
                local_peak = mm_peak(prec, repeats=5)  # the load changes during the section
                row = _measure_model(name, records, index, prec, args)
                row["mm_peak_flops"] = local_peak
            except Exception as exc:  # a model that fails here is a finding, not a crash
                row = {"model": name, "precision": prec, "error": f"{type(exc).__name__}: {exc}"}
                progress(f"[{prec} {k + 1}/{len(names)}] {name}: FAILED {row['error']}")
                rows.append(row)
                continue
            seen[sig] = row
            rows.append(row)
            progress(
                f"[{prec} {k + 1}/{len(names)}] {name}: train {row['train']['median']:.3f} s "
                f"(x{row['train']['n']}), infer {row['infer']['median']:.3f} s "
                f"(x{row['infer']['n']}), {time.perf_counter() - t0:.0f} s, "
                f"load {load_average()[0]:.2f}"
            )
        results[prec] = rows
        if prec == "fp32":
            for r in rows:
                _FP32_RESULTS[r["model"]] = r
                fp32_ref[r["model"]] = r
    load1 = load_average()

    def summary(prec: str) -> list[Metric]:
        rows = [r for r in results[prec] if "error" not in r]
        m = [
            Metric("threads (torch.set_num_threads)", args.threads),
            Metric(
                f"batch: {BATCH_SIZE} toy_edos materials, atoms each (min / mean / max)",
                f"{atoms.min()} / {atoms.mean():.1f} / {atoms.max()}",
            ),
            Metric("output points of every model (eDOS grid)", OUT_DIM),
            Metric("fp32 2048x2048 matmul peak (best of 8)", peaks["fp32"] / 1e9, "GFLOP/s"),
            *[
                Metric(f"  of which {name} (dense layers: cpu_gemm=onednn)", rate / 1e9, "GFLOP/s")
                if name == "onednn"
                else Metric(f"  of which {name}.mm", rate / 1e9, "GFLOP/s")
                for name, rate in fp32_rates.items()
            ],
        ]
        if "bf16" in peaks:
            m.append(Metric("torch.mm bf16 2048x2048 peak", peaks["bf16"] / 1e9, "GFLOP/s"))
        local = [r["mm_peak_flops"] / 1e9 for r in rows if "mm_peak_flops" in r]
        if local:
            m.append(
                Metric(
                    f"{prec} matmul peak before each model (min / median / max)",
                    f"{min(local):.1f} / {float(np.median(local)):.1f} / {max(local):.1f}",
                    "GFLOP/s",
                )
            )
        m.append(
            Metric("load average before (1 / 5 / 15 min)", " / ".join(f"{x:.2f}" for x in load0))
        )
        m.append(
            Metric("load average after (1 / 5 / 15 min)", " / ".join(f"{x:.2f}" for x in load1))
        )
        if prec == "fp32":
            ok = [
                r for r in rows
                if min(_efficiency(r, p, peaks["fp32"]) for p in ("train", "infer"))
                >= _eff_target(r["model"])
            ]  # fmt: skip
            m.append(
                Metric(
                    "models meeting the efficiency target (train and infer)",
                    f"{len(ok)} of {len(results[prec])}",
                    target=">= 50% all, >= 70% transformer heads",
                    met=len(ok) == len(results[prec]),
                )
            )
        return m

    def details(prec: str) -> dict[str, Any]:
        return {
            "precision": prec,
            "threads": args.threads,
            "batch_size": BATCH_SIZE,
            "atoms_per_material": {
                "min": int(atoms.min()),
                "mean": float(atoms.mean()),
                "max": int(atoms.max()),
            },
            "records": records.source,
            "record_ids": [str(i) for i in records.rs.ids[index]],
            "out_dim": OUT_DIM,
            "mm_peak_flops": peaks,
            "load_average": {"before": load0, "after": load1},
            "timing": {
                "budget_s": args.budget,
                "min_steps": args.min_steps,
                "max_steps": args.max_steps,
            },
            "efficiency_targets": {
                "default": EFF_TARGET,
                "transformer_heads": EFF_TARGET_TRANSFORMER,
            },
            "rows": results[prec],
        }

    def tables(prec: str) -> list[Table]:
        t = (
            _models_fp32_table(results[prec], peaks["fp32"])
            if prec == "fp32"
            else _models_bf16_table(results[prec], fp32_ref, peaks["bf16"], ref_source)
        )
        return [t, _profile_table(results[prec])] if args.profile else [t]

    first, *rest = precisions
    res = SectionResult(summary(first), details(first), tables(first))
    for prec in rest:
        res.extra[f"models_{prec}"] = SectionResult(summary(prec), details(prec), tables(prec))
    if first != "fp32":  # --precision bf16 alone: its own file, models.json stays fp32
        return SectionResult([], {}, [], {f"models_{first}": res})
    return res


# ---------------------------------------------------------------------------------------- pipeline
def _loader_rate(loader: Any, min_time: float) -> dict[str, float]:
    """Batches per second of full passes over ``loader`` after one warm-up pass."""
    t0 = time.perf_counter()
    n_first = sum(1 for _ in loader)  # starts (persistent) workers; first-touch costs
    first = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in loader:
            n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            break
    return {
        "batches_per_s": n / elapsed,
        "first_epoch_s": first,
        "batches_per_epoch": n_first,
        "epochs_timed": n / max(1, n_first),
    }


def bench_pipeline(args: argparse.Namespace) -> SectionResult:
    """Collated batches/s of the real data pipeline next to the default model's step rate."""
    import torch

    from dos_bench.bench_utils import build_case, compose, make_batch, step_stats
    from dos_bench.config import build

    torch.set_num_threads(args.threads)
    load0 = load_average()
    cfg = compose(["model=graph_network", "progress=false"])
    dm = build(cfg.data, _convert_="all")
    t0 = time.perf_counter()
    dm.setup("fit")
    t_setup = time.perf_counter() - t0
    rates: dict[int, dict[str, float]] = {}
    for nw in (0, 2):
        dm.num_workers = nw  # everything else as DOSDataModule.train_dataloader builds it
        loader = dm.train_dataloader()
        rates[nw] = _loader_rate(loader, args.min_time)
        del loader  # shuts the persistent workers down
        gc.collect()
        progress(f"loader num_workers={nw}: {rates[nw]['batches_per_s']:.1f} batches/s")

    # the default model's training step on real pipeline batches (loading excluded)
    dm.num_workers = 0
    loader = dm.train_dataloader()
    batches = [b for _, b in zip(range(1 + args.pipeline_steps), loader, strict=False)]
    case = build_case("graph_network", batches[0], dm.part_targets("train"), dm.n_points)
    case.train_step(batches[0])  # warm-up
    step_times = []
    for b in batches[1:]:
        t = time.perf_counter()
        case.train_step(b)
        step_times.append(time.perf_counter() - t)
    case.release()
    real = step_stats(step_times)
    atoms_per_batch = float(np.mean([b.num_nodes for b in batches[1:]]))
    edges_per_batch = float(np.mean([b.edge_index.shape[1] for b in batches[1:]]))

    # ... and on the fixed batch of 64 twenty-atom materials of the models section
    fixed = _FP32_RESULTS.get("graph_network")
    fixed_source = "models section of this run"
    if fixed is None or "error" in fixed:
        records, index = _fixed_batch_records()
        fb = make_batch(records, index, "graph_network")
        fcase = build_case("graph_network", fb, records.targets, OUT_DIM)
        fcase.train_step()
        fixed_times = [best_time(fcase.train_step, 1) for _ in range(args.pipeline_steps)]
        fcase.release()
        fixed = {"train": step_stats(fixed_times)}
        fixed_source = f"measured here ({args.pipeline_steps} steps)"
    load1 = load_average()

    step_real = real["median"]
    step_fixed = fixed["train"]["median"]
    load0_rate = rates[0]["batches_per_s"]
    share = (1 / load0_rate) / (1 / load0_rate + step_real)
    bs = dm.batch_size
    metrics = [
        Metric(
            "records (toy_edos, all parts) / training batches per epoch",
            f"{len(dm.records)} / {rates[0]['batches_per_epoch']}",
        ),
        Metric("datamodule setup (records, targets, split, graphs, Data)", t_setup, "s"),
        Metric(
            "atoms / edges per training batch (mean)",
            f"{atoms_per_batch:.0f} / {edges_per_batch:.0f}",
        ),
        Metric(f"DataLoader batch {bs}, num_workers=0", load0_rate, "batches/s"),
        Metric(f"DataLoader batch {bs}, num_workers=2", rates[2]["batches_per_s"], "batches/s"),
        Metric(
            "    first epoch incl. worker start (num_workers=2)", rates[2]["first_epoch_s"], "s"
        ),
        Metric("graph_network train steps, pipeline batches (median)", 1 / step_real, "steps/s"),
        Metric(
            f"graph_network train steps, fixed 64 x {ATOMS}-atom batch (median)",
            1 / step_fixed,
            "steps/s",
        ),
        Metric(
            "loader / step rate (num_workers=0, pipeline batches)",
            load0_rate * step_real,
            "x",
            ">= 10 (loading not the bottleneck)",
            load0_rate * step_real >= 10,
        ),
        Metric("share of a serial epoch spent loading (num_workers=0)", 100 * share, "%"),
        Metric("load average before / after (1 min)", f"{load0[0]:.2f} / {load1[0]:.2f}"),
    ]
    details = {
        "threads": args.threads,
        "batch_size": bs,
        "records": len(dm.records),
        "setup_s": t_setup,
        "pin_memory": False,
        "loader": {str(k): v for k, v in rates.items()},
        "step_pipeline_batches": {
            **real,
            "times_s": step_times,
            "atoms": atoms_per_batch,
            "edges": edges_per_batch,
        },
        "step_fixed_batch": {k: v for k, v in fixed["train"].items() if k != "flops_by_op"},
        "step_fixed_batch_source": fixed_source,
        "loader_over_step_rate": load0_rate * step_real,
        "serial_loading_share": share,
        "load_average": {"before": load0, "after": load1},
    }
    return SectionResult(metrics, details)


# ---------------------------------------------------------------------------------------- allocator
JEMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/local/lib/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
)


def jemalloc_path() -> str | None:
    """The jemalloc shared library if installed (``apt-get install libjemalloc2``)."""
    for p in JEMALLOC_CANDIDATES:
        if Path(p).exists():
            return p
    import ctypes.util

    return ctypes.util.find_library("jemalloc")


def _train_steps_subprocess(args: argparse.Namespace, env_extra: dict[str, str]) -> dict[str, Any]:
    env_extra = dict(env_extra)
    policy = env_extra.pop("cpu_allocator", "system")  # not an environment variable
    cmd = [
        sys.executable, "-m", "dos_bench.bench_utils", "train-steps",
        "--model", args.alloc_model, "--steps", str(args.alloc_steps), "--warmup", "2",
        "--batch-size", str(args.alloc_batch), "--threads", str(args.threads),
        "--cpu-allocator", policy,
    ]  # fmt: skip
    env = {**os.environ, **env_extra}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def allocator_variants(je: str | None) -> dict[str, dict[str, str]]:
    """Environment of each allocator variant (the jemalloc ones only when it is installed)."""
    out: dict[str, dict[str, str]] = {
        "glibc": {},
        # dos_bench's default (cpu_allocator=retain): mallopt M_MMAP_MAX=0, no trim, at run time
        "glibc-retain": {"cpu_allocator": "retain"},
        # no heap trimming and a fixed (maximal) mmap threshold: freed memory stays mapped
        "glibc-notrim": {
            "MALLOC_TRIM_THRESHOLD_": str(1 << 36),
            "MALLOC_MMAP_THRESHOLD_": str(1 << 25),
        },
    }
    if je:
        out["jemalloc"] = {"LD_PRELOAD": je}
        # jemalloc keeps freed pages instead of purging them after 10 s (its default)
        out["jemalloc-nodecay"] = {
            "LD_PRELOAD": je,
            "MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1",
        }
    return out


def bench_allocator(args: argparse.Namespace) -> SectionResult:
    """Training-step time distribution with glibc malloc and with jemalloc (LD_PRELOAD)."""
    from dos_bench.bench_utils import step_stats

    load0 = load_average()
    je = jemalloc_path()
    available = allocator_variants(je)
    wanted = [v.strip() for v in args.alloc_variants.split(",") if v.strip()]
    if not je and any(v.startswith("jemalloc") for v in wanted):
        progress("jemalloc not found (apt-get install -y libjemalloc2): jemalloc runs skipped")
    unknown = [v for v in wanted if v not in allocator_variants("x")]
    if unknown:
        raise SystemExit(f"unknown allocator variant(s) {unknown}")
    variants = [v for v in wanted if v in available]
    runs: dict[str, dict[str, Any]] = {}
    for rnd in range(args.alloc_rounds):  # rounds alternate the variants under the same load
        for name in variants:
            r = _train_steps_subprocess(args, available[name])
            prev = runs.setdefault(name, {**r, "times": [], "minor_faults_per_step": []})
            prev["times"] += r["times"]
            prev["minor_faults_per_step"] += r["minor_faults_per_step"]
            prev["max_rss_mb"] = max(prev["max_rss_mb"], r["max_rss_mb"])
            progress(
                f"allocator round {rnd + 1}: {name} ({r['allocator']}) median "
                f"{r['median']:.3f} s, load {load_average()[0]:.2f}"
            )
    load1 = load_average()
    details: dict[str, Any] = {
        "jemalloc": je,
        "workload": {
            "model": args.alloc_model,
            "batch_size": args.alloc_batch,
            "threads": args.threads,
            "steps": args.alloc_steps,
            "warmup": 2,
            "rounds": args.alloc_rounds,
        },
        "variants": {},
        "load_average": {"before": load0, "after": load1},
    }
    rows = []
    ref = None
    for name, r in runs.items():
        st = step_stats(r["times"])
        faults = float(np.median(r["minor_faults_per_step"]))
        details["variants"][name] = {
            **r,
            "env": available[name],
            "stats": st,
            "median_minor_faults": faults,
        }
        ref = ref or st["median"]
        rows.append(
            [
                name,
                r["allocator"],
                str(st["n"]),
                f"{st['median']:.3f}",
                f"{st['p10']:.3f}",
                f"{st['p90']:.3f}",
                f"{st['p90_over_p10']:.2f}",
                f"{'yes' if st['bimodal'] else 'no'} ({100 * st.get('gap_over_median', 0):.0f}%)",
                f"{faults:,.0f}",
                f"{r['max_rss_mb']:,.0f}",
                f"{st['median'] / ref:.2f}",
            ]
        )
    metrics = [
        Metric(
            "workload",
            f"{args.alloc_model} train step, batch {args.alloc_batch} x ~{ATOMS} atoms, "
            f"{args.threads} threads, {args.alloc_steps} steps x {args.alloc_rounds} round(s) "
            "after 2 warm-up, one subprocess per run",
        ),
        Metric("jemalloc library", je or "not installed: jemalloc variants skipped"),
        Metric("load average before / after (1 min)", f"{load0[0]:.2f} / {load1[0]:.2f}"),
    ]
    header = [
        "variant", "loaded", "steps", "median s", "p10 s", "p90 s", "p90/p10",
        "bimodal (gap/median)", "minor faults/step", "max RSS MB", "median vs row 1",
    ]  # fmt: skip
    note = (
        "bimodal: the largest jump between sorted step times exceeds 15% of the median with "
        "at least 15% of the steps on each side.\nglibc-notrim: MALLOC_TRIM_THRESHOLD_=2^36, "
        "MALLOC_MMAP_THRESHOLD_=2^25; jemalloc-nodecay: MALLOC_CONF=dirty_decay_ms:-1,"
        "muzzy_decay_ms:-1."
    )
    return SectionResult(metrics, details, [Table("step times by allocator", header, rows, note)])


# ---------------------------------------------------------------------------------------- alignn
ALIGNN_VARIANTS = {
    "line graph cached (default)": [],
    "line graph per step": ["model.graph.line_graph=false"],
}


def bench_alignn(args: argparse.Namespace) -> SectionResult:
    """D-ALIGNN training steps with the line graph built with the graphs (cached) and built in
    every step: step time and peak RSS, under both allocator policies; one subprocess each."""
    from dos_bench.bench_utils import step_stats

    load0 = load_average()
    rows, details = [], {}
    for policy in ("retain", "system"):
        for name, overrides in ALIGNN_VARIANTS.items():
            cmd = [
                sys.executable, "-m", "dos_bench.bench_utils", "train-steps",
                "--model", "d_alignn", "--steps", str(args.alignn_steps), "--warmup", "1",
                "--batch-size", str(args.alignn_batch), "--threads", str(args.threads),
                "--cpu-allocator", policy, *[f"--override={o}" for o in overrides],
            ]  # fmt: skip
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=7200)
            if proc.returncode:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                rows.append([policy, name, "-", "-", "-", f"FAILED: {err}"])
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            st = step_stats(r["times"])
            details[f"{policy} / {name}"] = {**r, "stats": st}
            rows.append(
                [
                    policy,
                    name,
                    f"{st['median']:.3f}",
                    f"{r['batch_size'] / st['median']:.1f}",
                    f"{r['max_rss_mb']:,.0f}",
                    "",
                ]
            )
            progress(
                f"alignn {policy} / {name}: median {st['median']:.3f} s, peak RSS "
                f"{r['max_rss_mb']:,.0f} MB, load {load_average()[0]:.2f}"
            )
    load1 = load_average()
    metrics = [
        Metric(
            "workload",
            f"d_alignn train step (AdamW), batch {args.alignn_batch} x ~{ATOMS} atoms, "
            f"{args.threads} threads, {args.alignn_steps} timed steps after 1 warm-up, one "
            "subprocess per row",
        ),
        Metric("load average before / after (1 min)", f"{load0[0]:.2f} / {load1[0]:.2f}"),
    ]
    header = ["cpu_allocator", "variant", "median s", "graphs/s", "peak RSS MB", ""]
    note = (
        "cached: model.graph.line_graph=true (conf/model/d_alignn.yaml), line graph and bond "
        "angles from the graph cache; per step: the encoder builds them from the batch.\n"
        "peak RSS: VmHWM of the subprocess (data, model, optimizer state and the step)."
    )
    details["load_average"] = {"before": load0, "after": load1}
    return SectionResult(metrics, details, [Table("D-ALIGNN line graph", header, rows, note)])


# ---------------------------------------------------------------------------------------- attention
def _attention_overrides(name: str) -> tuple[float, str]:
    """The configured attention-probability dropout of a transformer-head model and the
    override path of its head."""
    from dos_bench.bench_utils import compose

    head = compose([f"model={name}"]).model.head
    return float(head.get("attn_dropout", 0.0)), "model.head.attn_dropout"


def bench_attention(args: argparse.Namespace) -> SectionResult:
    """Transformer heads: training-step time on dos_bench's C attention kernel, on torch's fused
    kernel (``model.head.kernel=torch``) and with attention-probability dropout (which forces
    torch's unfused attention on CPU), the attention kernel each one uses, and the counted FLOP/s
    over the fp32 matmul peak measured in the same run (Xtal2DoS target 85 %, on the default
    kernel with attention dropout 0)."""
    import torch

    from dos_bench.bench_utils import build_case, count_flops, make_batch, mm_peak

    torch.set_num_threads(args.threads)
    records, index = _fixed_batch_records()
    names = [m for m in _model_list(args) if m in TRANSFORMER_HEADS] or list(TRANSFORMER_HEADS)
    rows, details = [], {}
    load0 = load_average()
    for name in names:
        configured, path = _attention_overrides(name)
        dropout = configured if configured > 0 else 0.1
        variants = {  # label -> overrides; the first is the one the target applies to
            "auto": [f"{path}=0", "model.head.kernel=auto"],
            "torch": [f"{path}=0", "model.head.kernel=torch"],
            "dropout": [f"{path}={dropout}"],
        }
        batch = make_batch(records, index, name)
        cases = {
            v: build_case(name, batch, records.targets, OUT_DIM, overrides=ov)
            for v, ov in variants.items()
        }
        times: dict[str, list[float]] = {v: [] for v in cases}
        kernels: dict[str, str] = {}
        flops: dict[str, int] = {}
        for v, case in cases.items():
            flops[v], _, _ = count_flops(case.train_step)  # also the warm-up
            kernels[v] = _attention_kernel(case.train_step)
        peaks = [mm_peak()]  # the matmul peak just before and just after the timed steps
        for _ in range(args.attn_steps):  # alternate: all variants see the same load
            for v, case in cases.items():
                t0 = time.perf_counter()
                case.train_step()
                times[v].append(time.perf_counter() - t0)
        peaks.append(mm_peak())
        for case in cases.values():
            case.release()
        med = {v: float(np.median(t)) for v, t in times.items()}
        peak = max(peaks)
        # useful work: the fused path's count for every variant (the unfused path scores the
        # full square of a causal attention and masks half of it away)
        eff = {v: flops["torch"] / med[v] / peak for v in cases}
        target = EFF_TARGETS.get(name, EFF_TARGET_TRANSFORMER)
        details[name] = {
            "configured": configured,
            "dropout": dropout,
            "times": times,
            "kernels": kernels,
            "flops": flops,
            "mm_peak_flops": peaks,
            "efficiency": eff,
            "target": target,
        }
        verdict = "met" if eff["auto"] >= target else "MISSED"
        rows.append(
            [
                name,
                f"{configured:g}",
                *(f"{med[v]:.3f} ({kernels[v]})" for v in cases),
                f"{med['dropout'] / med['auto']:.2f}x",
                " / ".join(f"{eff[v]:.0%}" for v in cases),
                f"{peak / 1e9:.0f}",
                f">= {target:.0%} (default kernel, attn_dropout 0): {verdict}",
            ]
        )
        progress(
            f"attention {name}: "
            + ", ".join(f"{v} {med[v]:.3f} s ({eff[v]:.0%} of peak)" for v in cases)
        )
    load1 = load_average()
    metrics = [
        Metric(
            "workload",
            f"train step (AdamW), batch {BATCH_SIZE} x ~{ATOMS} atoms, {OUT_DIM} outputs, "
            f"{args.threads} threads, median of {args.attn_steps} alternating steps",
        ),
        Metric("load average before / after (1 min)", f"{load0[0]:.2f} / {load1[0]:.2f}"),
    ]
    header = [
        "model", "configured attn_dropout", "attn_dropout 0, kernel auto: s (kernel)",
        "attn_dropout 0, kernel torch: s (kernel)", "attn_dropout > 0: s (kernel)",
        "cost of attention dropout", "of mm peak (auto / torch / dropout)", "mm peak GFLOP/s",
        "target",
    ]  # fmt: skip
    note = (
        "kernel: C = dos_bench::attention (dos_bench/models/csrc/attention.c: scores only the "
        "pairs a causal mask allows, forward and backward), fused = "
        "aten::_scaled_dot_product_flash_attention_for_cpu, math = the unfused softmax(QK^T)V "
        "path, the only CPU path with dropout on the attention probabilities (dropout: the "
        "configured value, else 0.1).\n"
        "attention dropout acts in training only: inference runs the dropout-free kernel.\n"
        "of mm peak: FLOPs counted by dos_bench.bench_utils.count_flops (torch's FlopCounterMode "
        "for matmuls, plus the attention kernels, which torch counts as zero; causal "
        "attention counts its scored triangle, not the full square) per median step, over the "
        "best 2048x2048 fp32 matmul rate (torch.mm or oneDNN, the faster) measured just before "
        "and after this model's steps; every column divides the fused path's FLOPs."
    )
    details["load_average"] = {"before": load0, "after": load1}
    return SectionResult(metrics, details, [Table("attention kernels", header, rows, note)])


def _attention_kernel(fn: Callable[[], Any]) -> str:
    from torch.profiler import profile

    with profile() as prof:
        fn()
    names = {e.name for e in prof.events()}
    kinds = []
    if "dos_bench::attention" in names:
        kinds.append("C")
    if "aten::_scaled_dot_product_flash_attention_for_cpu" in names:
        kinds.append("fused")
    if "aten::_scaled_dot_product_attention_math" in names:
        kinds.append("math")
    return "+".join(kinds) or "none"


# ---------------------------------------------------------------------------------------- compile
def bench_compile(args: argparse.Namespace) -> SectionResult:
    """Every model config under ``torch.compile(dynamic=True)`` (``compile: true``) on CPU:
    compiled vs eager training-step time, compile time, graph breaks, or why it fails."""
    from dos_bench.bench_utils import step_stats

    names = _model_list(args)
    rows, details = [], {}
    load0 = load_average()
    for k, name in enumerate(names):
        cmd = [
            sys.executable, "-m", "dos_bench.bench_utils", "compile-steps", "--model", name,
            "--steps", str(args.compile_steps), "--batch-size", str(args.compile_batch),
            "--threads", str(args.threads), "--cpu-allocator", args.cpu_allocator,
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.compile_timeout
            )
            if proc.returncode:
                err = (proc.stderr.strip().splitlines() or ["?"])[-1]
                r = {"model": name, "error": f"process failed: {err[:300]}", "failed_at": "?"}
            else:
                r = json.loads(proc.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            r = {"model": name, "error": f"no result within {args.compile_timeout:.0f} s"}
            r["failed_at"] = "timeout"
        details[name] = r
        eager = step_stats(r["eager"])["median"] if r.get("eager") else float("nan")
        breaks = sum((r.get("graph_breaks") or {}).values())
        top = next(iter(r.get("graph_breaks") or {}), "")
        if "error" in r:
            rows.append(
                [name, f"{eager:.3f}", "-", "-", "-", str(breaks),
                 f"FAILED at {r.get('failed_at')}: {r['error']}"]
            )  # fmt: skip
            progress(f"[compile {k + 1}/{len(names)}] {name}: FAILED {r['error'][:120]}")
            continue
        comp = step_stats(r["compiled"])["median"]
        rows.append(
            [
                name,
                f"{eager:.3f}",
                f"{comp:.3f}",
                f"{eager / comp:.2f}x",
                f"{r['compile_s']:.0f} (+{r['other_batch_first_s']:.0f})",
                str(breaks),
                top,
            ]
        )
        progress(
            f"[compile {k + 1}/{len(names)}] {name}: eager {eager:.3f} s, compiled {comp:.3f} s, "
            f"compile {r['compile_s']:.0f} s, {breaks} graph breaks"
        )
    load1 = load_average()
    ok = [r for r in details.values() if "error" not in r]
    metrics = [
        Metric(
            "workload",
            f"train step (AdamW), batch {args.compile_batch} x ~{ATOMS} atoms, {args.threads} "
            f"threads, median of {args.compile_steps} steps; model.compile(dynamic=True)",
        ),
        Metric("models that compile and run", f"{len(ok)} of {len(details)}"),
        Metric("load average before / after (1 min)", f"{load0[0]:.2f} / {load1[0]:.2f}"),
    ]
    header = [
        "model", "eager s", "compiled s", "speed-up", "compile s (+ other batch size)",
        "graph breaks", "first graph break or error",
    ]  # fmt: skip
    note = (
        "compile s: the first compiled step (tracing + inductor C++ codegen); + other batch "
        "size: the first step on a batch of half the crystals (recompilation if shapes were "
        "specialised). One subprocess per model, timeout --compile-timeout."
    )
    details["load_average"] = {"before": load0, "after": load1}
    return SectionResult(metrics, details, [Table("torch.compile", header, rows, note)])


# ---------------------------------------------------------------------------------------- peers
PEERS_LABELS = {"d_alignn": "D-ALIGNN (dos_bench)", "alignn": "alignn (PyPI) ALIGNNAtomWisePure"}
PEERS_TRAIN_TARGET = 2.0
"""The issue's target: D-ALIGNN trains at >= 2.0x the peer's graphs/s, with peak RSS <= its."""


def _worker_failure(returncode: int, stderr: str) -> str:
    """One line for a worker that died or failed: the signal or exit code and its last stderr
    line (a SIGKILL is most often the kernel's out-of-memory killer)."""
    import signal

    last = next((ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), "")
    if returncode < 0:
        sig = -returncode
        why = "out of memory?" if sig == signal.SIGKILL else signal.Signals(sig).name
        text = f"killed by signal {sig} ({why})"
    else:
        text = f"exited with code {returncode}" if returncode else "no JSON result on stdout"
    return f"{text}; last stderr: {last[:200]}" if last else f"{text}; no stderr"


def _peers_worker_run(model: str, args: argparse.Namespace) -> dict[str, Any]:
    """One peers worker (:func:`dos_bench.bench_utils.peer_worker`) in a subprocess: its JSON
    result, or ``{"error": ...}`` when it was killed, failed or timed out."""
    from dos_bench.bench_utils import peer_worker_command

    cmd = peer_worker_command(
        model, args.peers_batch, args.peers_steps, args.threads, args.cpu_allocator, ATOMS,
        args.peers_warmup,
    )  # fmt: skip
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.peers_timeout
        )
    except subprocess.TimeoutExpired:
        return {"model": model, "error": f"no result within {args.peers_timeout:.0f} s"}
    wall = time.perf_counter() - t0
    lines = proc.stdout.strip().splitlines()
    if proc.returncode or not lines or not lines[-1].startswith("{"):
        return {"model": model, "error": _worker_failure(proc.returncode, proc.stderr)}
    return {**json.loads(lines[-1]), "wall_s": wall}


def _peers_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one model merged: medians over every round's steps, the largest peak RSS,
    the first run's FLOPs; or the first error."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0]["error"] if runs else "not run"}
    first = ok[0]
    out: dict[str, Any] = {
        k: first[k] for k in ("params", "graphs", "atoms", "edges", "line_graph_edges")
    }
    for phase in ("train", "infer"):
        times = [t for r in ok for t in r[phase]["times"]]
        med = float(np.median(times))
        out[phase] = {
            "median_s": med,
            "graphs_per_s": first["graphs"] / med,
            "gflop_per_step": first[phase]["flops"] / 1e9,
            "steps": len(times),
        }
    out["peak_rss_gb"] = max(r["peak_rss_mb"] for r in ok) / 1024
    out["rss_built_gb"] = max(r["rss_built_mb"] for r in ok) / 1024
    out["failed_runs"] = [r["error"] for r in runs if "error" in r]
    return out


def _peers_ratios(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    train = ours["train"]["graphs_per_s"] / peer["train"]["graphs_per_s"]
    rss = ours["peak_rss_gb"] / peer["peak_rss_gb"]
    return {
        "params": ours["params"] / peer["params"],
        "train_graphs_per_s": train,
        "infer_graphs_per_s": ours["infer"]["graphs_per_s"] / peer["infer"]["graphs_per_s"],
        "train_gflop_per_step": ours["train"]["gflop_per_step"] / peer["train"]["gflop_per_step"],
        "infer_gflop_per_step": ours["infer"]["gflop_per_step"] / peer["infer"]["gflop_per_step"],
        "peak_rss": rss,
        "train_target_met": train >= PEERS_TRAIN_TARGET,
        "rss_target_met": rss <= 1.0,
    }


def _same_batch(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Whether every successful worker measured the same crystals and graphs."""
    keys = ("record_ids", "atoms", "edges", "line_graph_edges", "threads")
    ok = [r for rs in runs.values() for r in rs if "error" not in r]
    seen = {json.dumps([r[k] for k in keys]) for r in ok}
    return "yes (crystals, edges, line-graph edges, threads)" if len(seen) <= 1 else "NO: differ"


def _peer_gemms(runs: list[dict[str, Any]]) -> list[str]:
    """The ``cpu_gemm`` settings a model's workers ran with (``?`` for a failed worker)."""
    return sorted({str(r.get("cpu_gemm", "?")) for r in runs})


def bench_peers(args: argparse.Namespace) -> SectionResult:
    """D-ALIGNN vs the alignn package (PyPI): graphs/s, GFLOP/step, peak RSS, same batch.

    One subprocess per model and round (:func:`dos_bench.bench_utils.peer_worker`), so that
    each peak RSS is one model's; rounds alternate the models (ABBA) and the step times are
    pooled into medians. A worker killed by a signal or failing is one row of the table."""
    from dos_bench.bench_utils import PEER_HINT, alignn_peer_version

    try:
        version = alignn_peer_version()
    except ImportError as exc:
        msg = f"skipped: alignn not importable ({exc}); {PEER_HINT}"
        progress(f"peers: {msg}")
        return SectionResult([Metric("alignn (PyPI)", msg)], {"skipped": msg})
    load0 = load_average()
    order = list(PEERS_LABELS)
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in order}
    for rnd in range(args.peers_rounds):  # ABBA: load drift falls on both models
        for model in order if rnd % 2 == 0 else order[::-1]:
            if any("error" in r for r in runs[model]):
                continue  # a model killed once (e.g. out of memory) is not run again
            r = _peers_worker_run(model, args)
            runs[model].append(r)
            if "error" in r:
                progress(f"peers round {rnd + 1}: {model} FAILED: {r['error']}")
                continue
            progress(
                f"peers round {rnd + 1}: {model} train {r['train']['median']:.3f} s, infer "
                f"{r['infer']['median']:.3f} s, peak RSS {r['peak_rss_mb'] / 1024:.2f} GB, "
                f"{r['wall_s']:.0f} s, load {load_average()[0]:.2f}"
            )
    load1 = load_average()
    summary = {m: _peers_summary(runs[m]) for m in order}
    rows = []
    for m in order:
        s = summary[m]
        if "error" in s:
            rows.append([PEERS_LABELS[m], *["-"] * 8, s["error"]])
            continue
        tr, inf = s["train"], s["infer"]
        rows.append(
            [
                PEERS_LABELS[m],
                f"{s['params'] / 1e6:.2f}M",
                f"{tr['median_s']:.3f}",
                f"{tr['graphs_per_s']:.2f}",
                f"{tr['gflop_per_step']:.1f}",
                f"{inf['median_s']:.3f}",
                f"{inf['graphs_per_s']:.2f}",
                f"{inf['gflop_per_step']:.1f}",
                f"{s['peak_rss_gb']:.2f} ({s['rss_built_gb']:.2f})",
                "; ".join(s["failed_runs"]),
            ]
        )
    ours, peer = summary["d_alignn"], summary["alignn"]
    target = f">= {PEERS_TRAIN_TARGET:.1f}x train graphs/s, peak RSS <= 1.00x"
    ratios: dict[str, Any] | None = None
    if "error" not in ours and "error" not in peer:
        ratios = _peers_ratios(ours, peer)
        checks = (("train", "train_target_met"), ("RSS", "rss_target_met"))
        missed = [name for name, key in checks if not ratios[key]]
        verdict = "met" if not missed else "MISSED " + "+".join(missed)
        rows.append(
            [
                "D-ALIGNN / alignn",
                f"{ratios['params']:.2f}x",
                "",
                f"{ratios['train_graphs_per_s']:.2f}x",
                f"{ratios['train_gflop_per_step']:.2f}x",
                "",
                f"{ratios['infer_graphs_per_s']:.2f}x",
                f"{ratios['infer_gflop_per_step']:.2f}x",
                f"{ratios['peak_rss']:.2f}x",
                f"{target}: {verdict}",
            ]
        )
    ok = [r for rs in runs.values() for r in rs if "error" not in r]
    shape = "-"
    if ok:
        a = ok[0]["atoms_per_crystal"]
        shape = (
            f"{ok[0]['graphs']} toy_edos crystals of {a[0]}-{a[2]} atoms ({ok[0]['atoms']} in "
            f"all), {ok[0]['edges']:,} edges, {ok[0]['line_graph_edges']:,} line-graph edges"
        )
    metrics = [
        Metric(
            "workload",
            f"batch {args.peers_batch}: {shape}; d_alignn recipe (line graph cached), "
            f"{OUT_DIM} outputs, {args.threads} threads, cpu_allocator {args.cpu_allocator}",
        ),
        Metric(
            "timing",
            f"one subprocess per model and round, {args.peers_rounds} round(s) alternating "
            f"(ABBA); per run 1 FLOP-counted + {args.peers_warmup} untimed warm-up and "
            f"{args.peers_steps} timed steps per phase; "
            "medians over the rounds",
        ),
        Metric("same batch in every subprocess", _same_batch(runs)),
        Metric(
            "dense-layer products",
            f"D-ALIGNN: cpu_gemm={'/'.join(_peer_gemms(runs.get('d_alignn', [])))} "
            "(dos_bench/models/gemm.py); alignn: its nn.Linear on torch (MKL for fp32)",
        ),
        Metric("alignn version", version),
    ]
    if ratios is not None:
        metrics += [
            Metric(
                "D-ALIGNN / alignn",
                f"train graphs/s {ratios['train_graphs_per_s']:.2f}x, infer "
                f"{ratios['infer_graphs_per_s']:.2f}x, peak RSS {ratios['peak_rss']:.2f}x",
            ),
            Metric(
                "train graphs/s, D-ALIGNN / alignn",
                f"{ratios['train_graphs_per_s']:.2f}",
                "x",
                f">= {PEERS_TRAIN_TARGET:.1f}",
                ratios["train_target_met"],
            ),
            Metric(
                "peak RSS, D-ALIGNN / alignn",
                f"{ratios['peak_rss']:.2f}",
                "x",
                "<= 1.00",
                ratios["rss_target_met"],
            ),
        ]
    else:
        failed = "; ".join(f"{m}: {summary[m]['error']}" for m in order if "error" in summary[m])
        metrics.append(Metric("D-ALIGNN / alignn", f"not compared ({failed})", target=target))
    metrics.append(
        Metric("load average before / after (1 min)", f"{load0[0]:.2f} / {load1[0]:.2f}")
    )
    header = [
        "model", "params", "train s", "train graphs/s", "train GFLOP/step", "infer s",
        "infer graphs/s", "infer GFLOP/step", "peak RSS GB (built)", "target",
    ]  # fmt: skip
    note = (
        "peak RSS: VmHWM of the model's subprocess (interpreter, data, model, AdamW state and "
        "the steps); built: VmRSS before its first step.  GFLOP: "
        "torch.utils.flop_counter.FlopCounterMode (+ oneDNN dense products counted as the mm "
        "they replace),\none step, matmul/conv ops only.  peer: "
        "alignn.models.alignn_atomwise_pure.ALIGNNAtomWisePure at D-ALIGNN's sizes (see "
        "dos_bench.bench_utils.build_alignn_peer for what still\ndiffers: LayerNorm, layer "
        "order, one output layer, angles recomputed per step)."
    )
    details = {
        "alignn_version": version,
        "workload": {
            "batch_size": args.peers_batch,
            "atoms": ATOMS,
            "steps": args.peers_steps,
            "warmup": args.peers_warmup,
            "rounds": args.peers_rounds,
            "threads": args.threads,
            "cpu_allocator": args.cpu_allocator,
        },
        "summary": summary,
        "ratios": ratios,
        "targets": {"train_graphs_per_s_ratio": PEERS_TRAIN_TARGET, "peak_rss_ratio": 1.0},
        "runs": runs,
        "load_average": {"before": load0, "after": load1},
    }
    return SectionResult(metrics, details, [Table("peers", header, rows, note)])


SECTIONS: dict[str, Callable[[argparse.Namespace], SectionResult]] = {
    "graphs": bench_graphs,
    "models": bench_models,
    "pipeline": bench_pipeline,
    "allocator": bench_allocator,
    "alignn": bench_alignn,
    "attention": bench_attention,
    "compile": bench_compile,
    "peers": bench_peers,
}
"""Benchmark sections by name, run in this order by default."""

SECTION_THREADS: dict[str, int] = {"graphs": 1}
"""Sections that run on one pinned core; the others use ``--threads`` on every CPU."""


# ---------------------------------------------------------------------------------------- main
def _write(out_dir: Path, name: str, env: dict[str, Any], result: SectionResult) -> Path:
    from dos_bench.io import write_json

    out = out_dir / f"{name}.json"
    write_json(
        out,
        {
            "section": name,
            "env": env,
            "metrics": [m.__dict__ for m in result.metrics],
            "results": result.details,
        },
    )
    return out


def _report(title: str, result: SectionResult) -> None:
    if result.metrics:
        print_table(title, result.metrics)
    for t in result.tables:
        print_grid(t)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sections", nargs="*", help=f"sections to run (default: all of {', '.join(SECTIONS)})"
    )
    parser.add_argument("--repeats", type=int, default=None, help="graphs: timing repeats (5)")
    parser.add_argument(
        "--min-time", type=float, default=None, help="seconds spent on throughput loops (2)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "outputs" / "bench", help="directory of the JSON results"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin graphs to one CPU core")
    parser.add_argument(
        "--threads", type=int, default=len(ALL_CPUS), help="torch threads of models, pipeline, "
        f"allocator (default: every CPU, {len(ALL_CPUS)})"
    )  # fmt: skip
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"models {','.join(QUICK_MODELS)} only, fewer steps and repeats",
    )
    parser.add_argument(
        "--models", default="", help="models: comma-separated configs (default all)"
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "both"),
        default="fp32",
        help="models: fp32, bf16 autocast (models_bf16.json) or both",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="models: also profile one train and one infer step per model",
    )
    parser.add_argument(
        "--no-dedup",
        action="store_true",
        help="models: measure configs that build the same network again",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="models: seconds of timed steps per model and phase (6; quick 2)",
    )
    parser.add_argument(
        "--min-steps", type=int, default=None, help="models: timed steps at least (2; quick 1)"
    )
    parser.add_argument("--max-steps", type=int, default=20, help="models: timed steps at most")
    parser.add_argument(
        "--long-step",
        type=float,
        default=15.0,
        help="models: a phase whose first step takes longer (s) is timed once (heavy models)",
    )
    parser.add_argument(
        "--pipeline-steps",
        type=int,
        default=None,
        help="pipeline: timed training steps (6; quick 3)",
    )
    parser.add_argument("--alloc-model", default="graph_network", help="allocator: model")
    parser.add_argument("--alloc-batch", type=int, default=BATCH_SIZE, help="allocator: batch")
    parser.add_argument(
        "--alloc-steps", type=int, default=None, help="allocator: timed steps per run (8; quick 5)"
    )
    parser.add_argument(
        "--alloc-rounds", type=int, default=1, help="allocator: runs per allocator, alternating"
    )
    parser.add_argument(
        "--alloc-variants",
        default="glibc,glibc-retain,jemalloc,jemalloc-nodecay",
        help="allocator: comma-separated of glibc, glibc-retain, glibc-notrim, jemalloc, "
        "jemalloc-nodecay",
    )
    parser.add_argument(
        "--omp-wait-policy",
        choices=("passive", "active", "default"),
        default="passive",
        help="OMP_WAIT_POLICY set before torch is imported (default passive: idle OpenMP threads "
        "sleep instead of spinning, which on a shared machine is much faster; 'default' leaves "
        "libgomp's spin-then-sleep, what `make run` gets unless the variable is set)",
    )
    parser.add_argument(
        "--cpu-allocator",
        choices=("retain", "system"),
        default="retain",
        help="graphs/models/pipeline: the training default (retain: glibc keeps freed memory, "
        "see dos_bench/allocator.py) or the C library's own policy",
    )
    parser.add_argument("--alignn-batch", type=int, default=BATCH_SIZE, help="alignn: batch")
    parser.add_argument(
        "--alignn-steps", type=int, default=None, help="alignn: timed steps per run (4; quick 2)"
    )
    parser.add_argument(
        "--attn-steps", type=int, default=None, help="attention: timed steps per variant (4; 2)"
    )
    parser.add_argument(
        "--compile-batch", type=int, default=16, help="compile: materials per batch (16)"
    )
    parser.add_argument(
        "--compile-steps", type=int, default=None, help="compile: timed steps (3; quick 2)"
    )
    parser.add_argument(
        "--compile-timeout", type=float, default=1800.0, help="compile: seconds per model"
    )
    parser.add_argument(
        "--peers-steps", type=int, default=None, help="peers: timed steps per model (4; quick 2)"
    )
    parser.add_argument(
        "--peers-warmup",
        type=int,
        default=None,
        help="peers: untimed steps after the FLOP-counted one (2; quick 0)",
    )
    parser.add_argument(
        "--peers-batch", type=int, default=None, help="peers: crystals per batch (64; quick 16)"
    )
    parser.add_argument(
        "--peers-rounds", type=int, default=2, help="peers: subprocesses per model, ABBA (2)"
    )
    parser.add_argument(
        "--peers-timeout", type=float, default=7200.0, help="peers: seconds per subprocess"
    )
    parser.add_argument("--list", action="store_true", help="list the sections and exit")
    args = parser.parse_args(argv)
    if args.omp_wait_policy != "default":
        if "torch" in sys.modules:
            print("warning: torch already imported; --omp-wait-policy has no effect", flush=True)
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()
    quick = args.quick
    defaults = {
        "repeats": (2, 5),
        "min_time": (1.0, 2.0),
        "budget": (2.0, 6.0),
        "min_steps": (1, 2),
        "pipeline_steps": (3, 6),
        "alloc_steps": (5, 8),
        "alignn_steps": (2, 4),
        "attn_steps": (2, 4),
        "compile_steps": (2, 3),
        "peers_steps": (2, 4),
        "peers_warmup": (0, 2),
        "peers_batch": (16, BATCH_SIZE),
    }
    for key, (q, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, q if quick else full)

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

    from dos_bench.training.allocator import configure_cpu_allocator, release_free_memory

    configure_cpu_allocator(args.cpu_allocator)
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpus": len(ALL_CPUS),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "quick": quick,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "libgomp default"),
        "cpu_allocator": args.cpu_allocator,
    }
    la = load_average()
    print(
        f"dos_bench bench on {env['cpu_model']}, {len(ALL_CPUS)} CPUs; load average "
        f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}; graphs on 1 pinned core, other sections "
        f"{args.threads} threads, OMP_WAIT_POLICY={env['omp_wait_policy']}"
        f"{' (quick)' if quick else ''}",
        flush=True,
    )
    t_all = time.perf_counter()
    for name in names:
        threads = SECTION_THREADS.get(name, args.threads)
        if threads == 1:
            cpus = "not pinned (--no-pin)" if args.no_pin else pin_one_core()
        else:
            cpus = unpin()
        torch.set_num_threads(threads)
        sec_env = {**env, "threads": threads, "cpu_affinity": cpus}
        t0 = time.perf_counter()
        result = SECTIONS[name](args)
        elapsed = time.perf_counter() - t0
        # the in-process sections (models) leave gigabytes that cpu_allocator=retain keeps for
        # reuse: hand them back, or the subprocesses of the next sections run out of memory
        gc.collect()
        release_free_memory()
        if result.metrics or result.tables:
            _report(f"{name} ({elapsed:.1f} s, {threads} thread(s), {cpus})", result)
            print(f"-> {_write(args.out, name, sec_env, result)}")
        for extra_name, extra in result.extra.items():
            _report(f"{extra_name} ({threads} thread(s))", extra)
            print(f"-> {_write(args.out, extra_name, sec_env, extra)}")
    la = load_average()
    print(
        f"\nbench done in {time.perf_counter() - t_all:.0f} s; load average "
        f"{la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
