import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import rlspec.envs  # noqa: F401  (registers the ids)
from rlspec.control.registry import make_controller
from rlspec.envs import RewardConfig, SpecDecodeEnv, make_randomized_env
from rlspec.evaluate import run_episode
from rlspec.features import NUM_FEATURES
from rlspec.scenario import load_scenario


def short_env(**kw):
    return SpecDecodeEnv(load_scenario("bursty").shortened(15.0), **kw)


@pytest.mark.parametrize("env_id", ["rlspec/SpecDecode-v0", "rlspec/SpecDecodeRandomized-v0"])
def test_registered_envs_pass_gymnasium_and_sb3_checkers(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)
    assert env.observation_space.shape == (NUM_FEATURES,)
    assert env.action_space.n == 6  # k in 0..4, plus offload


def test_reset_with_a_seed_is_reproducible():
    env = make_randomized_env()

    def rollout(seed):
        obs, info = env.reset(seed=seed)
        trace = [obs]
        for a in [0, 3, 5, 1, 4, 2] * 20:
            obs, r, term, trunc, _ = env.step(a)
            trace.append(np.append(obs, r))
            if term or trunc:
                break
        return info["scenario"], np.concatenate(trace)

    name_a, a = rollout(7)
    name_b, b = rollout(7)
    _, c = rollout(8)
    assert name_a == name_b
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_episode_return_is_minus_total_time_in_system():
    """Little's Law: the rewards of an episode sum to -scale * sum of request latencies."""
    env = short_env(reward=RewardConfig(scale=1.0))
    env.reset(seed=3)
    total, done = 0.0, False
    rng = np.random.default_rng(0)
    while not done:
        _, r, term, trunc, info = env.step(int(rng.integers(0, 6)))
        total += r
        done = term or trunc
    assert term
    latencies = [rec.latency_s for rec in env.backend.records()]
    assert total == pytest.approx(-sum(latencies), rel=1e-9)
    assert info["episode_metrics"]["completed"] == len(latencies)


def test_switch_and_slo_terms_lower_the_reward():
    plain, costly = short_env(), short_env(reward=RewardConfig(switch_weight=5.0, slo_weight=1.0))
    plain.reset(seed=1)
    costly.reset(seed=1)
    for a in (1, 2, 1, 2):
        _, r_plain, *_ = plain.step(a)
        _, r_costly, *_ = costly.step(a)
    assert r_costly <= r_plain - 5.0


def test_env_and_eval_loop_agree_for_a_fixed_controller():
    """The env's step is the eval loop's interval: same scenario, seeds and actions, same result."""
    scenario = load_scenario("flash-crowd").shortened(50.0)
    env = SpecDecodeEnv(scenario)
    env.reset(seed=5)
    requests = env.requests
    done = False
    while not done:
        *_, term, trunc, info = env.step(3)
        done = term or trunc
    from rlspec.engines.factory import make_backend

    backend = make_backend(scenario, "sim", seed=env.backend.seed)
    m = run_episode(backend, make_controller("static:3"), requests, scenario)
    assert info["episode_metrics"]["mean_latency_s"] == pytest.approx(m.mean_latency_s)


def test_invalid_actions_and_k_max_mismatch_are_rejected():
    env = short_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(6)
