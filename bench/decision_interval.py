"""How often should a controller decide? The measurement behind `decision_interval`.

Shorter intervals react faster to bursts but cost more decisions per simulated second (and,
for RL, more env steps per episode, i.e. longer credit assignment and slower training).
For each interval: mean latency of the adaptive analytical controllers on the bursty and
flash-crowd scenarios, and env steps/s of the Gymnasium env under a random policy.
"""

from __future__ import annotations

import time

import numpy as np
from common import ROOT, write_result

from rlspec.envs import SpecDecodeEnv
from rlspec.evaluate import evaluate
from rlspec.scenario import load_scenario

INTERVALS = [1, 2, 4, 8, 16, 32, 64]
SCENARIOS = ["bursty", "flash-crowd", "steady-high"]
CONTROLLERS = ["goodput", "nightjar", "latency-model"]


def env_steps_per_s(interval: int, episodes: int = 2) -> tuple[float, float]:
    """Whole episodes of a 30 s bursty workload under a random k (no offload)."""
    scenario = load_scenario(ROOT / "envs" / "bursty.yaml").shortened(30.0)
    env = SpecDecodeEnv(scenario, decision_interval=interval)
    rng = np.random.default_rng(0)
    steps, sim_s = 0, 0.0
    t0 = time.perf_counter()
    for ep in range(episodes):
        env.reset(seed=ep)
        done = False
        while not done:
            _, _, term, trunc, _ = env.step(int(rng.integers(0, 5)))
            steps += 1
            sim_s += env.tracker.interval_time_s
            done = term or trunc
    return steps / (time.perf_counter() - t0), sim_s / steps


def main() -> None:
    latency = {c: {s: [] for s in SCENARIOS} for c in CONTROLLERS}
    speed, step_len = [], []
    for interval in INTERVALS:
        for s in SCENARIOS:
            scenario = load_scenario(ROOT / "envs" / f"{s}.yaml").replace(
                decision_interval=interval
            )
            for c, m in evaluate(scenario, CONTROLLERS).items():
                latency[c][s].append(m.mean_latency_s)
        sps, seconds = env_steps_per_s(interval)
        speed.append(sps)
        step_len.append(seconds)
        print(f"interval {interval:3d}: {sps:7.0f} env steps/s, {seconds * 1e3:6.1f} ms simulated per step, "
              + ", ".join(f"{c} {np.mean([latency[c][s][-1] for s in SCENARIOS]):.3f}s" for c in CONTROLLERS))  # fmt: skip
    rel = {c: [np.mean([latency[c][s][i] / latency[c][s][0] for s in SCENARIOS])
               for i in range(len(INTERVALS))] for c in CONTROLLERS}  # fmt: skip
    write_result(
        "decision_interval",
        {
            "intervals": INTERVALS,
            "scenarios": SCENARIOS,
            "mean_latency_s": latency,
            "latency_relative_to_interval_1": rel,
            "env_steps_per_s": speed,
            "simulated_ms_per_env_step": [1e3 * s for s in step_len],
        },
    )


if __name__ == "__main__":
    main()
