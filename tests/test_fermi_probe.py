"""The DOSTransformer A.2 Fermi-energy probe's output layer (issue 11 item 6).

A.2: "a four-layered MLP with a non-linearity in each layer". Default: a PReLU after the output
layer too (a non-linearity that maps onto ℝ, so z-scored targets of both signs stay reachable);
``output_activation: none`` keeps the linear output.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from dos_bench.config import CONF_DIR
from dos_bench.physics import FermiProbe


def _step_edges(n: int, length: int, seed: int):
    rng = np.random.default_rng(seed)
    pos = rng.integers(3, length - 3, n)
    x = (np.arange(length)[None, :] < pos[:, None]).astype(float)
    x += 0.02 * rng.random((n, length))
    return x, -4.0 + 0.4 * pos  # E_F of both signs


def _names(probe: FermiProbe) -> list[str]:
    return [m.__class__.__name__ for m in probe.model_]


def _reference(probe: FermiProbe, x: np.ndarray, prelu: bool) -> np.ndarray:
    """The probe as plain matrix products with its own weights and standardisation."""
    lin = [m for m in probe.model_ if isinstance(m, torch.nn.Linear)]
    h = torch.as_tensor((x - probe.x_mean_) / probe.x_std_, dtype=torch.float32)
    for i, m in enumerate(lin):
        h = h @ m.weight.T + m.bias
        if i < len(lin) - 1:
            h = torch.clamp_min(h, 0.0)
    if prelu:
        a = probe.model_[-1].weight
        h = torch.where(h >= 0, h, a * h)
    return h.squeeze(1).double().numpy() * probe.y_std_ + probe.y_mean_


def test_default_has_a_nonlinearity_after_each_of_the_four_layers():
    x, y = _step_edges(300, 24, 0)
    probe = FermiProbe(hidden=(32, 16, 8), epochs=30, batch_size=32, seed=0).fit(x, y)
    assert _names(probe) == ["Linear", "ReLU"] * 3 + ["Linear", "PReLU"]
    assert probe.output_activation == "prelu"
    xt, yt = _step_edges(200, 24, 1)
    pred = probe.predict(xt)
    np.testing.assert_allclose(pred, _reference(probe, xt, prelu=True), atol=1e-5)
    # the non-linear output still reaches standardised targets of both signs ...
    z = (pred - probe.y_mean_) / probe.y_std_
    assert (z < -0.5).any() and (z > 0.5).any()
    # ... and the probe still learns the edge (same bar as the linear output's test)
    assert probe.rmse(xt, yt) < 0.15 * yt.std()
    slope = float(probe.model_[-1].weight)
    assert slope > 0.0  # a PReLU with a positive slope is a bijection of the real line


def test_output_activation_none_is_the_linear_output():
    x, y = _step_edges(300, 24, 0)
    probe = FermiProbe(
        hidden=(32, 16, 8), epochs=30, batch_size=32, seed=0, output_activation="none"
    ).fit(x, y)
    assert _names(probe) == ["Linear", "ReLU"] * 3 + ["Linear"]
    xt, yt = _step_edges(200, 24, 1)
    np.testing.assert_allclose(probe.predict(xt), _reference(probe, xt, prelu=False), atol=1e-5)
    assert probe.rmse(xt, yt) < 0.15 * yt.std()
    with pytest.raises(ValueError, match="output_activation"):
        FermiProbe(output_activation="relu")


def test_train_yaml_lists_every_probe_option_and_defaults_to_the_paper():
    import inspect

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train")
    args = dict(cfg.evaluation.fermi_probe_args)
    assert args["output_activation"] == "prelu"
    params = set(inspect.signature(FermiProbe).parameters) - {"seed"}  # seed = run seed
    assert set(args) == params
    probe = FermiProbe(seed=0, **{**args, "epochs": 1, "hidden": list(args["hidden"])})
    x, y = _step_edges(40, 12, 0)
    probe.fit(x, y)
    assert isinstance(probe.model_[-1], torch.nn.PReLU)
    assert [m.out_features for m in probe.model_ if isinstance(m, torch.nn.Linear)] == [
        256, 128, 64, 1
    ]  # fmt: skip
