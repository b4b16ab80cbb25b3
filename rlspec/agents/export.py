"""Freeze a trained run into the pure-numpy policy file serving loads (`rlspec export`).

Reads `checkpoints/<run>/model.zip` (SB3 PPO, MlpPolicy) and `vecnormalize.pkl` when
present, and writes `policy.npz` (format: rlspec/control/policy.py): the actor MLP, the
action head, the observation-normalisation statistics, the feature schema, the action map
and provenance. Torch and SB3 are imported here only, at export time. The written file is
checked against the torch policy's logits before `export_policy` returns.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rlspec.config import ConfigError, load_yaml
from rlspec.control.policy import DEFAULT_FILE, FrozenPolicy, save_policy
from rlspec.features import NUM_FEATURES

VECNORM_FILE = "vecnormalize.pkl"
CONFIG_FILE = "config.yaml"


def export_policy(
    run_dir: str | Path, out: str | Path | None = None, model_file: str = "model.zip"
) -> Path:
    """Write the frozen policy of `run_dir/model_file` to `out` (default `run_dir/policy.npz`)."""
    run_dir = Path(run_dir)
    model_path = run_dir / model_file
    if not model_path.is_file():
        raise ConfigError(f"{model_path}: no such model file (an SB3 PPO zip saved by training)")
    import torch
    from stable_baselines3 import PPO

    try:
        model = PPO.load(model_path, device="cpu")
    except Exception as exc:
        raise ConfigError(f"{model_path}: cannot load as an SB3 PPO model ({exc})") from exc
    policy = model.policy
    _check_spaces(model_path, model.observation_space, model.action_space)
    hidden, head, activation = _actor(model_path, policy)

    norm_path = stats_file_for(run_dir, model_path)
    norm = _vecnormalize(norm_path, model.observation_space, model.action_space)
    stats: dict[str, Any] = {}
    if norm is not None and norm.norm_obs:
        stats = dict(obs_mean=norm.obs_rms.mean, obs_var=norm.obs_rms.var)
    if norm is not None:
        stats.update(obs_clip=float(norm.clip_obs), epsilon=float(norm.epsilon))

    provenance = _provenance(run_dir, model_path, model_file, model.num_timesteps)
    provenance["vecnormalize_file"] = norm_path and os.path.relpath(norm_path, run_dir)
    path = save_policy(
        Path(out) if out is not None else run_dir / DEFAULT_FILE,
        hidden,
        head,
        activation,
        provenance=provenance,
        **stats,
    )
    _check_parity(path, policy, norm if norm is not None and norm.norm_obs else None, torch)
    return path


def _check_spaces(where: Path, obs_space, action_space) -> None:
    from gymnasium import spaces

    if not isinstance(obs_space, spaces.Box) or obs_space.shape != (NUM_FEATURES,):
        raise ConfigError(
            f"{where}: model observation space is {obs_space}, but the feature schema has "
            f"{NUM_FEATURES} features (a Box of shape ({NUM_FEATURES},)); it was trained on "
            f"other features: retrain it"
        )
    if not isinstance(action_space, spaces.Discrete) or action_space.n < 2:
        raise ConfigError(
            f"{where}: model action space is {action_space}, expected Discrete(k_max + 2)"
        )


def _actor(where: Path, policy) -> tuple[list, tuple, str]:
    """(hidden [(W, b)], head (W, b), activation) of an SB3 ActorCriticPolicy's actor."""
    from stable_baselines3.common.torch_layers import FlattenExtractor
    from torch import nn

    names = {nn.Tanh: "tanh", nn.ReLU: "relu"}
    extractor = getattr(policy, "pi_features_extractor", policy.features_extractor)
    if not isinstance(extractor, FlattenExtractor):
        raise ConfigError(
            f"{where}: features extractor {type(extractor).__name__} is not supported "
            f"(export handles MlpPolicy's FlattenExtractor)"
        )

    def weights(layer: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
        return layer.weight.detach().cpu().numpy().copy(), layer.bias.detach().cpu().numpy().copy()

    hidden, acts = [], []
    modules = list(policy.mlp_extractor.policy_net)
    for i, m in enumerate(modules):
        if isinstance(m, nn.Linear):
            nxt = modules[i + 1] if i + 1 < len(modules) else None
            if type(nxt) not in names:
                raise ConfigError(
                    f"{where}: actor layer {i} is not followed by a Tanh or ReLU activation "
                    f"({type(nxt).__name__}); unsupported architecture"
                )
            hidden.append(weights(m))
            acts.append(names[type(nxt)])
        elif type(m) not in names:
            raise ConfigError(f"{where}: actor module {type(m).__name__} is not supported")
    if len(set(acts)) > 1:
        raise ConfigError(f"{where}: actor mixes activations {acts}; unsupported")
    activation = acts[0] if acts else names.get(policy.activation_fn, "tanh")
    if not isinstance(policy.action_net, nn.Linear):
        raise ConfigError(f"{where}: action head {type(policy.action_net).__name__} unsupported")
    return hidden, weights(policy.action_net), activation


def stats_file_for(run_dir: Path, model_path: Path) -> Path | None:
    """The VecNormalize file saved with `model_path`: `best_model.zip` pairs with
    `best_vecnormalize.pkl`, SB3's checkpoint `P_N_steps.zip` with `P_vecnormalize_N_steps.pkl`,
    anything else with the run's `vecnormalize.pkl`; None if the run saved none."""
    stem, names = model_path.stem, []
    if m := re.fullmatch(r"(.*)_(\d+)_steps", stem):
        names.append(f"{m[1]}_vecnormalize_{m[2]}_steps.pkl")
    if "model" in stem:
        head, _, tail = stem.rpartition("model")
        names.append(f"{head}vecnormalize{tail}.pkl")
    candidates = [model_path.parent / n for n in names] + [run_dir / VECNORM_FILE]
    return next((p for p in candidates if p.is_file()), None)


def _vecnormalize(path: Path | None, obs_space, act_space):
    """The run's VecNormalize (statistics only), or None when the run did not save one."""
    if path is None:
        return None
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    class Spaces(gym.Env):  # a stand-in env: VecNormalize.load needs one to wrap
        observation_space, action_space = obs_space, act_space

    try:
        norm = VecNormalize.load(str(path), DummyVecEnv([Spaces]))
    except Exception as exc:
        raise ConfigError(f"{path}: cannot load VecNormalize statistics ({exc})") from exc
    if norm.norm_obs and np.shape(norm.obs_rms.mean) != (NUM_FEATURES,):
        raise ConfigError(
            f"{path}: normalisation statistics have shape {np.shape(norm.obs_rms.mean)}, "
            f"expected ({NUM_FEATURES},)"
        )
    return norm


def _provenance(run_dir: Path, model_path: Path, model_file: str, steps: int) -> dict[str, Any]:
    prov: dict[str, Any] = {}
    cfg_path = run_dir / CONFIG_FILE
    if cfg_path.is_file():
        extra = load_yaml(cfg_path).get("provenance")
        if isinstance(extra, dict):
            prov.update(extra)
    prov.update(
        run=run_dir.resolve().name,
        model_file=model_file,
        exported_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        num_timesteps=int(steps),
        sha256_of_model_zip=hashlib.sha256(model_path.read_bytes()).hexdigest(),
    )
    return json.loads(json.dumps(prov, default=str))


def _check_parity(path: Path, policy, norm, torch, n: int = 256) -> None:
    """The frozen file reproduces the torch actor's logits on random observations."""
    frozen = FrozenPolicy(path)
    obs = (np.random.default_rng(0).normal(size=(n, NUM_FEATURES)) * 3).astype(np.float32)
    x = norm.normalize_obs(obs) if norm is not None else obs
    with torch.no_grad():
        t = torch.as_tensor(x, dtype=torch.float32)
        feats = policy.extract_features(t, getattr(policy, "pi_features_extractor", None))
        want = policy.action_net(policy.mlp_extractor.forward_actor(feats)).numpy()
    got = np.stack([frozen.logits(o) for o in obs])
    err = float(np.max(np.abs(got - want)))
    if not err <= 1e-4 * max(1.0, float(np.max(np.abs(want)))):
        path.unlink(missing_ok=True)
        raise ConfigError(f"{path}: exported logits differ from the torch policy by {err:.3g}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, help="training run directory (checkpoints/<run>)")
    p.add_argument(
        "-o", "--out", type=Path, default=None, help=f"output file (default RUN_DIR/{DEFAULT_FILE})"
    )
    p.add_argument(
        "--model-file", default="model.zip", help="model zip inside RUN_DIR (default model.zip)"
    )


def run(args: argparse.Namespace) -> int:
    path = export_policy(args.run_dir, args.out, args.model_file)
    p = FrozenPolicy(path)
    print(
        f"wrote {path}: k_max={p.k_max}, hidden={p.hidden_sizes}, {p.activation}, "
        f"normalize={p.normalize}"
    )
    return 0
