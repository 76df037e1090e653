"""The ``compile`` option (issue 14): validated as a boolean; ``true`` compiles the model with
``torch.compile(dynamic=True)`` in place, so parameters and checkpoint keys do not change.
Which models compile on CPU and what it gains is measured by ``make bench`` (section
``compile``), never asserted here."""

from __future__ import annotations

import functools

import pytest
import torch
from torch_geometric.data import Batch, Data

from dos_bench.io import ConfigError
from dos_bench.models.encoders.mlp import MLPEncoder
from dos_bench.models.heads.direct import DirectHead
from dos_bench.models.model import DOSModel, compile_model
from dos_bench.validation import validate_train_config


def _model() -> DOSModel:
    torch.manual_seed(0)
    head = functools.partial(DirectHead, hidden=8, n_layers=1)
    return DOSModel(MLPEncoder(4, hidden=8, n_layers=1), head, out_dim=6)


def test_compile_option_is_validated(make_cfg) -> None:
    assert make_cfg().compile is False
    validate_train_config(make_cfg("compile=true"))
    with pytest.raises(ConfigError, match="compile: expected true or false, got 'yes'"):
        validate_train_config(make_cfg("compile=yes"))


def test_compile_model_keeps_the_module_and_its_keys() -> None:
    model = _model()
    keys = list(model.state_dict())
    assert compile_model(model, enabled=False) is model and model._compiled_call_impl is None
    assert compile_model(model) is model
    assert model._compiled_call_impl is not None
    assert list(model.state_dict()) == keys  # checkpoints load into an eager model


@pytest.mark.slow
def test_a_compiled_model_trains_on_batches_of_different_sizes() -> None:
    graphs = [
        Data(x=torch.randn(2 + i % 3, 4), edge_index=torch.zeros(2, 0, dtype=torch.long))
        for i in range(6)
    ]
    eager, compiled = _model(), compile_model(_model())
    for n in (4, 2, 6):
        batch = Batch.from_data_list(graphs[:n])
        want, got = eager(batch)["pred"], compiled(batch)["pred"]
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        got.square().mean().backward()
    assert all(p.grad is not None for p in compiled.parameters())
