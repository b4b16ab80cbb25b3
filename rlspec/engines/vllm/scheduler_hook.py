"""A vLLM `scheduler_cls` that sets the draft length k at every scheduling step.

vLLM's dynamic speculative decoding looks k up per step in `Scheduler.dynamic_sd_lookup`
(index = batch size), built from `speculative_config.num_speculative_tokens_per_batch_size`.
This subclass rewrites that table just before each `schedule()` so one k holds for the
whole batch of that step. The k chosen at step t is passed to the worker in
`SchedulerOutput.num_spec_tokens_to_schedule`: the drafter proposes k tokens per request
after step t's forward pass, and the target verifies them at step t+1.

It also summarises what each step scheduled (`StepPlan`), which the backend and the
serving hook turn into a Snapshot, and calls an optional `before_schedule` callback (the
place a serving controller decides).

Import this module only where vLLM is installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vllm.v1.core.sched.scheduler import Scheduler

from rlspec.perf.step_time import prefill_attention_pairs


@dataclass(slots=True)
class StepPlan:
    """What one `schedule()` call decided (read off the SchedulerOutput)."""

    k: int  # draft length the drafter will use after this step's forward pass
    num_scheduled_tokens: int = 0  # target tokens this step (prefill + decode + drafts)
    num_prefill_tokens: int = 0  # tokens of requests that are not plain decodes
    num_decode_reqs: int = 0  # requests decoding (1 token + their scheduled drafts)
    num_spec_tokens: int = 0  # draft tokens being verified this step
    num_preempted: int = 0  # requests the scheduler preempted while scheduling
    num_context_tokens: int = 0  # cached tokens the scheduled requests attend (summed)
    num_prefill_pairs: int = 0  # query-key pairs of the prefill chunks (`prefill_attention_pairs`)
    # request id -> num_computed_tokens before this step (for drafter-KV staleness)
    computed_before: dict[str, int] = field(default_factory=dict)


class RLSpecScheduler(Scheduler):
    """vLLM V1 Scheduler whose draft length is set from outside, step by step."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.num_spec_tokens > 0 and self.dynamic_sd_lookup is None:
            raise RuntimeError(
                "RLSpecScheduler needs speculative_config.num_speculative_tokens_per_batch_size "
                "(vLLM's dynamic SD table) to set k per step"
            )
        self.rlspec_k: int = self.num_spec_tokens
        self.rlspec_before_schedule: Callable[[RLSpecScheduler], None] | None = None
        self.rlspec_last_plan: StepPlan | None = None
        self.rlspec_track_computed = False  # fill StepPlan.computed_before (costs a dict)

    @property
    def k_max(self) -> int:
        return self.num_spec_tokens

    def set_k(self, k: int) -> None:
        k = int(k)
        if not 0 <= k <= self.num_spec_tokens:
            raise ValueError(f"k={k} outside [0, {self.num_spec_tokens}] (the engine's k_max)")
        self.rlspec_k = k

    def rlspec_snapshot_fields(self, plan: StepPlan | None, held_blocks: int) -> dict[str, int]:
        """The Snapshot fields read off scheduler state and one step's plan: one definition
        for the live backend and the serving hook. KV counts exclude vLLM's null block and
        the blocks held back for a resident drafter's weights."""
        running, waiting = self.get_request_counts()
        pool = self.kv_cache_manager.block_pool
        usable = pool.num_gpu_blocks - 1
        free = pool.get_num_free_blocks()
        none = plan is None
        return {
            "num_running": int(running),
            "num_waiting": int(waiting),
            "kv_used_blocks": int(usable - free - held_blocks),
            "kv_total_blocks": int(usable - held_blocks),
            "num_scheduled_tokens": 0 if none else plan.num_scheduled_tokens,
            "num_prefill_tokens": 0 if none else plan.num_prefill_tokens,
            "num_decode_reqs": 0 if none else plan.num_decode_reqs,
            "num_preemptions": 0 if none else plan.num_preempted,
        }

    def schedule(self, *args: Any, **kwargs: Any):  # noqa: ANN201 - vLLM's SchedulerOutput
        if self.rlspec_before_schedule is not None:
            self.rlspec_before_schedule(self)
        lookup = self.dynamic_sd_lookup
        if lookup is not None:
            k = self.rlspec_k
            if lookup[-1] != k or lookup[1] != k:
                lookup[1:] = [k] * (len(lookup) - 1)
        out = super().schedule(*args, **kwargs)
        self.rlspec_last_plan = self._plan(out)
        return out

    def _plan(self, out: Any) -> StepPlan:
        spec = out.scheduled_spec_decode_tokens
        plan = StepPlan(
            k=int(out.num_spec_tokens_to_schedule) if self.num_spec_tokens else 0,
            num_scheduled_tokens=int(out.total_num_scheduled_tokens),
            num_preempted=len(out.preempted_req_ids or ()),
        )
        track = self.rlspec_track_computed
        for req_id, n in out.num_scheduled_tokens.items():
            req = self.requests.get(req_id)
            n_spec = len(spec.get(req_id, ()))
            plan.num_spec_tokens += n_spec
            # `schedule()` already advanced num_computed_tokens by n.
            before = req.num_computed_tokens - n if req is not None else 0
            plan.num_context_tokens += before
            if track:
                plan.computed_before[req_id] = before
            if req is not None and n == 1 + n_spec and before == req.num_tokens - 1:
                plan.num_decode_reqs += 1
            else:
                plan.num_prefill_tokens += n
                plan.num_prefill_pairs += prefill_attention_pairs(n, before)
        return plan
