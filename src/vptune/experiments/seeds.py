"""A score over seeds: mean, sample spread and how many seeds, with one rule for a single seed.

With one seed there is no spread: `std` is None and tables say `n=1` instead of a made-up 0.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

STD_RULE = "std: sample standard deviation over seeds (n - 1 in the denominator); none with one seed (n=1)"


@dataclass(frozen=True)
class SeedScores:
    """The mean of one score over `n` seeds and its sample standard deviation (None when n = 1)."""

    mean: float
    std: float | None
    n: int

    def text(self, scale: float = 1.0, digits: int = 4) -> str:
        """`0.9059 ± 0.0063 (n=3)`, or `0.9200 (n=1)`; values multiplied by `scale` (100 for percent)."""
        spread = "" if self.std is None else f" ± {scale * self.std:.{digits}f}"
        return f"{scale * self.mean:.{digits}f}{spread} (n={self.n})"


def over_seeds(values: Sequence[float]) -> SeedScores:
    """The SeedScores of one value per seed; ValueError for no values."""
    if not values:
        raise ValueError("no values to average over seeds")
    std = statistics.stdev(values) if len(values) > 1 else None
    return SeedScores(statistics.fmean(values), std, len(values))
