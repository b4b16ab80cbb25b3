"""A tiny but real PPO run: TensorBoard tags, run directory, resume."""

from pathlib import Path

import pytest
import yaml

from rlspec.agents.config import load_agent_config
from rlspec.agents.train import train

ROOT = Path(__file__).resolve().parents[2]
TAGS = {
    "bc/agreement", "serving/mean_latency_s", "serving/p99_latency_s", "serving/throughput_tok_s",
    "spec/acceptance", "spec/k_mean", "spec/offload_frac", "eval/latency_vs_best_baseline",
    "charts/SPS", "train/value_loss", "train/entropy_loss", "rollout/ep_rew_mean", "time/fps",
}  # fmt: skip


def tiny_config(tmp_path: Path) -> Path:
    dist = {
        "name": "tiny",
        "base": str(ROOT / "envs" / "steady-low.yaml"),
        "duration_s": [3, 5],
        "workloads": [{"kind": "poisson", "params": {"rate": [2, 10]}}],
    }
    (tmp_path / "dist.yaml").write_text(yaml.safe_dump(dist))
    cfg = {
        "distribution": "dist.yaml",
        "n_envs": 2,
        "total_timesteps": 512,
        "checkpoint_every_steps": 256,
        "ppo": {"n_steps": 128, "batch_size": 64, "n_epochs": 1, "net_arch": [16, 16]},
        "eval": {"every_steps": 256, "scenarios": ["steady-low"], "baselines": ["static:0", "goodput"],
                 "duration_s": 4},
        "warm_start": {"expert": "goodput", "steps": 300, "epochs": 30, "batch_size": 64},
    }  # fmt: skip
    (tmp_path / "ppo.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path / "ppo.yaml"


def scalar_tags(tb_dir: Path) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in tb_dir.rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    return tags


@pytest.mark.slow
def test_tiny_training_run_writes_tags_checkpoints_and_resumes(tmp_path):
    cfg = load_agent_config(tiny_config(tmp_path))
    run = train(cfg, tmp_path / "run", progress=False)
    for name in ("model.zip", "vecnormalize.pkl", "config.yaml", "best_model.zip"):
        assert (run / name).is_file(), name
    assert list((run / "steps").glob("model_*_steps.zip"))
    missing = TAGS - scalar_tags(run / "tb")
    assert not missing, f"TensorBoard lacks {sorted(missing)}"
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["ppo"]["net_arch"] == [16, 16]
    assert resolved["provenance"]["sessions"][0]["timesteps"] == 512

    from stable_baselines3 import PPO

    steps_before = PPO.load(run / "model.zip").num_timesteps
    train(cfg, run, timesteps=256, resume=True, progress=False)
    assert PPO.load(run / "model.zip").num_timesteps == steps_before + 256
    sessions = yaml.safe_load((run / "config.yaml").read_text())["provenance"]["sessions"]
    assert [s["resumed"] for s in sessions] == [False, True]


def test_refuses_to_overwrite_or_resume_nothing(tmp_path):
    from rlspec.config import ConfigError

    cfg = load_agent_config(tiny_config(tmp_path))
    with pytest.raises(ConfigError, match="no model.zip"):
        train(cfg, tmp_path / "empty", resume=True, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "model.zip").write_bytes(b"x")
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg, tmp_path / "full", progress=False)


def test_warm_start_clones_the_expert(tmp_path):
    """Behaviour cloning makes the untrained actor decide like goodput on the data."""
    import dataclasses

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    from rlspec.agents.train import _plain_env, make_vec_env
    from rlspec.agents.warmstart import behaviour_clone, collect, seed_normalization

    cfg = load_agent_config(tiny_config(tmp_path))
    cfg = dataclasses.replace(
        cfg, warm_start=dataclasses.replace(cfg.warm_start, steps=600, epochs=60)
    )
    venv = VecNormalize(make_vec_env(cfg), gamma=cfg.ppo.gamma)
    model = PPO("MlpPolicy", venv, seed=0, device="cpu")
    env = _plain_env(cfg, str(cfg.resolve(cfg.distribution)))
    demos = collect(env, "goodput", cfg.warm_start.steps, seed=1)
    assert len(demos.actions) >= 600 and demos.episode_starts.sum() >= 1
    seed_normalization(venv, demos, cfg.ppo.gamma)
    assert venv.obs_rms.count > 600
    stats = behaviour_clone(model, venv, demos, cfg.warm_start, cfg.ppo.gamma, seed=0)
    assert stats["bc/agreement"] > 0.9


def test_the_eval_scenarios_run_on_the_training_hosts_profile_at_its_loads(tmp_path):
    """A run trained on another host's simulator is scored there: eval.profile and
    eval.load_scale move each eval scenario onto that host (Scenario.on_host)."""
    import dataclasses

    from rlspec.agents.callbacks import BaselineEvalCallback
    from rlspec.config import ConfigError

    cfg = load_agent_config(tiny_config(tmp_path)).eval
    moved = dataclasses.replace(cfg, scenarios=[str(ROOT / "envs/live/tiny-poisson.yaml")],
                                profile="cpu-tiny-avx2", load_scale=0.58)  # fmt: skip
    (sc,) = BaselineEvalCallback(moved, tmp_path).scenarios
    (kept,) = BaselineEvalCallback(dataclasses.replace(moved, profile=None, load_scale=1.0), tmp_path).scenarios
    assert (sc.profile, kept.profile) == ("cpu-tiny-avx2", "cpu-tiny")
    assert sc.workload.rate == pytest.approx(0.58 * kept.workload.rate)
    assert sc.workload.duration_s == kept.workload.duration_s
    with pytest.raises(ConfigError, match="eval.load_scale"):
        dataclasses.replace(cfg, load_scale=0.0)


@pytest.mark.slow
def test_init_takes_the_networks_from_the_run_and_the_hyperparameters_from_the_config(tmp_path):
    """Fine-tuning with a longer horizon must train with that horizon: `--init` used to
    keep the initial run's gamma, GAE lambda and clip range whatever the config said."""
    import dataclasses

    import numpy as np
    from stable_baselines3 import PPO

    cfg = load_agent_config(tiny_config(tmp_path))
    first = train(dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, every_steps=0)),
                  tmp_path / "first", timesteps=256, progress=False)  # fmt: skip
    longer = dataclasses.replace(
        cfg,
        eval=dataclasses.replace(cfg.eval, every_steps=0),
        ppo=dataclasses.replace(cfg.ppo, gamma=0.999, gae_lambda=0.9, clip_range=0.3, vf_coef=0.25),
    )
    before = PPO.load(first / "model.zip", device="cpu")
    tuned = train(longer, tmp_path / "tuned", timesteps=256, init=first, progress=False)
    after = PPO.load(tuned / "model.zip", device="cpu")
    assert (after.gamma, after.gae_lambda, after.vf_coef) == (0.999, 0.9, 0.25)
    assert after.clip_range(1.0) == pytest.approx(0.3)
    assert after.num_timesteps == before.num_timesteps + 256
    # the network was carried over, not re-initialised: the first layer is the trained
    # one plus at most a few fine-tuning updates
    w0 = before.policy.mlp_extractor.policy_net[0].weight.detach().numpy()
    w1 = after.policy.mlp_extractor.policy_net[0].weight.detach().numpy()
    assert np.abs(w1 - w0).max() < 0.1 * np.abs(w0).max()
    import pickle

    with open(tuned / "vecnormalize.pkl", "rb") as f:
        assert pickle.load(f).gamma == 0.999  # the reward normaliser discounts alike
