"""Arrival processes: when requests reach the server.

Speculative decoding pays off at low load and hurts at high load, so a controller is
only tested if the load moves: steady (Poisson), bursty (gamma renewal with CV > 1),
idle/busy phases (on/off), slow drifts (ramp, diurnal) and sudden spikes (flash crowd).

Every function returns sorted float64 arrival times in [0, duration_s), truncated to
the first `max_requests` when that is given. Randomness comes only from `rng`.
Arguments are validated by `WorkloadConfig`; these functions only check what would
otherwise fail obscurely.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rlspec.workload.checks import check_nonnegative, check_positive


def poisson(
    rng: np.random.Generator, *, rate: float, duration_s: float, max_requests: int | None = None
) -> np.ndarray:
    """Homogeneous Poisson process: independent arrivals at `rate` per second."""
    check_positive("rate", rate)
    times = _piecewise_poisson(rng, np.array([0.0, duration_s]), np.array([rate]))
    return _truncate(times, max_requests)


def gamma(
    rng: np.random.Generator,
    *,
    rate: float,
    cv: float,
    duration_s: float,
    max_requests: int | None = None,
) -> np.ndarray:
    """Renewal process with gamma inter-arrivals of mean 1/`rate` and coefficient of variation `cv`.

    cv = 1 is Poisson; cv of 2-4 gives the clustered bursts seen in production traces.
    """
    check_positive("rate", rate)
    check_positive("cv", cv)
    check_positive("duration_s", duration_s)
    shape = 1.0 / cv**2
    scale = 1.0 / (rate * shape)
    chunk = int(rate * duration_s * 1.05) + 64
    parts = []
    t0 = 0.0
    while t0 < duration_s:
        times = t0 + np.cumsum(rng.gamma(shape, scale, size=chunk))
        parts.append(times)
        t0 = float(times[-1])
    times = np.concatenate(parts)
    return _truncate(times[times < duration_s], max_requests)


def onoff(
    rng: np.random.Generator,
    *,
    rate_on: float,
    on_s: float,
    off_s: float,
    duration_s: float,
    max_requests: int | None = None,
) -> np.ndarray:
    """Alternating busy and idle periods, starting busy.

    Period lengths are exponential with means `on_s` and `off_s`; during a busy period
    arrivals are Poisson at `rate_on`, during an idle one there are none.
    """
    check_positive("rate_on", rate_on)
    check_positive("on_s", on_s)
    check_positive("off_s", off_s)
    check_positive("duration_s", duration_s)
    pairs = int(duration_s / (on_s + off_s) * 1.2) + 8
    ends: list[np.ndarray] = []
    t0 = 0.0
    while t0 < duration_s:
        periods = rng.exponential(1.0, size=(pairs, 2)) * np.array([on_s, off_s])
        chunk_ends = t0 + np.cumsum(periods.ravel())
        ends.append(chunk_ends)
        t0 = float(chunk_ends[-1])
    edges = np.concatenate([[0.0], *ends])
    edges = np.append(edges[: np.searchsorted(edges, duration_s)], duration_s)
    rates = np.zeros(len(edges) - 1)
    rates[0::2] = rate_on
    return _truncate(_piecewise_poisson(rng, edges, rates), max_requests)


def ramp(
    rng: np.random.Generator,
    *,
    rate_start: float,
    rate_end: float,
    duration_s: float,
    max_requests: int | None = None,
) -> np.ndarray:
    """Nonhomogeneous Poisson whose rate moves linearly from `rate_start` to `rate_end`."""
    check_nonnegative("rate_start", rate_start)
    check_nonnegative("rate_end", rate_end)

    def rate(t: np.ndarray) -> np.ndarray:
        return rate_start + (rate_end - rate_start) * (t / duration_s)

    return _truncate(_thinned(rng, rate, max(rate_start, rate_end), duration_s), max_requests)


def diurnal(
    rng: np.random.Generator,
    *,
    base_rate: float,
    amplitude: float,
    period_s: float,
    duration_s: float,
    max_requests: int | None = None,
) -> np.ndarray:
    """Nonhomogeneous Poisson with rate `base_rate + amplitude * sin(2 pi t / period_s)`.

    A compressed day: the load rises from the base to its peak at period/4, falls to its
    trough at 3/4 period. `amplitude` must not exceed `base_rate`.
    """
    check_positive("period_s", period_s)
    if not 0.0 <= amplitude <= base_rate:
        raise ValueError(f"amplitude {amplitude!r} must be in [0, base_rate={base_rate!r}]")
    omega = 2.0 * math.pi / period_s

    def rate(t: np.ndarray) -> np.ndarray:
        return base_rate + amplitude * np.sin(omega * t)

    return _truncate(_thinned(rng, rate, base_rate + amplitude, duration_s), max_requests)


def flash(
    rng: np.random.Generator,
    *,
    base_rate: float,
    spike_rate: float,
    spike_start_s: float,
    spike_duration_s: float,
    duration_s: float,
    max_requests: int | None = None,
) -> np.ndarray:
    """Poisson at `base_rate`, except at `spike_rate` in [spike_start_s, + spike_duration_s).

    `spike_rate` is the total rate during the spike (it replaces the base rate there).
    """
    check_nonnegative("base_rate", base_rate)
    check_nonnegative("spike_rate", spike_rate)
    check_nonnegative("spike_start_s", spike_start_s)
    check_nonnegative("spike_duration_s", spike_duration_s)
    start = min(spike_start_s, duration_s)
    end = min(spike_start_s + spike_duration_s, duration_s)
    edges = np.array([0.0, start, end, duration_s])
    rates = np.array([base_rate, spike_rate, base_rate])
    return _truncate(_piecewise_poisson(rng, edges, rates), max_requests)


def _piecewise_poisson(
    rng: np.random.Generator, edges: np.ndarray, rates: np.ndarray
) -> np.ndarray:
    """Poisson arrivals at rate `rates[i]` on [edges[i], edges[i+1]), sorted.

    Exact and vectorised: the count per segment is Poisson, the positions are uniform.
    """
    check_positive("duration_s", float(edges[-1]))
    widths = np.diff(edges)
    counts = rng.poisson(rates * widths)
    offsets = rng.random(int(counts.sum())) * np.repeat(widths, counts)
    times = np.repeat(edges[:-1], counts) + offsets
    times.sort()
    return times[times < edges[-1]]


def _thinned(
    rng: np.random.Generator,
    rate: Callable[[np.ndarray], np.ndarray],
    rate_max: float,
    duration_s: float,
) -> np.ndarray:
    """Nonhomogeneous Poisson by thinning (Lewis-Shedler): keep each candidate of a
    Poisson(`rate_max`) process with probability rate(t) / rate_max."""
    if rate_max <= 0.0:
        raise ValueError("the arrival rate must be > 0 somewhere in the episode")
    candidates = _piecewise_poisson(rng, np.array([0.0, duration_s]), np.array([rate_max]))
    keep = rng.random(len(candidates)) * rate_max < rate(candidates)
    return candidates[keep]


def _truncate(times: np.ndarray, max_requests: int | None) -> np.ndarray:
    return times if max_requests is None else times[:max_requests]
