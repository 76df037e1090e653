"""Radial basis expansion and the MLP builder."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dos_bench.io import ConfigError
from dos_bench.models.gemm import Linear
from dos_bench.models.layers import GaussianExpansion, mlp


def test_gaussian_cgcnn_defaults() -> None:
    rbf = GaussianExpansion()
    assert rbf.centers.shape == (41,)
    torch.testing.assert_close(rbf.centers[:3], torch.tensor([0.0, 0.2, 0.4]))
    assert rbf.gamma == pytest.approx(1 / 0.04)
    out = rbf(torch.tensor([0.0, 2.0, 8.0]))
    assert out.shape == (3, 41)
    assert out[0, 0] == 1.0 and out[1, 10] == pytest.approx(1.0) and out[2, 40] == 1.0


def test_gaussian_hand_computed() -> None:
    # centres 0, 1, 2; width 0.5 -> exp(-(d - mu)^2 / 0.25)
    rbf = GaussianExpansion(0.0, 2.0, 3, width=0.5)
    out = rbf(torch.tensor([0.5, 1.0]))
    expected = torch.tensor(
        [
            [math.exp(-1.0), math.exp(-1.0), math.exp(-9.0)],
            [math.exp(-4.0), 1.0, math.exp(-4.0)],
        ]
    )
    torch.testing.assert_close(out, expected)


def test_gaussian_alignn_style() -> None:
    # centres 0, 2, 4, 6, 8: spacing 2 -> gamma = 1/2, exp(-(d - mu)^2 / 2)
    rbf = GaussianExpansion(0.0, 8.0, 5, rbf_style="alignn")
    assert rbf.gamma == pytest.approx(0.5)
    out = rbf(torch.tensor([1.0]))
    expected = torch.tensor(
        [[math.exp(-0.5), math.exp(-0.5), math.exp(-4.5), math.exp(-12.5), math.exp(-24.5)]]
    )
    torch.testing.assert_close(out, expected)


def test_gaussian_explicit_gamma_and_shapes() -> None:
    rbf = GaussianExpansion(0.0, 1.0, 2, gamma=3.0)
    out = rbf(torch.tensor([[0.5, 1.0]], dtype=torch.float64))
    assert out.shape == (1, 2, 2) and out.dtype == torch.float64
    assert out[0, 0, 0].item() == pytest.approx(math.exp(-0.75))
    assert "centers" not in rbf.state_dict()
    with pytest.raises(ConfigError):
        GaussianExpansion(rbf_style="schnet")
    with pytest.raises(ConfigError):
        GaussianExpansion(width=0.0)


def test_mlp_dims() -> None:
    net = mlp([8, 16, 32, 4])
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 32), (32, 4)]
    assert sum(isinstance(m, nn.SiLU) for m in net) == 2
    assert isinstance(net[-1], nn.Linear)
    assert net(torch.zeros(5, 8)).shape == (5, 4)


def test_mlp_options() -> None:
    net = mlp([4, 6, 3], act="relu", norm="batch", dropout=0.1, last_act=True)
    kinds = [type(m) for m in net]
    assert kinds == [Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout] * 2
    net = mlp([4, 3], norm="layer")
    assert [type(m) for m in net] == [Linear]
    net = mlp([4, 5, 3], norm="layer")
    assert [type(m) for m in net] == [Linear, nn.LayerNorm, nn.SiLU, Linear]
    for bad in ({"dims": [4]}, {"dims": [4, 3], "act": "swish2"}, {"dims": [4, 3], "norm": "x"}):
        with pytest.raises(ConfigError):
            mlp(**bad)
