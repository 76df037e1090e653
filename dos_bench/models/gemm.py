"""Dense layers on the CPU's fastest fp32 matrix product (``cpu_gemm``).

torch multiplies fp32 matrices on the CPU with MKL's ``sgemm``.  MKL chooses its code path by
processor vendor, and on AMD processors it runs its AVX2 kernels even where the core has
AVX-512: on the benchmark machine (AMD EPYC, Zen 5) ``torch.mm`` of two 2048² matrices reaches
~210 GFLOP/s on two cores while oneDNN — also shipped inside torch, and dispatching by the
instruction sets the processor reports — reaches ~480.  Every linear layer of an encoder or a
head is such a product; on ALIGNN they were 80 % of a training step.

This module routes them through oneDNN (``torch.ops.mkldnn._linear_pointwise``) with an
explicit backward:

* forward ``y = x Wᵀ + b`` and input gradient ``dx = dy W``: one oneDNN product each
  (2.2–2.4× MKL on ALIGNN's and the transformers' shapes here);
* weight gradient ``dW = dyᵀ x``: a product over the rows (the long dimension), which oneDNN
  only takes with both operands transposed. Where a C compiler exists it runs on dos_bench's
  own kernel (``csrc/gemm.c``, op ``dos_bench::matmul_tn``), which reads ``dy`` in place:
  405-470 GFLOP/s on Xtal2DoS's shapes and 337 on ALIGNN's 256 x 256 (two Zen 5 cores),
  against 315-386 and 213 for oneDNN in blocks of :data:`_WEIGHT_GRAD_ROWS` rows (the
  fallback) and ~210 for MKL. A side narrower than :data:`_NARROW` features stays on MKL;
* bias gradient ``Σ dy``: summed inside the C weight-gradient kernel where it runs with ``dy``
  read in place, else by torch.

Products smaller than :data:`_SMALL` multiply-adds stay on ``torch`` (oneDNN's call overhead,
~10 µs, is larger than the gain), as do everything off the CPU, other dtypes, autocast and
``torch.compile`` tracing (Inductor makes its own choice), and double backward (the explicit
backward is then replaced by torch's differentiable ops).  Results agree with torch's to fp32
rounding (different summation order), not bit for bit.

The backend is one process-wide setting, like torch's own ``torch.backends`` flags:
``cpu_gemm: onednn`` (default) or ``torch`` in ``conf/train.yaml``, applied by
:func:`dos_bench.training.allocator.configure_cpu`; :func:`set_cpu_gemm` from Python.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dos_bench.io import ConfigError
from dos_bench.models import native

__all__ = [
    "BACKENDS", "Linear", "adopt", "cpu_gemm", "linear", "matmul_nt", "matmul_tn",
    "onednn_available", "onednn_product", "set_cpu_gemm",
]  # fmt: skip

BACKENDS = ("onednn", "torch")
_SMALL = 1 << 21  # multiply-adds below which a product stays on torch
_NARROW = 128  # weight gradients with a side narrower than this stay on torch (MKL)
_WEIGHT_GRAD_ROWS = 1024  # rows per block of the weight-gradient product on oneDNN
_VECTOR = 16  # the C weight-gradient kernel wants one side a multiple of this (csrc/gemm.c)

_backend = "onednn"


def set_cpu_gemm(name: str) -> None:
    """Choose the fp32 CPU matrix product of dense layers: ``"onednn"`` or ``"torch"``."""
    global _backend
    if name not in BACKENDS:
        raise ConfigError(f"cpu_gemm must be one of {BACKENDS}, got {name!r}")
    _backend = name


def cpu_gemm() -> str:
    """The current setting (``"onednn"`` or ``"torch"``)."""
    return _backend


def onednn_available() -> bool:
    """Whether this torch has oneDNN's dense product (x86 and ARM wheels do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_AVAILABLE = onednn_available()


def _use_onednn(x: Tensor, weight: Tensor) -> bool:
    """Whether a product of ``x`` with ``weight`` goes to oneDNN (see the module docstring)."""
    return (
        _backend == "onednn"
        and _AVAILABLE
        and torch.backends.mkldnn.enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and weight.dim() == 2
        and x.shape[-1] == weight.shape[1]  # else torch's own error message
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and x.numel() * weight.shape[0] >= _SMALL
    )


def _onednn(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T (+ bias)`` on oneDNN (``x`` with any leading dimensions).

    ``weight`` must be stored row- or column-major: a column slice of a larger weight (the
    heads split one layer's weight to skip a concatenation) took oneDNN ~0.8 s for a 300×512
    by 512×512 product here, against 0.4 ms once copied; such a weight is copied first."""
    if not (weight.is_contiguous() or weight.t().is_contiguous()):
        weight = weight.contiguous()
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def onednn_product(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` of 2-D fp32 CPU tensors on oneDNN, whatever the size (for benchmarks)."""
    return _onednn(a, b.t())


def matmul_nt(x: Tensor, weight: Tensor, add: Tensor | None = None) -> Tensor:
    """``x @ weight.T (+ add)`` of 2-D tensors (no autograd): oneDNN where :func:`cpu_gemm`
    allows (``add`` summed into the fresh product), else ``torch.mm``/``torch.addmm``."""
    if _use_onednn(x, weight):
        out = _onednn(x, weight)
        return out if add is None else out.add_(add)
    return x @ weight.t() if add is None else torch.addmm(add, x, weight.t())


@torch.library.custom_op("dos_bench::matmul_tn", mutates_args=())
def _tn_kernel(a: Tensor, b: Tensor, column_sums: bool) -> tuple[Tensor, Tensor]:
    """``a.T @ b`` on ``csrc/gemm.c`` (2-D fp32 CPU, rows contiguous, ``b``'s width a multiple
    of :data:`_VECTOR`), and ``a.sum(0)`` if ``column_sums`` (else an empty tensor). A
    registered op so that profilers and FLOP counters see it."""
    out = a.new_empty(a.shape[1], b.shape[1])
    sums = a.new_empty(a.shape[1] if column_sums else 0)
    status = native.gemm_library().dos_gemm_tn(
        out.shape[0], out.shape[1], a.shape[0], a.data_ptr(), a.stride(0), b.data_ptr(),
        b.stride(0), out.data_ptr(), out.stride(0), sums.data_ptr() if column_sums else None,
        torch.get_num_threads(),
    )  # fmt: skip
    if status:
        raise RuntimeError(f"C weight-gradient kernel failed (code {status}: 3 = out of memory)")
    return out, sums


@_tn_kernel.register_fake
def _(a, b, column_sums):
    return a.new_empty(a.shape[1], b.shape[1]), a.new_empty(a.shape[1] if column_sums else 0)


def _native_tn(dy: Tensor, x: Tensor, bias: bool) -> tuple[Tensor, Tensor | None] | None:
    """``dy.T @ x`` (and ``dy.sum(0)`` if ``bias``, when it comes for free) on the C kernel of
    ``csrc/gemm.c``, or ``None`` where it does not apply (no compiler, rows not contiguous,
    neither width a multiple of :data:`_VECTOR`).

    The kernel keeps the output's columns in vector registers, so ``x``'s width must be a
    multiple of :data:`_VECTOR`; if only ``dy``'s is, ``(x.T @ dy).T`` is computed instead
    (and the bias sum is left to the caller)."""
    if native.gemm_library() is None or dy.stride(1) != 1 or x.stride(1) != 1:
        return None
    if x.shape[1] % _VECTOR == 0:
        dw, db = _tn_kernel(dy, x, bias)
        return dw, db if bias else None
    if dy.shape[1] % _VECTOR == 0:
        return _tn_kernel(x, dy, False)[0].t().contiguous(), None
    return None


def _weight_grads(dy: Tensor, x: Tensor, bias: bool) -> tuple[Tensor, Tensor | None]:
    """``dy.T @ x`` and, if ``bias``, ``dy.sum(0)``: see :func:`matmul_tn`."""
    rows, n_out = dy.shape
    n_in = x.shape[1]
    if min(n_out, n_in) < _NARROW or not _use_onednn(dy.t(), x.t()):
        dw = dy.t() @ x
    elif (native_out := _native_tn(dy, x, bias)) is not None:
        dw, db = native_out
        if db is not None or not bias:
            return dw, db
    else:
        step = _WEIGHT_GRAD_ROWS
        dw = _onednn(dy[:step].t(), x[:step].t())
        for start in range(step, rows, step):
            dw.add_(_onednn(dy[start : start + step].t(), x[start : start + step].t()))
    return dw, dy.sum(0) if bias else None


def matmul_tn(dy: Tensor, x: Tensor) -> Tensor:
    """``dy.T @ x`` of two 2-D tensors with the same rows — a weight gradient — (no autograd).

    On the C kernel of ``csrc/gemm.c`` (:func:`_native_tn`), else summed over blocks of
    :data:`_WEIGHT_GRAD_ROWS` rows on oneDNN; on torch when a side is narrower than
    :data:`_NARROW` or the product is small."""
    return _weight_grads(dy, x, False)[0]


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` with forward, input and weight gradients on oneDNN (module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        # oneDNN takes any leading dims; the output is a fresh tensor, not a view (callers may
        # modify it in place, which autograd forbids on views made inside a Function)
        return _onednn(x, weight, bias)

    @staticmethod
    def backward(ctx, dy: Tensor):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1])
        differentiable = torch.is_grad_enabled()  # double backward: torch's own ops
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = dy @ weight if differentiable else _onednn(dy, weight.t())
        bias = ctx.has_bias and ctx.needs_input_grad[2]
        if ctx.needs_input_grad[1] and not differentiable:
            dw, db = _weight_grads(dy2, x2, bias)  # the bias sum inside the C kernel
        elif ctx.needs_input_grad[1]:
            dw = dy2.t() @ x2
        if bias and db is None:
            db = dy2.sum(0)
        return dx, dw, db


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear(x, weight, bias)`` on the product chosen by :func:`set_cpu_gemm`."""
    if x.dim() >= 1 and _use_onednn(x, weight):
        return _OneDNNLinear.apply(x, weight, bias)
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, same state dict) whose product runs on :func:`linear`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear(x, self.weight, self.bias)


def adopt(layer: nn.Module) -> Linear:
    """A :class:`Linear` holding ``layer``'s own ``weight`` and ``bias`` Parameters, for a module
    that computes ``F.linear(x, weight, bias)`` but was built by a library (PyG's
    ``torch_geometric.nn.Linear`` inside ``TransformerConv``): same initialisation, same state
    dict keys, the product on :func:`linear`."""
    weight = layer.weight
    lazy = isinstance(weight, nn.parameter.UninitializedParameter)  # PyG's in_channels=-1
    if lazy or not isinstance(weight, nn.Parameter) or weight.dim() != 2:
        raise TypeError(f"cannot adopt {type(layer).__name__}: no materialised 2-D weight")
    new = Linear.__new__(Linear)
    nn.Module.__init__(new)
    new.out_features, new.in_features = weight.shape
    new.weight = weight
    new.bias = getattr(layer, "bias", None)
    return new
