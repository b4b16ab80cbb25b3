"""Step time of one engine iteration: the cost model shared by the simulator and every
analytical controller, so that the comparison between them is fair (DESIGN section 4).

An iteration is one target forward over all scheduled tokens (B*(k+1) verify tokens plus
any prefill chunk) and, while the drafter is resident, its sequential passes: the first
over the step's new tokens (it keeps the drafter's KV current, which is why an idle
resident drafter still costs time at k=0), then k-1 single-token passes; a fitted profile
adds a fixed proposal cost to each step that drafts (`draft_schedule`).
Each pass is roofline-bound: weights and KV streamed from memory vs GEMM FLOPs.

A prefill chunk's causal attention is quadratic in its length: a chunk of c tokens after
b cached ones scores `prefill_attention_pairs(c, b)` query-key pairs. A fitted profile
charges the target `target_per_prefill_pair_s` per pair, so a long prompt costs more per
token than a short one (notes/calibration.md section 20); roofline profiles leave attention
FLOPs out (a few percent of an 8B model's prefill at 2k tokens).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from rlspec.config import ConfigError, check_range
from rlspec.perf.profile import Profile


@dataclass(frozen=True)
class SpeedDrift:
    """How far a simulated engine's speed departs from the profile its controllers know.

    A profile is fitted once, on one host, on one day. Live, the engine it describes ran
    1.1-1.3x slower beside other work, and by a fixed ~10 ms more per iteration with three
    engines taking turns (cold caches, sleeping OpenMP threads), and its drafter terms carry
    15-22% standard error (notes/calibration.md). A policy trained on the one exact profile
    banks on those errors; training across drifts (domain randomisation, sampled by
    `ScenarioDistribution.speed_drift`) makes it read the host from what it observes. Only
    the simulator's clock drifts: controllers, features and the oracle's rivals keep the
    profile. The default is no drift.
    """

    scale: float = 1.0  # every pass and drafter transfer takes this times the profile's time
    draft_scale: float = 1.0  # drafter passes, on top of `scale`
    overhead_s: float = 0.0  # added to every busy iteration
    # ((lower, factor), ...) by increasing `lower`, the first 0: an iteration scheduling at least
    # `lower` tokens (and fewer than the next band's) takes `factor` times, on top of the rest. Serving
    # prices a step's size otherwise than calibration's probes do (live Azure code steps of
    # under 64 tokens ran 1.08-1.16x the profile, those of 2,000+ 0.87-0.91x; `by_band` of
    # bench/turns_bias.py); () charges every size alike.
    by_tokens: tuple[tuple[int, float], ...] = ()
    # ((lower, factor), ...) as `by_tokens`, for an iteration whose token count this engine has
    # not run before (once per count per simulated engine, across its episodes). vLLM's CPU GEMMs
    # build a oneDNN primitive per token count on first use; live, such steps ran 1.08-1.33x a
    # seen count's of their band (`first_meetings` of bench/turns_bias.py), which charges a
    # controller for the variety of its token counts. () charges a first meeting nothing.
    first_meeting: tuple[tuple[int, float], ...] = ()
    # Log-normal standard deviation of each busy iteration's time around its price, mean kept.
    # Live, steps of one state are not one price: around the profile they read 7-16% apart
    # within an episode (`iteration_log` of bench/turns_bias.py), and the features that read
    # step time and throughput carry that noise to a policy; 0 prices every step exactly.
    jitter: float = 0.0

    def __post_init__(self) -> None:
        check_range("speed_drift.scale", self.scale, lo=0.1, hi=10.0)
        check_range("speed_drift.draft_scale", self.draft_scale, lo=0.1, hi=10.0)
        check_range("speed_drift.overhead_s", self.overhead_s, lo=0.0, hi=10.0)
        check_range("speed_drift.jitter", self.jitter, lo=0.0, hi=1.0)
        for name in ("by_tokens", "first_meeting"):
            bands = tuple((int(u), float(f)) for u, f in getattr(self, name))
            object.__setattr__(self, name, bands)  # YAML gives lists
            lows = [lo for lo, _ in bands]
            if bands and (lows != sorted(set(lows)) or lows[0] != 0):
                raise ConfigError(f"speed_drift.{name}: lower bounds {lows} must start at 0 and increase")
            for i, (_, f) in enumerate(bands):
                check_range(f"speed_drift.{name}[{i}].factor", f, lo=0.1, hi=10.0)

    def size_factor(self, tokens: int) -> float:
        """The factor of an iteration scheduling `tokens` tokens (1 without bands)."""
        return _band_factor(self.by_tokens, tokens)

    def first_meeting_factor(self, tokens: int) -> float:
        """The factor of an iteration of a token count its engine meets for the first time."""
        return _band_factor(self.first_meeting, tokens)


def _band_factor(bands: tuple[tuple[int, float], ...], tokens: int) -> float:
    i = bisect.bisect_right(bands, (tokens, math.inf))
    return bands[i - 1][1] if i else 1.0


NO_DRIFT = SpeedDrift()


def prefill_attention_pairs(chunk: int, before: int) -> int:
    """Query-key pairs causal attention scores for a prefill chunk of `chunk` tokens
    after `before` cached ones: query j of the chunk attends `before + j + 1` keys."""
    return chunk * before + chunk * (chunk + 1) // 2


def draft_schedule(decode_reqs: int, k: int) -> tuple[int, bool]:
    """The resident drafter's work in an iteration beyond its first pass: how many
    single-token passes follow it, and whether the step proposes drafts (pays the fixed
    proposal cost). Shared with the fit (`rlspec.perf.fit.design_row`), so the coefficients
    are fitted on exactly the accounting that charges them."""
    if not decode_reqs:
        return 0, False
    return max(k - 1, 0), k >= 1


class StepTimeModel:
    """Seconds per forward pass and per iteration for one Profile.

    Constants are folded in `__init__`: the simulator calls this once per iteration. With a
    `drift` it is the simulated engine's clock on a host that departs from the profile.
    """

    def __init__(self, profile: Profile, drift: SpeedDrift = NO_DRIFT):
        self.profile = profile
        self.drift = drift
        hw, tgt, drf = profile.hardware, profile.target, profile.draft
        bw = hw.mem_bandwidth * hw.bandwidth_efficiency
        flops = hw.peak_flops * hw.compute_efficiency
        self._fitted = profile.fitted if profile.kind == "fitted" else None
        self._propose_s = self._fitted.draft_propose_s if self._fitted is not None else 0.0
        self._t_weights = tgt.weight_bytes / bw
        self._t_kv = tgt.kv_bytes_per_token / bw
        self._t_flop = 2.0 * tgt.params / flops
        self._d_weights = drf.weight_bytes / bw
        self._d_kv = drf.kv_bytes_per_token / bw
        self._d_flop = 2.0 * drf.params / flops
        self.overhead_s = profile.iteration_overhead_s
        self.draft_overhead_s = profile.draft_pass_overhead_s
        transfer = drf.weight_bytes / hw.host_link_bandwidth + profile.offload_fixed_s
        self.transfer_s = drift.scale * transfer
        self._scale = drift.scale
        self._draft_scale = drift.draft_scale
        self._extra_s = drift.overhead_s
        self._by_size = bool(drift.by_tokens)

    def target_pass(self, tokens: float, context: float, prefill_pairs: float = 0) -> float:
        """One target forward over `tokens` new tokens attending to `context` cached ones,
        its prefill chunks scoring `prefill_pairs` query-key pairs."""
        f = self._fitted
        if f is not None:
            return (
                f.target_base_s
                + f.target_per_token_s * tokens
                + f.target_per_context_s * context
                + f.target_per_prefill_pair_s * prefill_pairs
            )
        return max(self._t_weights + self._t_kv * context, self._t_flop * tokens)

    def draft_pass(self, tokens: float, context: float) -> float:
        """One drafter forward over `tokens` new tokens attending to `context` cached ones."""
        f = self._fitted
        if f is not None:
            return f.draft_base_s + f.draft_per_token_s * tokens + f.draft_per_context_s * context
        return self.draft_overhead_s + max(
            self._d_weights + self._d_kv * context, self._d_flop * tokens
        )

    def iteration(
        self,
        decode_reqs: int,
        k: int,
        prefill_tokens: int,
        context: int,
        drafter_resident: bool,
        *,
        prefill_pairs: int = 0,
        spec_tokens: int | None = None,
    ) -> float:
        """Seconds for one iteration of `decode_reqs` decodes at draft length k.

        `context` is the number of cached tokens the batch attends to (sum over requests);
        `prefill_pairs` the query-key pairs of its prefill chunks (`prefill_attention_pairs`
        summed over them; 0 for a decode-only iteration). `spec_tokens` is the drafts the
        target verifies when requests draft different lengths (k is then the longest, which
        sets the drafter's passes); None is every request at k.
        """
        drafts = decode_reqs * k if spec_tokens is None else spec_tokens
        new_tokens = decode_reqs + drafts + prefill_tokens
        t = self.overhead_s + self.target_pass(new_tokens, context, prefill_pairs)
        if drafter_resident:
            chained, proposes = draft_schedule(decode_reqs, k)
            d = self.draft_pass(new_tokens, context)
            if chained:
                d += chained * self.draft_pass(decode_reqs, context)
            if proposes:
                d += self._propose_s
            t += self._draft_scale * d
        t = self._extra_s + self._scale * t  # exactly t without drift
        return t * self.drift.size_factor(new_tokens) if self._by_size else t

    def decode_step(self, batch: int, k: int, context_per_req: float, resident: bool) -> float:
        """Step time of a pure-decode iteration: what analytical controllers optimise."""
        return self.iteration(batch, k, 0, int(batch * context_per_req), resident)
