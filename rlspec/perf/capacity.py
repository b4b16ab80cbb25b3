"""How much faster one calibrated host serves than another, from their cost models alone.

Load levels (a sweep's rates, a training distribution's ranges) are chosen on one host; a
host with half the capacity is past saturation at rates the first serves easily. Scaling
the rates by the capacity ratio keeps them the same relative to each host's own capacity.
"""

from __future__ import annotations

from rlspec.perf.profile import load_profile
from rlspec.perf.step_time import StepTimeModel, prefill_attention_pairs


def capacity_ratio(profile: str, reference: str = "cpu-tiny") -> float:
    """How many requests per second `profile`'s host serves for each one `reference`'s does:
    the time per request of the live Poisson chat workload at a batch of 8 - its 96-token
    prefill plus 64 decode steps, k=0, drafter resident - on each."""

    def per_request_s(name: str) -> float:
        cost = StepTimeModel(load_profile(name))
        batch, prompt, output = 8, 96, 64
        pairs = batch * prefill_attention_pairs(prompt, 0)
        prefill = cost.iteration(0, 0, batch * prompt, 0, True, prefill_pairs=pairs)
        decode = sum(cost.decode_step(batch, 0, prompt + i, True) for i in range(output))
        return (prefill + decode) / batch

    return per_request_s(reference) / per_request_s(profile)
