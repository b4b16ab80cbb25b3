"""`latency-model`: the Little's-Law latency model (arXiv 2605.15051).

Linearise the shared cost model around the current batch: a decode step at draft length
k costs `a_k + b_k * B`. A request needs `n / E_k` steps for n output tokens, so its
latency is `L = C1 + B * C2` with `C1 = n a_k / E_k`, `C2 = n b_k / E_k`. Little's Law
`B = lambda L` closes the loop: `L = C1 / (1 - lambda C2)` below saturation. Choose the k
with the least predicted L at the observed arrival rate; if every k is saturated, the one
with the most capacity (least C2). This is why SD's benefit shrinks as the rate grows: the
verify work in C2 grows with k, and 1 / (1 - lambda C2) amplifies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlspec.config import check_range
from rlspec.control.action import Action
from rlspec.control.base import Controller
from rlspec.features import FeatureTracker
from rlspec.perf.acceptance import expected_tokens


@dataclass(frozen=True)
class LatencyModelConfig:
    default_output_len: float = 128.0  # tokens per request until completions are observed

    def __post_init__(self) -> None:
        check_range("latency_model.default_output_len", self.default_output_len, lo=1.0)


class LatencyModelController(Controller):
    name = "latency-model"

    def __init__(self, cfg: LatencyModelConfig | None = None):
        self.cfg = cfg or LatencyModelConfig()

    def predicted_latency(
        self, rate: float, batch: int, acceptance: float, context: float, out_len: float
    ) -> list[tuple[float, float]]:
        """(L, C2) per k; L is inf where lambda * C2 >= 1 (saturated)."""
        cost = self.ctx.cost
        rows = []
        for k in range(self.ctx.k_max + 1):
            t_b = cost.decode_step(batch, k, context, True)
            b_k = max(cost.decode_step(batch + 1, k, context, True) - t_b, 1e-12)
            a_k = max(t_b - b_k * batch, 0.0)
            steps = out_len / expected_tokens(acceptance, k)
            c1, c2 = steps * a_k, steps * b_k
            load = rate * c2
            rows.append((c1 / (1.0 - load) if load < 1.0 else float("inf"), c2))
        return rows

    def decide(self, obs: FeatureTracker) -> Action:
        out_len = obs.tokens_per_request or self.cfg.default_output_len
        rows = self.predicted_latency(
            obs.rate_fast, obs.batch_size, obs.acceptance_fast, obs.context_per_request, out_len
        )
        if all(l_k == float("inf") for l_k, _ in rows):
            return Action(k=min(range(len(rows)), key=lambda k: rows[k][1]))
        return Action(k=min(range(len(rows)), key=lambda k: rows[k][0]))
