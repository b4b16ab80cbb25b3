"""Acceptance of draft tokens: how many of k drafts the target keeps.

Per-request acceptance probability a is drawn from a per-dataset Beta distribution (mean,
concentration); position j (0-based) of a draft is accepted with probability
a * position_decay**j given all earlier ones were; the accepted count of one verify step is
the resulting truncated geometric. `drift` moves the dataset mean over time (e.g. a code
burst followed by chat) by linear interpolation between (time, mean) points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlspec.config import ConfigError, check_range

_A_MIN, _A_MAX = 1e-9, 1.0 - 1e-12


def expected_tokens(a: float, k: int) -> float:
    """E[tokens per verify step] = (1 - a^(k+1)) / (1 - a), counting the bonus token."""
    if k <= 0:
        return 1.0
    if a >= 1.0:
        return float(k + 1)
    return (1.0 - a ** (k + 1)) / (1.0 - a)


@dataclass(frozen=True)
class AcceptanceConfig:
    mean: float = 0.8  # dataset mean of the per-request acceptance probability
    concentration: float = 20.0  # Beta(a, b) with a + b = concentration; larger = less spread
    position_decay: float = 1.0  # multiplier per draft position (1 = none)
    drift: list[tuple[float, float]] = field(default_factory=list)  # [(time_s, mean), ...]

    def __post_init__(self) -> None:
        check_range("acceptance.mean", self.mean, 0.0, 1.0)
        check_range("acceptance.concentration", self.concentration, lo=0.1)
        check_range("acceptance.position_decay", self.position_decay, 0.0, 1.0)
        times = [t for t, _ in self.drift]
        if times != sorted(times):
            raise ConfigError("acceptance.drift: times must be increasing")
        for i, (_, m) in enumerate(self.drift):
            check_range(f"acceptance.drift[{i}].mean", m, 0.0, 1.0)


class AcceptanceModel:
    """Draws per-request acceptance and per-step accepted counts from an owned Generator."""

    def __init__(self, cfg: AcceptanceConfig, rng: np.random.Generator):
        self.cfg = cfg
        self._rng = rng
        self._drift_t = np.array([t for t, _ in cfg.drift], dtype=float)
        self._drift_m = np.array([m for _, m in cfg.drift], dtype=float)
        self._decay_pows: dict[int, np.ndarray] = {}  # k -> decay ** (0..k-1)

    def mean_at(self, times: np.ndarray) -> np.ndarray:
        """The dataset mean at each of `times` (seconds)."""
        times = np.asarray(times, dtype=np.float64)
        if not len(self._drift_t):
            return np.full(times.shape, self.cfg.mean)
        return np.interp(times, self._drift_t, self._drift_m)

    def draw_requests(self, times: np.ndarray) -> np.ndarray:
        """Acceptance probabilities of requests arriving at `times`, inside (0, 1)."""
        m = self.mean_at(times)
        inner = (m > 0.0) & (m < 1.0)
        if inner.any():
            c = self.cfg.concentration
            m[inner] = self._rng.beta(m[inner] * c, (1.0 - m[inner]) * c)
        # Kept off 0 and 1 so that every position's acceptance stays a probability.
        return np.clip(m, _A_MIN, _A_MAX)

    def accepted(self, a: np.ndarray, k: int, u: np.ndarray) -> np.ndarray:
        """Accepted drafts per request for acceptance probabilities `a` (n,) in (0, 1) and
        one uniform in (0, 1] per draft position, `u` (n, k).

        Draft position j is accepted when its uniform falls under a * decay^j and every
        earlier one was, so P(accepted >= j) = prod_{i<j} a * decay^i.
        """
        if k == 0:
            return np.zeros(len(a), dtype=np.int64)
        if k not in self._decay_pows:  # once per draft length: this runs every verify step
            self._decay_pows[k] = self.cfg.position_decay ** np.arange(k)
        return np.cumprod(u < a[:, None] * self._decay_pows[k], axis=1).sum(axis=1)
