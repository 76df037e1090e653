"""Round trips of every target representation, fitted on train only."""

import numpy as np
import pytest
import torch

from dos_bench.data.transforms import (
    Autoencoder,
    MaxNorm,
    MinMax,
    Raw,
    Standard,
    SumNorm,
    ValenceNorm,
)
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


def test_min_max_round_trip_and_range():
    tt = MinMax()
    z, s = tt.encode(Y)
    assert torch.allclose(z.amin(1), torch.zeros(6)) and torch.allclose(z.amax(1), torch.ones(6))
    assert torch.allclose(tt.decode(z, s), Y, atol=1e-5)


def test_valence_norm_reads_the_batch_column():
    class B:
        n_valence = torch.tensor([2.0, 4.0, 1.0, 8.0, 5.0, 10.0])

    tt = ValenceNorm()
    assert tt.required_columns == ("n_valence",)
    z, s = tt.encode(Y, B())
    assert torch.allclose(z[1], Y[1] / 4.0)
    assert torch.allclose(tt.decode(z, s), Y, atol=1e-5)
    with pytest.raises(RuntimeError, match="n_valence"):
        tt.encode(Y)


def test_autoencoder_trains_on_train_only_and_reconstructs():
    # smooth two-parameter spectra: a 4-d latent must reconstruct them well
    g = torch.linspace(0, 1, 40)
    rng = np.random.default_rng(0)
    c = torch.tensor(rng.uniform(0.2, 0.8, 200), dtype=torch.float32)[:, None]
    w = torch.tensor(rng.uniform(0.05, 0.2, 200), dtype=torch.float32)[:, None]
    y = 3.0 * torch.exp(-((g - c) ** 2) / w**2)
    tt = Autoencoder(inner=MaxNorm(), latent=4, hidden=[32, 16], epochs=300, lr=3e-3, seed=0)
    tt.fit(y[:150])
    assert tt.latent_dim(40) == 4
    x = y[150:] / y[150:].amax(1, keepdim=True)
    mean_baseline = float(torch.mean(torch.abs(x - (y[:150] / 3.0).mean(0))))
    assert tt.reconstruction_mae < 0.3 * mean_baseline
    z, s = tt.encode(y[150:])
    assert z.shape == (50, 4)
    rec = tt.decode(z, s)
    assert torch.mean(torch.abs(rec - y[150:])) < 0.15
    # the decoder is frozen and the state round-trips into a fresh transform
    assert not any(p.requires_grad for p in tt.decoder.parameters())
    fresh = Autoencoder(inner=MaxNorm(), latent=4, hidden=[32, 16])
    fresh.load_state_dict(tt.state_dict())
    assert torch.allclose(fresh.decode(z, s), rec, atol=1e-6)


def test_autoencoder_rejects_inner_outside_unit_interval():
    with pytest.raises(ConfigError, match="sigmoid"):
        Autoencoder(inner=Raw(), latent=2, epochs=1).fit(Y)
