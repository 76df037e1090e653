"""``dos_bench.bench_utils.count_flops``: the fused CPU attention kernel is counted (torch's
FlopCounterMode alone counts it as zero), with the same total as the unfused path it replaces
and only the scored triangle for causal attention — the figures behind ``make bench``'s
"share of the matmul peak"."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from dos_bench.bench_utils import attention_pairs, count_flops


def _attention_step(backend: SDPBackend, n_q: int, n_k: int, causal: bool, mask: bool):
    """One forward + backward of multi-head attention under ``backend``."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 3, n_q, 8, generator=g, requires_grad=True)
    k = torch.randn(2, 3, n_k, 8, generator=g, requires_grad=True)
    v = torch.randn(2, 3, n_k, 8, generator=g, requires_grad=True)
    attn_mask = None
    if mask:
        attn_mask = torch.rand(2, 1, 1, n_k, generator=g) > 0.3
        attn_mask[..., 0] = True

    def step() -> None:
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal)
        out.sum().backward()

    return step


@pytest.mark.parametrize("mask", [False, True])
@pytest.mark.parametrize(("n_q", "n_k"), [(10, 10), (7, 12)])
def test_fused_attention_counts_what_the_unfused_path_counts(n_q: int, n_k: int, mask: bool):
    fused, _, fused_ops = count_flops(
        _attention_step(SDPBackend.FLASH_ATTENTION, n_q, n_k, False, mask)
    )
    math, _, math_ops = count_flops(_attention_step(SDPBackend.MATH, n_q, n_k, False, mask))
    assert "_scaled_dot_product_flash_attention_for_cpu" in fused_ops  # the fused kernel ran
    assert "bmm" in math_ops and not any("flash" in op for op in math_ops)
    # forward Q K^T and P V: 2 * B*H * pairs * (d_k + d_v); backward four matmuls, twice that
    expected = 3 * 2 * (2 * 3) * n_q * n_k * (8 + 8)
    assert fused == math == expected


@pytest.mark.parametrize(("n_q", "n_k"), [(10, 10), (12, 7), (5, 9)])
def test_causal_attention_counts_the_scored_triangle(n_q: int, n_k: int):
    pairs = int(torch.ones(n_q, n_k, dtype=torch.bool).tril().sum())  # torch's is_causal mask
    assert attention_pairs(n_q, n_k, causal=True) == pairs
    assert attention_pairs(n_q, n_k, causal=False) == n_q * n_k
    total, _, ops = count_flops(_attention_step(SDPBackend.FLASH_ATTENTION, n_q, n_k, True, False))
    assert total == 3 * 2 * (2 * 3) * pairs * (8 + 8)
    assert (
        ops["_scaled_dot_product_flash_attention_for_cpu_backward"]
        == 2 * ops["_scaled_dot_product_flash_attention_for_cpu"]
    )


@pytest.mark.parametrize(("causal", "masked"), [(True, False), (False, True)])
def test_the_c_attention_kernel_is_counted_like_the_fused_one(causal: bool, masked: bool):
    """A step gets the same FLOP count whichever attention kernel runs it (``kernel: auto`` runs
    dos_bench's ``dos_bench::attention`` where a C compiler is found). Causal *and* key-masked
    attention (no head uses it) would differ: torch's path then takes one combined mask and is
    counted in full, the C kernel's as its triangle."""
    from dos_bench.models import native
    from dos_bench.models.heads.attention import attend

    if native.attention_library() is None:
        pytest.skip("needs a C compiler (the C kernel)")
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 11, 8, generator=g, requires_grad=True) for _ in range(3))
    key_mask = torch.ones(2, 11, dtype=torch.bool)
    key_mask[1, 6:] = False

    def step(kernel: str):
        def run() -> None:
            m = key_mask if masked else None
            attend(q, k, v, key_mask=m, causal=causal, kernel=kernel).sum().backward()

        return run

    ours, _, ours_ops = count_flops(step("auto"))
    fused, _, fused_ops = count_flops(step("torch"))
    assert set(ours_ops) == {"dos_bench.attention", "dos_bench.attention_backward"}
    assert ours == fused > 0


def test_dense_layers_on_onednn_count_as_the_mm_they_replace() -> None:
    """``cpu_gemm: onednn`` runs dense layers as ``mkldnn::_linear_pointwise`` (forward, input
    gradient) and ``dos_bench::matmul_tn`` (weight gradient; oneDNN row blocks without a C
    compiler); the count equals torch's for the same step, so the peers' GFLOP/step and the
    models' efficiency do not depend on the setting."""
    from dos_bench.models import gemm, native

    if not gemm.onednn_available():
        pytest.skip("torch built without oneDNN")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 256, generator=g, requires_grad=True)
    layers = torch.nn.Sequential(gemm.Linear(256, 512), torch.nn.ReLU(), gemm.Linear(512, 200))

    def step() -> None:
        layers(x).sum().backward()

    before = gemm.cpu_gemm()
    counts = {}
    try:
        for name in ("onednn", "torch"):
            gemm.set_cpu_gemm(name)
            counts[name] = count_flops(step)
    finally:
        gemm.set_cpu_gemm(before)
    assert counts["onednn"][0] == counts["torch"][0] == 3 * 2 * 3000 * (256 * 512 + 512 * 200)
    weight_grads = {"dos_bench.matmul_tn"} if native.gemm_library() is not None else set()
    assert set(counts["onednn"][2]) == {"mkldnn._linear_pointwise"} | weight_grads
    assert "mkldnn._linear_pointwise" not in counts["torch"][2]
