"""Reduced widths for every encoder and head: the same code paths, depths and options as the
paper configs, small enough to train on 2 CPU cores inside the test suite."""

from __future__ import annotations

SMALL_ENCODER = {
    "mlp": ["model.encoder.hidden=32"],
    "graph_network": ["model.encoder.hidden=32"],
    "alignn": ["model.encoder.hidden=32", "model.encoder.embedding=16"],
    "gatgnn": ["model.encoder.hidden=32"],
    "unimp": ["model.encoder.hidden=32", "model.encoder.channels=8"],
    "e3nn": ["model.encoder.mul=8", "model.encoder.em_dim=16", "model.encoder.out_scalars=16"],
}
SMALL_HEAD = {
    "DirectHead": ["model.head.hidden=32"],
    "EnergyEmbeddingHead": ["model.head.d=32"],
    "CrossAttentionHead": ["model.head.d=32"],
    "SeqTransformerHead": [
        "model.head.d_model=32",
        "model.head.d_ff=64",
        "model.head.n_heads=2",
        "model.head.n_layers=2",
    ],
    "RNNHead": ["model.head.hidden=32"],
    "Mat2SpecHead": [
        "model.head.latent_dim=16",
        "model.head.feat_hidden=[32,32]",
        "model.head.label_hidden=[32]",
        "model.head.translator_hidden=[32,32]",
        "model.head.predictor_hidden=32",
        "model.head.projector_hidden=32",
        "model.head.proj_dim=32",
        "model.head.mix_hidden=16",
        "model.head.dropout=0",
    ],
}


def small_overrides(cfg) -> list[str]:
    """Width overrides for a composed training config's model (encoder and head)."""
    enc = cfg.model.encoder._target_.rsplit(".", 1)[-1].replace("Encoder", "").lower()
    enc = enc.replace("graphnetwork", "graph_network")
    head = cfg.model.head._target_.rsplit(".", 1)[-1]
    return SMALL_ENCODER[enc] + SMALL_HEAD[head]
