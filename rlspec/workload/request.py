"""A request as the workload describes it: when it arrives and how long it is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Request:
    request_id: int  # unique within one workload, in arrival order
    arrival_s: float  # seconds from the start of the episode
    prompt_len: int  # prompt tokens (>= 1)
    output_len: int  # tokens to generate (>= 1); the engine stops exactly there
