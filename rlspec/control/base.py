"""The Controller interface: every baseline and the RL policy decide through it, so every
comparison runs the identical loop (DESIGN section 2)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from rlspec.control.action import Action
from rlspec.features import FeatureTracker
from rlspec.perf.step_time import StepTimeModel


@dataclass(frozen=True)
class ControlContext:
    """What a controller knows about the deployment it controls."""

    k_max: int
    max_num_seqs: int
    cost: StepTimeModel  # the same cost model the simulator runs on
    decision_interval: int  # engine iterations per decision
    block_size: int = 16  # tokens per KV block

    def tracker(self) -> FeatureTracker:
        """A fresh feature tracker for this deployment."""
        return FeatureTracker(self.k_max, self.max_num_seqs, self.block_size, self.cost)


class Controller(ABC):
    name: str = "controller"

    def reset(self, ctx: ControlContext) -> None:
        """Start of an episode (or of serving): forget per-episode state."""
        self.ctx = ctx

    @abstractmethod
    def decide(self, obs: FeatureTracker) -> Action:
        """The action for the next `decision_interval` iterations."""
