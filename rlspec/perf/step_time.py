"""Step time of one engine iteration: the cost model shared by the simulator and every
analytical controller, so that the comparison between them is fair (DESIGN section 4).

An iteration is one target forward over all scheduled tokens (B*(k+1) verify tokens plus
any prefill chunk) and, while the drafter is resident, its sequential passes: the first
over the step's new tokens (it keeps the drafter's KV current, which is why an idle
resident drafter still costs time at k=0), then k-1 single-token passes.
Each pass is roofline-bound: weights and KV streamed from memory vs GEMM FLOPs.
"""

from __future__ import annotations

from rlspec.perf.profile import Profile


class StepTimeModel:
    """Seconds per forward pass and per iteration for one Profile.

    Constants are folded in `__init__`: the simulator calls this once per iteration.
    """

    def __init__(self, profile: Profile):
        self.profile = profile
        hw, tgt, drf = profile.hardware, profile.target, profile.draft
        bw = hw.mem_bandwidth * hw.bandwidth_efficiency
        flops = hw.peak_flops * hw.compute_efficiency
        self._fitted = profile.fitted if profile.kind == "fitted" else None
        self._t_weights = tgt.weight_bytes / bw
        self._t_kv = tgt.kv_bytes_per_token / bw
        self._t_flop = 2.0 * tgt.params / flops
        self._d_weights = drf.weight_bytes / bw
        self._d_kv = drf.kv_bytes_per_token / bw
        self._d_flop = 2.0 * drf.params / flops
        self.overhead_s = profile.iteration_overhead_s
        self.draft_overhead_s = profile.draft_pass_overhead_s
        self.transfer_s = drf.weight_bytes / hw.host_link_bandwidth + profile.offload_fixed_s

    def target_pass(self, tokens: float, context: float) -> float:
        """One target forward over `tokens` new tokens attending to `context` cached ones."""
        f = self._fitted
        if f is not None:
            return (
                f.target_base_s + f.target_per_token_s * tokens + f.target_per_context_s * context
            )
        return max(self._t_weights + self._t_kv * context, self._t_flop * tokens)

    def draft_pass(self, tokens: float, context: float) -> float:
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
    ) -> float:
        """Seconds for one iteration of `decode_reqs` decodes at draft length k.

        `context` is the number of cached tokens the batch attends to (sum over requests).
        """
        new_tokens = decode_reqs * (k + 1) + prefill_tokens
        t = self.overhead_s + self.target_pass(new_tokens, context)
        if drafter_resident:
            t += self.draft_pass(new_tokens, context)
            if k > 1 and decode_reqs:
                t += (k - 1) * self.draft_pass(decode_reqs, context)
        return t

    def decode_step(self, batch: int, k: int, context_per_req: float, resident: bool) -> float:
        """Step time of a pure-decode iteration: what analytical controllers optimise."""
        return self.iteration(batch, k, 0, int(batch * context_per_req), resident)
