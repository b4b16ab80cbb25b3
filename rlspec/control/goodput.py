"""`goodput`: SmartSpec (arXiv 2406.14066). Each decision, pick the k maximising

    goodput(k) = B * E[tokens](a, k) / (T_draft(B, k) + T_verify(B, k))

with a running acceptance estimate and the shared cost model; one k for the batch. k = 0
is kept unless speculation wins by `margin` (10% in SmartSpec's code), which damps
flapping on a noisy acceptance estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlspec.config import check_range
from rlspec.control.action import Action
from rlspec.control.base import Controller
from rlspec.features import FeatureTracker
from rlspec.perf.goodput import goodput_curve


@dataclass(frozen=True)
class GoodputConfig:
    margin: float = 0.1

    def __post_init__(self) -> None:
        check_range("goodput.margin", self.margin, 0.0, 10.0)


class GoodputController(Controller):
    name = "goodput"

    def __init__(self, cfg: GoodputConfig | None = None):
        self.cfg = cfg or GoodputConfig()

    def decide(self, obs: FeatureTracker) -> Action:
        g = goodput_curve(
            self.ctx.cost, obs.batch_size, obs.acceptance_fast, obs.context_per_request, self.ctx.k_max
        )
        best = max(range(len(g)), key=g.__getitem__)
        if best and g[best] < (1.0 + self.cfg.margin) * g[0]:
            best = 0
        return Action(k=best)
