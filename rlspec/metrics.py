"""Serving metrics of one episode, as the literature reports them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rlspec.engines.snapshot import DrafterState, RequestRecord


@dataclass
class EpisodeMetrics:
    mean_latency_s: float
    p50_latency_s: float
    p99_latency_s: float
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p50_s: float
    tpot_p99_s: float
    throughput_tok_s: float  # output tokens of completed requests / (last finish - first arrival)
    slo_attainment: float  # share of arrived requests meeting both TTFT and TPOT SLOs
    arrived: int
    completed: int
    preemptions: int
    mean_k: float  # mean draft length over busy iterations
    offload_frac: float  # share of busy time the drafter was not resident

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


class StepStats:
    """Per-iteration sums the metrics need, accumulated as snapshots stream by."""

    def __init__(self) -> None:
        self.busy_iterations = 0
        self.k_sum = 0
        self.busy_time = 0.0
        self.offloaded_time = 0.0
        self.preemptions = 0

    def add(self, k: int, step_time_s: float, busy: bool, drafter: DrafterState, preempted: int):
        self.preemptions += preempted
        if not busy:
            return
        self.busy_iterations += 1
        self.k_sum += k
        self.busy_time += step_time_s
        if drafter is not DrafterState.RESIDENT:
            self.offloaded_time += step_time_s


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarize(
    records: Sequence[RequestRecord], stats: StepStats, ttft_slo_s: float, tpot_slo_s: float
) -> EpisodeMetrics:
    done = [r for r in records if r.finish_s is not None]
    lat = [r.latency_s for r in done]
    ttft = [r.ttft_s for r in records if r.ttft_s is not None]
    tpot = [r.tpot_s for r in done if r.tpot_s is not None]
    if done:
        span = max(r.finish_s for r in done) - min(r.arrival_s for r in records)
        tokens = sum(r.output_len for r in done)
        throughput = tokens / span if span > 0 else float("nan")
    else:
        throughput = 0.0
    ok = sum(
        1 for r in done if r.ttft_s <= ttft_slo_s and (r.tpot_s is None or r.tpot_s <= tpot_slo_s)
    )
    return EpisodeMetrics(
        mean_latency_s=float(np.mean(lat)) if lat else float("nan"),
        p50_latency_s=_pct(lat, 50),
        p99_latency_s=_pct(lat, 99),
        ttft_p50_s=_pct(ttft, 50),
        ttft_p99_s=_pct(ttft, 99),
        tpot_p50_s=_pct(tpot, 50),
        tpot_p99_s=_pct(tpot, 99),
        throughput_tok_s=throughput,
        slo_attainment=ok / len(records) if records else float("nan"),
        arrived=len(records),
        completed=len(done),
        preemptions=stats.preemptions,
        mean_k=stats.k_sum / stats.busy_iterations if stats.busy_iterations else 0.0,
        offload_frac=stats.offloaded_time / stats.busy_time if stats.busy_time else 0.0,
    )
