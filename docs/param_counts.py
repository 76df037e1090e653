"""Parameter counts of the authors' DOS models, from their published layer shapes.

Nothing here imports or runs the authors' code: every count is a sum of layer sizes read from
the papers and the authors' repositories (docs/models.md names the files and commits), with

    Linear(i, o)      i*o + o          (i*o without a bias)
    LayerNorm(n)      2n               BatchNorm1d(n)   2n (running statistics are buffers)
    PReLU()           1                Embedding(n, d)  n*d
    GRU(i, h)         3h(i + h) + 6h   (one layer)

Each function returns ``{"all": ..., "used": ..., "parts": {...}}``: ``all`` is what
``sum(p.numel() for p in model.parameters())`` gives for the authors' module, ``used`` leaves out
parameters that never influence the output (modules built but not called, outputs of the last
layer that nothing reads) — the fair number to compare with a re-implementation that does not
build them.

    python docs/param_counts.py            # the authors' counts, one line per model
    python docs/param_counts.py --table    # the docs/models.md table (also builds dos_bench's)
"""

from __future__ import annotations

import sys


def lin(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def norm(n: int) -> int:
    return 2 * n


def gru(i: int, h: int) -> int:
    return 3 * h * (i + h) + 6 * h


def _result(parts: dict[str, int], unused: tuple[str, ...] = ()) -> dict:
    total = sum(parts.values())
    return {"all": total, "used": total - sum(parts[k] for k in unused), "parts": parts}


# ------------------------------------------------------------------------------------- ALIGNN
def alignn(
    atom_in: int,
    out: int,
    h: int = 256,
    emb: int = 64,
    edge_bins: int = 80,
    angle_bins: int = 40,
    alignn_layers: int = 4,
    gcn_layers: int = 4,
) -> dict:
    """ALIGNN code (usnistgov/alignn, alignn/models/alignn.py; same shapes from ac958f9, 2022-08,
    the paper's time, to 2c3cb5b, 2024-11).

    MLPLayer = Linear + BatchNorm + SiLU; EdgeGatedGraphConv = 5 Linear(h, h) (src/dst gate, edge
    gate, src/dst update) + 2 BatchNorm(h); an ALIGNN layer = 2 such convs (crystal graph, then
    line graph); one Linear(h, out) head. Unused: the edge-output BatchNorm of the last line-graph
    conv (its triplet output is never read) and of the last crystal-graph conv.
    """
    mlp_layer = lambda i, o: lin(i, o) + norm(o)  # noqa: E731
    eggc = 5 * lin(h, h) + 2 * norm(h)
    parts = {
        "atom_embedding": mlp_layer(atom_in, h),
        "edge_embedding": mlp_layer(edge_bins, emb) + mlp_layer(emb, h),
        "angle_embedding": mlp_layer(angle_bins, emb) + mlp_layer(emb, h),
        "alignn_layers": alignn_layers * 2 * eggc - norm(h),  # minus the last one's edge norm
        "gcn_layers": gcn_layers * eggc - norm(h),  # minus the last one's edge norm
        "fc": lin(h, out),
        "last_edge_norms (unused)": 2 * norm(h),
    }
    return _result(parts, unused=("last_edge_norms (unused)",))


# ----------------------------------------------------------------------------- DOSTransformer
def dost_seed(
    model: str,
    atom_in: int,
    bond_in: int,
    m: int = 201,
    d: int = 256,
    layers: int = 3,
    t_layers: int = 2,
    glob_in: int = 2,
) -> dict:
    """DOSTransformer repository at the ICLR-2023 workshop version (commit 83e7c46), eDOS models.

    Encoder: node/edge/global MLPs Linear(in, d)-PReLU-Linear(d, d). Processor layer: edge MLP
    Linear(3d, 2d)-LN-PReLU-Linear(2d, d); NodeModel builds two MLPs Linear(2d, 2d)-LN-PReLU-
    Linear(2d, d) and calls only the second. Decoder: Linear(2d, d) on [global; sum of atoms].
    Output phi: Linear(d, d)-LN-PReLU-Linear(d, out). Attention layer (layers/transformer.py):
    a fairseq MultiheadAttention whose in/out projections are built but not applied, FFN d-4d-d,
    2 LayerNorms; a final LayerNorm.

    ``model``: ``mlp2`` (MLP, Energy ✗), ``graphnetwork2`` (GN, Energy ✗), ``mlp`` (MLP,
    Energy ✓), ``graphnetwork`` (GN, Energy ✓), ``DOSTransformer``.
    """
    two = lambda i: lin(i, d) + 1 + lin(d, d)  # noqa: E731  Linear-PReLU-Linear
    psi = lambda i: lin(i, 2 * d) + norm(2 * d) + 1 + lin(2 * d, d)  # noqa: E731
    phi = lambda o: lin(d, d) + norm(d) + 1 + lin(d, o)  # noqa: E731
    p: dict[str, int] = {"node_encoder": two(atom_in), "edge_encoder": two(bond_in)}
    unused: list[str] = []
    energy = model in ("mlp", "graphnetwork", "DOSTransformer")
    if model != "mlp2":
        p["global_encoder"] = two(glob_in)
    if model in ("graphnetwork2", "graphnetwork", "DOSTransformer"):
        p["edge_mlps"] = layers * psi(3 * d)
        p["node_mlp_2"] = layers * psi(2 * d)
        p["node_mlp_1 (unused)"] = layers * psi(2 * d)
        unused.append("node_mlp_1 (unused)")
    if model != "mlp2":
        p["decoder"] = lin(2 * d, d)
        p["alpha"] = 1
    if energy:
        p["energy_embeddings"] = m * d
        p["phi"] = phi(1)
    else:
        p["phi"] = phi(m)  # applied per atom, then summed over atoms
    if model == "DOSTransformer":
        p["attention_projections (unused)"] = t_layers * (lin(d, 3 * d) + lin(d, d))
        block = lin(d, 4 * d) + lin(4 * d, d) + 2 * norm(d)  # FFN and two LayerNorms
        p["attention_ffn_norms"] = t_layers * block + norm(d)  # + the final LayerNorm
        unused.append("attention_projections (unused)")
    if model == "mlp2":
        unused.append("edge_encoder")  # computed, never read
    if model == "mlp":
        unused.append("edge_encoder")
    if model == "graphnetwork2":
        unused += ["global_encoder", "decoder", "alpha"]
    return _result(p, tuple(unused))


# ------------------------------------------------------------------------------------ Xtal2DoS
def xtal2dos_encoder(
    d: int = 512,
    atom_in: int = 92,
    edge_in: int = 41,
    comp_in: int = 103,
    heads: int = 4,
    c: int = 16,
) -> dict:
    """Xtal2DoS code (JunwenBai/Xtal2DoS, xtal2dos/xtal2dos.py, class GAT).

    PyG TransformerConv(in, C, heads=H, edge_dim=d, beta=False): key/query/value Linear(in, H*C),
    lin_edge Linear(d, H*C) without bias, lin_skip Linear(in, H*C) (concat) or Linear(in, C)
    (heads averaged). conv1 512→4×16, conv2 and the unused conv3 64→4×16, conv4 64→512 (4 heads
    averaged); BatchNorms 64, 64, 512.
    """

    def tconv(i: int, ch: int, concat: bool = True) -> int:
        hc = heads * ch
        return 3 * lin(i, hc) + lin(d, hc, bias=False) + lin(i, hc if concat else ch)

    hc = heads * c
    p = {
        "embeddings": lin(atom_in, d) + lin(edge_in, d) + lin(comp_in, d),
        "conv1": tconv(d, c),
        "conv2": tconv(hc, c),
        "conv3 (unused)": tconv(hc, c),
        "conv4": tconv(hc, d, concat=False),
        "batch_norms": norm(hc) + norm(hc) + norm(d),
    }
    return _result(p, ("conv3 (unused)",))


def xtal2dos(m: int, d: int = 512, n_layers: int = 6, d_ff: int = 2048) -> dict:
    """Xtal2DoS = the GAT encoder + position embedding Embedding(L, d), Linear(3d, d) on
    [position; 2d crystal context], 6 pre-LN decoder layers (self- and source-attention with 4
    Linear(d, d) each, FFN d-d_ff-d, 3 LayerNorms), a final LayerNorm, Linear(d, 1)."""
    enc = xtal2dos_encoder(d)
    layer = 2 * 4 * lin(d, d) + lin(d, d_ff) + lin(d_ff, d) + 3 * norm(d)
    p = dict(enc["parts"])
    p.update(
        {
            "position_embedding": m * d,
            "input_fc": lin(3 * d, d),
            "decoder_layers": n_layers * layer + norm(d),
            "generator": lin(d, 1),
        }
    )
    return _result(p, ("conv3 (unused)",))


def luong_rnn(chunk: int, h: int = 128, d: int = 512) -> dict:
    """Xtal2DoS repository's only recurrent decoder, xtal2dos/graph2seq.py LuongAttnDecoderRNN
    (input = [previous chunk; latent h]): Linear(chunk+h, h), GRU(h, h), Linear(h, h),
    Linear(3h, h), Linear(h, chunk); plus the GAT encoder. The loop that drives it, and the layers
    that bring the 1024-d crystal context and 512-d atoms to h = 128, are not in the repository,
    so this is a lower bound ("partial")."""
    enc = xtal2dos_encoder(d)
    p = dict(enc["parts"])
    p["rnn_cell"] = lin(chunk + h, h) + gru(h, h) + lin(h, h) + lin(3 * h, h) + lin(h, chunk)
    return _result(p, ("conv3 (unused)",))


# ------------------------------------------------------------------------------------ Mat2Spec
def mat2spec(
    m: int,
    n_layers: int = 3,
    h: int = 128,
    heads: int = 4,
    k: int = 10,
    latent: int = 128,
    emb: int = 512,
) -> dict:
    """Mat2Spec code (gomes-lab/Mat2Spec, Mat2Spec_Codes/Mat2Spec/Mat2Spec.py), defaults of
    train_Mat2Spec.py (3 layers, 128 neurons, 4 heads, K 10, latent 128, emb 512).

    GNN: embed_n Linear(92, h), embed_e Linear(41, h), unused embed_comp Linear(103, h); per layer
    GAT_Crystal W (2h × heads·h, no bias) + att (heads·2h) + BatchNorm(heads) + bias h + an unused
    PReLU, then BatchNorm(h); composition attention Linear(h+103, 32), Linear(32, 1); unused: three
    scalar parameters, two Linear(103, 1), linear1/linear2 Linear(h, h).
    Head: fx1-3 (h→256→512→256), fx_mu/fx_logvar Linear(256, K·D), fx_mix Linear(256, K);
    fe_mix L→128→L; fd_x1 Linear(h+D, 512), fd_x2 Linear(512, emb) (shared by both branches);
    fe1 Linear(L, 512), fe2 Linear(512, 256), fe_mu/fe_logvar Linear(256, D); emb_proj
    Linear(emb, 1024); W Linear(L, emb) of which only the weight is used (the predictor).
    Unused: feat_mp_mu Linear(emb, L), fe0 Linear(L, emb), bias (L), W's bias.
    """
    gat = lin(2 * h, heads * h, bias=False) + heads * 2 * h + norm(heads) + h
    feature = lin(h, 256) + lin(256, 512) + lin(512, 256) + 2 * lin(256, k * latent) + lin(256, k)
    label = lin(m, 128) + lin(128, m) + lin(m, 512) + lin(512, 256) + 2 * lin(256, latent)
    encoder_unused = lin(103, h) + n_layers + 3 + 2 * lin(103, 1) + 2 * lin(h, h)
    head_unused = lin(emb, m) + lin(m, emb) + m + emb
    p = {
        "embed_n_e": lin(92, h) + lin(41, h),
        "gat_layers": n_layers * (gat + norm(h)),
        "composition_attention": lin(h + 103, 32) + lin(32, 1),
        "feature_branch": feature,
        "label_branch": label,
        "translator": lin(h + latent, 512) + lin(512, emb),
        "projector": lin(emb, 1024),
        "predictor_W_weight": emb * m,
        "unused": encoder_unused + head_unused,
    }
    return _result(p, ("unused",))


# ------------------------------------------------------------------------------------- E3NN
def e3nn_tut(
    out: int, em: int = 64, mul: int = 32, n_basis: int = 10, radial: int = 100, in_dim: int = 118
) -> dict:
    """phononDoS_tutorial PeriodicNetwork (e3nn 0.4.2 gate_points_2101 Convolution: sc, lin1,
    lin2 FullyConnectedTensorProducts with the 64x0e node attribute, a bias-free radial MLP
    [10, 100, weight_numel], the tensor product itself without weights) + Linear(118, em).

    Weight counts of each tensor product are the products of multiplicities over its allowed
    paths (the notebook prints the same numbers): hidden irreps 32x0e+32x1o (layer 1),
    32x0e+32x1o+32x1e (layer 2), out x0e.
    """
    a = em  # node attribute multiplicity (64x0e)
    layer1 = (
        em * a * em  # sc: 64x0e ⊗ 64x0e → 64x0e + 32x1o (only the 0e output has a path)
        + em * a * em  # lin1: → 64x0e
        + (n_basis * radial + radial * 2 * em)  # fc: tp weights 64 (0e→0e) + 64 (0e→1o)
        + (em * a * em + em * a * mul)  # lin2: 64x0e+64x1o → 64x0e+32x1o
    )
    layer2 = (
        (mul * a * (3 * mul) + mul * a * mul)  # sc: 32x0e+32x1o → 96x0e+32x1o+32x1e
        + (mul * a * mul + mul * a * mul)  # lin1
        + (n_basis * radial + radial * 5 * mul)  # fc: 160 path weights
        + (2 * mul * a * 3 * mul + 2 * mul * a * mul + mul * a * mul)  # lin2
    )
    last = (
        mul * a * out  # sc: only 32x0e → out x0e
        + 3 * mul * a * mul  # lin1: keeps 32x0e+32x1o+32x1e
        + (n_basis * radial + radial * 2 * mul)  # fc: 64 path weights (0e⊗0e, 1o⊗1o → 0e)
        + 2 * mul * a * out  # lin2: 64x0e → out x0e
    )
    p = {"embedding": lin(in_dim, em), "conv1": layer1, "conv2": layer2, "conv_out": last}
    return _result(p)


# ------------------------------------------------------------------------------ the doc table
#: label -> (dos_bench overrides, points, authors' count function or None, note)
AUTHORS = {
    "D-ALIGNN": lambda: alignn(5, 300),
    "D-ALIGNN, one FC (code)": lambda: alignn(5, 300),
    "AE-ALIGNN, latent 12": lambda: alignn(5, 12),
    "MLP, Energy ✗": lambda: dost_seed("mlp2", 200, 41),
    "Graph Network, Energy ✗": lambda: dost_seed("graphnetwork2", 200, 41),
    "E3NN / E3NN-new": lambda: e3nn_tut(51),
    "MLP, Energy ✓": lambda: dost_seed("mlp", 200, 41),
    "Graph Network, Energy ✓": lambda: dost_seed("graphnetwork", 200, 41),
    "DOSTransformer": lambda: dost_seed("DOSTransformer", 200, 41),
    "Mat2Spec": lambda: mat2spec(128),
    "Mat2Spec, code widths": lambda: mat2spec(128),
    "Xtal2DoS": lambda: xtal2dos(128),
    "Xtal2DoS, code residual": lambda: xtal2dos(128),
    "RNN+Attn (partial)": lambda: luong_rnn(1),
    "Chunk RNN+Attn (partial)": lambda: luong_rnn(32),
}

M200 = "model.atom_features=matscholar200"
M2S_CODE = "model.encoder.n_layers=3 model.head.predictor=code model.head.projector=code"
ROWS = [  # (label, dos_bench overrides, points)
    ("D-ALIGNN", "model=d_alignn", 300),
    ("D-ALIGNN, one FC (code)", "model=d_alignn model.head.n_layers=1", 300),
    ("AE-ALIGNN, latent 12", "model=ae_alignn", 12),
    ("MLP, Energy ✗", f"model=mlp {M200}", 201),
    ("Graph Network, Energy ✗", f"model=graph_network {M200}", 201),
    ("Graph Network, d = 128 (default)", "model=graph_network_small", 300),
    ("E3NN / E3NN-new", "model=e3nn", 51),
    ("MLP, Energy ✓", f"model=mlp_energy {M200}", 201),
    ("Graph Network, Energy ✓", f"model=graph_network_energy {M200}", 201),
    ("E3NN, Energy ✓", "model=e3nn_energy", 51),
    ("DOSTransformer", f"model=dostransformer {M200}", 201),
    ("GATGNN", "model=gatgnn", 128),
    ("Mat2Spec", "model=mat2spec", 128),
    ("Mat2Spec, code widths", f"model=mat2spec {M2S_CODE}", 128),
    ("Xtal2DoS", "model=xtal2dos", 128),
    ("Xtal2DoS, code residual", "model=xtal2dos model.encoder.beta=false", 128),
    ("RNN", "model=rnn", 128),
    ("RNN+Attn (partial)", "model=rnn_attn", 128),
    ("Chunk RNN+Attn (partial)", "model=chunk_rnn_attn", 128),
    ("E3NN (original)", "model=e3nn_orig", 51),
    ("E3NN2DoS", "model=e3nn2dos", 51),
]


def dos_bench_count(overrides: str, points: int) -> int:
    """Parameters of the dos_bench model built from ``conf/train.yaml`` with ``overrides``
    and ``points`` outputs (as tests/models/test_model_zoo.py builds the zoo)."""
    from dos_bench.bench_utils import compose
    from dos_bench.data.features import atom_feature_table
    from dos_bench.models.model import build_model

    cfg = compose(overrides.split())
    dim = atom_feature_table(cfg.model.atom_features).shape[1]
    return int(build_model(cfg.model, in_dim=dim, out_dim=points).n_parameters())


def table_lines() -> list[str]:
    lines = [
        "| row | dos_bench config | points | dos_bench | authors' (all) | authors' (used) "
        "| Δ vs used |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, overrides, points in ROWS:
        ours = dos_bench_count(overrides, points)
        if label in AUTHORS:
            a = AUTHORS[label]()
            delta = f"{100.0 * (ours - a['used']) / a['used']:+.2f} %"
            cells = [f"{a['all']:,}", f"{a['used']:,}", delta]
        else:
            cells = ["n/c", "n/c", "–"]
        row = [label, f"`{overrides}`", str(points), f"{ours:,}", *cells]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main(argv: list[str]) -> int:
    if "--table" in argv:
        print("\n".join(table_lines()))
        return 0
    for label, fn in AUTHORS.items():
        a = fn()
        print(f"{label:28s} all {a['all']:>12,}  used {a['used']:>12,}")
        for k, v in a["parts"].items():
            print(f"    {k:34s}{v:>12,}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
