"""Comparing controllers on a live engine whose speed changes between episodes.

On a shared CPU the engine's speed moves by about +-10% from one episode to the next
(each episode's measured step time over the time the profile predicts for the same
iterations, `VLLMBackend.step_time_vs_profile`), and near saturation the queue turns that
into +-30% of mean latency: more than the differences between good controllers, and no
number of affordable repeats averages it away. Every live episode records its own speed,
so the comparison can hold speed fixed instead. Analysis of covariance on the log scale,
one intercept per controller and one slope shared by all controllers at a point,

    log latency[c, r] = a[c] + b * log speed[c, r] + noise,

and every episode's latency is moved to the point's mean speed,
latency[c, r] * (mean speed / speed[c, r]) ** b, before the usual mean over repeats.

The shared slope treats speed as the host's, not the controller's: a controller whose
choices made the engine stray from its profile would have that cost removed too. The
sweeps therefore keep the raw figures beside the adjusted ones, and per-controller mean
speeds in the results show whether any controller runs systematically off-profile.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SpeedAdjusted:
    """Mean latency per controller at one engine speed (the point's geometric mean)."""

    latency_s: dict[str, float]  # controller -> mean of its speed-adjusted episodes
    slope: float  # d log latency / d log speed, shared by the point's controllers
    r2: float  # share of the within-controller variance of log latency that speed explains
    mean_speed: float  # the speed every episode is moved to
    episodes: int


def speed_adjusted(
    latency_runs: Mapping[str, Sequence[float]], speed_runs: Mapping[str, Sequence[float]]
) -> SpeedAdjusted | None:
    """Each controller's mean latency with the engine's speed held at the point's mean.

    `latency_runs[c]` and `speed_runs[c]` are controller c's repeated episodes on the same
    requests, in the same order. None when the slope is not identified: no controller has
    two episodes at different speeds.
    """
    if set(latency_runs) != set(speed_runs):
        raise ValueError(f"latency_runs and speed_runs name different controllers: "
                         f"{sorted(latency_runs)} vs {sorted(speed_runs)}")  # fmt: skip
    logs: dict[str, list[tuple[float, float]]] = {}
    for c, lat in latency_runs.items():
        spd = speed_runs[c]
        if len(lat) != len(spd) or not lat:
            raise ValueError(f"controller {c!r}: {len(lat)} latencies but {len(spd)} speeds (need equal, >= 1)")
        bad = [v for v in (*lat, *spd) if not (isinstance(v, int | float) and v > 0 and math.isfinite(v))]
        if bad:
            raise ValueError(f"controller {c!r}: latencies and speeds must be positive and finite, got {bad[0]!r}")
        logs[c] = [(math.log(s), math.log(x)) for x, s in zip(lat, spd, strict=True)]
    sxx = sxy = syy = 0.0
    for pairs in logs.values():
        mx = statistics.fmean(p[0] for p in pairs)
        my = statistics.fmean(p[1] for p in pairs)
        for x, y in pairs:
            sxx += (x - mx) ** 2
            sxy += (x - mx) * (y - my)
            syy += (y - my) ** 2
    if sxx <= 1e-12:
        return None
    slope = sxy / sxx
    grand = statistics.fmean(x for pairs in logs.values() for x, _ in pairs)
    adjusted = {c: statistics.fmean(math.exp(y + slope * (grand - x)) for x, y in pairs) for c, pairs in logs.items()}
    return SpeedAdjusted(
        latency_s=adjusted,
        slope=slope,
        r2=(sxy * sxy / (sxx * syy)) if syy > 0 else 1.0,
        mean_speed=math.exp(grand),
        episodes=sum(len(p) for p in logs.values()),
    )
