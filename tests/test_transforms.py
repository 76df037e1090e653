"""Round trips of every target representation, fitted on train only."""

import numpy as np
import pytest
import torch

from dos_bench.data.transforms import MaxNorm, Raw, Standard, SumNorm
from dos_bench.io import ConfigError

Y = torch.tensor(np.random.default_rng(0).random((6, 11)) * 5.0, dtype=torch.float32)


@pytest.mark.parametrize("cls", [Raw, MaxNorm, SumNorm, Standard])
def test_round_trip(cls):
    tt = cls(link="none").fit(Y[:4])
    z, s = tt.encode(Y)
    assert torch.allclose(tt.decode(z, s), Y, atol=1e-5)


def test_max_and_sum_norm_values():
    z, s = MaxNorm().encode(Y)
    assert torch.allclose(z.amax(dim=1), torch.ones(6))
    z, s = SumNorm().encode(Y)
    assert torch.allclose(z.sum(dim=1), torch.ones(6))
    assert torch.allclose(s[:, 0], Y.sum(dim=1))


def test_standard_uses_train_statistics_only():
    train = Y[:3]
    tt = Standard().fit(train)
    assert torch.allclose(tt.mean, train.mean(0))
    z, _ = tt.encode(train)
    assert torch.allclose(z.mean(0), torch.zeros(11), atol=1e-5)
    # not fitted on the full set: test rows are not standardised to zero mean
    z_all, _ = tt.encode(Y)
    assert not torch.allclose(z_all.mean(0), torch.zeros(11), atol=1e-3)


def test_standard_state_round_trip():
    tt = Standard().fit(Y)
    fresh = Standard()
    fresh.load_state_dict(tt.state_dict())
    z, s = tt.encode(Y)
    assert torch.allclose(fresh.decode(z, s), Y, atol=1e-5)


def test_standard_before_fit_is_an_error():
    with pytest.raises(RuntimeError, match="before fit"):
        Standard().encode(Y)


def test_links_and_clipping():
    out = torch.tensor([[-1.0, 0.0, 1.0]])
    assert torch.allclose(SumNorm(link="softmax").link(out).sum(), torch.tensor(1.0))
    assert (Raw(link="relu").link(out) >= 0).all()
    assert (Raw().decode(out, torch.ones(1, 1)) >= 0).all()
    assert Raw(clip_native=False).decode(out, torch.ones(1, 1)).min() == -1
    with pytest.raises(ConfigError, match="target_repr.link"):
        Raw(link="tanh")
