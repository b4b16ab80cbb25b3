"""Typed training configuration (`agents/ppo.yaml`), in the rl-baselines3-zoo spirit: every
hyperparameter explicit, the resolved config saved beside each run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rlspec.agents.warmstart import WarmStartConfig
from rlspec.config import ConfigError, check_range, from_dict, load_yaml
from rlspec.envs.reward import RewardConfig


@dataclass(frozen=True)
class PPOHyperparams:
    learning_rate: float = 3e-4
    n_steps: int = 512  # per environment, per update
    batch_size: int = 256
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    activation: Literal["tanh", "relu"] = "tanh"

    def __post_init__(self) -> None:
        check_range("ppo.learning_rate", self.learning_rate, 1e-7, 1.0)
        check_range("ppo.n_steps", self.n_steps, lo=8)
        check_range("ppo.batch_size", self.batch_size, lo=2)
        check_range("ppo.n_epochs", self.n_epochs, lo=1)
        check_range("ppo.gamma", self.gamma, 0.0, 1.0)
        check_range("ppo.gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_range("ppo.clip_range", self.clip_range, 0.0, 1.0)
        check_range("ppo.ent_coef", self.ent_coef, 0.0, 1.0)
        if not self.net_arch or min(self.net_arch) < 1:
            raise ConfigError(f"ppo.net_arch: positive layer widths required, got {self.net_arch}")


@dataclass(frozen=True)
class NormalizeConfig:
    norm_obs: bool = True
    norm_reward: bool = True
    clip_obs: float = 10.0
    clip_reward: float = 10.0


@dataclass(frozen=True)
class EvalConfig:
    every_steps: int = 25_000  # total env steps between evaluations (0 = never)
    scenarios: list[str] = field(default_factory=lambda: ["bursty", "flash-crowd", "kv-pressure"])
    baselines: list[str] = field(
        default_factory=lambda: ["static:0", "static:2", "goodput", "nightjar"]
    )
    duration_s: float = 60.0  # each eval scenario is cut to this length to stay quick
    seed: int = 1000
    # The scenarios on the training host (`Scenario.on_host`): its profile (None: each
    # scenario's own) and its capacity relative to the one their rates were written for.
    profile: str | None = None
    load_scale: float = 1.0

    def __post_init__(self) -> None:
        check_range("eval.every_steps", self.every_steps, lo=0)
        check_range("eval.duration_s", self.duration_s, lo=1.0)
        check_range("eval.load_scale", self.load_scale, lo=1e-3)
        if not self.scenarios:
            raise ConfigError("eval.scenarios: at least one scenario")


@dataclass(frozen=True)
class AgentConfig:
    algo: Literal["ppo"] = "ppo"
    # A training distribution (envs/distributions/) or a single scenario YAML; relative to this file.
    distribution: str = "../envs/distributions/h100-train.yaml"
    backend: Literal["sim", "vllm"] = "sim"
    n_envs: int = 4
    vec_env: Literal["dummy", "subproc"] = "dummy"
    total_timesteps: int = 300_000
    max_episode_steps: int = 4000
    decision_interval: int | None = None  # None: the scenario's
    checkpoint_every_steps: int = 50_000
    seed: int = 0
    torch_threads: int = 1
    ppo: PPOHyperparams = field(default_factory=PPOHyperparams)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    warm_start: WarmStartConfig = field(default_factory=WarmStartConfig)
    base_dir: str = ""

    def __post_init__(self) -> None:
        check_range("n_envs", self.n_envs, lo=1)
        check_range("total_timesteps", self.total_timesteps, lo=1)
        check_range("max_episode_steps", self.max_episode_steps, lo=1)
        check_range("checkpoint_every_steps", self.checkpoint_every_steps, lo=0)
        check_range("torch_threads", self.torch_threads, lo=1)
        if self.decision_interval is not None:
            check_range("decision_interval", self.decision_interval, lo=1)
        if self.warm_start.expert == "oracle" and self.backend != "sim":
            raise ConfigError(
                "warm_start.expert: 'oracle' rolls out copies of the simulator; it needs "
                f"backend: sim, got backend: {self.backend}"
            )
        if self.backend == "vllm" and (self.n_envs != 1 or self.vec_env != "dummy"):
            raise ConfigError(
                "n_envs: the vllm backend runs one in-process engine; use n_envs: 1, vec_env: dummy"
            )

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p


def load_agent_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    data = load_yaml(path)
    if "base_dir" in data:
        raise ConfigError(f"{path}: base_dir is set by the loader, not the file")
    data["base_dir"] = str(path.resolve().parent)
    return from_dict(AgentConfig, data, f"agent[{path.name}]")
