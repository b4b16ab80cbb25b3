"""SmartSpec's goodput curve (arXiv 2406.14066): expected tokens per second of the batch
at each draft length, from the cost model and an acceptance estimate. Shared by the
`goodput` controller and the feature function (its argmax is a feature the policy refines)."""

from __future__ import annotations

from rlspec.perf.acceptance import expected_tokens
from rlspec.perf.step_time import StepTimeModel


def goodput_curve(
    cost: StepTimeModel, batch: int, acceptance: float, context_per_req: float, k_max: int
) -> list[float]:
    """goodput(k) = B * E[tokens](a, k) / (T_draft(B, k) + T_verify(B, k)) for k = 0..k_max."""
    return [
        batch * expected_tokens(acceptance, k) / cost.decode_step(batch, k, context_per_req, True)
        for k in range(k_max + 1)
    ]
