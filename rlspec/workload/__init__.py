"""Workloads: the stream of requests a scenario serves.

`generate(cfg, rng)` turns a scenario's `workload:` block into a list of `Request`s,
either from a synthetic arrival process with sampled lengths or by replaying a trace.
The same config and seed always give the same list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlspec.workload import arrivals
from rlspec.workload.assemble import to_requests
from rlspec.workload.config import WorkloadConfig
from rlspec.workload.lengths import LengthConfig, sample, scale_lengths
from rlspec.workload.request import Request
from rlspec.workload.summary import describe
from rlspec.workload.trace import TraceError, load_trace

__all__ = [
    "LengthConfig",
    "Request",
    "TraceError",
    "WorkloadConfig",
    "describe",
    "generate",
    "load_trace",
]


def generate(
    cfg: WorkloadConfig, rng: np.random.Generator, base_dir: Path | None = None
) -> list[Request]:
    """The requests `cfg` describes, ids 0..n-1 in arrival order.

    A relative trace path is resolved against `base_dir` (the scenario file's directory)
    when given, else against the current directory. Trace replay does not use `rng`.
    """
    if cfg.kind == "trace":
        path = Path(cfg.path)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        return load_trace(
            path,
            rate_scale=1.0 if cfg.rate_scale is None else cfg.rate_scale,
            length_scale=cfg.length_scale,
            start_s=0.0 if cfg.start_s is None else cfg.start_s,
            duration_s=cfg.duration_s,
            max_requests=cfg.max_requests,
            max_prompt_len=cfg.max_prompt_len,
            max_output_len=cfg.max_output_len,
        )
    times = _arrival_times(cfg, rng)
    prompt = scale_lengths(sample(cfg.prompt, len(times), rng), cfg.length_scale)
    output = scale_lengths(sample(cfg.output, len(times), rng), cfg.length_scale)
    return to_requests(times, prompt, output)


def _arrival_times(cfg: WorkloadConfig, rng: np.random.Generator) -> np.ndarray:
    common = {"duration_s": cfg.duration_s, "max_requests": cfg.max_requests}
    if cfg.kind == "poisson":
        return arrivals.poisson(rng, rate=cfg.rate, **common)
    if cfg.kind == "gamma":
        return arrivals.gamma(rng, rate=cfg.rate, cv=cfg.cv, **common)
    if cfg.kind == "onoff":
        return arrivals.onoff(rng, rate_on=cfg.rate_on, on_s=cfg.on_s, off_s=cfg.off_s, **common)
    if cfg.kind == "ramp":
        return arrivals.ramp(rng, rate_start=cfg.rate_start, rate_end=cfg.rate_end, **common)
    if cfg.kind == "diurnal":
        return arrivals.diurnal(
            rng, base_rate=cfg.base_rate, amplitude=cfg.amplitude, period_s=cfg.period_s, **common
        )
    return arrivals.flash(
        rng,
        base_rate=cfg.base_rate,
        spike_rate=cfg.spike_rate,
        spike_start_s=cfg.spike_start_s,
        spike_duration_s=cfg.spike_duration_s,
        **common,
    )
