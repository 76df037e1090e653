"""Target representations: invertible transforms of the spectrum fitted on the train split only.

(Over 500 lines on purpose: seven small transforms on one base class, each a few dozen
lines; splitting them would scatter one registry.)

The model predicts in *representation space*; metrics are computed after :meth:`decode` in native
units (docs/papers/xtal2dos.md §3.5, docs/papers/mat2spec.md §4.5). Per-sample normalisations
(``max_norm``, ``sum_norm``) are only
invertible given the per-sample scale; like the Xtal2DoS and Mat2Spec code (docs/papers/xtal2dos.md
§3.5, docs/papers/mat2spec.md §4.4,
"rescaling at test"), the native-unit prediction uses the *ground-truth* scale of each material.
Statistics of ``standard`` come from the train split only (unlike Mat2Spec ``standardized``, which
used the whole data set, docs/pitfalls.md §6.2).

Each transform is an ``nn.Module`` so that its fitted statistics are buffers saved in every
checkpoint. ``link`` is applied to the raw model output to produce a valid representation
(``softmax`` for sum-normalised targets as Xtal2DoS §2.3, ``relu`` for non-negative ones).

What training and prediction need to know about a representation is asked of it, never read off
its name: :meth:`TargetTransform.check_dataset` (can it be used on this data set),
:meth:`~TargetTransform.normalise` (``metric_space=normalised``),
:attr:`~TargetTransform.normalised_per_material` and :meth:`~TargetTransform.unit_scale` (new
crystals, whose native scale is unknown) and :meth:`~TargetTransform.report` (extra sections of
``metrics.json``, e.g. an autoencoder's reconstruction error).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dos_bench.io import ConfigError

__all__ = [
    "TargetTransform",
    "Raw",
    "MaxNorm",
    "SumNorm",
    "MinMax",
    "Standard",
    "ValenceNorm",
    "Autoencoder",
]

log = logging.getLogger(__name__)

_LINKS = ("none", "relu", "softplus", "softmax", "relu_max")


class TargetTransform(nn.Module):
    """Base class. Subclasses implement :meth:`_scale`, :meth:`_encode`, :meth:`_decode`.

    Args:
        link: activation applied to model outputs (``none``, ``relu``, ``softplus``, ``softmax``,
            ``relu_max``: ReLU then division by the row maximum, Mat2Spec's normalized_max output).
        clip_native: clamp decoded spectra at zero (a DOS is non-negative; DOSTransformer clamps
            predictions before its metrics, docs/papers/dostransformer.md §2.6).

    Shapes:
        ``encode``: ``(B, L)`` native → ``(z (B, L'), scale (B, k))``;
        ``decode``: ``(z (B, L'), scale (B, k))`` → ``(B, L)`` native.

    ``required_columns`` names record metadata a transform needs per material (the datamodule
    attaches them to every graph, e.g. ``n_valence`` for :class:`ValenceNorm`); ``encode`` then
    reads them from the batch.
    """

    name = "base"
    per_sample = False
    required_columns: tuple[str, ...] = ()

    def __init__(self, link: str = "none", clip_native: bool = True) -> None:
        super().__init__()
        if link not in _LINKS:
            raise ConfigError(f"target_repr.link must be one of {_LINKS}, got {link!r}")
        self.link_name = link
        self.clip_native = clip_native
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    # ---------------------------------------------------------------- public API
    def fit(self, y_train: np.ndarray | Tensor, batch=None) -> TargetTransform:
        """Fit statistics on the train targets ``(N, L)``; ``batch`` carries required columns."""
        y = torch.as_tensor(np.asarray(y_train), dtype=torch.float32)
        self._fit(y)
        self.fitted.fill_(True)
        return self

    def latent_dim(self, n_points: int) -> int:
        """Length of the representation for a native grid of ``n_points``."""
        return n_points

    def encode(self, y: Tensor, batch=None) -> tuple[Tensor, Tensor]:
        scale = self._scale(y, batch)
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
        if self.link_name == "relu_max":
            r = torch.relu(out)
            return r / (r.amax(dim=-1, keepdim=True) + 1e-8)
        return torch.softmax(out.float(), dim=-1)

    def extra_repr(self) -> str:
        return f"link={self.link_name}, clip_native={self.clip_native}"

    # ---------------------------------------------------------------- what callers ask of it
    def check_dataset(self, dataset: str, attrs: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` if this representation cannot be used on the data set
        ``dataset`` whose record attributes are ``attrs`` (every data set qualifies by default)."""

    @property
    def normalised_per_material(self) -> bool:
        """True when decoding needs each material's own scale: for a new crystal that scale is
        unknown, so its spectrum is reported in the normalised units."""
        return self.per_sample

    def normalise(self, y: Tensor, batch=None) -> Tensor:
        """Native spectra ``(B, L)`` in this representation's per-material normalisation
        (``metric_space=normalised``)."""
        return self.encode(y, batch)[0]

    def unit_scale(self, n: int) -> Tensor:
        """The scale ``(n, k)`` under which :meth:`decode` leaves a normalised spectrum as it is
        (new crystals, whose own scale is unknown)."""
        return torch.ones(n, 1)

    def report(self, y_val: Tensor, batch_val=None) -> dict[str, Any]:
        """Sections this representation adds to a run's ``metrics.json`` after training, given
        the native validation targets ``(N, L)`` and their required columns (none by default)."""
        return {}

    # ---------------------------------------------------------------- hooks
    def _fit(self, y: Tensor) -> None:
        pass

    def _scale(self, y: Tensor, batch=None) -> Tensor:
        return torch.ones(y.shape[0], 1, dtype=y.dtype, device=y.device)

    def _encode(self, y: Tensor, scale: Tensor) -> Tensor:
        return y

    def _decode(self, z: Tensor, scale: Tensor) -> Tensor:
        return z


class Raw(TargetTransform):
    """Native units, unchanged."""

    name = "raw"


class MaxNorm(TargetTransform):
    """``y / max(y)`` per material (DOSTransformer code, docs/papers/dostransformer.md §2.1;
    Mat2Spec normalized_max)."""

    name = "max_norm"
    per_sample = True

    def __init__(self, link: str = "none", clip_native: bool = True, eps: float = 1e-8) -> None:
        super().__init__(link, clip_native)
        self.eps = eps

    def _scale(self, y: Tensor, batch=None) -> Tensor:
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

    def _scale(self, y: Tensor, batch=None) -> Tensor:
        return y.sum(dim=-1, keepdim=True).clamp_min(self.eps)

    def _encode(self, y: Tensor, scale: Tensor) -> Tensor:
        return y / scale

    def _decode(self, z: Tensor, scale: Tensor) -> Tensor:
        return z * scale


class Standard(TargetTransform):
    """Per-grid-point z-score with mean and std of the **train split only**.

    ``std_j = sqrt(Σ_i (y_ij − ȳ_j)² / (N − std_ddof))`` over the N training spectra. Mat2Spec's
    ``standardized`` setting (``Mat2Spec_Codes/Mat2Spec/data.py``, ``DATA_normalizer``: a plain
    ``torch.std`` over the materials) uses the unbiased std, ``std_ddof = 1``; the paper only
    says "zero-mean, unit-variance (Standard) scaling for each energy point" (P-M2S Results), so
    the code's choice is the default. ``std_ddof = 0`` gives the population std.

    Args:
        min_std: floor on the std so that grid points that are constant in the train split
            (e.g. always zero) do not blow up (Mat2Spec has no floor: such a point divides by 0).
        std_ddof: delta degrees of freedom of the std, 1 (unbiased, Mat2Spec code) or 0.
    """

    name = "standard"

    def __init__(
        self,
        link: str = "none",
        clip_native: bool = True,
        min_std: float = 1e-6,
        std_ddof: int = 1,
    ):
        super().__init__(link, clip_native)
        if std_ddof not in (0, 1):
            raise ConfigError(f"target_repr.std_ddof must be 0 or 1, got {std_ddof!r}")
        self.min_std = min_std
        self.std_ddof = int(std_ddof)
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("std", torch.ones(0))

    def _fit(self, y: Tensor) -> None:
        if y.shape[0] <= self.std_ddof:
            raise ConfigError(
                f"target_repr=standard with std_ddof={self.std_ddof} needs more than "
                f"{self.std_ddof} training spectra, got {y.shape[0]}"
            )
        self.mean = y.mean(dim=0)
        self.std = y.std(dim=0, correction=self.std_ddof).clamp_min(self.min_std)
        self._fitted_host = True

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # buffers change shape when fitted: adopt the checkpoint's shapes before loading
        for name in ("mean", "std"):
            key = prefix + name
            if key in state_dict:
                setattr(self, name, torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "fitted" in state_dict:  # read once here, not at every step
            self._fitted_host = bool(state_dict[prefix + "fitted"])

    def _check(self) -> None:
        # a host-side flag: reading the ``fitted`` buffer would wait for the device every step
        if not getattr(self, "_fitted_host", False):
            raise RuntimeError("target_repr=standard used before fit() on the train split")

    def _encode(self, y: Tensor, scale: Tensor) -> Tensor:
        self._check()
        return (y - self.mean) / self.std

    def _decode(self, z: Tensor, scale: Tensor) -> Tensor:
        self._check()
        return z * self.std + self.mean


class MinMax(TargetTransform):
    """``(y − min y) / (max y − min y)`` per material (DOSTransformer §A.1.2 as written; the code
    divides by the max only, which is :class:`MaxNorm`). The scale holds (min, range)."""

    name = "min_max"
    per_sample = True

    def __init__(self, link: str = "none", clip_native: bool = True, eps: float = 1e-8) -> None:
        super().__init__(link, clip_native)
        self.eps = eps

    def _scale(self, y: Tensor, batch=None) -> Tensor:
        lo = y.amin(dim=-1, keepdim=True)
        return torch.cat([lo, (y.amax(dim=-1, keepdim=True) - lo).clamp_min(self.eps)], dim=-1)

    def _encode(self, y: Tensor, scale: Tensor) -> Tensor:
        return (y - scale[:, :1]) / scale[:, 1:]

    def _decode(self, z: Tensor, scale: Tensor) -> Tensor:
        return z * scale[:, 1:] + scale[:, :1]

    def unit_scale(self, n: int) -> Tensor:
        """(min 0, range 1) for every material."""
        scale = torch.ones(n, 2)
        scale[:, 0] = 0.0
        return scale


class ValenceNorm(TargetTransform):
    """DOS divided by the number of valence electrons in the cell (ALIGNN-DOS §4 ii).

    ALIGNN-DOS reports its metrics in these units (states/eV/electron); set
    ``metric_space: representation`` in the experiment to report them that way.

    Args:
        column: record metadata column with the valence-electron count of each cell.
    """

    name = "valence_norm"
    per_sample = True

    def __init__(self, link: str = "none", clip_native: bool = True, column: str = "n_valence"):
        super().__init__(link, clip_native)
        self.column = column
        self.required_columns = (column,)

    def check_dataset(self, dataset: str, attrs: Mapping[str, Any]) -> None:
        """A data set already divided by the valence-electron count cannot be divided again."""
        if attrs.get("valence_normalised"):
            raise ConfigError(
                f"target_repr=valence_norm: dataset {dataset} is already divided by the valence "
                "electron count (see its attrs['valence_check']); use target_repr=raw"
            )

    def _scale(self, y: Tensor, batch=None) -> Tensor:
        if batch is None or not hasattr(batch, self.column):
            raise RuntimeError(
                f"target_repr=valence_norm needs the per-material column {self.column!r} in the "
                "batch; the dataset must provide it"
            )
        n = getattr(batch, self.column).to(y.dtype).reshape(-1, 1)
        if (n <= 0).any():
            raise ValueError(f"target_repr=valence_norm: non-positive {self.column} in the batch")
        return n

    def _encode(self, y: Tensor, scale: Tensor) -> Tensor:
        return y / scale

    def _decode(self, z: Tensor, scale: Tensor) -> Tensor:
        return z * scale


class Autoencoder(TargetTransform):
    """AE-ALIGNN (ALIGNN-DOS §4, Table 1): an autoencoder compresses the (inner-normalised)
    spectrum to ``latent`` numbers; the model predicts the latent and the frozen decoder maps
    it back.

    The autoencoder is trained in :meth:`fit` on the **train targets only** with an MSE
    reconstruction loss: fully connected layers of decreasing width, each followed by a ReLU
    (ALIGNN-DOS §4 iii: "each layer of the encoder uses a ReLU activation function" — so by
    default the latent itself passes through a ReLU and is non-negative), the decoder mirroring
    them with ReLU and ending in a sigmoid (outputs in [0, 1], so the inner representation must
    lie in [0, 1]: ``max_norm`` or ``valence_norm`` as the paper). Layer widths are not given in
    the text (Fig. 3); the default ``hidden=[256, 128, 64]`` is our choice.

    Args:
        inner: the transform applied before the autoencoder (its own statistics are fitted too).
        latent: latent size (8, 12, 16 or 20 in Table 1).
        hidden: encoder widths; the decoder mirrors them.
        latent_activation: ``relu`` (paper §4 iii, default: ReLU after the last encoder layer
            too, latent >= 0) or ``none`` (a linear latent layer, dos_bench's earlier behaviour).
        epochs, lr, batch_size, weight_decay: autoencoder training.
        val_fraction: share of the train targets held out to pick the best AE epoch.
        seed: seed of the AE initialisation and shuffling.

    After :meth:`fit`, ``reconstruction_mae`` holds the held-out reconstruction MAE in inner
    units (the paper reports 0.003 states/eV/electron for latent 12).
    """

    name = "autoencoder"
    per_sample = True

    def __init__(
        self,
        inner: TargetTransform,
        latent: int = 12,
        hidden: list[int] | tuple[int, ...] = (256, 128, 64),
        epochs: int = 200,
        lr: float = 1e-3,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        val_fraction: float = 0.1,
        seed: int = 0,
        link: str = "none",
        clip_native: bool = True,
        latent_activation: str = "relu",
    ) -> None:
        super().__init__(link, clip_native)
        if latent < 1:
            raise ConfigError(f"target_repr.latent must be >= 1, got {latent}")
        if latent_activation not in ("relu", "none"):
            raise ConfigError(
                f"target_repr.latent_activation must be relu or none, got {latent_activation!r}"
            )
        self.latent_activation = latent_activation
        self.inner = inner
        self.required_columns = tuple(inner.required_columns)
        self.latent, self.hidden = int(latent), [int(h) for h in hidden]
        self.epochs, self.lr, self.batch_size = int(epochs), float(lr), int(batch_size)
        self.weight_decay, self.val_fraction, self.seed = weight_decay, val_fraction, int(seed)
        self.encoder: nn.Module | None = None
        self.decoder: nn.Module | None = None
        self.reconstruction_mae: float | None = None

    def latent_dim(self, n_points: int) -> int:
        return self.latent

    def _build(self, n_points: int) -> None:
        dims = [n_points, *self.hidden, self.latent]
        enc: list[nn.Module] = []
        for i in range(len(dims) - 1):
            enc.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2 or self.latent_activation == "relu":
                enc.append(nn.ReLU())
        dec: list[nn.Module] = []
        rdims = dims[::-1]
        for i in range(len(rdims) - 1):
            dec.append(nn.Linear(rdims[i], rdims[i + 1]))
            dec.append(nn.ReLU() if i < len(rdims) - 2 else nn.Sigmoid())
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def fit(self, y_train, batch=None) -> Autoencoder:  # noqa: D401
        y = torch.as_tensor(np.asarray(y_train), dtype=torch.float32)
        self.inner.fit(y, batch)
        x, _ = self.inner.encode(y, batch)
        if float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6:
            raise ConfigError(
                f"target_repr=autoencoder: the inner representation {self.inner.name} spans "
                f"[{float(x.min()):.3g}, {float(x.max()):.3g}], but the sigmoid decoder outputs "
                "[0, 1]; use inner=max_norm (or valence_norm on valence-normalisable data)"
            )
        self._build(x.shape[1])
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._build(x.shape[1])
            perm = torch.randperm(len(x), generator=gen)
            n_val = max(1, int(round(self.val_fraction * len(x)))) if len(x) > 4 else 0
            xv, xt = x[perm[:n_val]], x[perm[n_val:]]
            params = list(self.encoder.parameters()) + list(self.decoder.parameters())
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
            best, best_state = float("inf"), None
            for _ in range(self.epochs):
                order = torch.randperm(len(xt), generator=gen)
                for i in range(0, len(xt), self.batch_size):
                    xb = xt[order[i : i + self.batch_size]]
                    loss = torch.mean((self.decoder(self.encoder(xb)) - xb) ** 2)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                with torch.no_grad():
                    ref = xv if n_val else xt
                    mae = float(torch.mean(torch.abs(self.decoder(self.encoder(ref)) - ref)))
                if mae < best:
                    best = mae
                    best_state = {k: v.clone() for k, v in self.state_dict().items()}
            if best_state is not None:
                self.load_state_dict(best_state)
        for p in list(self.encoder.parameters()) + list(self.decoder.parameters()):
            p.requires_grad_(False)
        self.reconstruction_mae = best
        self.fitted.fill_(True)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        if self.encoder is None and prefix + "encoder.0.weight" in state_dict:
            self._build(state_dict[prefix + "encoder.0.weight"].shape[1])
            for p in list(self.encoder.parameters()) + list(self.decoder.parameters()):
                p.requires_grad_(False)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check(self) -> None:
        if self.encoder is None:
            raise RuntimeError("target_repr=autoencoder used before fit() on the train split")

    def encode(self, y: Tensor, batch=None) -> tuple[Tensor, Tensor]:
        self._check()
        x, scale = self.inner.encode(y, batch)
        with torch.no_grad():
            z = self.encoder(x.float())
        return z, scale

    def decode(self, z: Tensor, scale: Tensor) -> Tensor:
        self._check()
        return self.inner.decode(self.decoder(z.float()), scale)

    def reconstruct(self, y: Tensor, batch=None) -> Tensor:
        """Native → latent → native, for reporting the reconstruction error on any split."""
        z, scale = self.encode(y, batch)
        with torch.no_grad():
            return self.decode(z, scale)

    @property
    def normalised_per_material(self) -> bool:
        return self.inner.normalised_per_material

    def normalise(self, y: Tensor, batch=None) -> Tensor:
        """The inner representation's normalisation (the autoencoder's input)."""
        return self.inner.normalise(y, batch)

    def unit_scale(self, n: int) -> Tensor:
        return self.inner.unit_scale(n)

    def report(self, y_val: Tensor, batch_val=None) -> dict[str, Any]:
        """``autoencoder``: the latent size and the reconstruction MAE on the held-out part of
        the train split (inner units) and on the validation split (native units)."""
        y_val = torch.as_tensor(y_val)
        rec = self.reconstruct(y_val, batch_val)
        section = {
            "latent": self.latent,
            "reconstruction_mae_heldout_train": self.reconstruction_mae,
            "reconstruction_mae_val_native": float(torch.mean(torch.abs(rec - y_val))),
        }
        log.info(
            "autoencoder (latent %d) reconstruction MAE on validation: %.4g (native units)",
            self.latent,
            section["reconstruction_mae_val_native"],
        )
        return {"autoencoder": section}
