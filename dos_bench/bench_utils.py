"""Helpers of ``scripts/bench.py``: model zoo set-up, step timing, FLOP counts, profiles.

(Over 500 lines on purpose: one benchmark harness whose parts share the same timing state.)

Nothing here is used by training; the functions build every model config of ``conf/model`` at
its paper hyperparameters on a fixed batch of real toy crystals, time training and inference
steps, count FLOPs with :class:`torch.utils.flop_counter.FlopCounterMode` and classify profiler
time by kind of operator.

``python -m dos_bench.bench_utils train-steps ...`` times training steps of one model and prints
the step times as JSON on its last line: ``scripts/bench.py allocator`` runs it in subprocesses
with and without ``LD_PRELOAD`` of jemalloc.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dos_bench.config import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]
CONF = CONF_DIR

__all__ = [
    "PEER_HINT",
    "PEER_MODELS",
    "BenchCase",
    "alignn_peer_version",
    "build_alignn_peer",
    "peer_worker",
    "peer_worker_command",
    "Records",
    "build_case",
    "classify_profile",
    "compose",
    "count_flops",
    "frozen",
    "load_records",
    "make_batch",
    "mm_peak",
    "model_names",
    "network_signature",
    "pick_materials",
    "step_stats",
    "time_steps",
]


# ------------------------------------------------------------------------------ configs and data
def model_names() -> list[str]:
    """Every model config in ``conf/model/*.yaml``, sorted."""
    return sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def compose(overrides: Sequence[str] = ()) -> Any:
    """The composed training config (``conf/train.yaml``) with Hydra overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))


def network_signature(cfg_model: Any) -> str:
    """The model config without its display name: two configs with the same signature build
    the same network (e.g. ``d_alignn`` and ``ae_alignn`` at the same output size)."""
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(cfg_model, resolve=False)
    assert isinstance(node, dict)
    node.pop("name", None)
    return json.dumps(node, sort_keys=True, default=str)


@dataclass
class Records:
    """The toy eDOS records, their 300-point targets and where they came from."""

    rs: Any  # dos_bench.data.records.RecordSet
    targets: np.ndarray  # (N, n_points) float32
    source: str


def load_records(data_dir: Path | None = None) -> Records:
    """The configured ``toy_edos`` dataset (conf/dataset/toy_edos.yaml), from its cache in
    ``data/`` (generated there first if missing), and its ALIGNN-DOS 300-point targets."""
    from dos_bench.config import build

    cfg = compose(["dataset=toy_edos", "progress=false"])
    source = build(cfg.dataset.source)
    data_dir = data_dir or ROOT / "data"
    path = source.cache_path(data_dir)
    note = f"toy_edos cache {path.name}"
    if not path.exists():
        note = f"toy_edos generated into {path} (no cache found)"
    rs = source.load(data_dir)
    targets = np.asarray(build(cfg.dataset.recipe).apply(rs), dtype=np.float32)
    return Records(rs, targets, note)


def pick_materials(n_atoms: np.ndarray, n: int = 64, atoms: int = 20) -> np.ndarray:
    """Indices of ``n`` materials with the atom counts closest to ``atoms`` (ties: lower index),
    deterministic."""
    order = np.lexsort((np.arange(len(n_atoms)), np.abs(n_atoms.astype(int) - atoms)))
    if len(order) < n:
        raise ValueError(f"only {len(order)} materials, {n} requested")
    return np.sort(order[:n])


# ------------------------------------------------------------------------------ one model
@dataclass
class BenchCase:
    """One model config built at its defaults, its fixed batch and its step functions."""

    name: str
    display: str
    signature: str
    n_params: int
    n_atoms: int
    n_edges: int
    n_graphs: int
    train_step: Callable[..., Any]
    infer_step: Callable[..., Any]
    model: Any = None
    batch: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def release(self) -> None:
        self.model = self.batch = None
        self.train_step = self.infer_step = _noop
        gc.collect()


def _noop(b: Any = None) -> None:
    return None


def make_batch(
    records: Records, index: np.ndarray, model: str, overrides: Sequence[str] = ()
) -> Any:
    """The PyG batch of materials ``index`` built with model config ``model``'s own graph
    recipe and atom features (after the Hydra ``overrides``), targets attached as ``y``."""
    from torch_geometric.data import Batch

    from dos_bench.data.graphs import GraphRecipe, build_graphs, to_data_list

    cfg = compose([f"model={model}", *overrides])
    sub = records.rs.subset(index)
    gs = build_graphs(sub, GraphRecipe(**dict(cfg.model.graph)), progress=False)
    data = to_data_list(
        sub, gs, atom_features=str(cfg.model.atom_features), y=records.targets[index]
    )
    return Batch.from_data_list(data)


def build_case(
    name: str,
    batch: Any,
    fit_targets: np.ndarray,
    out_dim: int = 300,
    precision: str = "fp32",
    seed: int = 0,
    overrides: Sequence[str] = (),
) -> BenchCase:
    """Model config ``name`` at its defaults with ``out_dim`` outputs and two closures:

    * ``train_step(b=batch)``: what :meth:`dos_bench.training.module.DOSLitModule.training_step`
      computes — target encode, forward, link, loss (``conf/loss/mse.yaml``) — then backward and
      the optimizer step (``conf/optimizer/adamw.yaml``);
    * ``infer_step(b=batch)``: forward in eval mode under ``torch.no_grad()``, no target.

    ``batch`` must come from the model's own graph recipe and atom features
    (:func:`make_batch`); ``fit_targets`` fit the target representation (``raw``).
    ``precision="bf16"`` runs forward and loss under ``torch.autocast("cpu", torch.bfloat16)``.
    ``overrides`` are Hydra overrides of the composed config (e.g. ``model.head.attn_dropout=0``).
    """
    import torch

    from dos_bench.config import build
    from dos_bench.data.features import atom_feature_table
    from dos_bench.models.model import build_model
    from dos_bench.training.module import DOSLitModule

    cfg = compose([f"model={name}", "target_repr=raw", "loss=mse", "optimizer=adamw", *overrides])
    table = atom_feature_table(cfg.model.atom_features)
    torch.manual_seed(seed)
    model = build_model(cfg.model, in_dim=table.shape[1], out_dim=out_dim)
    if batch.y.shape[1] != out_dim:
        raise ValueError(f"targets have {batch.y.shape[1]} points, out_dim is {out_dim}")
    tt = build(cfg.target_repr)
    tt.fit(fit_targets)
    lit = DOSLitModule(
        model=model,
        target_transform=tt,
        loss=build(cfg.loss),
        optimizer=build(cfg.optimizer),
    )
    opt = lit.optimizer_factory(model.parameters())
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]
    if precision == "bf16":
        autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    elif precision == "fp32":
        autocast = contextlib.nullcontext
    else:
        raise ValueError(f"precision must be fp32 or bf16, got {precision!r}")

    def train_step(b: Any = None) -> float:
        model.train()
        with autocast():
            loss, _, _ = lit._shared_step(batch if b is None else b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def infer_step(b: Any = None) -> Any:
        model.eval()
        with torch.no_grad(), autocast():
            return model(batch if b is None else b)["pred"]

    return BenchCase(
        name=name,
        display=str(cfg.model.name),
        signature=network_signature(cfg.model),
        n_params=model.n_parameters(),
        n_atoms=int(batch.num_nodes),
        n_edges=int(batch.edge_index.shape[1]),
        n_graphs=int(batch.num_graphs),
        train_step=train_step,
        infer_step=infer_step,
        model=model,
        batch=batch,
        extra={"graph": dict(cfg.model.graph), "atom_features": str(cfg.model.atom_features)},
    )


# ------------------------------------------------------------------------------ peers
PEER_HINT = (
    'pip install -e ".[peers]" (alignn + pydantic-settings; its pure-PyTorch '
    "ALIGNNAtomWisePure needs no DGL)"
)


def build_alignn_peer(batch: Any, out_dim: int = 300, seed: int = 0) -> BenchCase:
    """The ``alignn`` package's pure-PyTorch model (``ALIGNNAtomWisePure``, PyPI ``alignn``)
    at D-ALIGNN's sizes, on dos_bench's batch: the same crystal graph and the same line graph
    (``batch`` must carry ``lg_edge_index``), its train step (forward, MSE on the 300 outputs,
    backward, AdamW) and its inference step.

    Sizes as ``conf/model/d_alignn.yaml``: 4 ALIGNN + 4 GCN layers, hidden 256, embedding 64,
    80 bond / 40 angle Gaussians, the batch's atom features; graph-level output only (no forces,
    stresses, penalty or ZBL terms). Differences that remain: its convolutions normalise with
    LayerNorm (dos_bench: BatchNorm, as the ALIGNN-DOS paper's code), update the crystal graph
    first (dos_bench default: the line graph first), recompute the bond-angle cosines from the
    bond vectors in every forward, and read out with one linear layer (D-ALIGNN: four).

    Raises:
        ImportError: ``alignn`` is not installed (:data:`PEER_HINT`).
    """
    import torch
    from alignn.models.alignn_atomwise_pure import (
        ALIGNNAtomWisePure,
        ALIGNNAtomWisePureConfig,
    )
    from alignn.torch_graph_builder import TorchGraph

    from dos_bench.data.graphs import edge_vectors

    if getattr(batch, "lg_edge_index", None) is None:
        raise ValueError("the peer needs a batch with its line graph (recipe line_graph: true)")
    config = ALIGNNAtomWisePureConfig(
        name="alignn_atomwise_pure",
        alignn_layers=4,
        gcn_layers=4,
        atom_input_features=int(batch.x.shape[1]),
        edge_input_features=80,
        triplet_input_features=40,
        embedding_features=64,
        hidden_features=256,
        output_features=out_dim,
        calculate_gradient=False,
        gradwise_weight=0.0,
        use_penalty=False,
        energy_mult_natoms=False,
        use_zbl=False,
        lg_on_fly=True,
    )
    torch.manual_seed(seed)
    model = ALIGNNAtomWisePure(config)
    src, dst = batch.edge_index
    # alignn's bond vector of an edge u -> v points from u to v (dos_bench: centre -> neighbour)
    r = -edge_vectors(batch.pos, batch.cell, batch.edge_index, batch.edge_shift, batch.batch)
    counts = torch.bincount(batch.batch, minlength=batch.num_graphs)
    g = TorchGraph(
        num_nodes=int(batch.num_nodes),
        src=src,
        dst=dst,
        ndata={"atom_features": batch.x},
        edata={"r": r},
        batch_num_nodes=counts,
        batch_num_edges=torch.bincount(batch.batch[dst], minlength=batch.num_graphs),
    )
    lg_index = batch.lg_edge_index.long()
    lg = TorchGraph(num_nodes=int(src.numel()), src=lg_index[0], dst=lg_index[1])
    lattice = batch.cell
    y = batch.y.float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def train_step(b: Any = None) -> float:
        model.train()
        out = model((g, lg, lattice))["out"]
        loss = torch.mean((out - y) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    def infer_step(b: Any = None) -> Any:
        model.eval()
        with torch.no_grad():
            return model((g, lg, lattice))["out"]

    return BenchCase(
        name="alignn (PyPI)",
        display="ALIGNNAtomWisePure",
        signature="alignn-peer",
        n_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        n_atoms=int(batch.num_nodes),
        n_edges=int(src.numel()),
        n_graphs=int(batch.num_graphs),
        train_step=train_step,
        infer_step=infer_step,
        model=model,
        batch=batch,
        extra={"line_graph_edges": int(lg_index.shape[1])},
    )


PEER_MODELS = ("d_alignn", "alignn")
"""What a peers worker can measure: dos_bench's D-ALIGNN or the ``alignn`` package's model."""


def alignn_peer_version() -> str:
    """The installed ``alignn`` version, after importing what :func:`build_alignn_peer` needs.

    Raises:
        ImportError: ``alignn`` (or its ``pydantic-settings``) is not importable.
    """
    import alignn
    import alignn.models.alignn_atomwise_pure  # noqa: F401
    import alignn.torch_graph_builder  # noqa: F401

    return str(getattr(alignn, "__version__", "?"))


def peer_worker_command(
    model: str,
    batch_size: int,
    steps: int,
    threads: int,
    cpu_allocator: str = "retain",
    atoms: int = 20,
    warmup: int = 0,
) -> list[str]:
    """The command of one peers worker (:func:`peer_worker`): a fresh interpreter, so that its
    peak RSS is one model's (data, model, optimizer state and steps)."""
    code = "import sys; from dos_bench.bench_utils import peer_worker; sys.exit(peer_worker())"
    return [
        sys.executable, "-c", code, "--model", model, "--batch-size", str(batch_size),
        "--steps", str(steps), "--threads", str(threads), "--cpu-allocator", cpu_allocator,
        "--atoms", str(atoms), "--warmup", str(warmup),
    ]  # fmt: skip


def _status_mb(key: str) -> float:
    """A ``/proc/self/status`` memory figure (``VmRSS``, ``VmHWM``) in MB (0 where missing)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peer_worker(argv: Sequence[str] | None = None) -> int:
    """One model of ``scripts/bench.py peers`` in this process: the ``d_alignn`` batch of
    ``--batch-size`` toy_edos crystals (cached line graph), the model (``d_alignn``: dos_bench's
    D-ALIGNN; ``alignn``: :func:`build_alignn_peer`), then per phase (train, infer) one step
    under FlopCounterMode (the warm-up) and ``--steps`` timed steps. Prints one JSON line:
    parameters, batch sizes, FLOPs and step times per phase, ``rss_built_mb`` (VmRSS before the
    first step) and ``peak_rss_mb`` (VmHWM at the end). ``--warmup`` untimed steps follow the
    FLOP-counted one: a 64-crystal ALIGNN step grows the heap over its first few steps (page
    faults, slow on a VM) before its memory is only reused."""
    parser = argparse.ArgumentParser(prog="peers worker")
    parser.add_argument("--model", choices=PEER_MODELS, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--atoms", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-allocator", choices=("retain", "system"), default="retain")
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    import torch

    from dos_bench.models.gemm import cpu_gemm
    from dos_bench.training.allocator import configure_cpu_allocator

    torch.set_num_threads(args.threads)
    configure_cpu_allocator(args.cpu_allocator)
    with _quiet():
        records = load_records()
        index = pick_materials(records.rs.n_atoms, args.batch_size, args.atoms)
        batch = make_batch(records, index, "d_alignn")
        out_dim = int(records.targets.shape[1])
        if args.model == "alignn":
            case = build_alignn_peer(batch, out_dim)
        else:
            case = build_case("d_alignn", batch, records.targets, out_dim=out_dim)
    atoms = records.rs.n_atoms[index]
    result: dict[str, Any] = {
        "model": args.model,
        "display_name": case.display,
        "params": case.n_params,
        "graphs": case.n_graphs,
        "atoms": case.n_atoms,
        "atoms_per_crystal": [int(atoms.min()), float(atoms.mean()), int(atoms.max())],
        "edges": case.n_edges,
        "line_graph_edges": int(batch.lg_edge_index.shape[1]),
        "record_ids": [str(i) for i in records.rs.ids[index]],
        "out_dim": out_dim,
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "cpu_allocator": args.cpu_allocator,
        "allocator": loaded_allocator(),
        # dense layers: dos_bench's on its cpu_gemm setting; the package's nn.Linear on torch's
        "cpu_gemm": cpu_gemm() if args.model == "d_alignn" else "torch",
        "rss_built_mb": _status_mb("VmRSS"),
    }
    with _quiet():
        for phase, fn in (("train", case.train_step), ("infer", case.infer_step)):
            with frozen(case.model) if phase == "infer" else contextlib.nullcontext():
                flops, first, _ = count_flops(fn)
            for _ in range(args.warmup):
                fn()
            times = []
            for _ in range(args.steps):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            result[phase] = {
                "flops": flops,
                "first_step_s": first,
                "times": times,
                "median": statistics.median(times) if times else float("nan"),
            }
    result["peak_rss_mb"] = _status_mb("VmHWM") or _peak_rss_mb()
    print(json.dumps(result), flush=True)
    return 0


# ------------------------------------------------------------------------------ measuring
@contextlib.contextmanager
def frozen(model: Any) -> Iterator[None]:
    """Parameters temporarily ``requires_grad=False`` (restored after).

    For counting the FLOPs of a ``no_grad`` forward: FlopCounterMode's module tracker registers
    gradient hooks on module inputs that require grad, and fails on a view of a parameter made
    under ``no_grad`` (e.g. ``embedding.weight.expand(...)``: requires grad, no grad_fn) — torch
    2.13 raises "Expected gradient function to be set". Under ``no_grad`` the flag changes no
    computation.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def attention_pairs(n_q: int, n_k: int, causal: bool) -> int:
    """Query-key pairs one head of scaled dot-product attention scores.

    Causal attention (torch's ``is_causal``: query ``i`` sees keys ``j <= i``, top-left aligned
    when ``n_q != n_k``) scores only the triangle, ``sum_i min(i + 1, n_k)`` pairs; otherwise
    every ``n_q * n_k`` pair (a boolean or additive ``attn_mask`` is applied to the full
    square, so it is counted in full).
    """
    if not causal:
        return n_q * n_k
    if n_q <= n_k:
        return n_q * (n_q + 1) // 2
    return n_k * (n_k + 1) // 2 + (n_q - n_k) * n_k


def _cpu_flash_forward_flops(
    query: Sequence[int],
    key: Sequence[int],
    value: Sequence[int],
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *args: Any,
    **kwargs: Any,
) -> int:
    """``aten::_scaled_dot_product_flash_attention_for_cpu``: the two matmuls
    ``S = Q K^T`` and ``O = P V`` over the scored pairs (:func:`attention_pairs`).
    ``query``/``key``/``value`` are shapes ``(..., n, d)`` (FlopCounterMode passes shapes)."""
    batch = math.prod(query[:-2])
    pairs = attention_pairs(query[-2], key[-2], bool(is_causal))
    return 2 * batch * pairs * (query[-1] + value[-1])


def _native_forward_flops(
    query: Sequence[int], key: Sequence[int], value: Sequence[int], key_mask: Any, causal: bool,
    *args: Any, **kwargs: Any,
) -> int:  # fmt: skip
    """``dos_bench::attention`` (:func:`dos_bench.models.heads.attention.attend`): as
    :func:`_cpu_flash_forward_flops`."""
    return _cpu_flash_forward_flops(query, key, value, 0.0, causal)


def _native_backward_flops(
    grad: Sequence[int], query: Sequence[int], key: Sequence[int], value: Sequence[int],
    key_mask: Any, out: Any, lse: Any, causal: bool, *args: Any, **kwargs: Any,
) -> int:  # fmt: skip
    """``dos_bench::attention_backward``: twice the forward, as :func:`_cpu_flash_backward_flops`
    (the recomputed scores not counted)."""
    return 2 * _cpu_flash_forward_flops(query, key, value, 0.0, causal)


def _cpu_flash_backward_flops(
    grad_out: Sequence[int],
    query: Sequence[int],
    key: Sequence[int],
    value: Sequence[int],
    out: Sequence[int],
    logsumexp: Sequence[int],
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *args: Any,
    **kwargs: Any,
) -> int:
    """Its backward: ``dV = P^T dO``, ``dP = dO V^T``, ``dQ = dS K``, ``dK = dS^T Q`` — twice
    the forward (the kernel's recomputation of ``S`` is not counted, as in torch's own
    attention formulas)."""
    return 2 * _cpu_flash_forward_flops(query, key, value, dropout_p, is_causal)


def _weight_grad_flops(a: Sequence[int], b: Sequence[int], *args: Any, **kwargs: Any) -> int:
    """``dos_bench::matmul_tn`` (:func:`dos_bench.models.gemm.matmul_tn`): ``a.T @ b``, as torch
    counts the ``mm`` it replaces."""
    return 2 * a[0] * a[1] * b[1]


def _onednn_linear_flops(
    x: Sequence[int], second: Any, third: Any, fourth: Any, *args: Any, **kwargs: Any
) -> int:
    """``mkldnn::_linear_pointwise`` (dos_bench's dense layers on oneDNN,
    :mod:`dos_bench.models.gemm`): ``x (..., k) @ weight (n, k).T``, as torch counts ``mm``.
    One formula for the op's two overloads (FlopCounterMode looks formulas up by the packet):
    ``(X, W, B, attr, ...)`` and ``.binary`` ``(X, other, W, B, attr)``; the product only."""
    weight = second if isinstance(fourth, str) else third
    return 2 * math.prod(x[:-1]) * x[-1] * weight[0]


def count_flops(fn: Callable[[], Any]) -> tuple[int, float, dict[str, int]]:
    """FLOPs of one call of ``fn`` (matmul/conv/attention ops only: FlopCounterMode has no
    formulas for elementwise, reduction, scatter or index ops), its wall time (the counter adds
    dispatch overhead) and the FLOPs per operator.

    torch 2.13's FlopCounterMode knows the GPU attention kernels but not the fused CPU one
    (``_scaled_dot_product_flash_attention_for_cpu`` and its backward, which it counts as
    zero); those are counted here with the same convention as torch's GPU formulas, except
    that causal attention counts only the scored triangle (:func:`attention_pairs`), not the
    full square. The unfused (math) path is counted through its ``bmm`` calls, in full.
    dos_bench's own C attention (``dos_bench::attention`` and its backward) is counted like the
    fused kernel, so a step gets the same count whichever kernel runs it (padding keys, which
    the C kernel skips, are counted as the fused kernel computes them). Dense layers on oneDNN
    (``cpu_gemm: onednn``, :mod:`dos_bench.models.gemm`) — oneDNN products and the C weight
    gradient ``dos_bench::matmul_tn`` — are counted as the ``mm`` they replace.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import dos_bench.models.gemm  # noqa: F401  (registers torch.ops.dos_bench.matmul_tn)
    import dos_bench.models.heads.attention  # noqa: F401  (registers torch.ops.dos_bench.*)

    aten, ours = torch.ops.aten, torch.ops.dos_bench
    counter = FlopCounterMode(
        display=False,
        custom_mapping={
            aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_forward_flops,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: (_cpu_flash_backward_flops),
            ours.attention: _native_forward_flops,
            ours.attention_backward: _native_backward_flops,
            torch.ops.mkldnn._linear_pointwise: _onednn_linear_flops,
            ours.matmul_tn: _weight_grad_flops,
        },
    )
    t0 = time.perf_counter()
    with counter:
        fn()
    elapsed = time.perf_counter() - t0
    per_op = {
        str(op).removeprefix("aten."): int(n)
        for op, n in counter.get_flop_counts().get("Global", {}).items()
    }
    return int(counter.get_total_flops()), elapsed, per_op


def time_steps(
    fn: Callable[[], Any],
    budget: float,
    min_steps: int,
    max_steps: int,
    first: float,
    long_step: float = float("inf"),
    warmup_time: float = 1.0,
    max_warmup: int = 3,
) -> list[float]:
    """Wall times of repeated calls of ``fn`` after warm-up.

    ``first`` is the duration of a call already made (the warm-up that counted FLOPs); more
    warm-up calls follow while less than ``warmup_time`` s were spent (at most ``max_warmup``
    in all). Then ``clamp(budget / step, min_steps, max_steps)`` timed calls, or a single one
    when the first call took longer than ``long_step`` seconds.
    """
    spent, n_warm, last = first, 1, first
    while spent < warmup_time and n_warm < max_warmup:
        t0 = time.perf_counter()
        fn()
        last = time.perf_counter() - t0
        spent += last
        n_warm += 1
    n = int(min(max_steps, max(min_steps, budget // max(last, 1e-9))))
    if first > long_step:
        n = 1
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def step_stats(times: Sequence[float]) -> dict[str, float]:
    """Median, best, p10, p90, mean, n and a two-cluster split of step times (seconds).

    ``gap``: the largest jump between consecutive sorted times, relative to the median;
    ``bimodal``: that jump exceeds 15 % of the median and both sides hold at least 15 % of the
    steps (two distinct step durations rather than a spread).
    """
    t = np.sort(np.asarray(times, dtype=float))
    out: dict[str, Any] = {
        "n": len(t),
        "median": float(np.median(t)),
        "best": float(t[0]),
        "p10": float(np.percentile(t, 10)),
        "p90": float(np.percentile(t, 90)),
        "mean": float(t.mean()),
        "p90_over_p10": float(np.percentile(t, 90) / np.percentile(t, 10)),
    }
    if len(t) >= 4:
        gaps = np.diff(t)
        k = int(np.argmax(gaps))
        lo, hi = t[: k + 1], t[k + 1 :]
        frac = min(len(lo), len(hi)) / len(t)
        out["gap_over_median"] = float(gaps[k] / out["median"])
        out["clusters"] = {
            "fast": {"n": len(lo), "mean": float(lo.mean())},
            "slow": {"n": len(hi), "mean": float(hi.mean())},
        }
        out["bimodal"] = bool(out["gap_over_median"] > 0.15 and frac >= 0.15)
    else:
        out["bimodal"] = False
    return out


def mm_rates(dtype: str = "fp32", size: int = 2048, repeats: int = 8) -> dict[str, float]:
    """Best rate (FLOP/s) of a product of two ``size``×``size`` matrices, current threads, per
    implementation: ``torch`` (``torch.mm``: MKL for fp32, oneDNN for bf16) and, for fp32 where
    torch has it, ``onednn`` — the product dos_bench's dense layers use under ``cpu_gemm:
    onednn`` (:mod:`dos_bench.models.gemm`; on AMD processors MKL keeps to AVX2)."""
    import torch

    from dos_bench.models import gemm

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(dt)
    b = torch.randn(size, size, generator=g).to(dt)
    products = {"torch": lambda: torch.mm(a, b)}
    if dtype == "fp32" and gemm.onednn_available():
        products["onednn"] = lambda: gemm.onednn_product(a, b)
    rates = {}
    for name, product in products.items():
        product()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - t0)
        rates[name] = 2.0 * size**3 / best
    return rates


def mm_peak(dtype: str = "fp32", size: int = 2048, repeats: int = 8) -> float:
    """The machine's matmul peak for efficiency figures: the best of :func:`mm_rates` (FLOP/s)."""
    return max(mm_rates(dtype, size, repeats).values())


# ------------------------------------------------------------------------------ profiles
_MATMUL = (
    "mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "linear", "_linear_pointwise",
    "_mkl_linear", "mkldnn_linear", "_scaled_dot_product", "_flash_attention", "convolution",
    "conv", "mkldnn_rnn", "_thnn_fused_gru", "gru_cell", "einsum", "tensordot",
)  # fmt: skip
_SCATTER = (
    "index_add", "index_select", "index_put", "_index_put_impl", "index", "scatter", "gather",
    "embedding", "segment", "sort", "argsort", "repeat_interleave", "bincount", "masked_select",
    "nonzero", "unique", "searchsorted", "take", "put_",
)  # fmt: skip


def _kind(op: str) -> str:
    name = op.split("::")[-1].lower()
    if any(name == k or name.startswith(k) for k in _MATMUL):
        return "matmul"
    if any(name == k or name.startswith(k) for k in _SCATTER):
        return "scatter/index"
    if name.startswith(("copy_", "to", "_to_copy", "contiguous", "clone", "cat", "stack")):
        return "copy/cat"
    if name.startswith(("empty", "zeros", "zero_", "fill_", "new_zeros", "ones", "full")):
        return "alloc/fill"
    if "adam" in name or name.startswith("_foreach"):
        return "optimizer"
    return "elementwise/norm/other"


def classify_profile(fn: Callable[[], Any], top: int = 8) -> dict[str, Any]:
    """One profiled call of ``fn``: self CPU time per kind of operator, the unaccounted wall
    time (Python, dispatcher and profiler overhead) and the top operators."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    rows = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    kinds: dict[str, float] = {}
    for e in rows:
        k = _kind(e.key)
        kinds[k] = kinds.get(k, 0.0) + e.self_cpu_time_total / 1e6
    ops_total = sum(kinds.values())
    kinds["python/dispatch (unaccounted)"] = max(0.0, wall - ops_total)
    n_calls = sum(e.count for e in rows)
    ranked = sorted(rows, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {
        "wall_s": wall,
        "seconds": kinds,
        "share": {k: v / wall for k, v in kinds.items()},
        "aten_calls": int(n_calls),
        "top_ops": [
            {
                "op": e.key,
                "kind": _kind(e.key),
                "self_s": e.self_cpu_time_total / 1e6,
                "calls": int(e.count),
            }
            for e in ranked
        ],
    }


# ------------------------------------------------------------------------------ subprocess CLI
def loaded_allocator() -> str:
    """``jemalloc``/``tcmalloc`` when such a library is mapped into this process, else
    ``glibc``."""
    with contextlib.suppress(OSError):
        maps = Path("/proc/self/maps").read_text()
        for lib in ("jemalloc", "tcmalloc", "mimalloc"):
            if lib in maps:
                return lib
    return "glibc"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (``VmHWM``; unlike ``ru_maxrss`` not inherited
    from the parent across ``exec``), MB."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train_steps_cli(args: argparse.Namespace) -> int:
    import torch

    from dos_bench.training.allocator import configure_cpu_allocator

    torch.set_num_threads(args.threads)
    configure_cpu_allocator(args.cpu_allocator)
    with _quiet():
        records = load_records()
        index = pick_materials(records.rs.n_atoms, args.batch_size, args.atoms)
        batch = make_batch(records, index, args.model, args.override)
        case = build_case(
            args.model,
            batch,
            records.targets,
            out_dim=records.targets.shape[1],
            overrides=args.override,
        )
    import resource

    for _ in range(args.warmup):
        case.train_step()
    times, faults = [], []
    for _ in range(args.steps):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        case.train_step()
        times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    result = {
        "model": args.model,
        "overrides": args.override,
        "allocator": loaded_allocator(),
        "cpu_allocator": args.cpu_allocator,
        "ld_preload": os.environ.get("LD_PRELOAD", ""),
        "threads": torch.get_num_threads(),
        "batch_size": case.n_graphs,
        "n_atoms": case.n_atoms,
        "warmup": args.warmup,
        "times": times,
        "median": statistics.median(times),
        "minor_faults_per_step": faults,
        "max_rss_mb": _peak_rss_mb(),
    }
    print(json.dumps(result))
    return 0


def _error_summary(exc: BaseException) -> str:
    """``Type: first line of the message (raised in package/file.py:function)`` of the root
    cause (compiler errors wrap the exception that stopped them and run over many lines)."""
    import traceback

    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"
    frames = traceback.extract_tb(root.__traceback__)
    if frames:
        last = frames[-1]
        where = "/".join(Path(last.filename).parts[-3:])
        text += f" (raised in {where}:{last.name})"
    return text


def _graph_breaks() -> dict[str, int]:
    """Dynamo's graph-break reasons so far, with counts (most frequent first)."""
    from torch._dynamo.utils import counters

    breaks = {str(k).splitlines()[0][:160]: int(v) for k, v in counters["graph_break"].items()}
    return dict(sorted(breaks.items(), key=lambda kv: -kv[1]))


def _compile_steps_cli(args: argparse.Namespace) -> int:
    """Eager training steps, then the same model under ``model.compile(dynamic=True)`` (what
    ``compile: true`` does to a run): step times, compile time, graph breaks or the error."""
    import torch

    from dos_bench.training.allocator import configure_cpu_allocator

    torch.set_num_threads(args.threads)
    configure_cpu_allocator(args.cpu_allocator)
    with _quiet():
        records = load_records()
        index = pick_materials(records.rs.n_atoms, args.batch_size, args.atoms)
        batch = make_batch(records, index, args.model)
        case = build_case(args.model, batch, records.targets, out_dim=records.targets.shape[1])
        # a second batch of another size: dynamic shapes must not recompile per batch
        other = make_batch(records, index[: max(1, len(index) // 2)], args.model)
    result: dict[str, Any] = {"model": args.model, "batch_size": case.n_graphs}

    def timed(n: int, b: Any = None) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            case.train_step(b)
            out.append(time.perf_counter() - t0)
        return out

    with _quiet():
        timed(args.warmup)
        result["eager"] = timed(args.steps)
        stage = "compile"
        try:
            case.model.compile(dynamic=True)
            t0 = time.perf_counter()
            case.train_step()
            result["compile_s"] = time.perf_counter() - t0
            stage = "second batch size"
            t0 = time.perf_counter()
            case.train_step(other)
            result["other_batch_first_s"] = time.perf_counter() - t0
            stage = "run"
            timed(max(0, args.warmup - 1))
            result["compiled"] = timed(args.steps)
            result["graph_breaks"] = _graph_breaks()
        except Exception as exc:  # a model that does not compile is a finding
            result["error"] = _error_summary(exc)
            result["failed_at"] = stage
            result["graph_breaks"] = _graph_breaks()
    print(json.dumps(result))
    return 0


def _step_options(
    p: argparse.ArgumentParser, steps: int, warmup: int, batch_size: int, allocator: str
) -> None:
    """The options every step-timing subcommand shares, with its defaults."""
    p.add_argument("--model", default="graph_network")
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--atoms", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cpu-allocator", choices=("retain", "system"), default=allocator)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dos_bench.bench_utils")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train-steps", help="time training steps of one model; JSON on stdout")
    _step_options(p, steps=20, warmup=2, batch_size=64, allocator="system")
    p.add_argument(
        "--override", action="append", default=[], help="Hydra override of the model config"
    )
    c = sub.add_parser("compile-steps", help="eager vs torch.compile training steps; JSON")
    _step_options(c, steps=3, warmup=1, batch_size=16, allocator="retain")
    args = parser.parse_args(argv)
    if args.cmd == "compile-steps":
        return _compile_steps_cli(args)
    return _train_steps_cli(args)


if __name__ == "__main__":
    sys.exit(main())
