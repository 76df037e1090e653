"""CPU settings of a training process: threads, the memory-allocator policy (``cpu_allocator``)
and the fp32 matrix product of dense layers (``cpu_gemm``, see :mod:`dos_bench.models.gemm`).

On CPU, PyTorch takes every tensor's memory from the C library's ``malloc``. glibc serves blocks
above 32 MB with a fresh ``mmap`` and returns them to the kernel on ``free``, so a model whose
activations are large (ALIGNN's line graph: ~350k bond pairs × 256 features = 360 MB per tensor
for a batch of 64 crystals) page-faults through every one of those tensors again at every step.
Measured on one ALIGNN edge-gated convolution (forward + backward, 2 cores): 4.5 s with glibc's
defaults, 1.6–1.7 s when freed memory is kept by the process (``make bench``, allocator section).

``retain`` (the default) applies the same policy a GPU caching allocator has: freed memory stays
with the process and is reused, never handed back to the kernel. It sets, at run time through
``mallopt``, ``M_MMAP_MAX = 0`` (large blocks come from the heap, not from ``mmap``) and
``M_TRIM_THRESHOLD = -1`` (the heap is never trimmed; mallopt(3)). The largest positive threshold,
2³¹ − 1, is not enough: a 64-crystal ALIGNN step frees more than 2 GB at the top of the heap at
once, glibc then hands it back and the next step faults it in again (measured on the alignn
package's step in ``make bench``'s peers section: 10.4-15.5 s per step with 2³¹ − 1, 9.2-9.5 s
with -1). The cost: the process's resident memory stays at its peak instead of shrinking between
steps. ``system`` leaves the C library alone.
Where glibc is not the allocator (macOS, musl, or jemalloc/tcmalloc preloaded with
``LD_PRELOAD``) ``retain`` changes nothing and says so in the log.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from collections.abc import Mapping
from typing import Any

from dos_bench.io import ConfigError

log = logging.getLogger(__name__)

__all__ = ["MODES", "configure_cpu", "configure_cpu_allocator"]

MODES = ("retain", "system")
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_APPLIED: str | None = None


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or "malloc" in os.environ.get("LD_PRELOAD", ""):
        return None
    if not platform.libc_ver()[0].startswith("glibc"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def configure_cpu_allocator(mode: str = "retain") -> bool:
    """Apply the allocator policy ``mode`` to this process (once; later calls are no-ops).

    Args:
        mode: ``"retain"`` (keep freed memory for reuse) or ``"system"`` (C-library defaults).

    Returns:
        ``True`` when the glibc settings were applied by this call.

    Raises:
        ConfigError: an unknown ``mode``.
    """
    global _APPLIED
    if mode not in MODES:
        raise ConfigError(f"cpu_allocator must be one of {MODES}, got {mode!r}")
    if mode == "system" or _APPLIED == mode:
        return False
    libc = _glibc()
    if libc is None:
        log.info("cpu_allocator=retain: not glibc malloc here (or one is preloaded); unchanged")
        return False
    ok = bool(libc.mallopt(_M_MMAP_MAX, ctypes.c_int(0))) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(-1))
    )
    if ok:
        _APPLIED = mode
        log.debug("cpu_allocator=retain: glibc keeps freed memory (M_MMAP_MAX=0, no trim)")
    else:
        log.warning("cpu_allocator=retain: glibc mallopt refused the settings; unchanged")
    return ok


def release_free_memory() -> bool:
    """Hand the memory glibc keeps for reuse back to the system (``malloc_trim(0)``), e.g.
    between the models of a benchmark that runs them one after another in one process; with
    ``cpu_allocator=retain`` it is otherwise kept until the process ends. Returns ``True`` when
    glibc released some."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None and hasattr(libc, "malloc_trim") else False


def configure_cpu(cfg: Mapping[str, Any]) -> None:
    """A training process's CPU settings from its run config (``conf/train.yaml``):
    ``num_threads`` torch threads (``null``: torch's default), ``cpu_allocator``
    (:func:`configure_cpu_allocator`, default ``retain``) and ``cpu_gemm``, the fp32 matrix
    product of dense layers (:func:`dos_bench.models.gemm.set_cpu_gemm`, default ``onednn``)."""
    import torch

    from dos_bench.models.gemm import set_cpu_gemm

    set_cpu_gemm(cfg.get("cpu_gemm", "onednn"))
    torch.set_num_threads(int(cfg.get("num_threads") or torch.get_num_threads()))
    configure_cpu_allocator(cfg.get("cpu_allocator", "retain"))
