"""Target representations: invertible transforms of the spectrum fitted on the train split only.

The model predicts in *representation space*; metrics are computed after :meth:`decode` in native
units (facts.md §3.5, §4.5). Per-sample normalisations (``max_norm``, ``sum_norm``) are only
invertible given the per-sample scale; like the Xtal2DoS and Mat2Spec code (facts.md §3.5, §4.4,
"rescaling at test"), the native-unit prediction uses the *ground-truth* scale of each material.
Statistics of ``standard`` come from the train split only (unlike Mat2Spec ``standardized``, which
used the whole data set, facts.md §6.2).

Each transform is an ``nn.Module`` so that its fitted statistics are buffers saved in every
checkpoint. ``link`` is applied to the raw model output to produce a valid representation
(``softmax`` for sum-normalised targets as Xtal2DoS §2.3, ``relu`` for non-negative ones).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from dos_bench.io import ConfigError

__all__ = ["TargetTransform", "Raw", "MaxNorm", "SumNorm", "Standard"]

_LINKS = ("none", "relu", "softplus", "softmax")


class TargetTransform(nn.Module):
    """Base class. Subclasses implement :meth:`_scale`, :meth:`_encode`, :meth:`_decode`.

    Args:
        link: activation applied to model outputs (``none``, ``relu``, ``softplus``, ``softmax``).
        clip_native: clamp decoded spectra at zero (a DOS is non-negative; DOSTransformer clamps
            predictions before its metrics, facts.md §2.6).

    Shapes:
        ``encode``: ``(B, L)`` native → ``(z (B, L'), scale (B, 1))``;
        ``decode``: ``(z (B, L'), scale (B, 1))`` → ``(B, L)`` native.
    """

    name = "base"
    per_sample = False

    def __init__(self, link: str = "none", clip_native: bool = True) -> None:
        super().__init__()
        if link not in _LINKS:
            raise ConfigError(f"target_repr.link must be one of {_LINKS}, got {link!r}")
        self.link_name = link
        self.clip_native = clip_native
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # ---------------------------------------------------------------- public API
    def fit(self, y_train: np.ndarray | Tensor) -> TargetTransform:
        y = torch.as_tensor(np.asarray(y_train), dtype=torch.float32)
        self._fit(y)
        self.fitted.fill_(True)
        return self

    def latent_dim(self, n_points: int) -> int:
        """Length of the representation for a native grid of ``n_points``."""
        return n_points

    def encode(self, y: Tensor) -> tuple[Tensor, Tensor]:
        scale = self._scale(y)
        return self._encode(y, scale), scale

    def decode(self, z: Tensor, scale: Tensor) -> Tensor:
        y = self._decode(z, scale)
        return y.clamp_min(0.0) if self.clip_native else y

    def link(self, out: Tensor) -> Tensor:
        if self.link_name == "none":
            return out
        if self.link_name == "relu":
            return torch.relu(out)
        if self.link_name == "softplus":
            return nn.functional.softplus(out)
        return torch.softmax(out.float(), dim=-1)

    def extra_repr(self) -> str:
        return f"link={self.link_name}, clip_native={self.clip_native}"

    # ---------------------------------------------------------------- hooks
    def _fit(self, y: Tensor) -> None:
        pass

    def _scale(self, y: Tensor) -> Tensor:
        return torch.ones(y.shape[0], 1, dtype=y.dtype, device=y.device)

    def _encode(self, y: Tensor, scale: Tensor) -> Tensor:
        return y

    def _decode(self, z: Tensor, scale: Tensor) -> Tensor:
        return z


class Raw(TargetTransform):
    """Native units, unchanged."""

    name = "raw"


class MaxNorm(TargetTransform):
    """``y / max(y)`` per material (DOSTransformer code, facts.md §2.1; Mat2Spec normalized_max)."""

    name = "max_norm"
    per_sample = True

    def __init__(self, link: str = "none", clip_native: bool = True, eps: float = 1e-8) -> None:
        super().__init__(link, clip_native)
        self.eps = eps

    def _scale(self, y: Tensor) -> Tensor:
        return y.amax(dim=-1, keepdim=True).clamp_min(self.eps)

    def _encode(self, y: Tensor, scale: Tensor) -> Tensor:
        return y / scale

    def _decode(self, z: Tensor, scale: Tensor) -> Tensor:
        return z * scale


class SumNorm(TargetTransform):
    """``y / Σ y`` per material (Xtal2DoS §3.4 / Mat2Spec normalized_sum); sum over grid points."""

    name = "sum_norm"
    per_sample = True

    def __init__(self, link: str = "softmax", clip_native: bool = True, eps: float = 1e-8) -> None:
        super().__init__(link, clip_native)
        self.eps = eps

    def _scale(self, y: Tensor) -> Tensor:
        return y.sum(dim=-1, keepdim=True).clamp_min(self.eps)

    def _encode(self, y: Tensor, scale: Tensor) -> Tensor:
        return y / scale

    def _decode(self, z: Tensor, scale: Tensor) -> Tensor:
        return z * scale


class Standard(TargetTransform):
    """Per-grid-point z-score with mean and std of the **train split only**.

    Args:
        min_std: floor on the std so that grid points that are constant in the train split
            (e.g. always zero) do not blow up.
    """

    name = "standard"

    def __init__(self, link: str = "none", clip_native: bool = True, min_std: float = 1e-6):
        super().__init__(link, clip_native)
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("std", torch.ones(0))

    def _fit(self, y: Tensor) -> None:
        self.mean = y.mean(dim=0)
        self.std = y.std(dim=0, unbiased=False).clamp_min(self.min_std)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # buffers change shape when fitted: adopt the checkpoint's shapes before loading
        for name in ("mean", "std"):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError("target_repr=standard used before fit() on the train split")

    def _encode(self, y: Tensor, scale: Tensor) -> Tensor:
        self._check()
        return (y - self.mean) / self.std

    def _decode(self, z: Tensor, scale: Tensor) -> Tensor:
        self._check()
        return z * self.std + self.mean
