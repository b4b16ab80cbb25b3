"""A perfect-information lookahead controller: how much better than the analytical
controllers can *any* draft-length / offload schedule be on a scenario?

Not deployable. Each decision it deep-copies the simulator (which already holds every future
arrival and its random stream), plays every action for one interval and then the `base`
controller until `horizon_s` of virtual time has passed, and keeps the action whose rollout
has the smallest area under requests-in-system (the environment's reward, so by Little's Law
the mean-latency objective). That is one step of policy improvement over `base` with an
exact model; its margin over `base` bounds what a policy that only sees features can hope
to gain, so the benchmarks report it next to the targets.

Rollouts are charged over the same virtual-time window: a window counted in iterations
would favour whichever action makes iterations shortest. The window must still outlast a
request's life, which is counted in iterations: 6 s spans ~120 of a 50 ms engine's steps
but only ~6 where long-prompt steps take 1 s (the Azure code trace on the CPU engine).
There the 6-s oracle was 3-18% slower than static:3; a window of at least `horizon_steps`
(60) iterations at the current step time makes it 0.987-1.006 of static:3
(notes/calibration.md section 8).

The simulator draws an episode's luck up front, by request and output position, so every
rollout meets the same arrivals and the same verdict on a draft at the same position: the
costs of two actions differ by what the actions cause (common random numbers). When each
verify step drew from one shared stream, rollouts fell out of step within a few iterations
and on the Azure code replay the cost differences were mostly noise (notes/calibration.md
section 9).

That perfect information includes the luck itself: which draft at which position the target
will accept. No policy can see it, and on a small pair at low load it may be most of what
the oracle gains. `luck_draws` takes it away: each decision's rollouts meet that many fresh
draws of the undecided luck (`Simulator.redraw_luck`), every action the same draws, and an
action costs its mean over them. That oracle still knows the arrivals and the acceptance
probability of requests already in flight (which the acceptance features estimate), so its
margin over the best analytical controller bounds what a feature policy can gain more tightly
(bench/oracle_foresight.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from rlspec.config import check_range
from rlspec.control.action import Action
from rlspec.control.base import ControlContext, Controller
from rlspec.control.registry import make_controller
from rlspec.engines.base import Backend
from rlspec.features import FeatureTracker


@dataclass(frozen=True)
class OracleConfig:
    horizon_s: float = 6.0  # virtual seconds each rollout is charged over, at least
    horizon_steps: int = 60  # ...and at least this many iterations at the step-time EWMA
    base: str = "goodput"  # controller the rollouts follow after their first interval
    luck_draws: int = 0  # 0: rollouts meet the episode's own luck; n: n fresh draws per decision
    seed: int = 0  # of the fresh draws

    def __post_init__(self) -> None:
        check_range("oracle.horizon_s", self.horizon_s, lo=1e-3)
        check_range("oracle.horizon_steps", self.horizon_steps, lo=0)
        check_range("oracle.luck_draws", self.luck_draws, lo=0)

    def window_s(self, step_time_s: float) -> float:
        """The rollout window for an engine whose iterations take `step_time_s`."""
        return max(self.horizon_s, self.horizon_steps * step_time_s)


class LookaheadOracle(Controller):
    name = "oracle"

    def __init__(self, backend: Backend, cfg: OracleConfig | None = None):
        if not getattr(backend, "copyable", False):
            raise ValueError(
                f"oracle: backend {type(backend).__name__} cannot be copied for rollouts; "
                "the lookahead oracle runs on the simulator only"
            )
        self.cfg = cfg or OracleConfig()
        if self.cfg.luck_draws and not hasattr(backend, "redraw_luck"):
            raise ValueError(f"oracle.luck_draws: backend {type(backend).__name__} cannot redraw its luck; use 0")
        self.backend = backend
        self.base = make_controller(self.cfg.base)
        self.rollouts = 0

    def reset(self, ctx: ControlContext) -> None:
        super().reset(ctx)
        self.base.reset(ctx)
        self.actions = [Action.from_index(i, ctx.k_max) for i in range(ctx.k_max + 2)]
        self.rng = np.random.default_rng(self.cfg.seed)

    def decide(self, obs: FeatureTracker) -> Action:
        """The cheapest action; the base controller's own choice wins ties."""
        preferred = self.base.decide(obs)
        costs = self.action_costs(obs)
        best = self.actions[int(np.argmin(costs))]
        return preferred if costs[preferred.index(self.ctx.k_max)] <= costs.min() else best

    def action_costs(self, obs: FeatureTracker) -> np.ndarray:
        """Request-seconds of the rollout window for each action index (0..k_max + 1).

        These are the labels oracle distillation learns from (rlspec/agents/distill.py):
        the cost of every alternative, not only the winner, so a policy that cannot see the
        future can learn which action is cheapest on average where the futures differ.
        """
        if not self.cfg.luck_draws:
            return np.array([self.rollout(action, obs) for action in self.actions])
        seeds = self.rng.integers(2**63, size=self.cfg.luck_draws)
        return np.array([np.mean([self.rollout(action, obs, int(seed)) for seed in seeds])
                         for action in self.actions])  # fmt: skip

    def rollout(self, first: Action, obs: FeatureTracker, luck_seed: int | None = None) -> float:
        """Request-seconds from now to now + horizon if `first` is played now (against a
        fresh draw of the luck, seeded `luck_seed`, if one is given)."""
        self.rollouts += 1
        backend, tracker, base = copy.deepcopy((self.backend, obs, self.base))
        if luck_seed is not None:
            backend.redraw_luck(luck_seed)
        end = tracker.last.clock_s + self.cfg.window_s(tracker.step_time)
        cost, action = 0.0, first
        while True:
            backend.set_action(action)
            tracker.begin_interval()
            for _ in range(self.ctx.decision_interval):
                s = backend.step()
                tracker.update(s)
                cost += s.request_seconds
                if backend.finished:
                    return cost
                if s.clock_s >= end:  # charge only up to the window's end
                    return cost - (s.clock_s - end) * s.num_in_system
            action = base.decide(tracker)
