"""Every metric on hand-computed arrays (facts.md §1.5, §2.6, §3.5)."""

import numpy as np
import pytest

from dos_bench.io import ConfigError
from dos_bench.metrics import compute_metrics, mae, mse, r2, rmse, wd, wd_per_sample

P = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0]])
T = np.array([[1.0, 2.0, 3.0, 2.0], [0.0, 1.0, 1.0, 0.0]])


def test_mae_mse_rmse_by_hand():
    # errors: row 0 = [0, 0, 0, 2]; row 1 = [0, -1, 0, 1]
    assert mae(P, T) == pytest.approx(4 / 8)
    assert mse(P, T) == pytest.approx((4 + 1 + 1) / 8)
    # per-sample RMSE: sqrt(4/4) = 1 and sqrt(2/4); then averaged
    assert rmse(P, T) == pytest.approx((1.0 + np.sqrt(0.5)) / 2)


def test_r2_variance_weighted_by_hand():
    col_mean = T.mean(axis=0)  # [0.5, 1.5, 2, 1]
    ss_tot = ((T - col_mean) ** 2).sum()  # 0.5 + 0.5 + 2 + 2 = 5
    ss_res = ((T - P) ** 2).sum()  # 6
    assert ss_tot == pytest.approx(5.0)
    assert r2(P, T) == pytest.approx(1 - 6 / 5)
    assert r2(T, T) == 1.0


def test_wd_single_peaks_shifted():
    # a delta at index 0 vs a delta at index 3: W1 = 3 bins
    p = np.array([[1.0, 0, 0, 0]])
    t = np.array([[0, 0, 0, 2.0]])  # scale does not matter
    assert wd(p, t, spacing=1.0) == pytest.approx(3.0)
    assert wd(p, t, spacing=0.0625) == pytest.approx(3 * 0.0625)
    assert wd(t, t) == 0.0


def test_wd_matches_scipy():
    from scipy.stats import wasserstein_distance

    rng = np.random.default_rng(0)
    p, t = rng.random((5, 20)), rng.random((5, 20))
    x = np.arange(20)
    ref = np.mean([wasserstein_distance(x, x, p[i], t[i]) for i in range(5)])
    assert wd(p, t, spacing=1.0) == pytest.approx(ref, rel=1e-10)


def test_wd_all_zero_spectra():
    z = np.zeros((1, 5))
    assert wd_per_sample(z, z)[0] == 0.0
    assert np.isnan(wd_per_sample(z, np.ones((1, 5)))[0])


def test_compute_metrics_names_and_errors():
    m = compute_metrics(P, T, ["mae", "r2"])
    assert set(m) == {"mae", "r2"}
    with pytest.raises(ConfigError, match="unknown metric"):
        compute_metrics(P, T, ["nope"])
    with pytest.raises(ValueError):
        compute_metrics(P[:, :3], T)
