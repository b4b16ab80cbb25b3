"""The one feature function: snapshot history -> running estimates -> observation vector.

Training, evaluation and serving all build observations here, so a policy sees in
production exactly what it saw in training. The vector's layout is a named, versioned
schema; a frozen policy records it and refuses to load against another.

Estimates are exponentially weighted so they cost O(1) per iteration:
- arrival rate: decayed event count over virtual time, `r <- r * exp(-dt/tau) + n/tau`
  (an unbiased rate estimate for any tau), at a fast and a slow time constant;
- acceptance: the geometric MLE `a = accepted / (accepted + rejections)`, where a verify
  step that did not accept all k drafts ends in exactly one rejection, with decayed sums;
- step time, throughput, prefill share and tokens per request as EWMAs over busy iterations;
- the cost model's view: the goodput-optimal k (SmartSpec's rule) for the current batch,
  acceptance and context, and how much speculation gains there. The policy starts from
  the analytical answer and learns where it is wrong (queueing, bursts, memory pressure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rlspec.engines.snapshot import DrafterState, Snapshot
from rlspec.perf.goodput import goodput_curve
from rlspec.perf.step_time import StepTimeModel

SCHEMA_NAME = "rlspec-features"
SCHEMA_VERSION = 1
FEATURE_NAMES: tuple[str, ...] = (
    "log_arrival_rate_fast",  # log1p(requests/s), tau = rate_tau_fast_s
    "log_arrival_rate_slow",  # log1p(requests/s), tau = rate_tau_slow_s
    "log_waiting",  # log1p(queued requests)
    "running_frac",  # running requests / max_num_seqs
    "decode_frac",  # decoding requests this iteration / max_num_seqs
    "acceptance_fast",
    "acceptance_slow",
    "kv_usage",  # used / usable KV blocks
    "log_step_time",  # log10(step time EWMA in seconds)
    "log_throughput",  # log1p(emitted tokens/s EWMA)
    "prefill_share",  # prefill tokens / scheduled tokens, EWMA
    "k_frac",  # k in use / k_max
    "drafter_resident",
    "drafter_moving",  # an offload or reload is in flight
    "log_tokens_per_request",  # log1p(output tokens per completed request)
    "model_best_k_frac",  # goodput-optimal k / k_max from the cost model
    "model_log_gain",  # log(goodput at that k / goodput at k=0)
)
NUM_FEATURES = len(FEATURE_NAMES)


@dataclass(frozen=True)
class FeatureConfig:
    rate_tau_fast_s: float = 2.0
    rate_tau_slow_s: float = 20.0
    acceptance_decay_fast: float = 0.9  # per drafting iteration
    acceptance_decay_slow: float = 0.995
    ewma: float = 0.1  # weight of the newest busy iteration in the other EWMAs
    acceptance_prior: float = 0.7  # before any draft was verified


class FeatureTracker:
    """Running estimates over one engine's snapshot stream; `vector()` is the observation."""

    def __init__(
        self,
        k_max: int,
        max_num_seqs: int,
        block_size: int,
        cost: StepTimeModel,
        cfg: FeatureConfig | None = None,
    ):
        self.k_max = k_max
        self.cost = cost
        self.max_num_seqs = max_num_seqs
        self.block_size = block_size
        self.cfg = cfg or FeatureConfig()
        self.reset()

    def reset(self) -> None:
        c = self.cfg
        self.last: Snapshot | None = None
        self.rate_fast = 0.0
        self.rate_slow = 0.0
        self._acc_fast = [c.acceptance_prior, 1.0 - c.acceptance_prior]  # [accepted, rejected]
        self._acc_slow = [c.acceptance_prior, 1.0 - c.acceptance_prior]
        self.step_time = 0.0
        self.throughput = 0.0
        self.prefill_share = 0.0
        self._tokens_done = 0.0
        self._reqs_done = 0.0
        # Sums since the last `begin_interval()`: what one decision's outcome looks like.
        self.begin_interval()

    def begin_interval(self) -> None:
        self.interval_time_s = 0.0
        self.interval_request_seconds = 0.0
        self.interval_emitted = 0
        self.interval_iterations = 0
        self.interval_decode_reqs = 0
        self.interval_preemptions = 0
        self.interval_completions = 0

    def update(self, s: Snapshot) -> None:
        c = self.cfg
        dt = s.step_time_s
        if dt > 0:
            for attr, tau in (("rate_fast", c.rate_tau_fast_s), ("rate_slow", c.rate_tau_slow_s)):
                setattr(self, attr, getattr(self, attr) * math.exp(-dt / tau))
        if s.num_arrivals:
            self.rate_fast += s.num_arrivals / c.rate_tau_fast_s
            self.rate_slow += s.num_arrivals / c.rate_tau_slow_s
        if s.num_draft_reqs:
            rejected = s.num_draft_reqs - s.num_fully_accepted
            for sums, decay in (
                (self._acc_fast, c.acceptance_decay_fast),
                (self._acc_slow, c.acceptance_decay_slow),
            ):
                sums[0] = sums[0] * decay + s.num_accepted
                sums[1] = sums[1] * decay + rejected
        if s.num_scheduled_tokens:
            w = c.ewma if self.step_time else 1.0
            self.step_time += w * (dt - self.step_time)
            self.throughput += w * (s.num_emitted / dt - self.throughput)
            share = s.num_prefill_tokens / s.num_scheduled_tokens
            self.prefill_share += w * (share - self.prefill_share)
        if s.num_emitted:
            self._tokens_done = self._tokens_done * 0.99 + s.num_emitted
            self._reqs_done = self._reqs_done * 0.99 + s.num_completions
        self.interval_time_s += dt
        self.interval_request_seconds += s.request_seconds
        self.interval_emitted += s.num_emitted
        self.interval_iterations += 1
        self.interval_decode_reqs += s.num_decode_reqs
        self.interval_preemptions += s.num_preemptions
        self.interval_completions += s.num_completions
        self.last = s

    # ------------------------------------------------------------------ estimates
    @property
    def acceptance_fast(self) -> float:
        a, r = self._acc_fast
        return a / (a + r)

    @property
    def acceptance_slow(self) -> float:
        a, r = self._acc_slow
        return a / (a + r)

    @property
    def tokens_per_request(self) -> float:
        """Output tokens per completed request (long-run ratio of decayed sums)."""
        return self._tokens_done / self._reqs_done if self._reqs_done > 0.5 else 0.0

    @property
    def batch_size(self) -> int:
        """Requests the next decode step will carry (at least 1)."""
        s = self.last
        return max(s.num_running, 1) if s is not None else 1

    @property
    def context_per_request(self) -> float:
        """Mean KV tokens a running request attends to (from block usage)."""
        s = self.last
        if s is None or not s.num_running:
            return 0.0
        return s.kv_used_blocks * self.block_size / s.num_running

    def model_hint(self) -> tuple[int, float]:
        """(goodput-optimal k, its goodput / goodput at k=0) under the current estimates."""
        g = goodput_curve(
            self.cost, self.batch_size, self.acceptance_fast, self.context_per_request, self.k_max
        )
        best = max(range(len(g)), key=g.__getitem__)
        return best, g[best] / g[0]

    def vector(self) -> np.ndarray:
        s = self.last
        if s is None:
            return np.zeros(NUM_FEATURES, dtype=np.float32)
        best_k, gain = self.model_hint()
        return np.array(
            [
                math.log1p(self.rate_fast),
                math.log1p(self.rate_slow),
                math.log1p(s.num_waiting),
                s.num_running / self.max_num_seqs,
                s.num_decode_reqs / self.max_num_seqs,
                self.acceptance_fast,
                self.acceptance_slow,
                s.kv_usage,
                math.log10(self.step_time) if self.step_time > 0 else -3.0,
                math.log1p(self.throughput),
                self.prefill_share,
                s.k / self.k_max,
                1.0 if s.drafter is DrafterState.RESIDENT else 0.0,
                1.0 if s.drafter in (DrafterState.LOADING, DrafterState.OFFLOADING) else 0.0,
                math.log1p(self.tokens_per_request),
                best_k / self.k_max,
                math.log(gain),
            ],
            dtype=np.float32,
        )
