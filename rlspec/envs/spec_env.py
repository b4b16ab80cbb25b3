"""The Gymnasium environment: a serving engine under a workload, one decision per step.

Observation: the feature vector of `rlspec.features` (schema `rlspec-features` v1), a
`Box` of shape `(NUM_FEATURES,)`. Action: `Discrete(k_max + 2)` - index 0..k_max is the
draft length with the drafter resident, k_max + 1 moves the drafter off the accelerator.
One step holds the action for `decision_interval` engine iterations. Reward: minus the
request-seconds of the interval, scaled (see `reward.py`). An episode is one scenario's
workload served to completion (terminated), or cut at `max_episode_steps` (truncated).

The same class drives any Backend: the simulator for training, the live vLLM engine for
online fine-tuning and evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rlspec.control.action import Action
from rlspec.engines.base import Backend
from rlspec.engines.factory import make_backend
from rlspec.envs.distribution import ScenarioDistribution
from rlspec.envs.reward import RewardConfig
from rlspec.evaluate import control_context
from rlspec.features import FEATURE_NAMES, NUM_FEATURES
from rlspec.metrics import StepStats, summarize
from rlspec.scenario import Scenario, load_scenario

OBS_BOUND = 1e3  # features are logs, fractions and flags; the bound is generous


class SpecDecodeEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        scenario: Scenario | ScenarioDistribution | str,
        backend: str = "sim",
        reward: RewardConfig | None = None,
        max_episode_steps: int = 5000,
        decision_interval: int | None = None,
        backend_factory: Callable[[Scenario, int], Backend] | None = None,
    ):
        if isinstance(scenario, str):
            scenario = load_scenario(scenario)  # a name in envs/ or a path
        self.source = scenario
        self.backend_kind = backend
        self.reward_cfg = reward or RewardConfig()
        self.max_episode_steps = max_episode_steps
        self._interval_override = decision_interval
        self._factory = backend_factory or (lambda s, seed: make_backend(s, backend, seed=seed))
        probe = (
            scenario
            if isinstance(scenario, Scenario)
            else scenario.sample(np.random.default_rng(0))
        )
        self.k_max = probe.engine.k_max
        self.observation_space = gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (NUM_FEATURES,), np.float32)
        self.action_space = gym.spaces.Discrete(self.k_max + 2)
        self.feature_names = FEATURE_NAMES
        self.backend: Backend | None = None
        self._backend_key: tuple | None = None
        self.scenario: Scenario | None = None

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        if isinstance(self.source, Scenario):
            scenario = self.source
        else:
            scenario = self.source.sample(rng)
        if scenario.engine.k_max != self.k_max:
            raise ValueError(
                f"scenario {scenario.name!r}: engine.k_max={scenario.engine.k_max} differs from "
                f"the env's action space (k_max={self.k_max})"
            )
        if self._interval_override is not None:
            scenario = scenario.replace(decision_interval=self._interval_override)
        self.scenario = scenario
        workload_seed = int(rng.integers(2**31))
        engine_seed = int(rng.integers(2**31))
        self._prepare_backend(scenario, engine_seed)
        self.requests = scenario.requests(workload_seed)
        self.tracker = control_context(scenario, self.backend).tracker()
        self.tracker.update(self.backend.start(self.requests))
        self.stats = StepStats()
        self.steps = 0
        self._last_action: int | None = None
        return self.tracker.vector(), {"scenario": scenario.name}

    def step(self, action):
        if self.backend is None:
            raise RuntimeError("call reset() before step()")
        index = int(action)
        if not self.action_space.contains(index):
            raise ValueError(f"action must be in [0, {self.k_max + 1}], got {action!r}")
        self.backend.set_action(Action.from_index(index, self.k_max))
        tracker, stats = self.tracker, self.stats
        tracker.begin_interval()
        slo = self.scenario.slo
        for _ in range(self.scenario.decision_interval):
            s = self.backend.step()
            tracker.update(s)
            stats.add(s.k, s.step_time_s, s.num_scheduled_tokens > 0, s.drafter, s.num_preemptions)
            if self.backend.finished:
                break
        misses = self._slo_misses(slo) if self.reward_cfg.slo_weight else 0
        reward = self.reward_cfg(
            tracker.interval_request_seconds,
            misses,
            self._last_action is not None and index != self._last_action,
        )
        self._last_action = index
        self.steps += 1
        terminated = self.backend.finished
        truncated = not terminated and self.steps >= self.max_episode_steps
        info: dict[str, Any] = {"k": tracker.last.k, "drafter": int(tracker.last.drafter)}
        if terminated or truncated:
            info["episode_metrics"] = self.episode_metrics().as_dict()
            info["acceptance"] = tracker.acceptance_slow
        return tracker.vector(), float(reward), terminated, truncated, info

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    # ------------------------------------------------------------------ helpers
    def _prepare_backend(self, scenario: Scenario, seed: int) -> None:
        """A fresh simulator per episode (cheap, reseeded); a live engine is kept while the
        scenario's engine settings stay the same, since starting one takes seconds."""
        key = (scenario.engine, scenario.live, scenario.profile)
        if self.backend is not None and self.backend_kind != "sim" and key == self._backend_key:
            return
        if self.backend is not None:
            self.backend.close()
        self.backend = self._factory(scenario, seed)
        self._backend_key = key

    def episode_metrics(self):
        slo = self.scenario.slo
        return summarize(self.backend.records(), self.stats, slo.ttft_s, slo.tpot_s)

    def _slo_misses(self, slo) -> int:
        """Requests completing in this interval outside their SLO (a scan of the new ones)."""
        t_end = self.tracker.last.clock_s
        t_start = t_end - self.tracker.interval_time_s
        misses = 0
        for r in self.backend.records():
            if r.finish_s is not None and t_start < r.finish_s <= t_end:
                if r.ttft_s > slo.ttft_s or (r.tpot_s is not None and r.tpot_s > slo.tpot_s):
                    misses += 1
        return misses
