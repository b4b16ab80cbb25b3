"""Test-only controllers, loaded by `rlspec serve --controller tests.serving.controllers:NAME`
inside vLLM's engine-core process (the tests put the repository root on PYTHONPATH)."""

from __future__ import annotations

import time

from rlspec.control.action import OFFLOAD, Action
from rlspec.control.base import Controller
from rlspec.features import FeatureTracker

# Every placement change and several k values, so offload / reload / refill all happen.
CYCLE = (Action(k=4), OFFLOAD, Action(k=2), Action(k=1), OFFLOAD, Action(k=3), Action(k=0))


class RaiseEvery10(Controller):
    """Raises on every 10th call; on every 7th (not 10th) call it is slow (3 ms, over
    the default 500 us budget); otherwise cycles through CYCLE (with offloads)."""

    name = "raise-every-10"

    def __init__(self) -> None:
        self.calls = 0

    def decide(self, obs: FeatureTracker) -> Action:
        self.calls += 1
        obs.vector()  # exercise the feature code like a policy would
        if self.calls % 10 == 0:
            raise RuntimeError(f"test controller fails on call {self.calls}")
        if self.calls % 7 == 0:
            time.sleep(0.003)
        return CYCLE[self.calls % len(CYCLE)]


class NotAController:
    """Refused: not a Controller subclass."""
