"""`static:K`: the same draft length every step (K = 0 is plain decoding, drafter resident)."""

from __future__ import annotations

from rlspec.config import ConfigError
from rlspec.control.action import Action
from rlspec.control.base import ControlContext, Controller
from rlspec.features import FeatureTracker


class StaticController(Controller):
    def __init__(self, k: int):
        if k < 0:
            raise ConfigError(f"static:K needs K >= 0, got {k}")
        self.k = k
        self.name = f"static:{k}"
        self._action = Action(k=k)

    def reset(self, ctx: ControlContext) -> None:
        if self.k > ctx.k_max:
            raise ConfigError(f"{self.name}: K exceeds engine.k_max={ctx.k_max}")
        super().reset(ctx)

    def decide(self, obs: FeatureTracker) -> Action:
        return self._action
