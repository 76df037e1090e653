"""build_model: the encoder partial completed with the data's atom-feature size, the head with
the encoder's sizes and the representation length, parameters created encoder first."""

from __future__ import annotations

import functools

import torch
from omegaconf import OmegaConf

from dos_bench.models.encoders.mlp import MLPEncoder
from dos_bench.models.heads.direct import DirectHead
from dos_bench.models.model import DOSModel, build_model

NODE = {
    "_target_": "dos_bench.models.model.DOSModel",
    "name": "tiny",
    "atom_features": "onehot",
    "graph": {"cutoff": 5.0},
    "encoder": {
        "_target_": "dos_bench.models.encoders.mlp.MLPEncoder",
        "_partial_": True,
        "hidden": 8,
        "n_layers": 1,
    },
    "head": {
        "_target_": "dos_bench.models.heads.direct.DirectHead",
        "_partial_": True,
        "hidden": 8,
        "n_layers": 1,
    },
}


def test_partial_encoder_is_completed_with_the_data_sizes():
    torch.manual_seed(0)
    model = build_model(OmegaConf.create(NODE), in_dim=5, out_dim=7)
    assert isinstance(model, DOSModel) and model.name == "tiny" and model.out_dim == 7
    assert model.encoder.net[0].in_features == 5
    # the same draws as building encoder then head by hand: seeds give the same weights
    torch.manual_seed(0)
    ref = DOSModel(
        MLPEncoder(5, hidden=8, n_layers=1),
        functools.partial(DirectHead, hidden=8, n_layers=1),
        out_dim=7,
    )
    for (k, a), (_, b) in zip(model.state_dict().items(), ref.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=k)


def test_encoder_node_with_its_own_in_dim_is_used_as_it_is():
    node = OmegaConf.create(NODE)
    node.encoder = {k: v for k, v in NODE["encoder"].items() if k != "_partial_"}
    node.encoder.in_dim = 3
    model = build_model(node, in_dim=99, out_dim=4)
    assert model.encoder.net[0].in_features == 3 and model.out_dim == 4
