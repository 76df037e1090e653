"""Derived quantities on hand-computed spectra (docs/papers/alignn_dos.md §1.5,
docs/papers/dostransformer.md §2.6, docs/papers/mat2spec.md §4.5)."""

import numpy as np
import pytest
from scipy import constants as const

from dos_bench.physics import (
    CM1_TO_THZ,
    FermiProbe,
    average_frequency,
    band_gap_from_dos,
    band_gaps,
    classification_scores,
    dos_at_fermi,
    heat_capacity,
    is_band_edge_grid,
    vb_gap_flags,
    vb_gap_regions,
)

E9 = np.linspace(-2.0, 2.0, 9)  # step 0.5, E_F = 0 is a grid point
GAPPED = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0])  # VBM -1, CBM 1.5
METAL = np.ones(9)


# ----------------------------------------------------------------------------- DOS(E_F), gap
def test_dos_at_fermi_interpolates():
    d = np.arange(9.0)
    assert dos_at_fermi(E9, d, 0.0) == 4.0
    assert dos_at_fermi(E9, d, 0.25) == pytest.approx(4.5)
    v = dos_at_fermi(E9, np.stack([d, 2 * d]), np.array([-2.0, 1.9]))
    assert v == pytest.approx([0.0, 2 * 7.8])
    assert np.isnan(dos_at_fermi(E9, d, 2.5))
    assert isinstance(dos_at_fermi(E9, d), float)


def test_band_gap_gapped_and_metal():
    assert band_gap_from_dos(E9, GAPPED) == (2.5, -1.0, 1.5)
    assert band_gap_from_dos(E9, METAL) == (0.0, 0.0, 0.0)
    gap, vbm, cbm = band_gaps(E9, np.stack([GAPPED, METAL]))
    assert gap == pytest.approx([2.5, 0.0]) and vbm == pytest.approx([-1.0, 0.0])
    assert cbm == pytest.approx([1.5, 0.0])


def test_band_gap_tolerance_for_predictions():
    noisy = GAPPED + 0.005  # never exactly zero, below 1 % of the max
    assert band_gap_from_dos(E9, noisy)[0] == 2.5
    assert band_gap_from_dos(E9, noisy, tol=0.001)[0] == 0.0  # now DOS(E_F) counts: metal
    assert band_gap_from_dos(E9, noisy, tol=0.004, relative=False)[0] == 0.0
    assert band_gap_from_dos(E9, noisy, tol=0.006, relative=False)[0] == 2.5
    # relative threshold scales with the spectrum
    assert band_gap_from_dos(E9, 1000 * noisy)[0] == 2.5


def test_band_gap_edge_cases():
    gap, vbm, cbm = band_gap_from_dos(E9, np.zeros(9))  # no states at all
    assert np.isnan(gap) and np.isnan(vbm) and np.isnan(cbm)
    only_vb = np.where(E9 < -0.5, 1.0, 0.0)  # conduction band outside the window
    gap, vbm, cbm = band_gap_from_dos(E9, only_vb)
    assert np.isnan(gap) and vbm == -1.0 and np.isnan(cbm)
    # a dip exactly at E_F: gap of two grid steps (documented grid resolution)
    dip = METAL.copy()
    dip[4] = 0.0
    assert band_gap_from_dos(E9, dip)[0] == 1.0
    # E_F outside the grid
    assert np.isnan(band_gap_from_dos(E9, METAL, e_fermi=5.0)[0])


def test_band_gaps_absolute_grid_per_material_fermi():
    shifted = E9 + 3.0  # absolute energies; E_F = 3 for both
    gap, vbm, cbm = band_gaps(shifted, np.stack([GAPPED, GAPPED]), np.array([3.0, 3.2]))
    assert gap == pytest.approx([2.5, 2.5]) and vbm == pytest.approx([2.0, 2.0])
    with pytest.raises(ValueError):
        band_gaps(E9, GAPPED[None], np.zeros(3))


# ----------------------------------------------------------------------------- Fermi probe
def _step_edges(n: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos = rng.integers(5, length - 5, n)
    x = (np.arange(length)[None, :] < pos[:, None]).astype(float)  # states up to the edge
    x += 0.02 * rng.random((n, length))
    return x, -5.0 + 0.25 * pos  # E_F = energy of the step edge


def test_fermi_probe_learns_step_edge_and_is_deterministic():
    import torch

    x, y = _step_edges(500, 32, 0)
    xt, yt = _step_edges(100, 32, 1)
    state = torch.get_rng_state()
    probe = FermiProbe(hidden=(64, 32, 16), epochs=40, batch_size=64, seed=3).fit(x, y)
    assert torch.equal(state, torch.get_rng_state())  # global RNG untouched
    assert probe.rmse(xt, yt) < 0.15 * y.std()
    assert np.isfinite(probe.val_rmse_) and len(probe.history_) == 40
    again = FermiProbe(hidden=(64, 32, 16), epochs=40, batch_size=64, seed=3).fit(x, y)
    np.testing.assert_array_equal(probe.predict(xt), again.predict(xt))
    other = FermiProbe(hidden=(64, 32, 16), epochs=2, batch_size=64, seed=4).fit(x, y)
    assert not np.allclose(other.predict(xt), probe.predict(xt))
    assert probe.predict(xt).shape == (100,)
    with pytest.raises(ValueError):
        probe.predict(xt[:, :10])
    with pytest.raises(RuntimeError):
        FermiProbe().predict(xt)


def test_fermi_probe_architecture():
    x, y = _step_edges(20, 12, 0)
    probe = FermiProbe(epochs=1).fit(x, y)
    linears = [m for m in probe.model_ if m.__class__.__name__ == "Linear"]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (12, 256), (256, 128), (128, 64), (64, 1)
    ]  # fmt: skip
    assert sum(m.__class__.__name__ == "ReLU" for m in probe.model_) == 3


# ----------------------------------------------------------------------------- phonons
F51 = np.arange(0.0, 1001.0, 20.0)  # the 51-point phDOS grid, cm^-1


def _einstein(nu_cm1: float, n_atoms: int, temp: float) -> float:
    y = const.h * nu_cm1 * 100 * const.c / (const.k * temp)
    return 3 * n_atoms * const.R * y**2 * np.exp(y) / np.expm1(y) ** 2


def test_heat_capacity_einstein_mode_closed_form():
    d = np.zeros(51)
    d[15] = 0.7  # all modes at 300 cm^-1, any scale
    for n_atoms in (1, 4):
        cv = heat_capacity(F51, d, n_atoms, T=300.0)
        assert cv == pytest.approx(_einstein(300.0, n_atoms, 300.0), rel=1e-9)
    # high-temperature Dulong-Petit limit 3NR, and C_V(0) = 0
    assert heat_capacity(F51, d, 2, T=1e6) == pytest.approx(6 * const.R, rel=1e-6)
    assert heat_capacity(F51, d, 2, T=0.0) == 0.0


def test_heat_capacity_matches_pymatgen():
    from pymatgen.phonon.dos import PhononDos

    rng = np.random.default_rng(0)
    dos = rng.random((4, 51))
    dos[1, 0] = 0.0  # g(0) = 0, as a physical phDOS
    n_atoms = np.array([1, 2, 5, 12])
    ours = heat_capacity(F51, dos, n_atoms, T=300.0)
    thz = F51 * CM1_TO_THZ
    for i in range(4):
        g = dos[i] / np.trapezoid(dos[i], thz) * 3 * n_atoms[i]
        ref = PhononDos(thz, g).cv(300.0)  # J/(K mol-cell); installed pymatgen: finite at 0
        assert np.isfinite(ref)
        assert ours[i] == pytest.approx(ref, rel=1e-6)


def test_heat_capacity_conventions_and_edge_cases():
    d = np.zeros(51)
    d[15] = 1.0
    # e3nn: x3 only for single-species crystals
    e1 = heat_capacity(F51, np.stack([d, d]), [4, 4], convention="e3nn", n_species=[1, 2])
    assert e1 == pytest.approx([_einstein(300.0, 1, 300.0), _einstein(300.0, 4, 300.0)])
    with pytest.raises(ValueError, match="n_species"):
        heat_capacity(F51, d, 1, convention="e3nn")
    with pytest.raises(ValueError):
        heat_capacity(F51, d, 1, convention="nope")
    # g(0) > 0: 'limit' keeps the point with weight 1, 'drop' removes it
    g = np.ones(51)
    lim, drop = heat_capacity(F51, g, 1), heat_capacity(F51, g, 1, zero_freq="drop")
    assert lim != pytest.approx(drop) and 0 < drop < 3 * const.R and 0 < lim < 3 * const.R
    assert np.isnan(heat_capacity(F51, np.zeros(51), 1))
    # negative predicted densities are clipped
    assert heat_capacity(F51, d - 0.01, 1) == pytest.approx(heat_capacity(F51, d, 1))


def test_average_frequency():
    d = np.zeros(51)
    d[15] = 3.0
    assert average_frequency(F51, d) == pytest.approx(300.0)
    assert average_frequency(F51, np.ones(51)) == pytest.approx(500.0)
    rng = np.random.default_rng(2)
    r = rng.random((3, 51))
    assert average_frequency(F51, r) == pytest.approx(average_frequency(F51, 7 * r))
    assert np.isnan(average_frequency(F51, np.zeros(51)))


# ----------------------------------------------------------------------------- VB gap
E128 = -4.0 + 0.0625 * (np.arange(128) + 0.5)


def _with_gaps(*gaps: tuple[float, float], base: float = 5.0, low: float = 0.3) -> np.ndarray:
    """A 128-bin eDOS of ``base`` states/eV with ``low`` in the bins inside each (lo, hi)."""
    d = np.full(128, base)
    for lo, hi in gaps:
        d[(E128 > lo) & (E128 < hi)] = low
    return d


def test_band_edge_grid_detection():
    assert is_band_edge_grid(E128)
    assert not is_band_edge_grid(np.linspace(-5, 5, 201))
    assert not is_band_edge_grid(np.arange(-5, 10, 0.05))
    assert not is_band_edge_grid(F51)


def test_vb_gap_single_gap_positive():
    d = _with_gaps((-1.75, -0.5))  # 20 bins, edges -1.75 .. -0.5
    assert vb_gap_regions(E128, d) == [[(-1.75, -0.5)]]
    assert vb_gap_flags(E128, d).tolist() == [True]


@pytest.mark.parametrize(
    "gap, positive",
    [
        ((-1.25, -0.25), True),  # width exactly 1 eV, upper edge exactly -0.25
        ((-1.1875, -0.25), False),  # 15 bins = 0.9375 eV: too narrow
        ((-1.5, -0.1875), False),  # upper edge above -0.25
        ((-2.0, -1.0), True),  # upper edge exactly -1
        ((-2.0, -1.0625), False),  # upper edge below -1
        ((-1.5, 0.5), False),  # low DOS up to E_F (upper edge 0): not a VB gap
    ],
)
def test_vb_gap_criteria_boundaries(gap, positive):
    assert vb_gap_flags(E128, _with_gaps(gap))[0] == positive


def test_vb_gap_two_gaps_is_not_single():
    two = _with_gaps((-1.75, -0.5), (-3.5, -2.25))
    assert len(vb_gap_regions(E128, two)[0]) == 2
    assert not vb_gap_flags(E128, two)[0]
    # a second low run narrower than 1 eV is no gap: still single
    assert vb_gap_flags(E128, _with_gaps((-1.75, -0.5), (-3.0, -2.5)))[0]


def test_vb_gap_threshold_and_open_window():
    d = _with_gaps((-1.75, -0.5), low=1.0)  # DOS == 1 is not "below 1 state/eV"
    assert not vb_gap_flags(E128, d)[0]
    assert vb_gap_flags(E128, d, threshold=1.01)[0]
    # a low run touching the bottom of the window has no resolved lower edge
    open_bottom = _with_gaps((-1.75, -0.5), (-4.1, -2.5))
    assert vb_gap_flags(E128, open_bottom)[0]
    assert not vb_gap_flags(E128, open_bottom, require_lower_edge=False)[0]
    zero = np.zeros((1, 128))
    assert not vb_gap_flags(E128, zero)[0]
    assert not vb_gap_flags(E128, zero, require_lower_edge=False)[0]
    # gaps in the conduction band are ignored
    assert not vb_gap_flags(E128, _with_gaps((0.5, 2.0)))[0]


def test_classification_scores():
    pred = np.array([1, 1, 0, 0, 1], dtype=bool)
    true = np.array([1, 0, 1, 0, 1], dtype=bool)
    s = classification_scores(pred, true)
    assert s == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    none = classification_scores(np.zeros(4, bool), np.zeros(4, bool))
    assert none == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    s = classification_scores([True, False], [False, True])
    assert s == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert classification_scores([True, True], [True, False])["f1"] == pytest.approx(2 / 3)
