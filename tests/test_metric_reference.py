"""Every metric and loss against an independent reference (issue 11).

References: scikit-learn (``mean_absolute_error``, ``mean_squared_error``,
``root_mean_squared_error``, ``r2_score``), SciPy (``stats.wasserstein_distance`` on bin indices
times the grid spacing, ``stats.entropy``, ``special.kl_div``) or a formula written here from the
papers' definitions (docs/papers/alignn_dos.md §1.5 ALIGNN-DOS MAE / RE, §2.6 DOSTransformer
per-sample RMSE,
§3.4 Xtal2DoS KL, §3.5 Xtal2DoS MAE / MSE / R² / WD, §4.4 Mat2Spec KL / WD / Gaussian KL /
contrastive loss). The inputs hold an all-zero grid point (a phonon DOS at 0 cm⁻¹), a grid point
that is constant over the materials, and where the definition allows it an all-zero spectrum.
Where a definition is undefined on such input, dos_bench's documented behaviour is pinned.
``tests/test_metrics.py`` and ``tests/test_losses.py`` hold the hand-sized cases; this file
compares on random matrices.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import special, stats
from sklearn import metrics as skm

from dos_bench.losses import (
    BregmanLoss,
    KLLoss,
    MAELoss,
    MSELoss,
    RMSELoss,
    WDLoss,
    contrastive_loss,
    gaussian_kl,
)
from dos_bench.metrics import (
    compute_metrics,
    fraction_below,
    grouped_metrics,
    mae,
    mse,
    multimae,
    per_sample,
    r2,
    r2_per_sample,
    relative_error,
    rmse,
    wd,
    wd_per_sample,
)

TOL = 1e-6
N, L = 9, 12
ZERO_COL, CONST_COL, ZERO_ROW = 0, 5, 3


def _data(seed: int = 0, zero_row: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(pred, true)``, non-negative, with an all-zero and a constant true grid point (both
    predicted with an error) and optionally an all-zero true spectrum."""
    rng = np.random.default_rng(seed)
    t = rng.random((N, L)) * 3.0
    p = rng.random((N, L)) * 3.0
    t[:, ZERO_COL] = 0.0
    p[:, ZERO_COL] = 0.3 * rng.random(N)
    t[:, CONST_COL] = 0.75  # its float mean is exact: zero computed variance
    p[:, CONST_COL] = 0.75 + 0.2 * rng.standard_normal(N)
    if zero_row:
        t[ZERO_ROW] = 0.0
    return np.clip(p, 0.0, None), t


def _defined_rows(p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Rows where both spectra have mass (a distribution distance is defined)."""
    return (p.sum(1) > 0) & (t.sum(1) > 0)


# ================================================================================== metrics
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mae_mse_against_sklearn(seed: int) -> None:
    p, t = _data(seed)
    # Xtal2DoS / Mat2Spec: mean over all N·L entries (sklearn averages the per-column errors,
    # the same number for a full matrix)
    assert mae(p, t) == pytest.approx(skm.mean_absolute_error(t, p), abs=TOL)
    assert mse(p, t) == pytest.approx(skm.mean_squared_error(t, p), abs=TOL)
    # ALIGNN-DOS §5: per-sample MAE_s = (1/N) Σ|p − a|, then averaged over the test set
    assert mae(p, t) == pytest.approx(np.mean([np.mean(np.abs(p[i] - t[i])) for i in range(N)]))
    assert per_sample("mae", p, t) == pytest.approx(
        [skm.mean_absolute_error(t[i], p[i]) for i in range(N)], abs=TOL
    )
    assert per_sample("mse", p, t) == pytest.approx(
        [skm.mean_squared_error(t[i], p[i]) for i in range(N)], abs=TOL
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_rmse_is_mean_of_per_sample_rmse(seed: int) -> None:
    p, t = _data(seed)
    per = [skm.root_mean_squared_error(t[i], p[i]) for i in range(N)]
    assert rmse(p, t) == pytest.approx(np.mean(per), abs=TOL)
    assert per_sample("rmse", p, t) == pytest.approx(per, abs=TOL)
    # not the global RMSE (DOSTransformer §2.6 averages per-sample RMSEs)
    assert rmse(p, t) != pytest.approx(skm.root_mean_squared_error(t.ravel(), p.ravel()))


def _sk_r2(p: np.ndarray, t: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(skm.r2_score(t, p, multioutput="variance_weighted"))


@pytest.mark.parametrize("zero_row", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_r2_equals_sklearn_variance_weighted_with_constant_grid_points(
    seed: int, zero_row: bool
) -> None:
    p, t = _data(seed, zero_row)  # with the all-zero spectrum only the zero point is constant
    assert r2(p, t) == pytest.approx(_sk_r2(p, t), abs=TOL)
    # the rule restated: the constant grid points carry no weight and their error is left out
    ss_res = ((t - p) ** 2).sum(0)
    ss_tot = ((t - t.mean(0)) ** 2).sum(0)
    keep = np.ptp(t, axis=0) > 0
    assert keep.sum() == L - (1 if zero_row else 2)
    assert r2(p, t) == pytest.approx(1 - ss_res[keep].sum() / ss_tot.sum(), abs=TOL)
    # ... which differs from keeping that error in the numerator (dos_bench before issue 11)
    assert abs(r2(p, t) - (1 - ss_res.sum() / ss_tot.sum())) > 1e-4


def test_r2_constant_point_with_inexact_float_mean_keeps_its_error_as_sklearn() -> None:
    # scikit-learn tests the *computed* variance for zero: nine copies of 0.7 have a float mean
    # that is not 0.7, so that point gets a ~1e-32 weight and its error stays in the numerator
    p, t = _data(0, zero_row=False)
    t[:, CONST_COL] = 0.7
    p[:, CONST_COL] = 0.9
    assert ((t[:, CONST_COL] - t.mean(0)[CONST_COL]) ** 2).sum() > 0
    assert r2(p, t) == pytest.approx(_sk_r2(p, t), abs=TOL)
    ss_res = ((t - p) ** 2).sum(0)
    ss_tot = ((t - t.mean(0)) ** 2).sum(0)
    keep = np.arange(L) != ZERO_COL
    assert r2(p, t) == pytest.approx(1 - ss_res[keep].sum() / ss_tot.sum(), abs=TOL)


def test_r2_phonon_zero_frequency_point() -> None:
    # a phonon DOS is 0 at 0 cm⁻¹ for every material; a softmax prediction is not
    rng = np.random.default_rng(5)
    t = rng.random((20, 51))
    t[:, 0] = 0.0
    p = t + 0.05 * rng.standard_normal(t.shape)
    p[:, 0] = 0.02
    assert r2(p, t) == pytest.approx(_sk_r2(p, t), abs=TOL)
    assert r2(p, t) == pytest.approx(r2(p[:, 1:], t[:, 1:]), abs=TOL)  # as if the point were absent


def test_r2_all_grid_points_constant_and_small_inputs() -> None:
    row = np.array([0.0, 1.0, 2.0, 0.5, 3.0])
    t = np.tile(row, (4, 1))
    p = t.copy()
    assert r2(p, t) == _sk_r2(p, t) == 1.0
    p[:, 1] += 0.1
    p[0, 3] -= 0.2
    # every point constant: the unweighted mean of per-point scores (1 exact, 0 otherwise)
    assert r2(p, t) == pytest.approx(_sk_r2(p, t), abs=TOL)
    assert r2(p, t) == pytest.approx(3 / 5)
    # a single material: undefined, NaN as sklearn
    assert math.isnan(r2(p[:1], t[:1])) and math.isnan(_sk_r2(p[:1], t[:1]))
    # two materials, torch input
    p2, t2 = _data(4)
    got = compute_metrics(torch.as_tensor(p2[:2]), torch.as_tensor(t2[:2]), ["r2"])["r2"]
    assert got == pytest.approx(_sk_r2(p2[:2], t2[:2]), abs=1e-5)  # float32 round trip


def test_grouped_r2_is_sklearn_within_each_group() -> None:
    p, t = _data(6, zero_row=False)
    groups = np.array(["a"] * 4 + ["b"] * 5)
    t[:4, 7] = 1.25  # constant inside group "a" only
    res = grouped_metrics(p, t, {"g": groups}, ["r2"])["g"]
    for g in ("a", "b"):
        idx = groups == g
        assert res[g]["r2"] == pytest.approx(_sk_r2(p[idx], t[idx]), abs=TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_r2_per_sample_against_sklearn(seed: int) -> None:
    p, t = _data(seed)
    t[5] = 0.4  # a constant spectrum too (sklearn force_finite: 0 unless exact)
    ref = [skm.r2_score(t[i], p[i]) for i in range(N)]
    assert per_sample("r2_per_sample", p, t) == pytest.approx(ref, abs=TOL)
    assert r2_per_sample(p, t) == pytest.approx(np.mean(ref), abs=TOL)
    q = p.copy()
    q[ZERO_ROW] = 0.0  # an exactly predicted all-zero spectrum scores 1
    exact = per_sample("r2_per_sample", q, t)[ZERO_ROW]
    assert exact == 1.0 == skm.r2_score(t[ZERO_ROW], q[ZERO_ROW])


@pytest.mark.parametrize("spacing", [1.0, 0.0625, 20.0])
def test_wd_against_scipy_on_bin_indices(spacing: float) -> None:
    p, t = _data(7)
    p[1, 2] = -0.3  # a negative prediction is clipped to 0 first
    x = np.arange(L)
    pc = np.clip(p, 0, None)
    ok = _defined_rows(pc, t)
    assert not ok[ZERO_ROW] and ok.sum() == N - 1
    ref = np.array(
        [
            stats.wasserstein_distance(x, x, u_weights=pc[i], v_weights=t[i]) * spacing
            if ok[i]
            else np.nan
            for i in range(N)
        ]
    )
    got = wd_per_sample(p, t, spacing)
    np.testing.assert_allclose(got[ok], ref[ok], rtol=0, atol=TOL)
    # one all-zero spectrum against a non-zero one: undefined, NaN and left out of the mean
    assert np.isnan(got[ZERO_ROW])
    assert wd(p, t, spacing=spacing) == pytest.approx(np.nanmean(ref), abs=TOL)
    # two all-zero spectra: distance 0
    q = p.copy()
    q[ZERO_ROW] = 0.0
    assert wd_per_sample(q, t, spacing)[ZERO_ROW] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_relative_error_against_alignn_formula(seed: int) -> None:
    p, t = _data(seed)
    # ALIGNN-DOS §5: RE_s = |p̄ − ā| / ā of the spectrum means, averaged over the test set
    pm, tm = p.mean(1), t.mean(1)
    defined = tm > 0
    ref = np.abs(pm[defined] - tm[defined]) / tm[defined]
    v = per_sample("re", p, t)
    assert v[defined] == pytest.approx(ref, abs=TOL)
    # ā = 0 with p̄ ≠ 0 is undefined: NaN, left out of the mean
    assert np.isnan(v[ZERO_ROW])
    assert relative_error(p, t) == pytest.approx(ref.mean(), abs=TOL)
    # ā = p̄ = 0: 0 (documented)
    q = p.copy()
    q[ZERO_ROW] = 0.0
    assert per_sample("re", q, t)[ZERO_ROW] == 0.0


def test_fraction_below_against_hand_counts() -> None:
    p, t = _data(8)
    p = t + (p - t) * 0.1  # errors spread around the thresholds
    per_mae = np.array([np.mean(np.abs(p[i] - t[i])) for i in range(N)])
    thr = float(np.median(per_mae))
    assert fraction_below("mae", thr, p, t) == pytest.approx(np.sum(per_mae < thr) / N)
    # RE: the undefined (zero-mean truth) material counts as not below, over all N materials
    pm, tm = p.mean(1), t.mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        re_v = np.abs(pm - tm) / tm
    below = np.sum((tm > 0) & (re_v < 0.2))
    assert compute_metrics(p, t, ["frac_re_lt_0.2"])["frac_re_lt_0.2"] == pytest.approx(below / N)
    x = np.arange(L)
    wd_v = [
        stats.wasserstein_distance(x, x, p[i], t[i]) * 0.5 if t[i].sum() > 0 else np.nan
        for i in range(N)
    ]
    thr_wd = float(np.nanmedian(wd_v))
    expect = np.sum([v < thr_wd for v in wd_v if not np.isnan(v)]) / N
    assert fraction_below("wd", thr_wd, p, t, spacing=0.5) == pytest.approx(expect)


def test_multimae_against_sklearn_on_concatenated_values() -> None:
    p, t = _data(9)
    assert multimae(p, t) == pytest.approx(skm.mean_absolute_error(t.ravel(), p.ravel()), abs=TOL)
    # ragged spectra (JARVIS-Leaderboard), one of them all zero
    rng = np.random.default_rng(9)
    ts = [rng.random(n) for n in (3, 7, 5)] + [np.zeros(4)]
    ps = [x + 0.1 * rng.standard_normal(x.size) for x in ts]
    ref = skm.mean_absolute_error(np.concatenate(ts), np.concatenate(ps))
    assert multimae(ps, ts) == pytest.approx(ref, abs=TOL)


# =================================================================================== losses
def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def _sum_norm(x: np.ndarray) -> np.ndarray:
    return x / x.sum(1, keepdims=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_mse_mae_losses_against_sklearn(seed: int) -> None:
    p, t = _data(seed)
    assert MSELoss()(_t(p), _t(t)).item() == pytest.approx(
        skm.mean_squared_error(t, p), rel=TOL, abs=TOL
    )
    assert MAELoss()(_t(p), _t(t)).item() == pytest.approx(
        skm.mean_absolute_error(t, p), rel=TOL, abs=TOL
    )


def test_rmse_loss_against_sklearn_and_its_eps() -> None:
    p, t = _data(2)
    per = [skm.root_mean_squared_error(t[i], p[i]) for i in range(N)]
    assert RMSELoss(eps=0.0)(_t(p), _t(t)).item() == pytest.approx(np.mean(per), abs=TOL)
    # documented eps inside the sqrt: a perfectly fitted sample contributes sqrt(eps)
    q = p.copy()
    q[ZERO_ROW] = t[ZERO_ROW]
    per[ZERO_ROW] = math.sqrt(1e-12)
    assert RMSELoss()(_t(q), _t(t)).item() == pytest.approx(np.mean(per), abs=TOL)


def test_kl_loss_against_scipy_entropy() -> None:
    p, t = _data(3, zero_row=False)
    p[:, ZERO_COL] += 0.01  # a softmax prediction is never 0
    # Xtal2DoS §3.4 / Mat2Spec: KL(true ‖ pred) of the sum-normalised spectra, batch mean
    ref = np.mean([stats.entropy(_sum_norm(t)[i], _sum_norm(p)[i]) for i in range(N)])
    assert KLLoss()(_t(p), _t(t)).item() == pytest.approx(ref, abs=TOL)
    assert KLLoss(eps=1e-10)(_t(p), _t(t)).item() == pytest.approx(ref, abs=TOL)


def test_kl_loss_all_zero_rows_follow_the_eps_rule() -> None:
    p, t = _data(4)
    p[:, ZERO_COL] += 0.01
    eps = 1e-8
    # undefined for an all-zero true spectrum; with p = y / (Σy + eps) that sample adds 0
    pn = t / (t.sum(1, keepdims=True) + eps)
    qn = p / (p.sum(1, keepdims=True) + eps)
    per = (pn * (np.log(pn + eps) - np.log(qn + eps))).sum(1)
    assert per[ZERO_ROW] == 0.0
    assert KLLoss(eps)(_t(p), _t(t)).item() == pytest.approx(per.mean(), abs=TOL)
    # an all-zero prediction against a non-zero truth: log(eps) stands in for log 0 (finite)
    q = p.copy()
    q[0] = 0.0
    row0 = (pn[0] * (np.log(pn[0] + eps) - math.log(eps))).sum()
    got = KLLoss(eps)(_t(q), _t(t)).item() * N - per[1:].sum()
    assert got == pytest.approx(row0, rel=TOL)


@pytest.mark.parametrize("spacing", [1.0, 0.0625])
def test_wd_loss_against_scipy(spacing: float) -> None:
    p, t = _data(5, zero_row=False)
    x = np.arange(L)
    ref = np.mean([stats.wasserstein_distance(x, x, p[i], t[i]) for i in range(N)]) * spacing
    assert WDLoss(spacing=spacing)(_t(p), _t(t)).item() == pytest.approx(ref, abs=TOL)


def test_wd_loss_all_zero_truth_follows_the_eps_rule() -> None:
    p, t = _data(5)
    x = np.arange(L)
    # Mat2Spec pytorch_stats_loss: ÷(Σ + 1e-14); an all-zero truth keeps CDF 0, so the sample
    # adds Σ_j CDF_pred(j) (undefined as a distance; pinned)
    per = [
        stats.wasserstein_distance(x, x, p[i], t[i])
        if t[i].sum() > 0
        else np.cumsum(_sum_norm(p)[i]).sum()
        for i in range(N)
    ]
    assert WDLoss()(_t(p), _t(t)).item() == pytest.approx(np.mean(per), abs=1e-5)


def test_bregman_loss_against_scipy_kl_div() -> None:
    p, t = _data(6)
    p[:, ZERO_COL] += 0.01
    # generalised I-divergence Σ p log(p/q) − p + q (scipy.special.kl_div, element-wise),
    # unnormalised, batch mean; the all-zero truth row gives Σ q
    ref = special.kl_div(t, p).sum(1).mean()
    assert BregmanLoss()(_t(p), _t(t)).item() == pytest.approx(ref, rel=TOL, abs=TOL)
    # on sum-normalised spectra it is the KL divergence
    ok = t.sum(1) > 0
    pn, tn = _sum_norm(p[ok]), _sum_norm(t[ok])
    ref_kl = np.mean([stats.entropy(tn[i], pn[i]) for i in range(len(tn))])
    assert BregmanLoss()(_t(pn), _t(tn)).item() == pytest.approx(ref_kl, abs=TOL)


def test_gaussian_kl_against_full_covariance_formula() -> None:
    rng = np.random.default_rng(11)
    d = 6
    mu_a, mu_b = rng.standard_normal(d), rng.standard_normal(d)
    lv_a, lv_b = 0.5 * rng.standard_normal(d), 0.5 * rng.standard_normal(d)
    sa, sb = np.diag(np.exp(lv_a)), np.diag(np.exp(lv_b))
    # KL(N_a ‖ N_b) = ½[tr(Σ_b⁻¹Σ_a) + (μ_b−μ_a)ᵀΣ_b⁻¹(μ_b−μ_a) − d + ln det Σ_b / det Σ_a]
    inv_b = np.linalg.inv(sb)
    diff = mu_b - mu_a
    ref = 0.5 * (
        np.trace(inv_b @ sa)
        + diff @ inv_b @ diff
        - d
        + np.linalg.slogdet(sb)[1]
        - np.linalg.slogdet(sa)[1]
    )
    got = gaussian_kl(_t(mu_a), _t(lv_a), _t(mu_b), _t(lv_b)).item()
    assert got == pytest.approx(ref, abs=TOL)


def test_contrastive_loss_against_formula() -> None:
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    tau = 0.5
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    s = an @ bn.T / tau
    # P-M2S eq. 8 (code compute_c_loss): positive = diagonal, denominator = the other pairs
    ref = -np.mean([s[i, i] - np.log(np.sum(np.exp(np.delete(s[i], i)))) for i in range(len(s))])
    assert contrastive_loss(_t(a), _t(b), tau).item() == pytest.approx(ref, abs=TOL)
