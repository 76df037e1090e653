r"""Small reusable torch modules: radial basis expansions and an MLP builder."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dos_bench.io import ConfigError
from dos_bench.models.gemm import Linear

__all__ = ["ACTIVATIONS", "GaussianExpansion", "activation", "mlp"]


class GaussianExpansion(nn.Module):
    r"""Expand distances in Gaussians centred on a uniform grid.

    .. math::
        \mathbf{e}_k(d) = \exp\!\big(-\gamma\,(d - \mu_k)^2\big), \qquad
        \mu_k = \text{start} + k\,\Delta,\quad
        \Delta = \frac{\text{stop} - \text{start}}{\text{num} - 1},\quad k = 0 \ldots \text{num}-1

    with :math:`\gamma` chosen by ``rbf_style``:

    - ``"cgcnn"`` (CGCNN / Mat2Spec convention): :math:`\gamma = 1/\text{width}^2`, i.e.
      :math:`\exp(-(d-\mu_k)^2/\text{width}^2)`.  The defaults (0 to 8 Å, 41 centres, width
      0.2 Å) are CGCNN's ``GaussianDistance(dmin=0, dmax=8, step=0.2)``.
    - ``"alignn"`` (ALIGNN's ``RBFExpansion``): :math:`\gamma = 1/\Delta`, the inverse of the
      centre spacing (note: not squared), ``width`` is ignored.

    An explicit ``gamma`` overrides both rules.  Each basis function is 1 at its centre.

    Args:
        start: first centre :math:`\mu_0`.
        stop: last centre :math:`\mu_{\text{num}-1}`.
        num: number of centres (output features); at least 2 for ``"alignn"``.
        width: Gaussian width for the ``"cgcnn"`` style (same unit as ``d``).
        gamma: explicit :math:`\gamma` (overrides ``width`` and ``rbf_style``).
        rbf_style: ``"cgcnn"`` or ``"alignn"``.

    Shapes:
        - input: ``(*,)`` distances, typically ``(E,)``
        - output: ``(*, num)``
    """

    def __init__(
        self,
        start: float = 0.0,
        stop: float = 8.0,
        num: int = 41,
        width: float = 0.2,
        gamma: float | None = None,
        rbf_style: str = "cgcnn",
    ) -> None:
        super().__init__()
        if num < 1:
            raise ConfigError(f"GaussianExpansion num must be >= 1, got {num}")
        if rbf_style not in ("cgcnn", "alignn"):
            raise ConfigError(f"rbf_style must be 'cgcnn' or 'alignn', got {rbf_style!r}")
        if gamma is None:
            if rbf_style == "cgcnn":
                if width <= 0:
                    raise ConfigError(f"GaussianExpansion width must be > 0, got {width}")
                gamma = 1.0 / width**2
            else:
                if num < 2 or stop == start:
                    raise ConfigError("rbf_style='alignn' needs num >= 2 and stop != start")
                gamma = 1.0 / abs((stop - start) / (num - 1))
        if not (gamma > 0 and math.isfinite(gamma)):
            raise ConfigError(f"GaussianExpansion gamma must be positive, got {gamma}")
        self.gamma = float(gamma)
        self.num = int(num)
        self.rbf_style = rbf_style
        self.register_buffer(
            "centers", torch.linspace(start, stop, num, dtype=torch.float32), persistent=False
        )

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.gamma * (d.unsqueeze(-1) - self.centers.to(d.dtype)) ** 2)

    def extra_repr(self) -> str:
        c = self.centers
        return (
            f"start={c[0].item():g}, stop={c[-1].item():g}, num={self.num}, "
            f"gamma={self.gamma:.4g}, rbf_style={self.rbf_style!r}"
        )


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}
"""Activation modules by name."""


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (see :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        ) from None


def mlp(
    dims: Sequence[int],
    act: str = "silu",
    norm: str | None = None,
    dropout: float = 0.0,
    last_act: bool = False,
) -> nn.Sequential:
    r"""A multilayer perceptron ``Linear(dims[0], dims[1]) ... Linear(dims[-2], dims[-1])``.

    Every hidden layer is followed by ``norm -> act -> dropout``:

    .. math::
        h_{l+1} = \text{Dropout}(\sigma(\text{Norm}(W_l h_l + b_l)))

    The last linear layer is bare unless ``last_act`` (then it gets the same
    ``norm -> act -> dropout`` block, for MLPs used as hidden blocks).

    Args:
        dims: layer widths, input first; at least two entries.
        act: activation name (:data:`ACTIVATIONS`).
        norm: ``None``, ``"batch"`` (``BatchNorm1d``) or ``"layer"`` (``LayerNorm``).
        dropout: dropout probability after each activation (0 adds no module).
        last_act: also apply norm/activation/dropout after the last layer.

    Shapes:
        - input: ``(N, dims[0])`` (``(*, dims[0])`` without batch norm)
        - output: ``(N, dims[-1])``
    """
    dims = [int(d) for d in dims]
    if len(dims) < 2 or min(dims) < 1:
        raise ConfigError(f"mlp needs at least two positive widths, got {dims}")
    if norm not in (None, "batch", "layer"):
        raise ConfigError(f"mlp norm must be None, 'batch' or 'layer', got {norm!r}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"mlp dropout must be in [0, 1), got {dropout}")
    activation(act)  # validate the name early
    layers: list[nn.Module] = []
    n_layers = len(dims) - 1
    for i in range(n_layers):
        layers.append(Linear(dims[i], dims[i + 1]))
        if i < n_layers - 1 or last_act:
            if norm == "batch":
                layers.append(nn.BatchNorm1d(dims[i + 1]))
            elif norm == "layer":
                layers.append(nn.LayerNorm(dims[i + 1]))
            layers.append(activation(act))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
