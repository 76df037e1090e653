r"""The ``mat2spec`` head: Mat2Spec's probabilistic embeddings, translator, predictor, projector.

Mat2Spec (P-M2S Methods "Probabilistic feature and label embeddings", "Supervised contrastive
learning", "Implementation and hyperparameters", Algorithm 1; docs/papers/mat2spec.md §4.4). Use it
with
``loss=mat2spec`` (:class:`dos_bench.losses.Mat2SpecLoss`), which reads the extras.

**Feature branch** (from the crystal embedding :math:`\mathbf g`, the encoder's ``graph``):

.. math::
    \mathbf u &= \mathrm{MLP}_{256,512,256}(\mathbf g)\ \ (\text{ReLU, dropout 0.5 after each})\\
    \boldsymbol\mu_k,\ \log\boldsymbol\sigma_k^2 &= W_\mu\mathbf u,\ W_\sigma\mathbf u
        \in\mathbb R^{D},\quad k = 1\ldots K; \qquad
        \boldsymbol\pi = \mathrm{softmax}(W_\pi\mathbf u)\\
    \mathbf z_F &= \textstyle\sum_k \pi_k(\boldsymbol\mu_k + \boldsymbol\epsilon_k\odot
        e^{\frac12\log\boldsymbol\sigma^2_k})\quad(\text{training; means } \boldsymbol\mu_k
        \text{ in eval unless } \texttt{sample\_at\_test})

**Label branch** (training/validation only, needs the ground truth :math:`\mathbf y`): ``L``
label Gaussians shared by all materials, from the rows of the identity matrix
:math:`I_L` through ``MLP_{512,256}`` (ReLU, dropout) → :math:`\boldsymbol\mu'_j,
\log\boldsymbol\sigma'^2_j \in \mathbb R^D`; mixing weights from the target,
:math:`\boldsymbol\pi' = \mathrm{softmax}(\mathrm{Linear}_{128\to L}(\mathrm{ReLU}(
\mathrm{Linear}_{L\to128}(\mathbf y))))`; :math:`\mathbf z_L = \sum_j \pi'_j(\boldsymbol\mu'_j +
\boldsymbol\epsilon_j\odot\boldsymbol\sigma'_j)`. The noise is drawn per material (the code
draws one :math:`\boldsymbol\epsilon_j` per label Gaussian shared by the whole batch).

*Which* :math:`\mathbf y` feeds the mixing weights: the paper (Results, "input label";
Algorithm 1, :math:`Z_L = f_l(Y)`) does not say in which normalisation; in the authors' code it
is the raw spectrum. ``train_Mat2Spec.py`` calls ``net(data)`` and
``Mat2Spec.forward`` passes ``data.y`` (the row of ``total_dos_128.npy`` / ``ph_dos.npy`` as loaded
by ``Mat2Spec/data.py``, unscaled) to ``label_forward``; the standardised / max- / sum-normalised
copy of ``data.y`` is made in the training loop and goes to ``compute_loss`` only
(docs/papers/mat2spec.md §4.4). So by default (``label_input="native"``) the head declares that its
``target`` argument is
the native-unit spectrum and :class:`dos_bench.training.module.DOSLitModule` passes
``batch.y`` (the loss still gets the encoded target). ``label_input="representation"`` feeds
the encoded target instead; it is needed when the representation's length differs from the
grid (an autoencoder latent), because the mixing MLP's width is the label length ``L``.

**Shared translator** :math:`f_d([\mathbf g; \mathbf z]) = \mathrm{LeakyReLU}(W_2\,
\mathrm{ReLU}(W_1[\mathbf g;\mathbf z]))` (512, 512; the code feeds the crystal embedding to both
branches), **predictor** :math:`f_p` and **projector** :math:`f_h`:

=============  ==================================  ===================================
part           paper (default, ``"paper"``)        authors' code (``"code"``)
=============  ==================================  ===================================
predictor      2-layer MLP 512→256→L (ReLU)        bias-free ``Linear(512→L)``
projector      2-layer MLP 512→512→1024 (ReLU)     ``Linear(512→1024)``
=============  ==================================  ===================================

Sizes: ``K = 10`` feature Gaussians, ``D = 128``, ``L = out_dim`` label Gaussians, dropout 0.5.

**New crystals** (``target is None``): the label branch is skipped; only ``pred`` (and the
feature-branch extras) are returned. ``pred`` — the feature-branch prediction — is the only one
ever reported; ``pred_label`` sees the ground truth.

**Test-time sampling.** The paper does not say how predictions are made at test time; by default
(``sample_at_test=False``) eval mode uses the Gaussian means. The authors' test script keeps the
reparameterisation sampling on in eval and averages ``test_passes=3`` passes
(docs/papers/mat2spec.md §4.4,
pitfall 3): ``sample_at_test=True``. The average is taken inside this head, over the raw outputs
(``test_average="output"``) or, for a softmax link, over the probabilities
(``test_average="softmax"``: the head returns ``log(mean_p softmax(o_p))``, whose softmax is
exactly the mean distribution, as the code averages its softmax-ed predictions).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dos_bench.io import ConfigError
from dos_bench.models.gemm import Linear
from dos_bench.models.layers import mlp
from dos_bench.models.model import EncoderOutput

__all__ = ["Mat2SpecHead"]


class Mat2SpecHead(nn.Module):
    """Mat2Spec decoder on top of any crystal encoder.

    Args:
        graph_dim: crystal-embedding size (from the encoder; 128 in Mat2Spec).
        out_dim: label length ``L`` (51 phDOS / 128 eDOS): also the number of label Gaussians.
        node_dim: unused.
        n_components: feature Gaussians ``K`` (10).
        latent_dim: Gaussian dimension ``D`` (128).
        feat_hidden: feature MLP widths (256, 512, 256).
        label_hidden: label-Gaussian MLP widths (512, 256).
        mix_hidden: hidden width of the label mixing-weight MLP (128).
        translator_hidden: translator widths (512, 512).
        predictor: ``paper`` (2-layer 256, L) or ``code`` (bias-free linear).
        predictor_hidden: hidden width of the paper predictor (256).
        projector: ``paper`` (2-layer 512, 1024) or ``code`` (single linear).
        projector_hidden: hidden width of the paper projector (512).
        proj_dim: projection size (1024).
        dropout: dropout in the feature and label MLPs (0.5).
        sample_at_test: keep sampling in eval mode and average ``test_passes`` passes (code);
            default ``False`` (paper silent): use the means.
        test_passes: passes averaged when ``sample_at_test`` (code: 3).
        test_average: ``output`` (mean of raw outputs) or ``softmax`` (mean of probabilities).
        label_input: what the label branch's mixing MLP reads, i.e. what ``target`` must be:
            ``native`` (authors' code: the raw spectrum ``batch.y``) or ``representation`` (the
            encoded target).

    Returns:
        dict with ``pred`` ``(B, L)`` (feature branch), ``pred_label`` ``(B, L)`` (label branch,
        only with a target), ``proj_feat``/``proj_label`` ``(B, proj_dim)``, ``mu_f``/
        ``logvar_f`` ``(B, K, D)``, ``pi_f`` ``(B, K)`` (mixing probabilities), ``mu_l``/
        ``logvar_l`` ``(L, D)``, ``pi_l`` ``(B, L)``. Label-branch keys only with a target.

    Shapes:
        graph ``(B, graph_dim)``, target ``(B, L)`` → the dict above.
    """

    LABEL_INPUTS = ("native", "representation")

    def __init__(
        self,
        graph_dim: int,
        out_dim: int,
        node_dim: int | None = None,
        n_components: int = 10,
        latent_dim: int = 128,
        feat_hidden: tuple[int, ...] | list[int] = (256, 512, 256),
        label_hidden: tuple[int, ...] | list[int] = (512, 256),
        mix_hidden: int = 128,
        translator_hidden: tuple[int, ...] | list[int] = (512, 512),
        predictor: str = "paper",
        predictor_hidden: int = 256,
        projector: str = "paper",
        projector_hidden: int = 512,
        proj_dim: int = 1024,
        dropout: float = 0.5,
        sample_at_test: bool = False,
        test_passes: int = 3,
        test_average: str = "output",
        label_input: str = "native",
    ) -> None:
        super().__init__()
        for name, val in (("predictor", predictor), ("projector", projector)):
            if val not in ("paper", "code"):
                raise ConfigError(f"model.head.{name} must be 'paper' or 'code', got {val!r}")
        if test_average not in ("output", "softmax"):
            raise ConfigError(f"model.head.test_average must be output|softmax: {test_average!r}")
        if test_passes < 1:
            raise ConfigError(f"model.head.test_passes must be >= 1, got {test_passes}")
        if label_input not in self.LABEL_INPUTS:
            raise ConfigError(
                f"model.head.label_input must be one of {self.LABEL_INPUTS}, got {label_input!r}"
            )
        self.label_input = label_input
        self.K, self.D, self.L = n_components, latent_dim, out_dim
        self.sample_at_test, self.test_passes = sample_at_test, test_passes
        self.test_average = test_average
        feat_hidden, label_hidden = list(feat_hidden), list(label_hidden)
        translator_hidden = list(translator_hidden)
        # feature branch
        self.feat_mlp = mlp([graph_dim, *feat_hidden], act="relu", dropout=dropout, last_act=True)
        self.feat_mu = Linear(feat_hidden[-1], n_components * latent_dim)
        self.feat_logvar = Linear(feat_hidden[-1], n_components * latent_dim)
        self.feat_mix = Linear(feat_hidden[-1], n_components)
        # label branch
        self.label_mlp = mlp([out_dim, *label_hidden], act="relu", dropout=dropout, last_act=True)
        self.label_mu = Linear(label_hidden[-1], latent_dim)
        self.label_logvar = Linear(label_hidden[-1], latent_dim)
        self.label_mix = mlp([out_dim, mix_hidden, out_dim], act="relu")
        self.register_buffer("eye", torch.eye(out_dim), persistent=False)
        # shared decoder
        dims = [graph_dim + latent_dim, *translator_hidden]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            last = i == len(dims) - 2
            layers += [Linear(dims[i], dims[i + 1]), nn.LeakyReLU() if last else nn.ReLU()]
        self.translator = nn.Sequential(*layers)
        emb = translator_hidden[-1]
        self.predictor = (
            mlp([emb, predictor_hidden, out_dim], act="relu")
            if predictor == "paper"
            else Linear(emb, out_dim, bias=False)
        )
        self.projector = (
            mlp([emb, projector_hidden, proj_dim], act="relu")
            if projector == "paper"
            else Linear(emb, proj_dim)
        )

    # ------------------------------------------------------------------ pieces
    def feature_gaussians(self, graph: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``mu_f, logvar_f (B, K, D)`` and mixing probabilities ``pi_f (B, K)``."""
        u = self.feat_mlp(graph)
        b = graph.shape[0]
        mu = self.feat_mu(u).view(b, self.K, self.D)
        logvar = self.feat_logvar(u).view(b, self.K, self.D)
        return mu, logvar, torch.softmax(self.feat_mix(u), dim=-1)

    def label_gaussians(self, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``mu_l, logvar_l (L, D)`` (shared) and mixing probabilities ``pi_l (B, L)``."""
        u = self.label_mlp(self.eye)
        pi = torch.softmax(self.label_mix(target), dim=-1)
        return self.label_mu(u), self.label_logvar(u), pi

    @staticmethod
    def mix(mu: Tensor, logvar: Tensor, pi: Tensor, sample: bool) -> Tensor:
        r""":math:`\sum_k \pi_k(\mu_k + \epsilon_k e^{\frac12 \log\sigma^2_k})` (``sample``) or
        :math:`\sum_k \pi_k \mu_k`. mu/logvar ``(B, K, D)`` or shared ``(K, D)``; pi ``(B, K)``."""
        if sample:
            shape = (pi.shape[0], *mu.shape[-2:])  # shared (K, D) components: one draw per material
            mu = mu + torch.randn(shape, dtype=mu.dtype, device=mu.device) * torch.exp(0.5 * logvar)
        if mu.dim() == 2:
            return pi @ mu
        return torch.einsum("bk,bkd->bd", pi, mu)

    def decode(self, graph: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """Translator, then (predictor output, projection)."""
        h = self.translator(torch.cat([graph, z], dim=-1))
        return self.predictor(h), self.projector(h)

    # ------------------------------------------------------------------ forward
    def forward(
        self, enc: EncoderOutput, batch=None, target: Tensor | None = None
    ) -> dict[str, Tensor]:
        g = enc.graph
        mu_f, logvar_f, pi_f = self.feature_gaussians(g)
        sample = self.training or self.sample_at_test
        passes = 1 if self.training or not self.sample_at_test else self.test_passes
        preds, projs = [], []
        for _ in range(passes):
            p, pr = self.decode(g, self.mix(mu_f, logvar_f, pi_f, sample))
            preds.append(p)
            projs.append(pr)
        out = {
            "pred": self._average(preds),
            "proj_feat": projs[0] if passes == 1 else torch.stack(projs).mean(0),
            "mu_f": mu_f,
            "logvar_f": logvar_f,
            "pi_f": pi_f,
        }
        if target is None:
            return out
        if target.shape[-1] != self.L:
            raise ValueError(
                f"mat2spec label branch: target has {target.shape[-1]} values, the label length"
                f" is {self.L}; with a representation shorter than the grid (autoencoder) set"
                " model.head.label_input=representation"
            )
        mu_l, logvar_l, pi_l = self.label_gaussians(target.to(g.dtype))
        preds, projs = [], []
        for _ in range(passes):
            p, pr = self.decode(g, self.mix(mu_l, logvar_l, pi_l, sample))
            preds.append(p)
            projs.append(pr)
        out.update(
            {
                "pred_label": self._average(preds),
                "proj_label": projs[0] if passes == 1 else torch.stack(projs).mean(0),
                "mu_l": mu_l,
                "logvar_l": logvar_l,
                "pi_l": pi_l,
            }
        )
        return out

    def _average(self, outs: list[Tensor]) -> Tensor:
        if len(outs) == 1:
            return outs[0]
        if self.test_average == "softmax":
            p = torch.stack([torch.softmax(o.float(), dim=-1) for o in outs]).mean(0)
            return torch.log(p.clamp_min(1e-30)).to(outs[0].dtype)
        return torch.stack(outs).mean(0)
