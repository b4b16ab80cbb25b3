"""Simulator speed: iterations per second at batch 64 on one core, and the wall time of a
full `rlspec eval` of the shipped scenarios (the training ground must be fast)."""

from __future__ import annotations

import time

from common import ROOT, write_result

from rlspec.control.action import Action
from rlspec.evaluate import evaluate
from rlspec.perf.acceptance import AcceptanceConfig
from rlspec.perf.profile import load_profile
from rlspec.scenario import load_scenario
from rlspec.sim.config import EngineConfig
from rlspec.sim.simulator import Simulator
from rlspec.workload import Request

SIX = ("steady-low", "steady-medium", "steady-high", "bursty", "flash-crowd", "kv-pressure")
CONTROLLERS = ("static:0", "static:4", "batch-table", "goodput", "latency-model", "nightjar")


def iterations_per_s(batch: int, k: int, iterations: int = 20_000, repeats: int = 3) -> float:
    """Steady decode at a fixed batch: `batch` requests long enough to outlast the run, and a
    KV pool large enough that they never preempt (so every iteration carries the batch)."""
    engine = EngineConfig(num_kv_blocks=batch * (iterations * (k + 1) + 4096) // 16)
    sim = Simulator(load_profile("h100-llama8b-1b"), engine, AcceptanceConfig(), seed=0)
    best = 0.0
    for _ in range(repeats):
        sim.start([Request(i, 0.0, 512, 10**7) for i in range(batch)])
        sim.set_action(Action(k=k))
        for _ in range(50):  # prefill and warm-up
            sim.step()
        t0 = time.perf_counter()
        for _ in range(iterations):
            sim.step()
        best = max(best, iterations / (time.perf_counter() - t0))
    return best


def main() -> None:
    speed = {f"k{k}": round(iterations_per_s(64, k)) for k in (0, 2, 4)}
    print("iterations/s at batch 64:", speed)
    t0 = time.perf_counter()
    for name in SIX:
        evaluate(load_scenario(ROOT / "envs" / f"{name}.yaml"), CONTROLLERS)
    eval_s = time.perf_counter() - t0
    print(f"full eval of {len(SIX)} scenarios x {len(CONTROLLERS)} controllers: {eval_s:.1f} s")
    write_result(
        "sim_speed",
        {
            "iterations_per_s": speed["k2"],
            "iterations_per_s_by_k": speed,
            "batch": 64,
            "eval_six_scenarios_s": round(eval_s, 2),
            "scenarios": list(SIX),
            "controllers": list(CONTROLLERS),
            "goal_iterations_per_s": 50_000,
        },
    )


if __name__ == "__main__":
    main()
