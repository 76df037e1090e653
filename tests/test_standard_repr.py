"""``standard`` target representation: the std's degrees of freedom (issue 11, item 5).

Mat2Spec's ``DATA_normalizer`` (``Mat2Spec_Codes/Mat2Spec/data.py``) standardises every energy
point with ``torch.std`` over the materials, i.e. the unbiased std (divisor N − 1); the paper
only says "zero-mean, unit-variance". dos_bench's default follows the code (``std_ddof: 1``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dos_bench.config import CONF_DIR
from dos_bench.data.transforms import Standard
from dos_bench.io import ConfigError

Y = np.random.default_rng(3).random((5, 8)) * 4.0
Y[:, 0] = 0.0  # a point constant over the train set: floored by min_std


def test_default_std_is_unbiased_as_mat2spec() -> None:
    tt = Standard().fit(Y)
    ref = np.std(Y, axis=0, ddof=1)
    ref[0] = 1e-6
    np.testing.assert_allclose(tt.std.numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(tt.mean.numpy(), Y.mean(0), rtol=1e-6)
    # z of the train set: zero mean, sample variance 1 at every non-constant point
    z, _ = tt.encode(torch.as_tensor(Y, dtype=torch.float32))
    np.testing.assert_allclose(z[:, 1:].var(dim=0, unbiased=True).numpy(), 1.0, rtol=1e-5)


def test_population_std_with_ddof_zero() -> None:
    tt = Standard(std_ddof=0).fit(Y)
    np.testing.assert_allclose(tt.std.numpy()[1:], np.std(Y, axis=0, ddof=0)[1:], rtol=1e-6)
    ratio = Standard(std_ddof=1).fit(Y).std[1:] / tt.std[1:]
    np.testing.assert_allclose(ratio.numpy(), np.sqrt(5 / 4), rtol=1e-6)


@pytest.mark.parametrize("ddof", [0, 1])
def test_round_trip_and_state_dict(ddof: int) -> None:
    y = torch.as_tensor(Y, dtype=torch.float32)
    tt = Standard(std_ddof=ddof).fit(Y[:4])
    fresh = Standard(std_ddof=ddof)
    fresh.load_state_dict(tt.state_dict())
    z, s = tt.encode(y)
    torch.testing.assert_close(fresh.decode(z, s), y, atol=1e-5, rtol=0)
    torch.testing.assert_close(fresh.std, tt.std)


def test_bad_ddof_and_too_few_spectra() -> None:
    with pytest.raises(ConfigError, match="std_ddof"):
        Standard(std_ddof=2)
    with pytest.raises(ConfigError, match="more than 1"):
        Standard().fit(Y[:1])
    Standard(std_ddof=0).fit(Y[:1])  # the population std of one spectrum is 0 -> min_std


def test_yaml_states_the_authors_choice() -> None:
    cfg = OmegaConf.load(CONF_DIR / "target_repr" / "standard.yaml")
    assert cfg.std_ddof == 1 and cfg.min_std == pytest.approx(1e-6)
    tt = instantiate(cfg)
    assert isinstance(tt, Standard) and tt.std_ddof == 1
    np.testing.assert_allclose(tt.fit(Y).std.numpy()[1:], np.std(Y, 0, ddof=1)[1:], rtol=1e-6)
