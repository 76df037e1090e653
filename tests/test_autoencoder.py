"""AE-ALIGNN autoencoder: the activation of its latent layer (ALIGNN-DOS §4 iii, issue 11 item 4).

The paper gives every encoder layer a ReLU, the latent layer included; ``latent_activation: none``
keeps the earlier linear latent as a named option.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from dos_bench.config import CONF_DIR
from dos_bench.data.transforms import Autoencoder, MaxNorm
from dos_bench.io import ConfigError


def _spectra(n: int = 120, length: int = 30, seed: int = 0) -> torch.Tensor:
    g = torch.linspace(0, 1, length)
    rng = np.random.default_rng(seed)
    c = torch.tensor(rng.uniform(0.2, 0.8, n), dtype=torch.float32)[:, None]
    w = torch.tensor(rng.uniform(0.05, 0.2, n), dtype=torch.float32)[:, None]
    return 2.0 * torch.exp(-((g - c) ** 2) / w**2) + 0.1


def _reference(tt: Autoencoder, x: torch.Tensor, relu_latent: bool):
    """The paper's autoencoder written as plain matrix products with the module's weights."""

    def weights(seq):
        return [(m.weight.detach(), m.bias.detach()) for m in seq if isinstance(m, torch.nn.Linear)]

    enc, dec = weights(tt.encoder), weights(tt.decoder)
    h = x
    for i, (w, b) in enumerate(enc):
        h = h @ w.T + b
        if i < len(enc) - 1 or relu_latent:
            h = torch.clamp_min(h, 0.0)
    z = h
    for i, (w, b) in enumerate(dec):
        h = h @ w.T + b
        h = torch.sigmoid(h) if i == len(dec) - 1 else torch.clamp_min(h, 0.0)
    return z, h


def _fit(**kw) -> Autoencoder:
    return Autoencoder(
        inner=MaxNorm(), latent=6, hidden=[24, 12], epochs=5, lr=3e-3, seed=1, **kw
    ).fit(_spectra())


def test_latent_is_relu_by_default_and_equals_plain_layers():
    tt = _fit()
    y = _spectra(50, seed=3)
    z, s = tt.encode(y)
    assert z.shape == (50, 6) and bool((z >= 0).all())
    assert tt.latent_activation == "relu"
    assert isinstance(tt.encoder[-1], torch.nn.ReLU)
    x = y / y.amax(1, keepdim=True)  # the inner MaxNorm
    z_ref, rec_ref = _reference(tt, x, relu_latent=True)
    torch.testing.assert_close(z, z_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(tt.decode(z, s), rec_ref * s, atol=1e-6, rtol=0)


def test_latent_activation_none_restores_the_linear_latent():
    tt = _fit(latent_activation="none")
    assert isinstance(tt.encoder[-1], torch.nn.Linear)
    y = _spectra(50, seed=3)
    z, s = tt.encode(y)
    assert bool((z < 0).any())  # a linear latent takes both signs
    x = y / y.amax(1, keepdim=True)
    z_ref, rec_ref = _reference(tt, x, relu_latent=False)
    torch.testing.assert_close(z, z_ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(tt.decode(z, s), rec_ref * s, atol=1e-6, rtol=0)
    # same parameter shapes either way: only the activation differs
    relu = _fit()
    assert [p.shape for p in tt.state_dict().values()] == [
        p.shape for p in relu.state_dict().values()
    ]


def test_latent_activation_is_checked():
    with pytest.raises(ConfigError, match="latent_activation"):
        Autoencoder(inner=MaxNorm(), latent_activation="tanh")


@pytest.mark.parametrize("value", [None, "none"])
def test_yaml_default_is_the_paper_and_option_selects_linear(value):
    overrides = ["target_repr=autoencoder"]
    if value is not None:
        overrides.append(f"target_repr.latent_activation={value}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    tt = instantiate(cfg.target_repr, seed=0, epochs=1)
    assert tt.latent_activation == (value or "relu")
