"""Training callbacks: what a user inspects in TensorBoard while PPO learns.

- `ServingMetricsCallback`: per finished episode, the serving metrics of the scenario just
  played (`serving/*`, `spec/*`), averaged over the episodes of each rollout.
- `BaselineEvalCallback`: every `every_steps`, the deterministic policy on the evaluation
  scenarios through the same loop as the analytical controllers, logged as
  `eval/latency_vs_best_baseline` (mean over scenarios of policy / best baseline mean
  latency; < 1 means the policy wins). Keeps `best_model.zip` like SB3's EvalCallback.
- `ProgressCallback`: a tqdm bar over timesteps showing the current eval figure.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecNormalize
from tqdm import tqdm

from rlspec.agents.config import EvalConfig
from rlspec.control.action import Action
from rlspec.control.base import Controller
from rlspec.evaluate import evaluate
from rlspec.features import FeatureTracker
from rlspec.scenario import load_scenario


class SB3Controller(Controller):
    """The policy being trained, as a Controller (so it runs the baselines' loop)."""

    name = "ppo"

    def __init__(self, model, vecnorm: VecNormalize | None):
        self.model = model
        self.vecnorm = vecnorm

    def decide(self, obs: FeatureTracker) -> Action:
        x = obs.vector()
        if self.vecnorm is not None:
            x = self.vecnorm.normalize_obs(x)
        action, _ = self.model.predict(x, deterministic=True)
        return Action.from_index(int(action), self.ctx.k_max)


class ServingMetricsCallback(BaseCallback):
    TAGS = {
        "serving/mean_latency_s": "mean_latency_s",
        "serving/p99_latency_s": "p99_latency_s",
        "serving/throughput_tok_s": "throughput_tok_s",
        "serving/slo_attainment": "slo_attainment",
        "spec/k_mean": "mean_k",
        "spec/offload_frac": "offload_frac",
    }

    def __init__(self, initial_scalars: dict[str, float] | None = None):
        super().__init__()
        self.initial_scalars = initial_scalars or {}

    def _on_training_start(self) -> None:
        self._t0 = time.perf_counter()
        self._steps0 = self.num_timesteps
        for tag, value in self.initial_scalars.items():
            self.logger.record(tag, value)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            m = info.get("episode_metrics")
            if m is None:
                continue
            for tag, key in self.TAGS.items():
                if np.isfinite(m[key]):
                    self.logger.record_mean(tag, m[key])
            self.logger.record_mean("spec/acceptance", info["acceptance"])
        return True

    def _on_rollout_end(self) -> None:
        elapsed = time.perf_counter() - self._t0
        if elapsed > 0:
            self.logger.record("charts/SPS", (self.num_timesteps - self._steps0) / elapsed)


class BaselineEvalCallback(BaseCallback):
    def __init__(self, cfg: EvalConfig, run_dir: Path, verbose: int = 0):
        super().__init__(verbose)
        self.cfg = cfg
        self.run_dir = run_dir
        self.scenarios = [load_scenario(s).on_host(cfg.profile, cfg.load_scale).shortened(cfg.duration_s)
                          for s in cfg.scenarios]  # fmt: skip
        self.best_ratio = float("inf")
        self.last_ratio: float | None = None
        self._baseline: dict[str, float] = {}
        self._next = cfg.every_steps

    def _on_training_start(self) -> None:
        for s in self.scenarios:
            results = evaluate(s, self.cfg.baselines, seed=self.cfg.seed)
            self._baseline[s.name] = min(m.mean_latency_s for m in results.values())
        self._next = self.num_timesteps + self.cfg.every_steps
        self.run_eval()  # the starting policy (a warm start) is a candidate for the best

    def _on_step(self) -> bool:
        if self.cfg.every_steps and self.num_timesteps >= self._next:
            self._next += self.cfg.every_steps
            self.run_eval()
        return True

    def run_eval(self) -> float:
        vecnorm = self.model.get_vec_normalize_env()
        policy = SB3Controller(self.model, vecnorm)
        ratios = []
        per = defaultdict(dict)
        for s in self.scenarios:
            m = evaluate(s, [policy], seed=self.cfg.seed)["ppo"]
            ratio = m.mean_latency_s / self._baseline[s.name]
            ratios.append(ratio)
            per[s.name] = {"ratio": ratio, "mean_latency_s": m.mean_latency_s}
            self.logger.record(f"eval/{s.name}/latency_vs_best_baseline", ratio)
            self.logger.record(f"eval/{s.name}/mean_latency_s", m.mean_latency_s)
        self.last_ratio = float(np.mean(ratios))
        self.logger.record("eval/latency_vs_best_baseline", self.last_ratio)
        if self.last_ratio < self.best_ratio:
            self.best_ratio = self.last_ratio
            self.model.save(self.run_dir / "best_model.zip")
            if vecnorm is not None:
                vecnorm.save(str(self.run_dir / "best_vecnormalize.pkl"))
        return self.last_ratio


class ProgressCallback(BaseCallback):
    def __init__(self, total: int, evaluator: BaselineEvalCallback | None):
        super().__init__()
        self.total = total
        self.evaluator = evaluator

    def _on_training_start(self) -> None:
        self.bar = tqdm(total=self.total, initial=0, unit="step", desc="train", dynamic_ncols=True)
        self._start = self.num_timesteps

    def _on_step(self) -> bool:
        self.bar.n = self.num_timesteps - self._start
        if self.n_calls % 50 == 0:
            if self.evaluator is not None and self.evaluator.last_ratio is not None:
                self.bar.set_postfix(eval_vs_best=f"{self.evaluator.last_ratio:.3f}")
            self.bar.refresh()
        return True

    def _on_training_end(self) -> None:
        self.bar.n = self.num_timesteps - self._start
        self.bar.close()
