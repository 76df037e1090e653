"""Training objectives in representation space.

Each loss is a small ``nn.Module`` called as ``loss(pred, target, out=None)``: ``pred`` and
``target`` of shape ``(B, L)`` (the prediction already through the target representation's
link), ``out`` the model's full output dict (composite losses such as Mat2Spec's read their extra
terms from it); it returns a scalar. Spectral losses are computed in fp32
even under mixed precision.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MSELoss", "MAELoss"]


class MSELoss(nn.Module):
    """Mean squared error over all entries (ALIGNN-DOS, Mat2Spec ``MSE``)."""

    def forward(self, pred: Tensor, target: Tensor, out: dict | None = None) -> Tensor:
        return torch.mean((pred.float() - target.float()) ** 2)


class MAELoss(nn.Module):
    """Mean absolute error over all entries (Mat2Spec ``MAE``)."""

    def forward(self, pred: Tensor, target: Tensor, out: dict | None = None) -> Tensor:
        return torch.mean(torch.abs(pred.float() - target.float()))
