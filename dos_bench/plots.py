"""Figures drawn from the files a run wrote (never from live training state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dos_bench.io import atomic_write

__all__ = ["plot_quartile_examples"]


def plot_quartile_examples(predictions: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Predicted vs true spectra for one test material per error quartile (ALIGNN-DOS Fig. 4).

    Args:
        predictions: a ``predictions.npz`` written by ``dos-train``.
        out: the PNG to write (atomically).
        seed: which material of each quartile is drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(predictions, allow_pickle=False) as z:
        ids, grid, true, pred = z["ids"], z["energies"], z["true"], z["pred"]
        energy_unit = str(z["energy_unit"]) if "energy_unit" in z.files else ""
    err = np.mean(np.abs(pred - true), axis=1)
    order = np.argsort(err)
    quartiles = np.array_split(order, 4)
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), sharey=False)
    for q, (ax, members) in enumerate(zip(axes, quartiles, strict=True)):
        if len(members) == 0:
            ax.set_axis_off()
            continue
        i = int(rng.choice(members))
        ax.plot(grid, true[i], color="k", lw=1.5, label="true")
        ax.plot(grid, pred[i], color="tab:red", lw=1.2, label="predicted")
        ax.fill_between(grid, true[i], color="0.85")
        ax.set_title(f"Q{q + 1}: {ids[i]}\nMAE {err[i]:.3g}", fontsize=9)
        ax.set_xlabel(f"E ({energy_unit})" if energy_unit else "grid")
        if q == 0:
            ax.set_ylabel("DOS")
            ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    with atomic_write(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return out
