"""Uniformity of generate_pin: a chi-square goodness-of-fit test over the allowed set.

The critical value uses the Wilson–Hilferty approximation, (χ²/df)^(1/3) ≈ normal with mean
1 - 2/(9 df) and variance 2/(9 df); at df ≈ 9,900 its error is far below the statistic's
noise (relative error ~1e-4 there), and no scipy is needed.  A correct generator fails the
test with probability FALSE_FAILURE_RATE.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import pytest

from rollout.pins import STRICT, generate_pin

FALSE_FAILURE_RATE = 1e-6
DRAWS = 1_000_000  # ~100 per cell over ~9,943 allowed PINs
BORN = date(1979, 12, 31)


def chi_square_critical(df: int, alpha: float) -> float:
    """Upper-alpha quantile of the chi-square distribution (Wilson–Hilferty)."""
    z = NormalDist().inv_cdf(1 - alpha)
    a = 2 / (9 * df)
    return float(df * (1 - a + z * a**0.5) ** 3)


def assert_uniform(draws: npt.NDArray[np.int64], allowed: Sequence[str]) -> None:
    """Fail unless `draws` (PINs as ints) look uniform over `allowed`."""
    counts = np.bincount(draws, minlength=10_000)
    cells = np.array([int(p) for p in allowed])
    outside = counts.sum() - counts[cells].sum()
    assert outside == 0, f"{outside} draws outside the allowed set"
    expected = len(draws) / len(cells)
    statistic = float((((counts[cells] - expected) ** 2) / expected).sum())
    critical = chi_square_critical(len(cells) - 1, FALSE_FAILURE_RATE)
    assert statistic < critical, f"chi-square {statistic:.0f} >= {critical:.0f}"


def test_wilson_hilferty_matches_tables() -> None:
    # Published chi-square quantiles: df=100 at 5 % is 124.342; df=30 at 1 % is 50.892.
    assert chi_square_critical(100, 0.05) == pytest.approx(124.342, rel=2e-4)
    assert chi_square_critical(30, 0.01) == pytest.approx(50.892, rel=1e-3)


@pytest.mark.slow
def test_generate_pin_is_uniform_over_allowed_set() -> None:
    allowed = STRICT.allowed(BORN)
    draws = np.fromiter((int(generate_pin(BORN).reveal()) for _ in range(DRAWS)), np.int64, DRAWS)
    assert_uniform(draws, allowed)


def test_uniformity_check_passes_an_unbiased_sampler() -> None:
    allowed = STRICT.allowed(BORN)
    rng = np.random.default_rng(20240516)
    index = rng.integers(0, len(allowed), DRAWS)
    assert_uniform(np.array([int(p) for p in allowed])[index], allowed)


def test_uniformity_check_catches_modulo_bias() -> None:
    # The classic mistake: randbelow(10000) % len(allowed) makes the first 57 PINs twice
    # as likely as the rest.  The same check, with the same number of draws, must fail.
    allowed = STRICT.allowed(BORN)
    rng = np.random.default_rng(20240516)
    index = rng.integers(0, 10_000, DRAWS) % len(allowed)
    with pytest.raises(AssertionError, match="chi-square"):
        assert_uniform(np.array([int(p) for p in allowed])[index], allowed)
