"""Collect vLLM's per-step SchedulerStats / IterationStats for the snapshot builder.

`LLMEngine.step()` calls every stat logger's `record()` once per engine-core step with
that step's SchedulerStats (running/waiting counts, KV usage, speculative-decoding
counters of this step's verification) and IterationStats (tokens, preemptions, finished
requests). `StepStatsCollector` keeps them until the backend drains them after the step.

Import this module only where vLLM is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vllm.v1.metrics.loggers import StatLoggerBase


@dataclass(slots=True)
class StepStats:
    """The counters of everything recorded since the last drain (usually one step)."""

    num_records: int = 0
    num_running_reqs: int = 0  # from the last record
    num_waiting_reqs: int = 0
    kv_cache_usage: float = 0.0
    num_drafts: int = 0  # requests that verified drafts (vLLM's num_drafts)
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_pos: list[int] = field(default_factory=list)
    drafted_per_pos: list[int] = field(default_factory=list)
    num_generation_tokens: int = 0
    num_preempted_reqs: int = 0
    # request id (vLLM's string) -> preemptions, for requests that finished
    finished_preemptions: dict[str, int] = field(default_factory=dict)


def _add_pos(acc: list[int], new: list[int]) -> None:
    if len(acc) < len(new):
        acc.extend([0] * (len(new) - len(acc)))
    for i, v in enumerate(new):
        acc[i] += int(v)


class StepStatsCollector(StatLoggerBase):
    """A StatLoggerBase that accumulates instead of logging."""

    def __init__(self, vllm_config: Any = None, engine_index: int = 0) -> None:
        self.engine_index = engine_index
        self._cur = StepStats()
        self.total_records = 0

    def record(
        self,
        scheduler_stats: Any,
        iteration_stats: Any,
        mm_cache_stats: Any = None,
        engine_idx: int = 0,
    ) -> None:
        cur = self._cur
        cur.num_records += 1
        self.total_records += 1
        if scheduler_stats is not None:
            cur.num_running_reqs = scheduler_stats.num_running_reqs
            cur.num_waiting_reqs = scheduler_stats.num_waiting_reqs
            cur.kv_cache_usage = scheduler_stats.kv_cache_usage
            sd = scheduler_stats.spec_decoding_stats
            if sd is not None:
                cur.num_drafts += sd.num_drafts
                cur.num_draft_tokens += sd.num_draft_tokens
                cur.num_accepted_tokens += sd.num_accepted_tokens
                _add_pos(cur.accepted_per_pos, sd.num_accepted_tokens_per_pos)
                _add_pos(cur.drafted_per_pos, sd.num_draft_tokens_per_pos)
        if iteration_stats is not None:
            cur.num_generation_tokens += iteration_stats.num_generation_tokens
            cur.num_preempted_reqs += iteration_stats.num_preempted_reqs
            for fin in iteration_stats.finished_requests:
                if fin.request_id is not None:
                    cur.finished_preemptions[fin.request_id] = fin.num_preemptions

    def drain(self) -> StepStats:
        out, self._cur = self._cur, StepStats()
        return out

    def log_engine_initialized(self) -> None:
        pass

    def log(self) -> None:
        pass


class CollectorFactory:
    """Passed as `stat_loggers=[factory]`; remembers the logger vLLM builds with it."""

    def __init__(self) -> None:
        self.instances: list[StepStatsCollector] = []

    def __call__(self, vllm_config: Any, engine_index: int = 0) -> StepStatsCollector:
        inst = StepStatsCollector(vllm_config, engine_index)
        self.instances.append(inst)
        return inst
