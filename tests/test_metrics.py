"""Every metric on hand-computed arrays, edge cases included (docs/papers/alignn_dos.md §1.5,
docs/papers/dostransformer.md §2.6, docs/papers/xtal2dos.md §3.5)."""

import numpy as np
import pytest

from dos_bench.io import ConfigError
from dos_bench.metrics import (
    METRICS,
    PER_SAMPLE,
    compute_metrics,
    get_metric,
    grouped_metrics,
    mae,
    mse,
    per_sample,
    r2,
    r2_per_sample,
    relative_error,
    rmse,
    wd,
    wd_per_sample,
)

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
    assert ss_tot == pytest.approx(5.0) and ss_res == pytest.approx(6.0)
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


# ----------------------------------------------------------------------------- extended metrics
def test_r2_per_sample_by_hand_and_sklearn():
    from sklearn.metrics import r2_score

    # row 0: ȳ = 2, ss_tot = 1+0+1+0 = 2, ss_res = 4 -> -1; row 1: ȳ = 0.5, ss_tot = 1, ss_res = 2
    assert per_sample("r2_per_sample", P, T) == pytest.approx([-1.0, -1.0])
    assert r2_per_sample(P, T) == pytest.approx(-1.0)
    rng = np.random.default_rng(1)
    p, t = rng.random((4, 15)), rng.random((4, 15))
    ref = np.mean([r2_score(t[i], p[i]) for i in range(4)])
    assert r2_per_sample(p, t) == pytest.approx(ref, rel=1e-12)


def test_r2_per_sample_constant_truth_follows_sklearn():
    from sklearn.metrics import r2_score

    t = np.full((1, 5), 2.0)
    assert r2_per_sample(t, t) == 1.0 == r2_score(t[0], t[0])
    p = t + np.array([[0, 0, 0.1, 0, 0]])
    assert r2_per_sample(p, t) == 0.0 == r2_score(t[0], p[0])


def test_relative_error_by_hand():
    # means: row 0 pred 2.5 vs true 2 -> 0.25; row 1 0.5 vs 0.5 -> 0
    assert per_sample("re", P, T) == pytest.approx([0.25, 0.0])
    assert relative_error(P, T) == pytest.approx(0.125)
    assert METRICS["re"] is relative_error


def test_relative_error_zero_true_mean():
    z = np.zeros((2, 3))
    p = np.array([[0.0, 0, 0], [1.0, 0, 0]])
    v = per_sample("re", p, z)
    assert v[0] == 0.0 and np.isnan(v[1])
    assert relative_error(p, z) == 0.0  # undefined samples are left out of the mean
    assert compute_metrics(p, z, ["frac_re_lt_0.2"])["frac_re_lt_0.2"] == 0.5  # NaN is not below
    assert np.isnan(relative_error(p[1:], z[1:]))


def test_fraction_names_are_parsed():
    # per-sample MAE is 0.5 for both rows; per-sample RE is [0.25, 0]
    m = compute_metrics(
        P, T, ["frac_mae_lt_0.5", "frac_mae_lt_0.51", "frac_re_lt_0.2", "frac_mae_lt_5e-1"]
    )
    assert m == {
        "frac_mae_lt_0.5": 0.0,  # strict inequality
        "frac_mae_lt_0.51": 1.0,
        "frac_re_lt_0.2": 0.5,
        "frac_mae_lt_5e-1": 0.0,
    }
    assert "frac_mae_lt_0.02" in METRICS and "frac_rmse_lt_.3" in METRICS
    assert "frac_r2_per_sample_lt_0.5" in METRICS
    assert get_metric("frac_wd_lt_1")(P, T, spacing=1.0) == pytest.approx(
        np.mean(wd_per_sample(P, T) < 1)
    )
    for bad in ("frac_foo_lt_0.1", "frac_mae_lt_x", "frac_mae_gt_0.1", "r3"):
        assert bad not in METRICS
        with pytest.raises(ConfigError, match="unknown metric"):
            compute_metrics(P, T, [bad])


def test_per_sample_vectors():
    assert per_sample("mae", P, T) == pytest.approx([0.5, 0.5])
    assert per_sample("mse", P, T) == pytest.approx([1.0, 0.5])
    assert per_sample("rmse", P, T) == pytest.approx([1.0, np.sqrt(0.5)])
    assert per_sample("wd", P, T, spacing=2.0) == pytest.approx(wd_per_sample(P, T) * 2)
    assert set(PER_SAMPLE) == {"mae", "mse", "rmse", "re", "wd", "r2_per_sample"}
    for name in PER_SAMPLE:
        assert per_sample(name, P, T).shape == (2,)
        # the aggregate of the per-sample vector is the metric (r2 is variance-weighted: no)
        assert np.nanmean(per_sample(name, P, T)) == pytest.approx(METRICS[name](P, T))
    with pytest.raises(ConfigError):
        per_sample("r2", P, T)


ALL = ["mae", "mse", "rmse", "r2", "r2_per_sample", "wd", "re", "frac_mae_lt_0.02"]


def test_edge_all_zero_spectra():
    z = np.zeros((3, 6))
    m = compute_metrics(z, z, ALL)
    assert m == {
        "mae": 0.0, "mse": 0.0, "rmse": 0.0, "r2": 1.0, "r2_per_sample": 1.0, "wd": 0.0,
        "re": 0.0, "frac_mae_lt_0.02": 1.0,
    }  # fmt: skip
    p = np.ones((3, 6))
    m = compute_metrics(p, z, ALL)
    assert m["mae"] == 1.0 and m["r2_per_sample"] == 0.0 and m["frac_mae_lt_0.02"] == 0.0
    assert np.isnan(m["re"]) and np.isnan(m["wd"])
    assert m["r2"] == 0.0  # every grid point constant, none predicted: sklearn gives 0 (not NaN)


def test_edge_single_peak():
    t = np.zeros((1, 5))
    t[0, 2] = 1.0
    p = 2 * t  # same position, twice the height
    assert mae(p, t) == pytest.approx(1 / 5)
    assert per_sample("re", p, t)[0] == pytest.approx(1.0)
    assert wd(p, t) == 0.0  # shape-only distance
    shifted = np.roll(t, 1, axis=1)
    assert wd(shifted, t, spacing=0.5) == pytest.approx(0.5)
    assert per_sample("re", shifted, t)[0] == 0.0  # same mean
    assert rmse(shifted, t) == pytest.approx(np.sqrt(2 / 5))


def test_edge_identical_spectra():
    rng = np.random.default_rng(3)
    t = rng.random((4, 9))
    m = compute_metrics(t, t, ALL)
    for k in ("mae", "mse", "rmse", "wd", "re"):
        assert m[k] == 0.0
    assert m["r2"] == 1.0 and m["r2_per_sample"] == 1.0 and m["frac_mae_lt_0.02"] == 1.0


def test_metrics_accept_torch():
    import torch

    m = compute_metrics(torch.as_tensor(P), torch.as_tensor(T), ["re", "r2_per_sample"])
    assert m["re"] == pytest.approx(0.125)


def test_grouped_metrics_add_up():
    rng = np.random.default_rng(4)
    p, t = rng.random((7, 10)), rng.random((7, 10))
    groups = {
        "n_species": np.array([2, 2, 3, 3, 3, 1, 2]),
        "crystal_system": np.array(["cubic"] * 3 + ["triclinic"] * 3 + ["hexagonal"]),
    }
    res = grouped_metrics(p, t, groups, ["mae", "rmse", "r2", "frac_mae_lt_0.3"])
    assert list(res) == ["n_species", "crystal_system"]
    assert list(res["n_species"]) == ["1", "2", "3"]
    for col in res.values():
        assert sum(v["n"] for v in col.values()) == 7
    sub = np.flatnonzero(groups["n_species"] == 3)
    ref = compute_metrics(p[sub], t[sub], ["mae", "rmse", "r2", "frac_mae_lt_0.3"])
    assert {k: v for k, v in res["n_species"]["3"].items() if k != "n"} == pytest.approx(ref)
    # one-member groups: no R², the other metrics are defined
    hexa = res["crystal_system"]["hexagonal"]
    assert hexa["n"] == 1 and np.isnan(hexa["r2"])
    assert hexa["mae"] == pytest.approx(mae(p[6:], t[6:]))
    # sample-weighted means of per-sample-additive metrics recover the overall value
    overall = sum(v["mae"] * v["n"] for v in res["crystal_system"].values()) / 7
    assert overall == pytest.approx(mae(p, t))
    with pytest.raises(ValueError):
        grouped_metrics(p, t, {"bad": np.arange(3)})
    with pytest.raises(ConfigError):
        grouped_metrics(p, t, groups, ["nope"])
