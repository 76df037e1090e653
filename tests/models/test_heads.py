"""Heads on a fake encoder output: shapes, padding/permutation invariance, gradients, masks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from dos_bench.config import CONF_DIR
from dos_bench.models.heads.attention import MultiHeadAttention, TransformerLayer, attend
from dos_bench.models.heads.cross_attention import CrossAttentionHead
from dos_bench.models.heads.energy_embedding import EnergyEmbeddingHead
from dos_bench.models.heads.mat2spec import Mat2SpecHead
from dos_bench.models.heads.rnn import RNNHead
from dos_bench.models.heads.seq_transformer import SeqTransformerHead
from dos_bench.models.model import EncoderOutput

NODE, GRAPH, M = 12, 10, 13
CONF = CONF_DIR / "model" / "head"

# small versions of every head and option (name, factory)
HEADS = {
    "energy_add": lambda: EnergyEmbeddingHead(GRAPH, M, NODE, d=16),
    "energy_concat": lambda: EnergyEmbeddingHead(GRAPH, M, NODE, d=16, fusion="concat"),
    "cross_attention": lambda: CrossAttentionHead(NODE, GRAPH, M, d=16, n_heads=2),
    "cross_attention_1head": lambda: CrossAttentionHead(NODE, GRAPH, M, d=16),
    "seq_causal": lambda: SeqTransformerHead(
        NODE, GRAPH, M, d_model=16, n_layers=2, n_heads=4, d_ff=32
    ),
    "seq_code": lambda: SeqTransformerHead(
        NODE, GRAPH, M, d_model=16, n_layers=2, n_heads=4, d_ff=32, causal=False
    ),
    "rnn": lambda: RNNHead(NODE, GRAPH, M, hidden=8),
    "rnn_attn": lambda: RNNHead(NODE, GRAPH, M, hidden=8, attention=True),
    "chunk_rnn_attn": lambda: RNNHead(
        NODE, GRAPH, M, hidden=8, chunk=5, attention=True, n_layers=2
    ),
    "mat2spec": lambda: Mat2SpecHead(
        GRAPH,
        M,
        NODE,
        n_components=3,
        latent_dim=8,
        feat_hidden=(16, 16),
        label_hidden=(16,),
        mix_hidden=8,
        translator_hidden=(16, 16),
        predictor_hidden=8,
        projector_hidden=8,
        proj_dim=8,
    ),
    "mat2spec_code": lambda: Mat2SpecHead(
        GRAPH, M, NODE, n_components=3, latent_dim=8, predictor="code", projector="code"
    ),
}


def fake_enc(sizes: list[int], seed: int = 0) -> EncoderOutput:
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return EncoderOutput(
        torch.randn(n, NODE, generator=g), batch, torch.randn(len(sizes), GRAPH, generator=g)
    )


def run(head, enc: EncoderOutput, target=None) -> torch.Tensor:
    out = head(enc, SimpleNamespace(num_graphs=enc.graph.shape[0]), target)
    return out["pred"] if isinstance(out, dict) else out


@pytest.fixture(params=sorted(HEADS))
def head(request):
    torch.manual_seed(0)
    return HEADS[request.param]().eval()


def test_shape(head) -> None:
    enc = fake_enc([3, 1, 5])
    assert run(head, enc).shape == (3, M)
    assert run(head, enc, torch.rand(3, M)).shape == (3, M)


def test_padding_invariance(head) -> None:
    """A crystal's prediction does not depend on a larger crystal batched with it."""
    small, big = fake_enc([3], seed=1), fake_enc([9], seed=2)
    both = EncoderOutput(
        torch.cat([small.node, big.node]),
        torch.cat([small.batch, big.batch + 1]),
        torch.cat([small.graph, big.graph]),
    )
    torch.manual_seed(0)
    alone = run(head, small)
    torch.manual_seed(0)
    together = run(head, both)
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-5)


def test_atom_permutation_invariance(head) -> None:
    enc = fake_enc([4, 6])
    perm = torch.cat([torch.randperm(4), 4 + torch.randperm(6)])
    permuted = EncoderOutput(enc.node[perm], enc.batch, enc.graph)
    torch.manual_seed(0)
    a = run(head, enc)
    torch.manual_seed(0)
    b = run(head, permuted)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter(head) -> None:
    head.train()
    enc = fake_enc([3, 2, 4])
    out = head(enc, None, torch.softmax(torch.randn(3, M), -1))
    tensors = out.values() if isinstance(out, dict) else [out]
    loss = sum((t.float() ** 2).mean() for t in tensors)
    loss.backward()
    for name, p in head.named_parameters():
        assert p.grad is not None, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"


def test_deterministic_in_eval(head) -> None:
    enc = fake_enc([3, 2])
    torch.manual_seed(5)
    a = run(head, enc)
    torch.manual_seed(5)
    b = run(head, enc)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "name", ["energy_embedding", "cross_attention", "seq_transformer", "rnn", "mat2spec"]
)
def test_yaml_builds_head(name: str) -> None:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    factory = instantiate(cfg)
    head = factory(node_dim=NODE, graph_dim=GRAPH, out_dim=M).eval()
    assert run(head, fake_enc([2, 3])).shape == (2, M)


# ------------------------------------------------------------------------------ energy / attention
def test_energy_concat_equals_explicit_concatenation() -> None:
    head = EnergyEmbeddingHead(GRAPH, M, d=16, fusion="concat").eval()
    enc = fake_enc([2, 2])
    g = head.graph_proj(enc.graph)
    e = head.energy.weight
    cat = torch.cat([e.unsqueeze(0).expand(2, -1, -1), g.unsqueeze(1).expand(-1, M, -1)], -1)
    r = head.readout
    expected = r.fc2(r.act(r.fc1(cat))).squeeze(-1)
    torch.testing.assert_close(run(head, enc), expected, atol=1e-5, rtol=1e-5)


def test_energy_add_uses_alpha() -> None:
    head = EnergyEmbeddingHead(GRAPH, M, d=GRAPH).eval()
    assert isinstance(head.graph_proj, torch.nn.Identity)
    enc = fake_enc([2])
    with torch.no_grad():
        head.readout.alpha.zero_()
    # alpha = 0: the prediction no longer depends on the crystal
    other = EncoderOutput(enc.node, enc.batch, torch.randn_like(enc.graph))
    torch.testing.assert_close(run(head, enc), run(head, other))


def test_attend_key_mask_ignores_padded_keys() -> None:
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = attend(q, k, v, key_mask=mask)
    k2, v2 = k.clone(), v.clone()
    k2[0, 2:], v2[0, 2:] = 100.0, -100.0  # garbage in the padding
    torch.testing.assert_close(attend(q, k2, v2, key_mask=mask), out)
    ref = torch.softmax(q[0] @ k[0, :2].T / 2.0, -1) @ v[0, :2]
    torch.testing.assert_close(out[0], ref)


@pytest.mark.parametrize("with_mask", [False, True])
def test_causal_self_attention_masks_the_future(with_mask: bool) -> None:
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, n_heads=2).eval()
    x = torch.randn(2, 6, 8)
    mask = torch.ones(2, 6, dtype=torch.bool) if with_mask else None
    out = mha(x, key_mask=mask, causal=True)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(2, 2, 8)  # change positions j >= 4
    out2 = mha(x2, key_mask=mask, causal=True)
    torch.testing.assert_close(out2[:, :4], out[:, :4])  # positions i < 4 unchanged
    assert not torch.allclose(out2[:, 4:], out[:, 4:])
    # unmasked attention does see the future
    assert not torch.allclose(mha(x2)[:, :4], mha(x)[:, :4])


def test_causal_decoder_layer_masks_the_future() -> None:
    torch.manual_seed(0)
    layer = TransformerLayer(8, 2, 16, self_attn=True, cross_attn=True).eval()
    x, mem = torch.randn(1, 5, 8), torch.randn(1, 3, 8)
    x2 = x.clone()
    x2[:, 3:] += 1.0
    a = layer(x, mem, causal=True)
    b = layer(x2, mem, causal=True)
    torch.testing.assert_close(a[:, :3], b[:, :3])


def test_seq_transformer_causal_option_changes_information_flow() -> None:
    torch.manual_seed(0)
    causal = SeqTransformerHead(NODE, GRAPH, M, d_model=16, n_layers=1, n_heads=2, d_ff=16).eval()
    inp = causal.decoder_input
    # perturb the decoder input of the last position only: earlier positions must not change
    enc = fake_enc([3])

    def bumped(graph):
        z = inp(graph)
        z = z.clone()
        z[:, -1] += 1.0
        return z

    a = causal(enc)
    causal.decoder_input = bumped
    b = causal(enc)
    torch.testing.assert_close(a[:, :-1], b[:, :-1])
    causal.causal = False
    c = causal(enc)
    assert not torch.allclose(c[:, :-1], b[:, :-1])


def test_seq_transformer_decoder_input_is_the_linear_layer_on_the_concatenation() -> None:
    """The split product (positions once, crystal context once) is the paper's input layer
    ``LeakyReLU(W [sqrt(d) s_i; h_x] + b)`` on the concatenated input, values and gradients."""
    torch.manual_seed(0)
    head = SeqTransformerHead(NODE, GRAPH, M, d_model=16, n_layers=1, n_heads=2, d_ff=16).double()
    graph = torch.randn(4, GRAPH, dtype=torch.float64, requires_grad=True)
    pos = (head.pos.weight * head.scale).unsqueeze(0).expand(4, -1, -1)
    concat = torch.cat([pos, graph.unsqueeze(1).expand(-1, M, -1)], dim=-1)  # (B, M, d + G)
    ref = torch.nn.functional.leaky_relu(head.inp(concat))
    out = head.decoder_input(graph)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(ref)
    params = [graph, head.pos.weight, head.inp.weight, head.inp.bias]
    torch.testing.assert_close(
        torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g), rtol=0, atol=1e-12
    )


# ------------------------------------------------------------------------------ rnn
def test_rnn_chunk_truncation_and_steps() -> None:
    head = RNNHead(NODE, GRAPH, 51, hidden=8, chunk=17, attention=True)
    assert head.n_steps == 3
    assert run(head.eval(), fake_enc([2, 3])).shape == (2, 51)
    head = RNNHead(NODE, GRAPH, 13, hidden=8, chunk=5)
    assert head.n_steps == 3  # 15 values, last chunk truncated to 13
    assert run(head.eval(), fake_enc([2, 1])).shape == (2, 13)


# ------------------------------------------------------------------------------ mat2spec
def small_m2s(**kw) -> Mat2SpecHead:
    torch.manual_seed(0)
    return Mat2SpecHead(GRAPH, M, n_components=3, latent_dim=8, **kw)


def test_mat2spec_outputs() -> None:
    head = small_m2s().train()
    enc = fake_enc([2, 3, 1])
    out = head(enc, None, torch.rand(3, M))
    shapes = {
        "pred": (3, M),
        "pred_label": (3, M),
        "proj_feat": (3, 1024),
        "proj_label": (3, 1024),
        "mu_f": (3, 3, 8),
        "logvar_f": (3, 3, 8),
        "pi_f": (3, 3),
        "mu_l": (M, 8),
        "logvar_l": (M, 8),
        "pi_l": (3, M),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == shapes
    torch.testing.assert_close(out["pi_f"].sum(-1), torch.ones(3))
    torch.testing.assert_close(out["pi_l"].sum(-1), torch.ones(3))
    # new crystals: no label branch
    out = head(enc, None, None)
    assert not any(k.endswith("_label") or k.endswith("_l") for k in out)
    assert set(out) == {"pred", "proj_feat", "mu_f", "logvar_f", "pi_f"}


def test_mat2spec_label_never_reaches_pred() -> None:
    head = small_m2s().eval()
    enc = fake_enc([2, 3])
    a = head(enc, None, torch.rand(2, M))["pred"]
    b = head(enc, None, None)["pred"]
    torch.testing.assert_close(a, b)


def test_mat2spec_eval_uses_means_by_default() -> None:
    head = small_m2s().eval()
    enc = fake_enc([2, 3])
    mu, _, pi = head.feature_gaussians(enc.graph)
    expected, _ = head.decode(enc.graph, torch.einsum("bk,bkd->bd", pi, mu))
    torch.testing.assert_close(head(enc)["pred"], expected)
    # training samples: two calls differ
    head.train()
    torch.manual_seed(0)
    a = head(enc)["pred"]
    assert not torch.allclose(a, head(enc)["pred"])


@pytest.mark.parametrize("average", ["output", "softmax"])
def test_mat2spec_sample_at_test_averages_passes(average: str) -> None:
    head = small_m2s(sample_at_test=True, test_passes=3, test_average=average).eval()
    enc = fake_enc([2, 3])
    torch.manual_seed(7)
    a = head(enc)["pred"]
    torch.manual_seed(7)
    assert torch.equal(a, head(enc)["pred"])  # deterministic given the seed
    # the same three draws, by hand
    torch.manual_seed(7)
    mu, logvar, pi = head.feature_gaussians(enc.graph)
    outs = [head.decode(enc.graph, head.mix(mu, logvar, pi, sample=True))[0] for _ in range(3)]
    if average == "output":
        torch.testing.assert_close(a, torch.stack(outs).mean(0))
    else:
        probs = torch.stack([torch.softmax(o, -1) for o in outs]).mean(0)
        torch.testing.assert_close(torch.softmax(a, -1), probs)
    # different seeds give different averages (sampling is really on)
    torch.manual_seed(8)
    assert not torch.allclose(a, head(enc)["pred"])


def test_mat2spec_code_predictor_is_bias_free_linear() -> None:
    head = small_m2s(predictor="code", projector="code")
    assert isinstance(head.predictor, torch.nn.Linear) and head.predictor.bias is None
    assert head.predictor.weight.shape == (M, 512)
    assert isinstance(head.projector, torch.nn.Linear)
    assert head.projector.weight.shape == (1024, 512)
