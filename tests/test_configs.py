"""Every YAML the project ships parses into its dataclass; bad keys fail by name."""

from pathlib import Path

import pytest

from rlspec.config import ConfigError, from_dict, load_yaml
from rlspec.control.registry import BaselinesConfig
from rlspec.perf.profile import available_profiles, load_profile
from rlspec.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "envs").glob("*.yaml")) + sorted((ROOT / "envs" / "held-out").glob("*.yaml"))
DISTRIBUTIONS = sorted((ROOT / "envs" / "distributions").glob("*.yaml"))
AGENT_CONFIGS = sorted((ROOT / "agents").glob("*.yaml"))


def test_ships_the_required_scenarios():
    names = {p.stem for p in SCENARIOS}
    assert {"steady-low", "steady-medium", "steady-high", "bursty", "flash-crowd", "diurnal",
            "kv-pressure", "azure-code"} <= names  # fmt: skip


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_loads_and_generates_requests(path):
    scenario = load_scenario(path)
    scenario.load_profile()
    requests = scenario.requests()
    assert len(requests) > 10


@pytest.mark.parametrize("path", AGENT_CONFIGS, ids=lambda p: p.stem)
def test_every_agent_config_loads(path):
    if path.stem == "baselines":
        BaselinesConfig.load(path)
    else:
        from rlspec.agents.config import load_agent_config

        load_agent_config(path)


@pytest.mark.parametrize("name", available_profiles())
def test_every_profile_loads_with_sources(name):
    profile = load_profile(name)
    assert profile.sources, "each shipped profile says where its numbers come from"


def test_unknown_and_bad_keys_name_the_key(tmp_path):
    base = dict(load_yaml(ROOT / "envs" / "steady-low.yaml"), name="t")
    bad = dict(base, engin={"k_max": 3})
    with pytest.raises(ConfigError, match="engin"):
        from_dict(Scenario, bad)
    bad = dict(base, engine={"k_max": 0})
    with pytest.raises(ConfigError, match="engine.k_max"):
        from_dict(Scenario, bad)
    bad = dict(base, acceptance={"mean": 1.5})
    with pytest.raises(ConfigError, match="acceptance.mean"):
        from_dict(Scenario, bad)
    bad = dict(base, workload=dict(base["workload"], cv=2.0))
    with pytest.raises(ConfigError, match="cv"):
        from_dict(Scenario, bad)
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        load_profile("nope")
    with pytest.raises(ConfigError, match="nightjar.patience"):
        from_dict(BaselinesConfig, {"nightjar": {"patience": 0}})


@pytest.mark.parametrize("path", DISTRIBUTIONS, ids=lambda p: p.stem)
def test_every_training_distribution_loads_and_excludes_evaluation_scenarios(path):
    import numpy as np

    from rlspec.envs.distribution import load_distribution

    dist = load_distribution(path)
    rng = np.random.default_rng(0)
    names = {p.stem for p in SCENARIOS}
    for _ in range(20):
        s = dist.sample(rng)
        assert s.name.split(":")[0] == dist.name and s.name not in names
