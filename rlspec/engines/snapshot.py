"""What every engine reports after each iteration, and what each request experienced.

The simulator, the live vLLM adapter and the serving hook all produce these, so
controllers, features and metrics never need to know which engine they watch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class DrafterState(IntEnum):
    """Where the draft model's weights are. Only RESIDENT can speculate."""

    RESIDENT = 0
    OFFLOADED = 1
    LOADING = 2  # reload in flight: speculation restarts when it ends
    OFFLOADING = 3  # weights moving to the host: KV memory returns when it ends


@dataclass(slots=True)
class Snapshot:
    """Engine state after one iteration (one scheduling step + one forward pass)."""

    clock_s: float  # virtual time at the end of the iteration
    step_time_s: float  # duration of this iteration, including any drafter transfer stall
    num_running: int  # requests holding KV (decoding or mid-prefill)
    num_waiting: int  # requests queued, including preempted ones
    kv_used_blocks: int
    kv_total_blocks: int  # blocks usable for KV right now (shrinks while the drafter is resident)
    num_scheduled_tokens: int  # target-model tokens processed this iteration (decode + prefill)
    num_prefill_tokens: int
    num_decode_reqs: int  # batch size of the decode part
    k: int  # draft length the drafter proposes at after this iteration (0 = no speculation)
    num_drafted: int  # draft tokens verified this iteration (proposed at the last one's k)
    num_accepted: int  # of which the target accepted
    num_emitted: int  # output tokens produced this iteration (accepted + bonus)
    num_arrivals: int  # requests that arrived during this iteration
    num_completions: int
    num_preemptions: int
    num_draft_reqs: int  # requests that verified drafts this iteration (vLLM's num_drafts)
    request_seconds: float  # area under requests-in-system over this iteration (sum N dt)
    drafter: DrafterState
    accepted_per_pos: tuple[int, ...] = ()  # accepted count by draft position, where known
    drafted_per_pos: tuple[int, ...] = ()

    @property
    def kv_usage(self) -> float:
        return self.kv_used_blocks / self.kv_total_blocks if self.kv_total_blocks else 1.0

    @property
    def num_in_system(self) -> int:
        return self.num_running + self.num_waiting

    @property
    def num_fully_accepted(self) -> int:
        """Requests that accepted every draft they verified. Drafts are verified a step after
        they are proposed, so after a switch of k their length is not `k`: it is read off
        the last position anyone drafted at (a step's drafters share one length)."""
        last = len(self.drafted_per_pos)
        while last and not self.drafted_per_pos[last - 1]:
            last -= 1
        return self.accepted_per_pos[last - 1] if last and len(self.accepted_per_pos) >= last else 0


@dataclass(slots=True)
class RequestRecord:
    """One finished (or unfinished) request's timeline, in virtual seconds."""

    request_id: int
    arrival_s: float
    prompt_len: int
    output_len: int
    first_token_s: float | None = None
    finish_s: float | None = None
    num_generated: int = 0
    num_preemptions: int = 0

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_s is None else self.first_token_s - self.arrival_s

    @property
    def latency_s(self) -> float | None:
        return None if self.finish_s is None else self.finish_s - self.arrival_s

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first (None for one-token outputs)."""
        if self.finish_s is None or self.first_token_s is None or self.output_len <= 1:
            return None
        return (self.finish_s - self.first_token_s) / (self.output_len - 1)
