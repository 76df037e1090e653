"""No host synchronisation in a training step, for every model config in conf/model/ (issue 14).

A training step — target encode, forward, link, loss, the non-finite-loss bookkeeping of
:meth:`dos_bench.training.module.DOSLitModule.training_step`, backward — must not read a value
back from the device: no ``.item()`` / ``bool(tensor)`` / ``int(tensor)`` (all dispatch to
``aten::_local_scalar_dense``) and no operator whose output size depends on the data
(``nonzero`` behind boolean indexing, ``unique``, ``masked_select``), each of which waits for the
GPU. Counted with ``torch.profiler`` on CPU, at the reduced widths of tests/model_sizes.py.
Host-side sizes (the largest crystal of a batch for the padded attention heads) come from the
batch's collation offsets on the CPU (``dos_bench.models.heads.attention.host_max_atoms``).
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch
from test_model_zoo import MODELS, OUT, _batch, _structures, build_model
from torch.profiler import profile

from dos_bench.data.transforms import Raw
from dos_bench.losses import MSELoss
from dos_bench.training.module import DOSLitModule

SYNC_OPS = {
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::unique",
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::masked_select",
}


def sync_ops(fn) -> list[str]:
    """Names of the synchronising operators one call of ``fn`` runs."""
    with profile() as prof:
        fn()
    return [e.name for e in prof.events() if e.name in SYNC_OPS]


def _training_step(model, recipe, feats):
    """The LightningModule of ``model`` (float32, training mode) on four small crystals, and a
    function that runs one training step on them (forward, loss, backward)."""
    model = model.float().train()
    batch = _batch(_structures()[:4], recipe, feats, torch.float32)
    batch.y = torch.rand(4, OUT, generator=torch.Generator().manual_seed(0))
    lit = DOSLitModule(model, Raw().fit(batch.y), MSELoss(), functools.partial(torch.optim.SGD))

    def step() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log() without a trainer
            lit.training_step(batch, 0).backward()

    return lit, step


@pytest.mark.parametrize("name", MODELS)
def test_training_step_never_reads_back_from_the_device(name: str) -> None:
    lit, step = _training_step(*build_model(name, small=True))
    step()  # first call: lazy initialisation
    assert sync_ops(step) == []
    # the recorded state is checked later, in one synchronisation
    lit.check_finite_loss()


@pytest.mark.parametrize("name", ["xtal2dos"])
def test_the_c_attention_kernel_never_reads_back_from_the_device(name: str) -> None:
    """With attention dropout off the heads' attention runs on dos_bench's C kernel: here the
    causal self-attention and the padded cross-attention of the Xtal2DoS decoder (E3NN2DoS has
    the same head; DOSTransformer's configured dropout is 0, so the test above covers its
    cross-attention on the C kernel). The kernel takes its sizes from the tensors' shapes."""
    from dos_bench.models import native
    from dos_bench.models.heads.attention import MultiHeadAttention

    if native.attention_library() is None:
        pytest.skip("needs a C compiler (the C kernel)")
    model, recipe, feats = build_model(name, small=True)
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            m.attn_dropout = 0.0
    _, step = _training_step(model, recipe, feats)
    step()
    with profile() as prof:
        step()
    names = [e.name for e in prof.events()]
    assert "dos_bench::attention" in names and "dos_bench::attention_backward" in names
    assert [n for n in names if n in SYNC_OPS] == []


@pytest.mark.parametrize("repr_name", ["raw", "standard", "max_norm", "sum_norm", "min_max"])
def test_target_representations_never_read_back_from_the_device(tmp_path, repr_name: str) -> None:
    from cli_support import compose_cfg

    from dos_bench.config import build

    cfg = compose_cfg([f"target_repr={repr_name}"], tmp_path / "data", tmp_path / "out")
    tt = build(cfg.target_repr)
    y = torch.rand(6, OUT, generator=torch.Generator().manual_seed(1)) + 0.1
    tt.fit(y)
    tt.load_state_dict(tt.state_dict())  # as after a checkpoint load

    def step() -> None:
        z, scale = tt.encode(y)
        tt.decode(z, scale)

    step()
    assert sync_ops(step) == []


def test_the_counter_sees_a_synchronisation() -> None:
    x = torch.arange(4.0)
    assert sync_ops(lambda: x.sum().item()) == ["aten::_local_scalar_dense"]
    assert "aten::nonzero" in sync_ops(lambda: x[x > 1])
