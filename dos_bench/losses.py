"""Every training objective, in representation space.

Each loss is a small ``nn.Module`` called as ``loss(pred, target, out=None)``: ``pred`` and
``target`` of shape ``(B, M)`` (the prediction already through the target representation's link,
e.g. softmax for ``sum_norm``), ``out`` the model's full output dict (linked ``pred*`` entries plus
head extras; composite losses such as Mat2Spec's read their extra terms from it). Every loss is
computed in fp32 (style.md: spectral losses in fp32 even under mixed precision) and returns a
scalar.

Distribution losses (:class:`KLLoss`, :class:`WDLoss`) treat each spectrum as a distribution over
grid points; they expect non-negative predictions (a softmax link) and renormalise defensively.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dos_bench.io import ConfigError

__all__ = [
    "MSELoss",
    "MAELoss",
    "RMSELoss",
    "KLLoss",
    "WDLoss",
    "BregmanLoss",
    "Mat2SpecLoss",
    "gaussian_kl",
    "pairwise_gaussian_kl",
    "pair_counts",
    "contrastive_loss",
]


class MSELoss(nn.Module):
    """Mean squared error over all entries (ALIGNN-DOS, Mat2Spec ``MSE``)."""

    def forward(self, pred: Tensor, target: Tensor, out: dict | None = None) -> Tensor:
        return torch.mean((pred.float() - target.float()) ** 2)


class MAELoss(nn.Module):
    """Mean absolute error over all entries (Mat2Spec ``MAE``)."""

    def forward(self, pred: Tensor, target: Tensor, out: dict | None = None) -> Tensor:
        return torch.mean(torch.abs(pred.float() - target.float()))


def _normalise(x: Tensor, eps: float) -> Tensor:
    x = x.clamp_min(0.0)
    return x / (x.sum(dim=-1, keepdim=True) + eps)


class RMSELoss(nn.Module):
    r"""Per-sample RMSE over the grid, averaged over the batch (DOSTransformer code,
    docs/papers/dostransformer.md §2.5–2.6).

    .. math:: \mathcal L = \frac1B\sum_i \sqrt{\frac1M\sum_j(\hat y_{ij}-y_{ij})^2 + \varepsilon}

    (The seed paper's formula, P-DOST §3, is literally an MAE; the code and the table headers use
    this per-sample RMSE.) ``eps`` keeps the gradient finite at a perfect fit.
    """

    def __init__(self, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, out: dict | None = None) -> Tensor:
        mse = ((pred.float() - target.float()) ** 2).mean(dim=-1)
        return torch.sqrt(mse + self.eps).mean()


class KLLoss(nn.Module):
    r"""KL(true ‖ pred) between sum-normalised spectra (Xtal2DoS §2.3/§3.4 code; Mat2Spec KL).

    .. math::
        p = \frac{y}{\sum y + \varepsilon},\quad q = \frac{\hat y}{\sum \hat y + \varepsilon},
        \quad \mathcal L = \frac1B\sum_i\sum_j p_{ij}\big(\log(p_{ij}+\varepsilon)
        - \log(q_{ij}+\varepsilon)\big)

    ``pred`` should already be a distribution (softmax link); it is renormalised defensively
    (negative values clamped to 0). ``eps`` = 1e-8 (Mat2Spec; Xtal2DoS uses 1e-10).
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, out: dict | None = None) -> Tensor:
        p, q = _normalise(target.float(), self.eps), _normalise(pred.float(), self.eps)
        return (p * (torch.log(p + self.eps) - torch.log(q + self.eps))).sum(dim=-1).mean()


class WDLoss(nn.Module):
    r"""1-D Wasserstein-1 distance via cumulative distributions (Mat2Spec ``WD``,
    docs/papers/mat2spec.md §4.4).

    .. math::
        \mathcal L = \frac{s}{B}\sum_i\sum_j
        \big|\mathrm{CDF}(\hat p_i)_j - \mathrm{CDF}(p_i)_j\big|

    with both spectra normalised to unit sum (``÷(Σ+eps)``, eps 1e-14 as the code) and the
    distance in bin units times ``spacing`` ``s`` (default 1 = bin units, as the training loss).
    """

    def __init__(self, eps: float = 1e-14, spacing: float = 1.0) -> None:
        super().__init__()
        self.eps, self.spacing = eps, spacing

    def forward(self, pred: Tensor, target: Tensor, out: dict | None = None) -> Tensor:
        p, q = _normalise(target.float(), self.eps), _normalise(pred.float(), self.eps)
        cdf_diff = torch.cumsum(q, dim=-1) - torch.cumsum(p, dim=-1)
        return cdf_diff.abs().sum(dim=-1).mean() * self.spacing


class BregmanLoss(nn.Module):
    r"""Bregman divergence with generator :math:`\varphi(x) = \sum_j x_j\log x_j - x_j`.

    .. math::
        D_\varphi(p\,\|\,q) = \varphi(p) - \varphi(q) - \langle\nabla\varphi(q), p - q\rangle
        = \sum_j p_j\log\frac{p_j}{q_j} - p_j + q_j

    (the generalised I-divergence), batch mean, with :math:`p` the target and :math:`q` the
    prediction clamped to ``≥ eps``. Xtal2DoS §2.3 names "Bregman divergence" as the generalised
    KL but the released code has no implementation (docs/papers/xtal2dos.md §3.4); this generator
    is the natural
    choice because (i) on sum-normalised vectors the linear terms cancel and it **equals**
    KL(p‖q), and (ii) it stays a valid divergence (≥ 0, = 0 iff p = q) on **unnormalised**
    non-negative spectra (e.g. ``max_norm`` targets with a ReLU/softplus link), where KL is not.
    No normalisation is applied.
    """

    def __init__(self, eps: float = 1e-10) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, out: dict | None = None) -> Tensor:
        p = target.float().clamp_min(0.0)
        q = pred.float().clamp_min(self.eps)
        d = torch.xlogy(p, p) - p * torch.log(q) - p + q
        return d.sum(dim=-1).mean()


# ---------------------------------------------------------------------------------- Mat2Spec
def gaussian_kl(mu_a: Tensor, logvar_a: Tensor, mu_b: Tensor, logvar_b: Tensor) -> Tensor:
    r"""KL(N(μ_a, diag σ_a²) ‖ N(μ_b, diag σ_b²)), summed over the last dimension.

    .. math::
        \tfrac12\sum_d \Big[\log\sigma^2_{b} - \log\sigma^2_{a} - 1
        + \frac{\sigma^2_a + (\mu_a-\mu_b)^2}{\sigma^2_b}\Big]

    Shapes: broadcastable ``(*, D)`` → ``(*)``.
    """
    quad = (torch.exp(logvar_a) + (mu_a - mu_b) ** 2) * torch.exp(-logvar_b)
    return 0.5 * (logvar_b - logvar_a - 1.0 + quad).sum(dim=-1)


def pairwise_gaussian_kl(
    mu_f: Tensor, logvar_f: Tensor, mu_l: Tensor, logvar_l: Tensor, direction: str = "symmetric"
) -> Tensor:
    r"""Gaussian KL between every feature component and every label component.

    ``direction``: ``forward`` = KL(N_i ‖ N'_j) (P-M2S eq. 7), ``backward`` = KL(N'_j ‖ N_i),
    ``symmetric`` = ½(forward + backward) (the code). Computed with matrix products, without a
    ``(B, K, L, D)`` intermediate.

    Shapes:
        mu_f, logvar_f ``(B, K, D)``; mu_l, logvar_l ``(L, D)`` → ``(B, K, L)``.
    """
    d = mu_f.shape[-1]
    sum_lv_f = logvar_f.sum(-1).unsqueeze(-1)  # (B, K, 1)
    sum_lv_l = logvar_l.sum(-1)  # (L,)
    out = []
    if direction in ("forward", "symmetric"):  # a = f, b = l
        inv_l = torch.exp(-logvar_l)  # (L, D)
        quad = (
            (torch.exp(logvar_f) + mu_f**2) @ inv_l.T
            - 2 * mu_f @ (mu_l * inv_l).T
            + (mu_l**2 * inv_l).sum(-1)
        )
        out.append(0.5 * (sum_lv_l - sum_lv_f - d + quad))
    if direction in ("backward", "symmetric"):  # a = l, b = f
        inv_f = torch.exp(-logvar_f)  # (B, K, D)
        quad = (
            inv_f @ (torch.exp(logvar_l) + mu_l**2).T
            - 2 * (mu_f * inv_f) @ mu_l.T
            + (mu_f**2 * inv_f).sum(-1, keepdim=True)
        )
        out.append(0.5 * (sum_lv_f - sum_lv_l - d + quad))
    if not out:
        raise ConfigError(f"KL direction must be forward|backward|symmetric, got {direction!r}")
    return out[0] if len(out) == 1 else 0.5 * (out[0] + out[1])


def pair_counts(n_feat: int, n_label: int, coverage: str = "all") -> Tensor:
    r"""How often each (feature component i, label component j) pair enters :math:`L_{KL}`.

    ``all``: every pair once (P-M2S eq. 7). ``code``: the authors' tiling — pair index
    ``t = 0 … K·L−1`` uses ``(t mod K, t mod L)`` (docs/papers/mat2spec.md §4.4, docs/pitfalls.md
    §6.5), so a pair is used
    ``gcd(K, L)`` times if ``i ≡ j (mod gcd)`` and never otherwise (K=10, L=128: only
    same-parity pairs, each twice; K=10, L=51: every pair once).

    Shapes: ``(K, L)`` float counts.
    """
    if coverage == "all":
        return torch.ones(n_feat, n_label)
    if coverage != "code":
        raise ConfigError(f"loss.pair_coverage must be 'all' or 'code', got {coverage!r}")
    t = torch.arange(n_feat * n_label)
    counts = torch.zeros(n_feat, n_label)
    counts.index_put_((t % n_feat, t % n_label), torch.ones(t.numel()), accumulate=True)
    return counts


def contrastive_loss(proj_label: Tensor, proj_feat: Tensor, tau: float = 1.0) -> Tensor:
    r"""Mat2Spec's supervised contrastive loss (P-M2S eq. 8; code ``compute_c_loss``).

    With L2-normalised projections and :math:`s_{ij} = b^L_i\cdot b^F_j/\tau`:

    .. math:: L_D = -\frac1B\sum_i\Big[s_{ii} - \log\sum_{j\ne i} e^{s_{ij}}\Big]

    the positive is the diagonal pair, the denominator the row's other pairs. Undefined for a
    batch of one (no other pair): returns 0 then.

    Shapes: ``(B, P)``, ``(B, P)`` → scalar.
    """
    b = proj_label.shape[0]
    if b < 2:
        return proj_label.sum() * 0.0
    s = F.normalize(proj_label.float(), dim=-1) @ F.normalize(proj_feat.float(), dim=-1).T / tau
    eye = torch.eye(b, dtype=torch.bool, device=s.device)
    neg = torch.logsumexp(s.masked_fill(eye, -math.inf), dim=-1)
    return -(s.diagonal() - neg).mean()


_PRED_LOSSES = ("kl", "wd", "mae", "mse")


class Mat2SpecLoss(nn.Module):
    r"""Mat2Spec objective (P-M2S eqs. 7–10, Algorithm 1; docs/papers/mat2spec.md §4.4).

    .. math::
        \mathcal L = c_{pred}\,L_C + c_{kl}\,L_{KL} + c_{contrast}\,L_D

    - :math:`L_C` = prediction loss on the feature branch (``out["pred"]``) and the label branch
      (``out["pred_label"]``): ½/½ average (paper eq. 9, ``average_branches=True``) or their sum
      (code). ``pred_loss`` ∈ ``kl`` (:class:`KLLoss`), ``wd`` (:class:`WDLoss`), ``mae``, ``mse``.
    - :math:`L_{KL} = \frac1B\sum_b\sum_{i,j} C_{ij}\,\pi_{bi}\pi'_{bj}\,
      \mathrm{KL}(N_{bi}, N'_j)` (eq. 7); KL of ``kl_direction`` (default ``symmetric`` = the
      code's ½KL(a‖b)+½KL(b‖a); ``forward`` = eq. 7 as written). :math:`C` from
      :func:`pair_counts`: ``pair_coverage='all'`` (default, every pair once) or ``'code'`` (the
      authors' tiling bug: only pairs with ``i ≡ j mod gcd(K, L)``).
    - :math:`L_D` = :func:`contrastive_loss` on ``out["proj_label"]``, ``out["proj_feat"]``.

    Weights: ``c_pred`` 1, ``c_kl`` 1.1, ``c_contrast`` 1 (paper; code 0.1). Ablations of
    P-M2S (no label-embedding alignment / no contrastive) are ``c_kl=0`` / ``c_contrast=0``.
    The last component values are kept in :attr:`last_components` (detached scalars, for
    logging).

    Reads from ``out``: ``pred_label``, ``proj_feat``, ``proj_label``, ``mu_f``, ``logvar_f``,
    ``pi_f``, ``mu_l``, ``logvar_l``, ``pi_l`` (the ``mat2spec`` head with a target).
    """

    def __init__(
        self,
        pred_loss: str = "kl",
        c_pred: float = 1.0,
        c_kl: float = 1.1,
        c_contrast: float = 1.0,
        average_branches: bool = True,
        tau: float = 1.0,
        pair_coverage: str = "all",
        kl_direction: str = "symmetric",
    ) -> None:
        super().__init__()
        if pred_loss not in _PRED_LOSSES:
            raise ConfigError(f"loss.pred_loss must be one of {_PRED_LOSSES}, got {pred_loss!r}")
        if kl_direction not in ("forward", "backward", "symmetric"):
            raise ConfigError(
                f"loss.kl_direction must be forward|backward|symmetric: {kl_direction!r}"
            )
        pair_counts(1, 1, pair_coverage)  # validate early
        self.pred_loss, self.pair_coverage = pred_loss, pair_coverage
        self.kl_direction = kl_direction
        self.c_pred, self.c_kl, self.c_contrast = c_pred, c_kl, c_contrast
        self.average_branches, self.tau = average_branches, tau
        self._pred_fn: nn.Module | None = {"kl": KLLoss(), "wd": WDLoss()}.get(pred_loss)
        self.last_components: dict[str, Tensor] = {}

    def _pred(self, pred: Tensor, target: Tensor) -> Tensor:
        if self._pred_fn is not None:
            return self._pred_fn(pred, target)
        diff = pred.float() - target.float()
        return diff.abs().mean() if self.pred_loss == "mae" else (diff**2).mean()

    def alignment(self, out: dict[str, Tensor]) -> Tensor:
        """:math:`L_{KL}` from the head's Gaussian parameters."""
        mu_f, logvar_f = out["mu_f"].float(), out["logvar_f"].float()
        mu_l, logvar_l = out["mu_l"].float(), out["logvar_l"].float()
        kl = pairwise_gaussian_kl(mu_f, logvar_f, mu_l, logvar_l, self.kl_direction)
        counts = pair_counts(mu_f.shape[1], mu_l.shape[0], self.pair_coverage).to(kl.device)
        w = out["pi_f"].float().unsqueeze(-1) * out["pi_l"].float().unsqueeze(-2)  # (B, K, L)
        return (counts * w * kl).sum(dim=(-2, -1)).mean()

    def forward(self, pred: Tensor, target: Tensor, out: dict | None = None) -> Tensor:
        needed = (
            "pred_label",
            "proj_feat",
            "proj_label",
            "mu_f",
            "logvar_f",
            "pi_f",
            "mu_l",
            "logvar_l",
            "pi_l",
        )
        missing = [k for k in needed if out is None or k not in out]
        if missing:
            raise KeyError(
                f"loss=mat2spec needs the mat2spec head's outputs with a target; missing {missing}"
            )
        l_feat, l_label = self._pred(pred, target), self._pred(out["pred_label"], target)
        l_c = 0.5 * (l_feat + l_label) if self.average_branches else l_feat + l_label
        l_kl = self.alignment(out) if self.c_kl else pred.new_zeros((), dtype=torch.float32)
        l_d = (
            contrastive_loss(out["proj_label"], out["proj_feat"], self.tau)
            if self.c_contrast
            else pred.new_zeros((), dtype=torch.float32)
        )
        self.last_components = {
            "pred_feat": l_feat.detach(),
            "pred_label": l_label.detach(),
            "kl": l_kl.detach(),
            "contrast": l_d.detach(),
        }
        return self.c_pred * l_c + self.c_kl * l_kl + self.c_contrast * l_d
