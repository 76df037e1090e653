"""Spectral losses on hand-computed cases, and Mat2Spec's loss components."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dos_bench.config import CONF_DIR
from dos_bench.losses import (
    BregmanLoss,
    KLLoss,
    Mat2SpecLoss,
    RMSELoss,
    WDLoss,
    contrastive_loss,
    gaussian_kl,
    pair_counts,
    pairwise_gaussian_kl,
)
from dos_bench.models.heads.mat2spec import Mat2SpecHead
from dos_bench.models.model import EncoderOutput

CONF = CONF_DIR / "loss"


def test_rmse_is_per_sample_then_averaged() -> None:
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    target = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 0.0, 0.0]])
    # sample 0: rmse 0; sample 1: sqrt((4 + 4) / 4) = sqrt(2); mean = sqrt(2) / 2
    assert RMSELoss(eps=0.0)(pred, target).item() == pytest.approx(math.sqrt(2) / 2)
    # differs from the global RMSE sqrt(8 / 8) = 1
    assert RMSELoss()(pred, target).item() != pytest.approx(1.0)


def test_rmse_gradient_finite_at_perfect_fit() -> None:
    pred = torch.ones(2, 3, requires_grad=True)
    RMSELoss()(pred, torch.ones(2, 3)).backward()
    assert torch.isfinite(pred.grad).all()


def test_kl_identical_is_zero_and_two_bin_case() -> None:
    p = torch.softmax(torch.randn(4, 9), -1)
    assert KLLoss()(p, p).item() == pytest.approx(0.0, abs=1e-6)
    # KL([0.5, 0.5] || [0.25, 0.75]) = 0.5 ln 2 + 0.5 ln(2/3)
    t, q = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.25, 0.75]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert KLLoss()(q, t).item() == pytest.approx(expected, abs=1e-6)
    # the target is sum-normalised, the prediction renormalised defensively
    assert KLLoss()(2 * q, 7 * t).item() == pytest.approx(expected, abs=1e-6)


def test_wd_two_deltas_three_bins_apart() -> None:
    a, b = torch.zeros(1, 10), torch.zeros(1, 10)
    a[0, 2], b[0, 5] = 1.0, 4.0  # normalisation makes the height irrelevant
    assert WDLoss()(a, b).item() == pytest.approx(3.0)
    assert WDLoss(spacing=0.0625)(b, a).item() == pytest.approx(3 * 0.0625)
    assert WDLoss()(a, a).item() == pytest.approx(0.0)


def test_wd_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    p, q = torch.rand(3, 20), torch.rand(3, 20)
    grid = range(20)
    ref = (
        sum(
            scipy_stats.wasserstein_distance(grid, grid, q[i].numpy(), p[i].numpy())
            for i in range(3)
        )
        / 3
    )
    assert WDLoss()(q, p).item() == pytest.approx(ref, rel=1e-5)


def test_bregman_equals_kl_on_normalised_inputs() -> None:
    torch.manual_seed(0)
    p, q = torch.softmax(torch.randn(5, 11), -1), torch.softmax(torch.randn(5, 11), -1)
    assert BregmanLoss()(q, p).item() == pytest.approx(KLLoss()(q, p).item(), abs=1e-5)


def test_bregman_nonnegative_and_zero_iff_equal() -> None:
    torch.manual_seed(0)
    p = torch.rand(6, 7) * 3  # unnormalised
    assert BregmanLoss()(p, p).item() == pytest.approx(0.0, abs=1e-6)
    for _ in range(5):
        q = torch.rand(6, 7) * 3
        assert BregmanLoss()(q, p).item() > 1e-3
    # scaled copy: KL of normalised spectra is 0 but the I-divergence is not
    assert KLLoss()(2 * p, p).item() == pytest.approx(0.0, abs=1e-6)
    assert BregmanLoss()(2 * p, p).item() > 0.1
    # hand case: p = [1, 0], q = [2, 1] -> 1*ln(1/2) - 1 + 2 + 0 - 0 + 1 = 2 - ln 2
    d = BregmanLoss()(torch.tensor([[2.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
    assert d.item() == pytest.approx(2 - math.log(2), abs=1e-6)


def test_losses_run_in_fp32() -> None:
    p = torch.softmax(torch.randn(2, 8), -1).to(torch.bfloat16)
    for loss in (RMSELoss(), KLLoss(), WDLoss(), BregmanLoss()):
        assert loss(p, p.float()).dtype == torch.float32


# ------------------------------------------------------------------------------ Mat2Spec
def test_gaussian_kl_identical_is_zero_and_hand_case() -> None:
    mu, lv = torch.randn(4, 8), torch.randn(4, 8)
    torch.testing.assert_close(gaussian_kl(mu, lv, mu, lv), torch.zeros(4))
    # 1-D: KL(N(0,1) || N(1, 4)) = ln 2 + (1 + 1) / 8 - 1/2
    val = gaussian_kl(torch.zeros(1), torch.zeros(1), torch.ones(1), torch.tensor([math.log(4)]))
    assert val.item() == pytest.approx(math.log(2) + 2 / 8 - 0.5, abs=1e-6)


@pytest.mark.parametrize("direction", ["forward", "backward", "symmetric"])
def test_pairwise_kl_matches_broadcast(direction: str) -> None:
    torch.manual_seed(0)
    mu_f, lv_f = torch.randn(3, 4, 6), torch.randn(3, 4, 6) * 0.5
    mu_l, lv_l = torch.randn(5, 6), torch.randn(5, 6) * 0.5
    f = (mu_f.unsqueeze(2), lv_f.unsqueeze(2))  # (3, 4, 1, 6)
    lab = (mu_l.view(1, 1, 5, 6), lv_l.view(1, 1, 5, 6))
    fwd, bwd = gaussian_kl(*f, *lab), gaussian_kl(*lab, *f)
    expected = {"forward": fwd, "backward": bwd, "symmetric": 0.5 * (fwd + bwd)}[direction]
    got = pairwise_gaussian_kl(mu_f, lv_f, mu_l, lv_l, direction)
    assert got.shape == (3, 4, 5)
    torch.testing.assert_close(got, expected.expand(3, 4, 5), atol=1e-4, rtol=1e-4)
    same = pairwise_gaussian_kl(
        mu_l[:1].expand(1, 1, 6), lv_l[:1].expand(1, 1, 6), mu_l[:1], lv_l[:1], direction
    )
    assert same.abs().item() < 1e-4


def test_pair_coverage_code_same_parity_only() -> None:
    c = pair_counts(10, 128, "code")
    i, j = torch.meshgrid(torch.arange(10), torch.arange(128), indexing="ij")
    same = (i % 2) == (j % 2)
    assert (c[same] == 2).all() and (c[~same] == 0).all()
    assert c.sum() == 10 * 128
    # K = 10, L = 51 are coprime: every pair once, same as 'all'
    torch.testing.assert_close(pair_counts(10, 51, "code"), pair_counts(10, 51, "all"))


def test_contrastive_aligned_lower_than_shuffled() -> None:
    b = torch.eye(6, 16) * 3.0  # orthogonal projections
    aligned = contrastive_loss(b, b)
    shuffled = contrastive_loss(b, b[torch.tensor([1, 2, 3, 4, 5, 0])])
    assert aligned < shuffled
    # hand value: s_ii = 1, s_ij = 0 -> -(1 - log(5))
    assert aligned.item() == pytest.approx(-(1 - math.log(5)), abs=1e-6)
    assert contrastive_loss(b[:1], b[:1]).item() == 0.0  # undefined for one sample


def _m2s_out(k: int = 3, l_: int = 4, d: int = 5, b: int = 6) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(b, l_), -1)
    return {
        "pred": p,
        "pred_label": torch.softmax(torch.randn(b, l_), -1),
        "proj_feat": torch.randn(b, 7),
        "proj_label": torch.randn(b, 7),
        "mu_f": torch.randn(b, k, d),
        "logvar_f": torch.randn(b, k, d) * 0.3,
        "pi_f": torch.softmax(torch.randn(b, k), -1),
        "mu_l": torch.randn(l_, d),
        "logvar_l": torch.randn(l_, d) * 0.3,
        "pi_l": torch.softmax(torch.randn(b, l_), -1),
    }


def test_mat2spec_loss_combines_components() -> None:
    out = _m2s_out()
    target = torch.softmax(torch.randn(6, 4), -1)
    kl = KLLoss()
    l_c = 0.5 * (kl(out["pred"], target) + kl(out["pred_label"], target))
    w = out["pi_f"][:, :, None] * out["pi_l"][:, None, :]
    l_kl = (
        (w * pairwise_gaussian_kl(out["mu_f"], out["logvar_f"], out["mu_l"], out["logvar_l"]))
        .sum((1, 2))
        .mean()
    )
    l_d = contrastive_loss(out["proj_label"], out["proj_feat"])
    loss = Mat2SpecLoss()(out["pred"], target, out)
    torch.testing.assert_close(loss, l_c + 1.1 * l_kl + l_d)
    # code weights: summed branches, contrastive 0.1
    loss = Mat2SpecLoss(c_contrast=0.1, average_branches=False)(out["pred"], target, out)
    torch.testing.assert_close(loss, 2 * l_c + 1.1 * l_kl + 0.1 * l_d)
    # ablations
    torch.testing.assert_close(Mat2SpecLoss(c_kl=0, c_contrast=0)(out["pred"], target, out), l_c)
    for name in ("wd", "mae", "mse"):
        assert torch.isfinite(Mat2SpecLoss(pred_loss=name)(out["pred"], target, out))
    with pytest.raises(KeyError, match="mat2spec"):
        Mat2SpecLoss()(out["pred"], target, {"pred": out["pred"]})


def test_mat2spec_loss_code_coverage_ignores_mixed_parity_pairs() -> None:
    out = _m2s_out(k=2, l_=4)
    target = torch.softmax(torch.randn(6, 4), -1)
    base = Mat2SpecLoss(pair_coverage="code", c_contrast=0, c_pred=0)
    ref = base(out["pred"], target, out)
    # K=2, L=4: t = 0..7 -> (t mod 2, t mod 4) uses (0,0), (1,1), (0,2), (1,3) twice each
    out2 = dict(out)
    mu_l = out["mu_l"].clone()
    mu_l[1] += 10.0  # label component 1 enters through the same-parity pair (1, 1)
    out2["mu_l"] = mu_l
    assert base(out["pred"], target, out2) > ref
    w_only_mixed = dict(out)
    pi_f = torch.zeros(6, 2)
    pi_f[:, 0] = 1.0  # all feature weight on component 0 ...
    pi_l = torch.zeros(6, 4)
    pi_l[:, 1] = 1.0  # ... all label weight on component 1: a mixed-parity pair
    w_only_mixed.update(pi_f=pi_f, pi_l=pi_l)
    assert base(out["pred"], target, w_only_mixed).item() == 0.0
    full = Mat2SpecLoss(pair_coverage="all", c_contrast=0, c_pred=0)
    assert full(out["pred"], target, w_only_mixed).item() > 0.0


def test_mat2spec_loss_with_head_backward() -> None:
    torch.manual_seed(0)
    head = Mat2SpecHead(10, 9, n_components=3, latent_dim=4).train()
    enc = EncoderOutput(torch.randn(7, 10), torch.tensor([0, 0, 1, 1, 1, 2, 3]), torch.randn(4, 10))
    target = torch.softmax(torch.randn(4, 9), -1)
    out = head(enc, None, target)
    out = {k: torch.softmax(v, -1) if k.startswith("pred") else v for k, v in out.items()}
    loss = Mat2SpecLoss()(out["pred"], target, out)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in head.parameters())


@pytest.mark.parametrize("name", ["rmse", "kl", "wd", "bregman", "mat2spec"])
def test_loss_yaml_instantiates(name: str) -> None:
    loss = instantiate(OmegaConf.load(CONF / f"{name}.yaml"))
    p = torch.softmax(torch.randn(2, 4), -1)
    if name == "mat2spec":
        out = _m2s_out(b=2)
        assert torch.isfinite(loss(out["pred"], p, out))
    else:
        assert torch.isfinite(loss(p, p))
