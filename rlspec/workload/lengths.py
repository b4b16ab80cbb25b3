"""Token-length distributions for synthetic workloads (prompt and output lengths).

Serving cost is dominated by how long prompts and outputs are, so the shape matters:
`lognormal` (set by mean and coefficient of variation) gives the heavy right tail real
traces show, `empirical` resamples observed lengths, `fixed`/`uniform` are for controlled
experiments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rlspec.config import ConfigError, check_range
from rlspec.workload.checks import check_nonnegative, check_positive, check_variant

_FIELDS = {
    "fixed": (("value",), ()),
    "uniform": (("low", "high"), ()),
    "lognormal": (("mean", "cv"), ("min", "max")),
    "empirical": (("values",), ("min", "max")),
}


@dataclass(frozen=True)
class LengthConfig:
    """A distribution of token counts; every sample is an integer >= 1.

    dist=fixed: `value`. dist=uniform: integers in [`low`, `high`] inclusive.
    dist=lognormal: `mean` and `cv` (std / mean) of the underlying lognormal, rounded.
    dist=empirical: resample `values` uniformly with replacement.
    lognormal and empirical accept an optional clip to [`min`, `max`].
    """

    dist: Literal["fixed", "uniform", "lognormal", "empirical"]
    value: int | None = None
    low: int | None = None
    high: int | None = None
    mean: float | None = None
    cv: float | None = None
    values: list[int] | None = None
    min: int | None = None
    max: int | None = None

    def __post_init__(self) -> None:
        check_variant(self, "length.", "dist", _FIELDS)
        if self.value is not None:
            check_range("length.value", self.value, lo=1)
        if self.low is not None and self.high is not None:
            check_range("length.low", self.low, lo=1)
            check_range("length.high", self.high, lo=self.low)
        if self.mean is not None:
            check_positive("length.mean", self.mean)
        if self.cv is not None:
            check_nonnegative("length.cv", self.cv)
        if self.values is not None:
            if not self.values:
                raise ConfigError("length.values: must not be empty")
            check_range("length.values", min(self.values), lo=1)
        if self.min is not None:
            check_range("length.min", self.min, lo=1)
        if self.max is not None:
            check_range("length.max", self.max, lo=self.min if self.min is not None else 1)


def sample(cfg: LengthConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` lengths drawn from `cfg`, as an int64 array with every entry >= 1."""
    if cfg.dist == "fixed":
        out = np.full(n, cfg.value, dtype=np.int64)
    elif cfg.dist == "uniform":
        out = rng.integers(cfg.low, cfg.high, size=n, endpoint=True, dtype=np.int64)
    elif cfg.dist == "lognormal":
        sigma2 = math.log1p(cfg.cv**2)
        mu = math.log(cfg.mean) - sigma2 / 2.0  # so that E[X] = mean
        out = np.rint(rng.lognormal(mu, math.sqrt(sigma2), size=n)).astype(np.int64)
    else:
        out = rng.choice(np.asarray(cfg.values, dtype=np.int64), size=n, replace=True)
    lo = 1 if cfg.min is None else cfg.min
    return np.clip(out, lo, cfg.max)


def scale_lengths(lengths: np.ndarray, factor: float) -> np.ndarray:
    """Multiply lengths by `factor`, round, keep >= 1 (shrinks a workload to a small engine)."""
    if factor == 1.0:
        return np.asarray(lengths, dtype=np.int64)
    return np.maximum(np.rint(np.asarray(lengths) * factor), 1).astype(np.int64)
