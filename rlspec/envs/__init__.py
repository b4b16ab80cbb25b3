"""Gymnasium environments, registered under the `rlspec/` namespace on import.

- `rlspec/SpecDecode-v0`: one scenario (default `steady-medium`; pass `scenario=`).
- `rlspec/SpecDecodeRandomized-v0`: a scenario drawn per reset from a training
  distribution (default `envs/distributions/h100-train.yaml`; pass `distribution=`).
"""

from __future__ import annotations

from pathlib import Path

from gymnasium.envs.registration import register, registry

from rlspec.envs.distribution import ScenarioDistribution, load_distribution
from rlspec.envs.reward import RewardConfig
from rlspec.envs.spec_env import SpecDecodeEnv
from rlspec.scenario import SCENARIO_DIR

DEFAULT_DISTRIBUTION = SCENARIO_DIR / "distributions" / "h100-train.yaml"


def make_randomized_env(distribution: str | Path = DEFAULT_DISTRIBUTION, **kwargs) -> SpecDecodeEnv:
    """An env over a training distribution, or over one scenario if the file is a scenario."""
    from rlspec.config import load_yaml
    from rlspec.scenario import load_scenario

    if "workload" in load_yaml(distribution):
        return SpecDecodeEnv(load_scenario(distribution), **kwargs)
    return SpecDecodeEnv(load_distribution(distribution), **kwargs)


if "rlspec/SpecDecode-v0" not in registry:
    register(
        id="rlspec/SpecDecode-v0",
        entry_point="rlspec.envs.spec_env:SpecDecodeEnv",
        kwargs={"scenario": "steady-medium"},
    )
    register(
        id="rlspec/SpecDecodeRandomized-v0",
        entry_point="rlspec.envs:make_randomized_env",
    )

__all__ = [
    "RewardConfig",
    "ScenarioDistribution",
    "SpecDecodeEnv",
    "load_distribution",
    "make_randomized_env",
]
