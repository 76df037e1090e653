"""An encoder and a head, composed (design.md "The encoder × head grid").

An encoder maps a PyG batch of crystal graphs to :class:`EncoderOutput` (node embeddings, the
batch vector and a pooled crystal embedding); a head maps that to the spectrum in representation
space. Any encoder combines with any head: the head is built from the encoder's output sizes.

Sizes only the data knows are passed in, never read from the config: the encoder and head YAMLs
are partials (``_partial_: true``), and :func:`build_model` completes the encoder with ``in_dim``
(the atom-feature size) and :class:`DOSModel` the head with the encoder's sizes and ``out_dim``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

__all__ = ["EncoderOutput", "DOSModel", "build_model", "compile_model"]


@dataclass
class EncoderOutput:
    """What every encoder returns.

    Shapes:
        node: ``(n_atoms_in_batch, node_dim)``; batch: ``(n_atoms_in_batch,)`` graph index of
        each atom; graph: ``(B, graph_dim)`` pooled crystal embedding.
    """

    node: Tensor
    batch: Tensor
    graph: Tensor


class DOSModel(nn.Module):
    """Encoder + head.

    Args:
        encoder: module with attributes ``node_dim`` and ``graph_dim`` returning
            :class:`EncoderOutput`.
        head: a *partial* head constructor called as ``head(node_dim=, graph_dim=, out_dim=)``;
            the head's ``forward(enc, batch, target=None)`` returns a tensor ``(B, out_dim)`` or a
            dict with ``pred`` and extras (keys starting with ``pred`` go through the target
            representation's link). A head whose ``target`` must be the native-unit spectrum
            rather than the encoded one sets ``label_input = "native"`` (see
            :attr:`label_input`).
        out_dim: length of the predicted representation (grid points, or latent size).
        name: the model's name in tables (``graph_network``, ``D-ALIGNN``, ...).
        graph: the crystal-graph recipe this model expects (cutoff, neighbours); kept so that a
            checkpoint can rebuild the right graphs for new crystals.
        atom_features: name of the atom-feature table (``cgcnn``, ``onehot``, ``mass_onehot``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: Callable[..., nn.Module],
        out_dim: int,
        name: str = "model",
        graph: dict[str, Any] | None = None,
        atom_features: str = "cgcnn",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head(node_dim=encoder.node_dim, graph_dim=encoder.graph_dim, out_dim=out_dim)
        self.out_dim = out_dim
        self.name = name
        self.graph_recipe = dict(graph or {})
        check = getattr(encoder, "check_graph_recipe", None)
        if callable(check):  # e.g. ALIGNN: the line graph built with the graphs must match
            check(self.graph_recipe)
        self.atom_features = atom_features

    @property
    def label_input(self) -> str:
        """What ``forward``'s ``target`` must be for this head: ``"representation"`` (the encoded
        target, the default) or ``"native"`` (the spectrum in the dataset's units, ``batch.y``;
        Mat2Spec's label branch, as the authors' ``Mat2Spec.forward`` reads the raw ``data.y``).
        """
        return getattr(self.head, "label_input", "representation")

    def forward(self, batch, target: Tensor | None = None) -> dict[str, Tensor]:
        """Returns a dict with ``pred`` ``(B, out_dim)`` plus any head-specific extras.

        ``target`` is the ground truth during training and validation, in the space named by
        :attr:`label_input` (encoded ``(B, out_dim)`` or native ``(B, n_points)``); heads with a
        label branch, Mat2Spec, use it; it must never reach the ``pred`` path. ``None`` for new
        crystals.
        """
        enc = self.encoder(batch)
        out = self.head(enc, batch, target)
        return out if isinstance(out, dict) else {"pred": out}

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def compile_model(model: nn.Module, enabled: bool = True) -> nn.Module:
    """``torch.compile(dynamic=True)`` applied to ``model`` in place (``nn.Module.compile``), so
    its parameters and checkpoint keys stay those of the eager model; the config option
    ``compile``. Dynamic shapes: batches differ in atoms and edges, and a shape-specialised graph
    would recompile for each. ``make bench`` (section ``compile``) lists which models compile
    on CPU, what it gains and why the others fail.
    """
    if enabled:
        model.compile(dynamic=True)
    return model


def build_model(node: Any, in_dim: int, out_dim: int) -> DOSModel:
    """The model of a ``model`` config node for data with ``in_dim`` atom features and a target
    representation of length ``out_dim``.

    The encoder node is a partial (``_partial_: true``) completed here with ``in_dim``; an encoder
    node that builds a module by itself (a config that sets ``in_dim``) is used as it is. The
    encoder's parameters are created before the head's, as Hydra's recursive build did.
    """
    from dos_bench.config import build

    encoder = build(node.encoder)
    if not isinstance(encoder, nn.Module):
        encoder = encoder(in_dim=in_dim)
    return build(node, encoder=encoder, out_dim=out_dim)
