"""Export: the frozen numpy policy picks SB3's deterministic action on every observation."""

import argparse
import hashlib
import json

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from rlspec.agents.export import add_arguments, export_policy, run, stats_file_for
from rlspec.config import ConfigError
from rlspec.control.policy import FrozenPolicy
from rlspec.features import FEATURE_NAMES, NUM_FEATURES, SCHEMA_NAME, SCHEMA_VERSION

K_MAX = 4


class RandomObsEnv(gym.Env):
    """Random observations with feature-like spreads; reward for matching a hidden rule."""

    def __init__(self, n_obs: int = NUM_FEATURES, n_actions: int = K_MAX + 2, seed: int = 0):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n_obs,), np.float32)
        self.action_space = gym.spaces.Discrete(n_actions)
        self.rng = np.random.default_rng(seed)
        self.scale = np.linspace(0.5, 20.0, n_obs)
        self.offset = np.linspace(-5.0, 5.0, n_obs)
        self.t = 0

    def _obs(self):
        self.obs = (self.offset + self.scale * self.rng.normal(size=self.scale.size)).astype(
            np.float32
        )
        return self.obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        best = int(self.obs[0] > self.offset[0]) * (self.action_space.n - 1)
        self.t += 1
        return self._obs(), float(action == best), False, self.t >= 32, {}


def train_run(tmp_path, *, net=(64, 64), act=torch.nn.Tanh, vecnorm="obs", n_obs=NUM_FEATURES,
              steps=256, provenance=None):  # fmt: skip
    torch.set_num_threads(1)
    venv = DummyVecEnv([lambda: RandomObsEnv(n_obs)])
    if vecnorm is not None:
        venv = VecNormalize(venv, norm_obs=vecnorm == "obs", norm_reward=True, clip_obs=5.0)
    model = PPO(
        "MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=2, learning_rate=3e-3, seed=0,
        policy_kwargs=dict(net_arch=dict(pi=list(net), vf=[16]), activation_fn=act),
        device="cpu",
    )  # fmt: skip
    # SB3 would otherwise make a log folder under /tmp for every model.
    model.set_logger(configure(str(tmp_path / "sb3-log"), []))
    if steps:
        model.learn(steps)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    model.save(run_dir / "model.zip")
    if vecnorm is not None:
        venv.save(str(run_dir / "vecnormalize.pkl"))
    cfg = {"seed": 0, **({"provenance": provenance} if provenance else {})}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run_dir, model, venv if vecnorm is not None else None


@pytest.mark.parametrize(
    "net, act, vecnorm",
    [
        ((64, 64), torch.nn.Tanh, "obs"),
        ((32, 32, 32), torch.nn.ReLU, "obs"),
        ((64, 64), torch.nn.Tanh, None),  # no VecNormalize at all
        ((16,), torch.nn.ReLU, "reward"),  # VecNormalize with norm_obs=False
    ],
)
def test_frozen_policy_matches_sb3_predict(tmp_path, net, act, vecnorm):
    run_dir, model, norm = train_run(tmp_path, net=net, act=act, vecnorm=vecnorm)
    path = export_policy(run_dir)
    assert path == run_dir / "policy.npz"
    frozen = FrozenPolicy(path)
    assert frozen.k_max == K_MAX
    assert frozen.hidden_sizes == list(net)
    assert frozen.activation == ("tanh" if act is torch.nn.Tanh else "relu")
    assert frozen.normalize is (vecnorm == "obs")

    rng = np.random.default_rng(1)
    env = RandomObsEnv()
    obs = (env.offset + env.scale * rng.normal(size=(1000, NUM_FEATURES)) * 3).astype(np.float32)
    x = norm.normalize_obs(obs) if norm is not None else obs
    if vecnorm == "obs":
        assert (np.abs(x) == 5.0).any()  # clipping is exercised
    want, _ = model.predict(x, deterministic=True)
    got = np.array([frozen.act(o) for o in obs])
    assert (got == want).all(), f"{(got != want).sum()} of 1000 actions differ"
    assert len(set(want.tolist())) > 1  # a policy that always picks one action proves little


def test_meta_records_schema_action_map_and_provenance(tmp_path):
    run_dir, model, _ = train_run(tmp_path, steps=0, provenance={"git_commit": "abc123"})
    out = tmp_path / "frozen.bin"
    assert export_policy(run_dir, out) == out and not (run_dir / "policy.npz").exists()
    with np.load(out, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert {"obs_mean", "obs_var", "w0", "b0", "w1", "b1", "w_out", "b_out"} <= set(z.files)
        assert z["w0"].shape == (64, NUM_FEATURES) and z["w_out"].shape == (K_MAX + 2, 64)
    assert meta["format"] == "rlspec-frozen-policy" and meta["format_version"] == 1
    assert meta["schema"] == {
        "name": SCHEMA_NAME, "version": SCHEMA_VERSION, "features": list(FEATURE_NAMES)
    }  # fmt: skip
    assert meta["k_max"] == K_MAX
    assert meta["action_map"] == ["k=0", "k=1", "k=2", "k=3", "k=4", "offload"]
    assert meta["activation"] == "tanh" and meta["normalize"] is True
    assert meta["obs_clip"] == 5.0 and meta["epsilon"] == pytest.approx(1e-8)
    prov = meta["provenance"]
    assert prov["run"] == "run" and prov["model_file"] == "model.zip"
    assert prov["num_timesteps"] == model.num_timesteps
    assert prov["git_commit"] == "abc123"
    assert (
        prov["sha256_of_model_zip"]
        == hashlib.sha256((run_dir / "model.zip").read_bytes()).hexdigest()
    )
    assert prov["exported_utc"].endswith("+00:00")


def test_wrong_observation_size_is_refused(tmp_path):
    run_dir, _, _ = train_run(tmp_path, steps=0, n_obs=NUM_FEATURES + 1, vecnorm=None)
    with pytest.raises(ConfigError, match=rf"\({NUM_FEATURES + 1},\).*{NUM_FEATURES} features"):
        export_policy(run_dir)
    assert not (run_dir / "policy.npz").exists()


def test_missing_model_and_cli(tmp_path, capsys):
    with pytest.raises(ConfigError, match="no such model file"):
        export_policy(tmp_path)
    run_dir, _, _ = train_run(tmp_path, steps=0, vecnorm=None)
    (run_dir / "model.zip").rename(run_dir / "best.zip")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [str(run_dir), "--model-file", "best.zip", "-o", str(tmp_path / "p.npz")]
    )
    assert run(args) == 0
    assert str(tmp_path / "p.npz") in capsys.readouterr().out
    assert FrozenPolicy(tmp_path / "p.npz").provenance["model_file"] == "best.zip"


def test_each_model_file_pairs_with_its_own_statistics(tmp_path):
    (tmp_path / "steps").mkdir()
    for name in (
        "vecnormalize.pkl",
        "best_vecnormalize.pkl",
        "steps/model_vecnormalize_512_steps.pkl",
    ):
        (tmp_path / name).touch()
    pairs = {
        "model.zip": "vecnormalize.pkl",
        "best_model.zip": "best_vecnormalize.pkl",
        "steps/model_512_steps.zip": "steps/model_vecnormalize_512_steps.pkl",
        "steps/model_1024_steps.zip": "vecnormalize.pkl",  # its own file is gone: the run's
        "other.zip": "vecnormalize.pkl",
    }
    for model, stats in pairs.items():
        assert stats_file_for(tmp_path, tmp_path / model) == tmp_path / stats, model
    (tmp_path / "vecnormalize.pkl").unlink()
    assert stats_file_for(tmp_path, tmp_path / "model.zip") is None


def test_best_model_is_exported_with_best_statistics(tmp_path):
    run_dir, model, norm = train_run(tmp_path, steps=128)
    model.save(run_dir / "best_model.zip")
    norm.save(str(run_dir / "best_vecnormalize.pkl"))
    model.learn(128)  # the final statistics move on
    norm.save(str(run_dir / "vecnormalize.pkl"))
    frozen = FrozenPolicy(export_policy(run_dir, model_file="best_model.zip"))
    assert frozen.provenance["vecnormalize_file"] == "best_vecnormalize.pkl"
    best = VecNormalize.load(str(run_dir / "best_vecnormalize.pkl"), norm.venv)
    with np.load(frozen.path) as z:
        np.testing.assert_array_equal(z["obs_mean"], best.obs_rms.mean)
        assert not np.array_equal(z["obs_mean"], norm.obs_rms.mean)
