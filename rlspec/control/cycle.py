"""`cycle:K1/K2/...`: the draft lengths in turn, one per decision.

Nobody would serve with it. It isolates what *changing* k costs a live engine: served beside
`static:K1` and `static:K2` on one engine, its iterations at each k can be set against the
static controller's at the same k (`bench/shape_warmth.py`'s by-k table). A controller that
adapts k, the policy among them, pays that cost and a static one does not; the simulator's
cost model charges an iteration by its own k alone.
"""

from __future__ import annotations

from rlspec.config import ConfigError
from rlspec.control.action import Action
from rlspec.control.base import ControlContext, Controller
from rlspec.features import FeatureTracker


class CycleController(Controller):
    def __init__(self, ks: list[int]):
        if len(ks) < 2 or any(k < 0 for k in ks):
            raise ConfigError(f"cycle:K1/K2/... needs two or more draft lengths >= 0, got {ks}")
        self.ks = list(ks)
        self.name = "cycle:" + "/".join(map(str, ks))
        self._actions = [Action(k=k) for k in ks]
        self._next = 0

    def reset(self, ctx: ControlContext) -> None:
        if max(self.ks) > ctx.k_max:
            raise ConfigError(f"{self.name}: {max(self.ks)} exceeds engine.k_max={ctx.k_max}")
        super().reset(ctx)
        self._next = 0

    def decide(self, obs: FeatureTracker) -> Action:
        action = self._actions[self._next]
        self._next = (self._next + 1) % len(self._actions)
        return action
