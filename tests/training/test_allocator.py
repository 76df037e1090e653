"""cpu_allocator: with `retain`, a training step stops page-faulting its large tensors in again.

The workload is one ALIGNN edge-gated convolution (forward + backward) on a line-graph-sized
edge set: its 60 MB activations are above glibc's 32 MB mmap limit, the case the policy is for.
Page faults are counted (``ru_minflt``), not timed.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from dos_bench.io import ConfigError
from dos_bench.training.allocator import configure_cpu_allocator

PROBE = """
import json, resource, sys
import torch
from dos_bench.training.allocator import configure_cpu_allocator
from dos_bench.models.encoders.alignn import EdgeGatedConv
applied = configure_cpu_allocator(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(1)
n, t, d = 4000, 60000, 256
h = torch.randn(n, d, requires_grad=True)
e = torch.randn(t, d, requires_grad=True)
edges = torch.stack([torch.randint(0, n, (t,)), torch.randint(0, n, (t,)).sort().values])
conv = EdgeGatedConv(d).train()
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    h_out, e_out = conv(h, e, edges)
    (h_out.sum() + e_out.sum()).backward()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _probes(*modes: str) -> list[dict]:
    """One probe subprocess per mode, run side by side (one thread each; page faults are
    counted per process, so running together does not mix them)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE, mode],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in modes
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.skipif(
    platform.system() != "Linux" or not platform.libc_ver()[0].startswith("glibc"),
    reason="the policy acts on glibc malloc only",
)
def test_retain_stops_steps_from_faulting_their_memory_in_again():
    system, retain = _probes("system", "retain")
    assert not system["applied"] and retain["applied"]
    steady_system, steady_retain = system["faults"][2:], retain["faults"][2:]
    # glibc defaults: every step maps and touches its large tensors afresh (60 MB = 15k pages)
    assert min(steady_system) > 50_000, system
    # retain: after the warm-up the heap is reused; an occasional step still grows it by a
    # tensor or two (measured: 0-30k faults, against ~316k), so compare the means
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean(steady_retain) < mean(steady_system) / 5, (retain, system)


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="cpu_allocator"):
        configure_cpu_allocator("jemalloc")


TRIM_PROBE = """
import json, sys
import torch
from dos_bench.training.allocator import configure_cpu_allocator, release_free_memory

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

configure_cpu_allocator("retain")
# a second step's pattern: 2.4 GB of activations freed, then 0.4 GB that stays (as a batch
# does) and 2.4 GB above it again, all from the heap (no mmap under retain)
x = torch.ones(600, 1024, 1024)
del x
y = torch.ones(100, 1024, 1024)
x = torch.ones(600, 1024, 1024)
held = rss_mb()
del x
kept = rss_mb()
del y
released = release_free_memory()
print(json.dumps({"held": held, "kept": kept, "after": rss_mb(), "released": released}))
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or not platform.libc_ver()[0].startswith("glibc"),
    reason="the policy acts on glibc malloc only",
)
def test_release_free_memory_hands_retained_memory_back():
    # make bench runs models one after another in one process and then starts subprocesses:
    # what retain kept must go back to the system in between, or they run out of memory
    out = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    # retain: freeing the tensor keeps its pages, also above 2 GB — glibc trims a free heap top
    # larger than M_TRIM_THRESHOLD, whose int setting tops out at 2^31 - 1 (-1 turns trimming
    # off; a 64-crystal ALIGNN step frees more than 2 GB at once)
    assert r["kept"] > r["held"] - 100, r
    assert r["released"] and r["after"] < r["kept"] - 1000, r


def test_configure_cpu_applies_the_run_config() -> None:
    """``num_threads``, ``cpu_allocator`` and ``cpu_gemm`` of conf/train.yaml reach the process
    (dos-train calls this before preparing data); a bad ``cpu_gemm`` names the key."""
    import torch

    from dos_bench.io import ConfigError
    from dos_bench.models import gemm
    from dos_bench.training.allocator import configure_cpu

    threads, before = torch.get_num_threads(), gemm.cpu_gemm()
    try:
        configure_cpu({"num_threads": 1, "cpu_allocator": "system", "cpu_gemm": "torch"})
        assert torch.get_num_threads() == 1 and gemm.cpu_gemm() == "torch"
        configure_cpu({"num_threads": None})  # the defaults
        assert gemm.cpu_gemm() == "onednn"
        with pytest.raises(ConfigError, match="cpu_gemm must be one of"):
            configure_cpu({"cpu_gemm": "mkl"})
    finally:
        torch.set_num_threads(threads)
        gemm.set_cpu_gemm(before)
