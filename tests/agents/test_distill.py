"""Oracle distillation: what the labels hold, that they do not depend on the worker count,
that the cost-sensitive fit picks the cheapest action on average (not the most frequent
winner), and the DAgger warm start end to end."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from rlspec.agents import distill
from rlspec.agents.config import load_agent_config
from rlspec.agents.distill import (
    LabelJob,
    OracleLabels,
    cached_labels,
    collect_labels,
    label_episode,
)
from rlspec.agents.warmstart import WarmStartConfig, behaviour_clone
from rlspec.config import ConfigError
from rlspec.envs.reward import RewardConfig
from rlspec.features import NUM_FEATURES

ROOT = Path(__file__).resolve().parents[2]


def job(**kw) -> LabelJob:
    base = dict(distribution=str(ROOT / "envs" / "steady-low.yaml"), reward=RewardConfig(),
                max_episode_steps=6, decision_interval=None, seed=3, actor="static:2",
                beta=0.0, horizon_s=0.5, horizon_steps=0)  # fmt: skip
    return LabelJob(**{**base, **kw})


def test_labels_hold_every_actions_rollout_cost_and_the_action_played():
    labels = label_episode(job())
    n = len(labels)
    assert n == 6  # max_episode_steps
    assert labels.obs.shape == (n, NUM_FEATURES) and labels.costs.shape == (n, 6)
    assert labels.episode_starts.tolist() == [True] + [False] * (n - 1)
    assert (labels.actions == 2).all()  # beta 0: the actor's choice
    assert (labels.regret >= 0).all() and (labels.regret.min(axis=1) == 0).all()
    assert (labels.costs[1:] > 0).all()  # requests are in the system after the first step
    greedy = label_episode(job(beta=1.0))
    assert (greedy.actions == greedy.costs.argmin(axis=1)).all()


def test_labels_are_the_same_whatever_the_worker_count():
    one = collect_labels(job(), steps=10, workers=1, progress=False)
    two = collect_labels(job(), steps=10, workers=2, progress=False)
    assert len(one) == 12  # whole episodes: two of six decisions
    for field in ("obs", "costs", "actions", "rewards", "episode_starts"):
        np.testing.assert_array_equal(getattr(one, field), getattr(two, field))


def test_cached_labels_are_reused_only_for_the_same_job(tmp_path, monkeypatch):
    path = tmp_path / "labels-0.npz"
    first = cached_labels(path, job(), 6, 1, progress=False)

    def no_labelling(*args, **kw):
        raise AssertionError("labels were collected again")

    monkeypatch.setattr(distill, "collect_labels", no_labelling)
    again = cached_labels(path, job(), 6, 1, progress=False)
    np.testing.assert_array_equal(first.costs, again.costs)
    with pytest.raises(AssertionError, match="collected again"):
        cached_labels(path, job(beta=0.5), 6, 1, progress=False)


def test_the_label_cache_knows_the_training_ground_by_content_not_path(tmp_path, monkeypatch):
    """A clone elsewhere reuses labels; the same file with a refitted profile does not."""
    import yaml

    src = ROOT / "envs" / "steady-low.yaml"
    data = yaml.safe_load(src.read_text())
    profile = ROOT / "rlspec" / "perf" / "profiles" / f"{data['profile']}.yaml"
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / "profile.yaml").write_text(profile.read_text())
    (clone / "scenario.yaml").write_text(yaml.safe_dump({**data, "profile": "profile.yaml"}))
    path = tmp_path / "labels-0.npz"
    first = cached_labels(path, job(distribution=str(clone / "scenario.yaml")), 6, 1, progress=False)

    def no_labelling(*args, **kw):
        raise AssertionError("labels were collected again")

    monkeypatch.setattr(distill, "collect_labels", no_labelling)
    moved = tmp_path / "moved"
    (clone).rename(moved)
    again = cached_labels(path, job(distribution=str(moved / "scenario.yaml")), 6, 1, progress=False)
    np.testing.assert_array_equal(first.costs, again.costs)
    refit = yaml.safe_load((moved / "profile.yaml").read_text())
    refit["iteration_overhead_s"] = float(refit["iteration_overhead_s"]) + 0.001
    (moved / "profile.yaml").write_text(yaml.safe_dump(refit))
    with pytest.raises(AssertionError, match="collected again"):
        cached_labels(path, job(distribution=str(moved / "scenario.yaml")), 6, 1, progress=False)


def synthetic_ppo():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rlspec.envs import SpecDecodeEnv

    venv = VecNormalize(DummyVecEnv([lambda: SpecDecodeEnv("steady-low")]))
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32, 32]})  # fmt: skip
    return model, venv


def test_the_fit_picks_the_cheapest_action_on_average_not_the_most_frequent_winner():
    """Where x > 0, action 1 wins 60% of futures but loses big in the rest (mean cost 1.2)
    and action 0 always costs 1.0; where x < 0, action 3 is cheapest. Cross-entropy to the
    per-sample winner learns action 1; the expected-regret fit must learn action 0."""
    rng = np.random.default_rng(0)
    n = 4000
    obs = rng.normal(size=(n, NUM_FEATURES)).astype(np.float32)
    pos = obs[:, 0] > 0
    costs = np.full((n, 6), 5.0)
    costs[pos, 0] = 1.0
    costs[pos, 1] = np.where(rng.random(pos.sum()) < 0.6, 0.0, 3.0)
    costs[~pos, 3] = 0.5
    labels = OracleLabels(obs, costs, costs.argmin(axis=1), -costs.min(axis=1),
                          np.arange(n) % 100 == 0)  # fmt: skip
    cfg = WarmStartConfig(expert="oracle", epochs=20, batch_size=128, label_smoothing=0.0)
    model, venv = synthetic_ppo()
    venv.obs_rms.update(obs)
    stats = behaviour_clone(model, venv, labels, cfg, 0.99, seed=0, regret=labels.regret)
    chosen = model.predict(venv.normalize_obs(obs), deterministic=True)[0]
    assert (chosen[pos] == 0).mean() > 0.95
    assert (chosen[~pos] == 3).mean() > 0.95
    # The regret the fitted policy pays is that of always choosing action 0 where x > 0.
    assert stats["bc/regret_policy"] == pytest.approx(labels.regret[pos, 0].sum() / n, rel=0.1)


def tiny_oracle_config(tmp_path: Path) -> Path:
    dist = {"name": "tiny", "base": str(ROOT / "envs" / "steady-low.yaml"), "duration_s": [3, 4],
            "workloads": [{"kind": "poisson", "params": {"rate": [2, 8]}}]}  # fmt: skip
    (tmp_path / "dist.yaml").write_text(yaml.safe_dump(dist))
    cfg = {
        "distribution": "dist.yaml", "n_envs": 1, "total_timesteps": 64, "max_episode_steps": 8,
        "checkpoint_every_steps": 0,
        "ppo": {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "net_arch": [16, 16]},
        "eval": {"every_steps": 0},
        "warm_start": {"expert": "oracle", "steps": 16, "dagger_rounds": 1, "dagger_steps": 8,
                       "oracle_horizon_s": 0.5, "workers": 2, "epochs": 5, "batch_size": 16},
    }  # fmt: skip
    (tmp_path / "ppo.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "ppo.yaml"


@pytest.mark.slow
def test_dagger_warm_start_labels_each_round_and_keeps_what_it_made(tmp_path):
    from rlspec.agents.train import train
    from rlspec.control.policy import FrozenPolicy

    cfg = load_agent_config(tiny_oracle_config(tmp_path))
    run = train(cfg, tmp_path / "run", progress=False)
    dagger = run / "dagger"
    round0 = OracleLabels.load(dagger / "labels-0.npz")
    round1 = OracleLabels.load(dagger / "labels-1.npz")
    assert len(round0) >= 16 and len(round1) >= 8
    FrozenPolicy(dagger / "round-0" / "policy.npz")  # the policy that drove round 1 loads
    assert (run / "model.zip").is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["warm_start"]["expert"] == "oracle"


def test_oracle_warm_start_needs_the_simulator(tmp_path):
    text = yaml.safe_load(tiny_oracle_config(tmp_path).read_text())
    text.update(backend="vllm")
    (tmp_path / "live.yaml").write_text(yaml.safe_dump(text))
    with pytest.raises(ConfigError, match="warm_start.expert"):
        load_agent_config(tmp_path / "live.yaml")
    with pytest.raises(ConfigError, match="warm_start.oracle_beta"):
        WarmStartConfig(expert="oracle", oracle_beta=1.5)


def test_a_policy_actor_is_identified_by_its_weights_not_its_export_metadata(tmp_path):
    from rlspec.agents.distill import _weights_digest
    from rlspec.control.policy import save_policy

    rng = np.random.default_rng(0)
    hidden = [(rng.normal(size=(8, NUM_FEATURES)), rng.normal(size=8))]
    head = (rng.normal(size=(6, 8)), rng.normal(size=6))
    a = save_policy(tmp_path / "a.npz", hidden, head, "tanh", provenance={"exported": "monday"})
    b = save_policy(tmp_path / "b.npz", hidden, head, "tanh", provenance={"exported": "friday"})
    head[0][0, 0] += 1e-3
    c = save_policy(tmp_path / "c.npz", hidden, head, "tanh")
    assert a.read_bytes() != b.read_bytes()
    assert _weights_digest(a) == _weights_digest(b) != _weights_digest(c)
