"""Turn parallel arrays (arrival time, prompt length, output length) into `Request`s."""

from __future__ import annotations

import numpy as np

from rlspec.workload.request import Request


def to_requests(
    arrival_s: np.ndarray, prompt_len: np.ndarray, output_len: np.ndarray
) -> list[Request]:
    """Requests with ids 0..n-1 in the given (arrival) order, as plain Python numbers."""
    return [
        Request(request_id=i, arrival_s=t, prompt_len=p, output_len=o)
        for i, (t, p, o) in enumerate(
            zip(arrival_s.tolist(), prompt_len.tolist(), output_len.tolist(), strict=True)
        )
    ]
