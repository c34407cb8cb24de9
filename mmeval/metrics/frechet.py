"""The Fréchet distance between two Gaussians, implemented once for FID, FAD and FVD.

    d² = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)

The usual implementation calls ``scipy.linalg.sqrtm(S1 @ S2)``, which works on a
non-symmetric product, can return complex values and needs an epsilon fallback for singular
covariances. Here everything is symmetric and float64:

    tr((S1 S2)^½) = tr((A S2 A)^½) = Σ sqrt(eig(A S2 A)),  A = S1^½ (symmetric, by eigh)

since S1 S2 = A (A S2 A) A⁻¹ is similar to the symmetric positive semi-definite A S2 A.
Tiny negative eigenvalues from rounding are clipped to zero. The result matches the scipy
formula to ~1e-10 relative on well-conditioned inputs (tests/test_frechet.py) and stays real
and finite when the covariances are singular (fewer samples than dimensions).

Error bars: :func:`bootstrap_frechet` (see there for why the interval is value ± z·se).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Gaussian:
    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64
    n: int

    @classmethod
    def fit(cls, features: np.ndarray) -> Gaussian:
        """Mean and unbiased covariance (ddof=1, as in the FID reference code) in float64."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be a 2-D (samples x dims) array, got shape {x.shape}")
        if x.shape[0] < 2:
            raise ValueError(f"a Fréchet distance needs at least 2 samples per set, got {x.shape[0]}")
        return cls(mu=x.mean(axis=0), sigma=np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1]), n=x.shape[0])


def psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding noise clipped)."""
    s = np.asarray(sigma, dtype=np.float64)
    s = (s + s.T) / 2
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, sqrt1: np.ndarray | None = None) -> float:
    """tr((S1 S2)^½); pass ``sqrt1`` = psd_sqrt(S1) to reuse it (bootstrap over S2)."""
    a = psd_sqrt(sigma1) if sqrt1 is None else sqrt1
    m = a @ np.asarray(sigma2, dtype=np.float64) @ a
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, sqrt1: np.ndarray | None = None) -> float:
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"Fréchet distance of sets with different feature sizes: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    d = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2, sqrt1))
    return max(d, 0.0)  # a distance: rounding can take an identical pair to -1e-12


def gaussian_distance(a: Gaussian, b: Gaussian) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def bootstrap_frechet(
    generated: np.ndarray | Sequence[np.ndarray], reference: Gaussian, n_boot: int, seed: int = 0, z: float = 1.959964
) -> tuple[float, float, float] | None:
    """Standard error of the distance from resampling the *generated* set with replacement (the
    reference statistics are fixed: they are the target distribution), and the 95% interval
    ``value ± z·se`` clipped at 0. Returns (stderr, low, high), or None when there are fewer
    than 3 samples or no resamples are asked for.

    ``generated`` is a (N, D) array, one row per sample, or a list of (k_i, D) arrays, one per
    sample (FAD's VGGish windows of a clip): then whole samples are resampled, so rows of one
    clip never count as independent.

    Why not the percentile interval: the Fréchet distance is biased upward by finite n, and a
    resample with duplicates has less spread than the set itself, so bootstrap replicates sit
    systematically *above* the estimate; for a generator close to the reference the whole
    percentile interval can lie above the value reported. The bootstrap standard error is still
    a sound measure of sampling spread; the interval is centred on the estimate (ci_method
    ``bootstrap_se``). Distances are only comparable at equal n.
    """
    groups = [np.asarray(g, dtype=np.float64) for g in generated] if isinstance(generated, (list, tuple)) else None
    x = None if groups is not None else np.asarray(generated, dtype=np.float64)
    n = len(groups) if groups is not None else x.shape[0]  # type: ignore[union-attr]
    if n_boot <= 0 or n < 3:
        return None
    rng = np.random.default_rng(seed)
    sqrt_ref = psd_sqrt(reference.sigma)
    whole = np.concatenate(groups) if groups is not None else x
    g0 = Gaussian.fit(whole)  # type: ignore[arg-type]
    value = frechet_distance(reference.mu, reference.sigma, g0.mu, g0.sigma, sqrt1=sqrt_ref)
    tr_ref = float(np.trace(reference.sigma))
    values = np.empty(n_boot)
    for b in range(n_boot):
        pick = rng.integers(0, n, n)
        rows = np.concatenate([groups[i] for i in pick]) if groups is not None else x[pick]  # type: ignore[index]
        values[b] = _distance_to_samples(reference.mu, tr_ref, sqrt_ref, rows)
    se = float(values.std(ddof=1))
    return se, max(0.0, value - z * se), value + z * se


def _distance_to_samples(mu_ref: np.ndarray, tr_ref: float, sqrt_ref: np.ndarray, rows: np.ndarray) -> float:
    """The distance from the reference Gaussian to the one fitted to ``rows``, without forming
    the (D, D) covariance of the rows: with centred rows Xc and A = S_ref^½,

        tr((S_ref S)^½) = Σ sqrt(eig(A Xcᵀ Xc A)) / sqrt(n-1) = Σ sqrt(eig((Xc A)(Xc A)ᵀ)) / sqrt(n-1)

    (the non-zero eigenvalues of MᵀM and MMᵀ agree), an n x n problem when n < D. A bootstrap
    of 1,000 generated images against 2,048-d Inception statistics is then ~100x cheaper."""
    n = rows.shape[0]
    mu = rows.mean(axis=0)
    xc = rows - mu
    m = xc @ sqrt_ref
    gram = m @ m.T if n <= m.shape[1] else m.T @ m
    w = np.linalg.eigvalsh((gram + gram.T) / 2) / (n - 1)
    diff = mu_ref - mu
    d = float(diff @ diff + tr_ref + float((xc * xc).sum()) / (n - 1) - 2.0 * np.sqrt(np.clip(w, 0.0, None)).sum())
    return max(d, 0.0)
