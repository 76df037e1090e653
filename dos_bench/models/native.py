"""C kernels for the hot loops of the models, compiled on first use and loaded with ctypes.

- ALIGNN's edge-gated aggregation (``csrc/gated_aggregate.c``, used by
  :mod:`dos_bench.models.encoders.alignn`) walks the ``(T, d)`` line-graph rows once where the
  torch version needs a dozen passes and temporaries; on a 2-core CPU this is most of the
  difference between D-ALIGNN and the ``alignn`` package (``make bench``, section ``peers``).
- Scaled dot-product attention (``csrc/attention.c``, used by
  :func:`dos_bench.models.heads.attention.attend`) scores only the query-key pairs a causal
  mask allows, in the forward *and* the backward; torch 2.13's fused CPU kernel skips them in
  the forward only, so Xtal2DoS's masked decoder self-attention trains 1.5x faster
  (``make bench``, section ``attention``).
- Weight gradients of dense layers (``csrc/gemm.c``, used by
  :func:`dos_bench.models.gemm.matmul_tn`): ``dW = dYᵀ X`` summed over the rows without
  transposing either operand.

The matrix products of the last two run on one register-blocked kernel, ``csrc/microgemm.h``
(AVX-512 where the CPU has it: torch's MKL runs its AVX2 code on AMD processors).

No build step and no torch headers: the first process that needs a kernel compiles the C file with
the system C compiler (``$CC``, else ``cc``; about a second) into a cache directory —
``$DOS_BENCH_KERNEL_DIR``, else ``$XDG_CACHE_HOME/dos_bench/kernels``, else
``~/.cache/dos_bench/kernels`` — under a name that hashes the source and the headers beside it, the
flags, the compiler and the CPU's instruction sets (``-march=native``: a cache shared by different
machines keeps one library per CPU type). The library is written to a temporary file and renamed,
so processes compiling at the same time (DDP) never load half a file. Without a compiler, or if
compiling fails, :func:`gated_library` / :func:`attention_library` / :func:`gemm_library` return
``None`` once with one warning, and the models use their torch (or oneDNN) path (same results,
slower).

Numerics: ``-O3 -march=native -fno-math-errno -fno-trapping-math``; ``exp`` is
``csrc/vexp.h``'s inlined polynomial (under one float32 ulp; 0 below -87, where the true value
would be subnormal); no ``-ffast-math`` (NaN and infinity propagate as in torch, so a non-finite
loss still stops the run). Results agree with the torch path to float32 rounding
(tests/models/test_native_kernels.py).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["KernelUnavailable", "attention_library", "cache_dir", "gated_library", "gemm_library"]

_SRC = Path(__file__).with_name("csrc") / "gated_aggregate.c"
_ATTENTION_SRC = _SRC.with_name("attention.c")
_GEMM_SRC = _SRC.with_name("gemm.c")
_CFLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-fPIC"]
_LDFLAGS = ["-shared", "-fopenmp", "-lm"]
_I64, _F32 = ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_float)
_F64 = ctypes.POINTER(ctypes.c_double)


class KernelUnavailable(RuntimeError):
    """A C kernel was required (``kernel: native``) but cannot be built here."""


def cache_dir() -> Path:
    """Where compiled kernels are kept (see the module docstring)."""
    env = os.environ.get("DOS_BENCH_KERNEL_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dos_bench" / "kernels"


def _cpu_signature() -> str:
    """The CPU's instruction-set flags (``-march=native`` compiles for exactly these)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def _build(src: Path, cc: str) -> Path:
    """Compile ``src`` into the cache (if not there yet) and return the library's path."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    headers = [h.read_text() for h in sorted(src.parent.glob("*.h"))]  # what it may include
    key = hashlib.sha256(
        "\0".join(
            [src.read_text(), *headers, *_CFLAGS, *_LDFLAGS, version.stdout, _cpu_signature()]
        ).encode()
    ).hexdigest()[:16]
    out_dir = cache_dir()
    lib = out_dir / f"{src.stem}-{key}.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".build-") as tmp:
        obj, tmp_lib = Path(tmp) / "k.o", Path(tmp) / "k.so"
        for cmd in (
            [cc, *_CFLAGS, "-c", str(src), "-o", str(obj)],
            [cc, str(obj), *_LDFLAGS, "-o", str(tmp_lib)],
        ):
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                last = (res.stderr.strip().splitlines() or ["no message"])[-1]
                raise OSError(f"`{' '.join(cmd[:2])} ...` failed: {last}")
        os.replace(tmp_lib, lib)
    return lib


def _load(src: Path) -> ctypes.CDLL:
    """Compile ``src`` (or take it from the cache) and load it; ``OSError`` if that fails."""
    cc = _compiler()
    if cc is None:
        raise OSError("no C compiler (set $CC or install gcc)")
    return ctypes.CDLL(str(_build(src, cc)))


def _library(src: Path, unavailable: str, signatures: dict[str, list]) -> ctypes.CDLL | None:
    """Compile and load ``src`` and declare its functions (``int``-returning, ``signatures``:
    name -> argtypes); ``None`` with one warning (``unavailable``, then why) if that fails."""
    try:
        lib = _load(src)
    except OSError as exc:
        log.warning("%s: %s", unavailable, exc)
        return None
    for name, argtypes in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return lib


@functools.cache
def gated_library() -> ctypes.CDLL | None:
    """The compiled edge-gated aggregation kernels, or ``None`` (one warning) if no C compiler
    can build them here."""
    i64, f32, f64, n = _I64, _F32, _F64, ctypes.c_int64
    signatures = {
        "dos_csr_from_sorted": [i64, i64, n, n, n, i64],
        "dos_gated_forward": [f32, f32, f32, f32, f32, i64, i64, n, n, ctypes.c_float, f32, f32,
                              f64, ctypes.c_int],
        "dos_bn_silu_residual": [f32, f32, f32, f32, n, n, f32, ctypes.c_int],
        "dos_bn_silu_grad_sums": [f32, f32, f32, f32, f32, f32, n, n, f64, f32, ctypes.c_int],
        "dos_gated_backward": [f32, f32, f32, f32, f32, f32, f32, i64, i64, n, n, n, f32, f32,
                               f32, f32, f32, ctypes.c_int],
    }  # fmt: skip
    return _library(
        _SRC, "C kernels unavailable, ALIGNN uses its pure-torch path (slower)", signatures
    )


@functools.cache
def gemm_library() -> ctypes.CDLL | None:
    """The compiled weight-gradient product (``csrc/gemm.c``), or ``None`` (one warning) if no C
    compiler can build it here (dense layers then sum their weight gradients on oneDNN)."""
    n, p = ctypes.c_int64, ctypes.c_void_p
    return _library(
        _GEMM_SRC,
        "C weight-gradient kernel unavailable, dense layers use oneDNN",
        {"dos_gemm_tn": [n, n, n, p, n, p, n, p, n, p, ctypes.c_int]},
    )


@functools.cache
def attention_library() -> ctypes.CDLL | None:
    """The compiled attention kernels (``csrc/attention.c``), or ``None`` (one warning) if they
    cannot be built here."""
    n, f, i, p = ctypes.c_int64, ctypes.c_float, ctypes.c_int, ctypes.c_void_p
    return _library(
        _ATTENTION_SRC,
        "C attention kernel unavailable, attention uses torch's scaled_dot_product_attention "
        "(slower under a causal mask)",
        {
            "dos_attn_forward": [p, p, p, p, *[n] * 18, f, i, p, p, i],
            "dos_attn_backward": [p] * 7 + [n] * 21 + [f, i, p, p, p] + [n] * 6 + [i],
        },
    )
