"""PPO training on the serving environment: `rlspec train`.

A run lives in `checkpoints/<run>/`:
  model.zip, vecnormalize.pkl     the final policy and its observation statistics
  best_model.zip, best_vecnormalize.pkl   the best by the baseline evaluation
  config.yaml                     the resolved config plus provenance
  tb/                             TensorBoard (SB3's scalars + serving/, spec/, eval/, charts/)
  steps/                          periodic checkpoints
`--resume` continues a run from its model.zip and statistics.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from functools import partial
from pathlib import Path

import yaml

from rlspec.agents.config import AgentConfig
from rlspec.config import ConfigError, to_dict

ROOT = Path(__file__).resolve().parents[2]


def _plain_env(cfg: AgentConfig, distribution: str):
    from rlspec.envs import make_randomized_env

    return make_randomized_env(
        distribution,
        backend=cfg.backend,
        reward=cfg.reward,
        max_episode_steps=cfg.max_episode_steps,
        decision_interval=cfg.decision_interval,
    )


def _make_env(cfg: AgentConfig, distribution: str, rank: int):
    from stable_baselines3.common.monitor import Monitor

    env = _plain_env(cfg, distribution)
    env.action_space.seed(cfg.seed + rank)
    return Monitor(env)


def make_vec_env(cfg: AgentConfig):
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    distribution = str(cfg.resolve(cfg.distribution))
    fns = [partial(_make_env, cfg, distribution, i) for i in range(cfg.n_envs)]
    venv = SubprocVecEnv(fns) if cfg.vec_env == "subproc" else DummyVecEnv(fns)
    venv.seed(cfg.seed)
    return venv


def _provenance() -> dict:
    import rlspec

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip()  # fmt: skip
    except OSError:
        commit = ""
    return {"rlspec_version": rlspec.__version__, "git_commit": commit}


def train(
    cfg: AgentConfig,
    run_dir: Path,
    timesteps: int | None = None,
    resume: bool = False,
    progress: bool = True,
    init: Path | None = None,
) -> Path:
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CallbackList, CheckpointCallback
    from stable_baselines3.common.vec_env import VecNormalize

    from rlspec.agents.callbacks import (
        BaselineEvalCallback,
        ProgressCallback,
        ServingMetricsCallback,
    )

    torch.set_num_threads(cfg.torch_threads)
    run_dir = Path(run_dir)
    total = timesteps or cfg.total_timesteps
    if resume and not (run_dir / "model.zip").is_file():
        raise ConfigError(f"--resume: {run_dir} has no model.zip to resume from")
    if not resume and (run_dir / "model.zip").exists():
        raise ConfigError(
            f"{run_dir} already holds a trained model; pass --resume or another --run"
        )
    run_dir.mkdir(parents=True, exist_ok=True)

    venv = make_vec_env(cfg)
    n = cfg.normalize
    p = cfg.ppo
    if resume and (run_dir / "vecnormalize.pkl").is_file():
        venv = VecNormalize.load(str(run_dir / "vecnormalize.pkl"), venv)
        venv.training = True
    else:
        venv = VecNormalize(venv, norm_obs=n.norm_obs, norm_reward=n.norm_reward,
                            clip_obs=n.clip_obs, clip_reward=n.clip_reward, gamma=cfg.ppo.gamma)  # fmt: skip
    if init is not None:
        # Fine-tune another run's policy (e.g. one trained in simulation, on the live engine).
        init = Path(init)
        if not (init / "model.zip").is_file():
            raise ConfigError(f"--init: {init} has no model.zip")
        # The network and the observation statistics come from `init`; every PPO
        # hyperparameter comes from this config (a longer-horizon gamma must take effect,
        # in the reward normaliser's discounted returns too).
        if (init / "vecnormalize.pkl").is_file():
            venv = VecNormalize.load(str(init / "vecnormalize.pkl"), venv.venv)
            venv.training = True
            venv.gamma = p.gamma
            venv.returns = np.zeros(venv.num_envs)
        model = PPO.load(init / "model.zip", env=venv, tensorboard_log=str(run_dir / "tb"), device="cpu",
                         learning_rate=p.learning_rate, n_steps=p.n_steps, batch_size=p.batch_size,
                         n_epochs=p.n_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda,
                         clip_range=p.clip_range, ent_coef=p.ent_coef, vf_coef=p.vf_coef,
                         max_grad_norm=p.max_grad_norm)  # fmt: skip
    elif resume:
        model = PPO.load(run_dir / "model.zip", env=venv, tensorboard_log=str(run_dir / "tb"))
    else:
        activation = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[p.activation]
        model = PPO(
            "MlpPolicy",
            venv,
            learning_rate=p.learning_rate,
            n_steps=p.n_steps,
            batch_size=p.batch_size,
            n_epochs=p.n_epochs,
            gamma=p.gamma,
            gae_lambda=p.gae_lambda,
            clip_range=p.clip_range,
            ent_coef=p.ent_coef,
            vf_coef=p.vf_coef,
            max_grad_norm=p.max_grad_norm,
            policy_kwargs={
                "net_arch": {"pi": list(p.net_arch), "vf": list(p.net_arch)},
                "activation_fn": activation,
            },  # fmt: skip
            tensorboard_log=str(run_dir / "tb"),
            seed=cfg.seed,
            device="cpu",
            verbose=0,
        )
    warm: dict = {}
    warm_started = time.time()
    if not resume and init is None and cfg.warm_start.expert:
        warm = _warm_start(cfg, model, venv, run_dir, progress)
    warm_wall = time.time() - warm_started
    callbacks = [ServingMetricsCallback(initial_scalars=warm)]
    evaluator = None
    if cfg.eval.every_steps:
        evaluator = BaselineEvalCallback(cfg.eval, run_dir)
        callbacks.append(evaluator)
    if cfg.checkpoint_every_steps:
        callbacks.append(
            CheckpointCallback(
                save_freq=max(cfg.checkpoint_every_steps // cfg.n_envs, 1),
                save_path=str(run_dir / "steps"),
                name_prefix="model",
                save_vecnormalize=True,
            )
        )
    if progress:
        callbacks.append(ProgressCallback(total, evaluator))

    started = time.time()
    model.learn(
        total_timesteps=total,
        callback=CallbackList(callbacks),
        tb_log_name="ppo",
        reset_num_timesteps=not (resume or init is not None),
    )
    wall = time.time() - started
    if evaluator is not None:
        evaluator.run_eval()  # a final figure for the report and the best-model choice
        model.logger.dump(model.num_timesteps)
    model.save(run_dir / "model.zip")
    venv.save(str(run_dir / "vecnormalize.pkl"))
    _write_config(cfg, run_dir, total, wall, resume, evaluator, init, warm_wall)
    venv.close()
    return run_dir


def _warm_start(cfg: AgentConfig, model, venv, run_dir: Path, progress: bool) -> dict:
    from rlspec.agents.warmstart import behaviour_clone, collect, seed_normalization

    w = cfg.warm_start
    if w.expert == "oracle":
        from rlspec.agents.distill import distill

        print(f"warm start: distilling the lookahead oracle ({w.steps:,} labels, "
              f"{w.dagger_rounds} DAgger rounds of {w.dagger_steps:,})")  # fmt: skip
        return distill(cfg, model, venv, run_dir, progress)
    env = _plain_env(cfg, str(cfg.resolve(cfg.distribution)))
    print(
        f"warm start: recording {w.steps:,} decisions of {w.expert!r} on the training distribution"
    )
    demos = collect(env, w.expert, w.steps, seed=cfg.seed + 10_000)
    env.close()
    seed_normalization(venv, demos, cfg.ppo.gamma)
    stats = behaviour_clone(model, venv, demos, w, cfg.ppo.gamma, cfg.seed)
    print(f"warm start: actor agrees with {w.expert} on {stats['bc/agreement']:.1%} of decisions")
    return stats


def _write_config(
    cfg, run_dir: Path, steps: int, wall: float, resume: bool, evaluator, init, warm_wall: float
) -> None:
    path = run_dir / "config.yaml"
    history = []
    if resume and path.is_file():
        history = (yaml.safe_load(path.read_text()) or {}).get("provenance", {}).get("sessions", [])
    history.append({"timesteps": steps, "wall_s": round(wall, 1), "resumed": resume,
                    "warm_start_wall_s": round(warm_wall, 1),
                    "initialised_from": None if init is None else str(init),
                    "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "final_eval_latency_vs_best_baseline": None if evaluator is None else evaluator.last_ratio,
                    "best_eval_latency_vs_best_baseline": None if evaluator is None else evaluator.best_ratio})  # fmt: skip
    resolved = to_dict(dataclasses.replace(cfg, base_dir=""))
    resolved["distribution"] = str(cfg.resolve(cfg.distribution))
    resolved["provenance"] = {**_provenance(), "sessions": history}
    path.write_text(yaml.safe_dump(resolved, sort_keys=False))
