r"""Numerics shared by the two toy models: the smooth cutoff, Gamma-centred k-meshes reduced by
time reversal, Bloch sums of site blocks, and Gaussian broadening onto a grid that conserves the
spectral weight exactly.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bloch_matrices", "broaden", "gamma_mesh", "smooth_cutoff"]


def smooth_cutoff(x: np.ndarray, x1: float, x2: float) -> np.ndarray:
    """1 for x <= x1, cosine taper to 0 at x2, 0 beyond."""
    x = np.asarray(x, dtype=np.float64)
    t = np.clip((x - x1) / (x2 - x1), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def gamma_mesh(lattice: np.ndarray, length: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Gamma-centred mesh, :math:`n_\alpha = \lceil L/|a_\alpha| \rceil`, reduced by k -> -k.

    Returns fractional (reciprocal-lattice) coordinates ``(nk, 3)`` and weights summing to one.
    """
    a = np.linalg.norm(lattice, axis=1)
    n = np.maximum(1, np.ceil(length / a - 1e-9)).astype(np.int64)
    grid = np.stack(np.meshgrid(*[np.arange(m) for m in n], indexing="ij"), -1).reshape(-1, 3)
    partner = (-grid) % n
    code = (grid[:, 0] * n[1] + grid[:, 1]) * n[2] + grid[:, 2]
    pcode = (partner[:, 0] * n[1] + partner[:, 1]) * n[2] + partner[:, 2]
    keep = code <= pcode
    weights = np.where(code[keep] == pcode[keep], 1.0, 2.0)
    return grid[keep] / n, weights / weights.sum()


def bloch_matrices(
    kpts: np.ndarray,
    onsite: np.ndarray,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    images: np.ndarray,
    blocks: np.ndarray,
) -> np.ndarray:
    r"""Bloch sums of site blocks.

    :math:`H_{ij}(\mathbf k) = \delta_{ij}O_i + \sum_p B_p\,e^{2\pi i\,\mathbf k\cdot\mathbf n_p}`
    over the pairs p = (i, j, n_p).

    Args:
        kpts: ``(nk, 3)`` fractional k-points.
        onsite: ``(N, b, b)`` on-site blocks.
        pair_i, pair_j: ``(P,)`` site indices; ``images``: ``(P, 3)`` integer lattice translations
            of site j; ``blocks``: ``(P, b, b)`` real blocks coupling i to j + image.  The pair
            list must contain both directions (``B_{ji}(-n) = B_{ij}(n)^T``) for a Hermitian result.

    Returns:
        ``(nk, N b, N b)`` complex Hermitian matrices.
    """
    nk = len(kpts)
    n, b, _ = onsite.shape
    h = np.zeros((nk, n, n, b, b), dtype=np.complex128)
    idx = np.arange(n)
    h[:, idx, idx] = onsite[None]
    if len(pair_i):
        phase = np.exp(2j * np.pi * (kpts @ images.T.astype(np.float64)))  # (nk, P)
        g = pair_i * n + pair_j
        order = np.argsort(g, kind="stable")
        g_sorted = g[order]
        starts = np.flatnonzero(np.r_[True, g_sorted[1:] != g_sorted[:-1]])
        terms = phase[:, order, None] * blocks[order].reshape(1, len(order), b * b)
        summed = np.add.reduceat(terms, starts, axis=1).reshape(nk, len(starts), b, b)
        gi, gj = np.divmod(g_sorted[starts], n)
        h[:, gi, gj] += summed
    return h.transpose(0, 1, 3, 2, 4).reshape(nk, n * b, n * b)


def broaden(
    values: np.ndarray, weights: np.ndarray, start: float, step: float, n: int, sigma: float
) -> np.ndarray:
    """Gaussian-broadened density of ``values`` on the grid ``start + step * arange(n)``.

    Each value is deposited on its two neighbouring grid points (linear interpolation, which
    conserves the weight exactly) and the histogram is convolved with a normalised discrete
    Gaussian, so ``step * sum`` of the result equals ``weights.sum()`` as long as the kernel stays
    inside the grid.  Values outside the grid raise ``ValueError``.
    """
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), np.shape(values)).ravel()
    values = np.ravel(values)
    pos = (values - start) / step
    half = int(math.ceil(6.0 * sigma / step))
    if pos.min() < half or pos.max() > n - 1 - half:
        raise ValueError(
            f"values in [{values.min():.3f}, {values.max():.3f}] do not fit the grid "
            f"[{start:.3f}, {start + step * (n - 1):.3f}] with a 6-sigma margin"
        )
    lo = np.floor(pos).astype(np.int64)
    frac = pos - lo
    hist = np.bincount(lo, weights * (1.0 - frac), minlength=n)
    hist += np.bincount(lo + 1, weights * frac, minlength=n)
    x = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    return np.convolve(hist[:n], kernel, mode="same") / step
