"""Build the Backend a scenario asks for."""

from __future__ import annotations

from rlspec.engines.base import Backend
from rlspec.scenario import Scenario

BACKENDS = ("sim", "vllm")


def make_backend(scenario: Scenario, kind: str = "sim", seed: int | None = None) -> Backend:
    if kind == "sim":
        from rlspec.sim.simulator import Simulator

        return Simulator(
            scenario.load_profile(),
            scenario.engine,
            scenario.acceptance,
            seed=scenario.seed if seed is None else seed,
        )
    raise ValueError(f"--backend: unknown {kind!r}; allowed: {list(BACKENDS)}")
