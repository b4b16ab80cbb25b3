"""A one-glance summary of a workload, for the CLI and for sanity checks in tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlspec.workload.request import Request


def describe(requests: Sequence[Request]) -> dict[str, float]:
    """Count, span, mean rate, length percentiles and burstiness of `requests`.

    Keys: count, span_s (first to last arrival), rate_rps (count / span_s),
    prompt_{mean,p50,p99}, output_{mean,p50,p99}, interarrival_cv (1 for Poisson,
    > 1 bursty). A statistic that needs more requests than there are is NaN.
    """
    n = len(requests)
    arrival = np.array([r.arrival_s for r in requests], dtype=np.float64)
    prompt = np.array([r.prompt_len for r in requests], dtype=np.float64)
    output = np.array([r.output_len for r in requests], dtype=np.float64)
    nan = float("nan")
    span = float(arrival[-1] - arrival[0]) if n else nan
    gaps = np.diff(arrival)
    gap_mean = float(gaps.mean()) if len(gaps) else nan
    out: dict[str, float] = {
        "count": n,
        "span_s": span,
        "rate_rps": n / span if n and span > 0 else nan,
        "interarrival_cv": float(gaps.std()) / gap_mean if len(gaps) and gap_mean > 0 else nan,
    }
    for name, values in (("prompt", prompt), ("output", output)):
        out[f"{name}_mean"] = float(values.mean()) if n else nan
        out[f"{name}_p50"] = float(np.percentile(values, 50)) if n else nan
        out[f"{name}_p99"] = float(np.percentile(values, 99)) if n else nan
    return out
