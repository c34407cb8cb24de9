"""The one Fréchet distance (FID, FAD, FVD) against the textbook scipy formula."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from mmeval.metrics.frechet import Gaussian, bootstrap_frechet, frechet_distance, gaussian_distance, psd_sqrt


def scipy_reference(mu1, s1, mu2, s2) -> float:
    """The formula as the FID reference code writes it: sqrtm of the (non-symmetric) product."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def random_gaussian(rng: np.random.Generator, dim: int, n: int, shift: float = 0.0) -> Gaussian:
    a = rng.normal(size=(dim, dim))
    x = rng.normal(size=(n, dim)) @ a.T / np.sqrt(dim) + shift
    return Gaussian.fit(x)


@pytest.mark.parametrize("dim", [2, 16, 64, 256])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_on_random_gaussians(dim: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = random_gaussian(rng, dim, 4 * dim + 10)
    b = random_gaussian(rng, dim, 4 * dim + 10, shift=rng.normal())
    ours = gaussian_distance(a, b)
    ref = scipy_reference(a.mu, a.sigma, b.mu, b.sigma)
    assert ours == pytest.approx(ref, rel=1e-6)
    assert ours > 0


def test_identical_sets_are_zero_and_symmetric() -> None:
    rng = np.random.default_rng(3)
    a = random_gaussian(rng, 32, 200)
    assert abs(gaussian_distance(a, a)) < 1e-6
    b = random_gaussian(rng, 32, 200, shift=0.5)
    assert gaussian_distance(a, b) == pytest.approx(gaussian_distance(b, a), rel=1e-9)


def test_mean_shift_only() -> None:
    """Same covariance, means apart by v: the distance is |v|² exactly."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 8))
    a, b = Gaussian.fit(x), Gaussian.fit(x + 2.0)
    assert gaussian_distance(a, b) == pytest.approx(8 * 4.0, rel=1e-9)


def test_singular_covariances_stay_real_and_finite() -> None:
    """Fewer samples than dimensions: rank-deficient covariances (scipy's sqrtm struggles)."""
    rng = np.random.default_rng(5)
    a = Gaussian.fit(rng.normal(size=(10, 64)))
    b = Gaussian.fit(rng.normal(size=(12, 64)) + 0.1)
    d = gaussian_distance(a, b)
    assert np.isfinite(d) and d > 0
    assert abs(gaussian_distance(a, a)) < 1e-6


def test_psd_sqrt_squares_back() -> None:
    rng = np.random.default_rng(6)
    s = random_gaussian(rng, 20, 100).sigma
    r = psd_sqrt(s)
    np.testing.assert_allclose(r @ r, s, atol=1e-10)


def test_float64_even_from_float32_features() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    g = Gaussian.fit(x)
    assert g.mu.dtype == np.float64 and g.sigma.dtype == np.float64


def test_bad_input_is_clear() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        Gaussian.fit(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="different feature sizes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_bootstrap_interval_is_centred_on_the_estimate() -> None:
    rng = np.random.default_rng(8)
    ref = Gaussian.fit(rng.normal(size=(400, 6)))
    gen = rng.normal(size=(200, 6)) + 0.3
    value = gaussian_distance(ref, Gaussian.fit(gen))
    out = bootstrap_frechet(gen, ref, n_boot=200, seed=0)
    assert out is not None
    stderr, low, high = out
    assert stderr > 0 and low < value < high
    assert (high - value) == pytest.approx(1.959964 * stderr) and low == pytest.approx(max(0.0, value - 1.959964 * stderr))
    assert bootstrap_frechet(gen, ref, n_boot=200, seed=0) == out  # seeded
    assert bootstrap_frechet(gen, ref, n_boot=200, seed=1) != out
    assert bootstrap_frechet(gen[:2], ref, n_boot=10) is None


def test_bootstrap_near_zero_distance_keeps_the_estimate_inside() -> None:
    """Same distribution: resamples are biased upward; the interval must still contain the value."""
    rng = np.random.default_rng(9)
    ref = Gaussian.fit(rng.normal(size=(2000, 8)))
    gen = rng.normal(size=(60, 8))
    value = gaussian_distance(ref, Gaussian.fit(gen))
    _, low, high = bootstrap_frechet(gen, ref, n_boot=100, seed=0)  # type: ignore[misc]
    assert low <= value <= high and low >= 0


def test_grouped_bootstrap_resamples_whole_samples() -> None:
    """Windows of one clip move together: with identical windows inside a clip, the grouped
    standard error equals the one of the per-clip rows repeated (not the smaller row-level one)."""
    rng = np.random.default_rng(10)
    ref = Gaussian.fit(rng.normal(size=(500, 4)))
    clips = [np.repeat(rng.normal(size=(1, 4)) + 0.2, 5, axis=0) for _ in range(40)]
    grouped = bootstrap_frechet(clips, ref, n_boot=200, seed=0)
    rows = bootstrap_frechet(np.concatenate(clips), ref, n_boot=200, seed=0)
    assert grouped is not None and rows is not None
    assert grouped[0] > rows[0] * 1.5  # treating 200 correlated rows as independent understates the error


@pytest.mark.parametrize("n,dim", [(5, 40), (50, 8)])
def test_sample_form_equals_the_covariance_form(n: int, dim: int) -> None:
    """The bootstrap's n x n shortcut gives the same distance as the (D, D) formula."""
    from mmeval.metrics.frechet import _distance_to_samples

    rng = np.random.default_rng(11)
    ref = random_gaussian(rng, dim, 4 * dim)
    rows = rng.normal(size=(n, dim)) + 0.3
    g = Gaussian.fit(rows)
    full = frechet_distance(ref.mu, ref.sigma, g.mu, g.sigma)
    fast = _distance_to_samples(ref.mu, float(np.trace(ref.sigma)), psd_sqrt(ref.sigma), rows)
    # rel 1e-7: in the (D, D) form the square roots of rank-deficiency rounding noise add ~1e-7
    assert fast == pytest.approx(full, rel=1e-7)
