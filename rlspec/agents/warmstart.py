"""Warm start: behaviour cloning from an analytical controller before PPO.

The reward of one decision is dominated by the workload, not by the action, so PPO from a
random policy spends most of its budget rediscovering what SmartSpec's goodput rule already
knows (and a uniform policy offloads the drafter one step in six, which is ruinous). Starting
the actor from the expert's decisions and the critic from the expert's returns lets PPO spend
its budget on what the expert gets wrong: queues, bursts and memory pressure.

1. Roll the expert through the training distribution, recording observations, its actions
   and rewards (plain env loop: the expert reads the env's feature tracker).
2. Seed VecNormalize's observation and return statistics with that data.
3. Fit the actor by cross-entropy to the expert's actions and the critic to the normalised
   discounted returns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlspec.config import check_range
from rlspec.control.registry import make_controller
from rlspec.envs.spec_env import SpecDecodeEnv
from rlspec.evaluate import control_context


@dataclass(frozen=True)
class WarmStartConfig:
    # Any controller name to clone; "oracle" distils the lookahead oracle's action costs
    # (rlspec/agents/distill.py, simulator only); None trains from scratch.
    expert: str | None = "goodput"
    steps: int = 40_000  # expert decisions to record (oracle: labels of DAgger round 0)
    epochs: int = 15
    batch_size: int = 512
    learning_rate: float = 1e-3
    label_smoothing: float = 0.1  # keep some probability on other actions so PPO explores
    # Oracle distillation only:
    oracle_actor: str = "goodput"  # whose states round 0 visits
    oracle_beta: float = 0.5  # round 0 plays the oracle's choice with this probability
    oracle_horizon_s: float = 6.0  # rollout window of each label, at least
    oracle_horizon_steps: int = 60  # ...and at least this many iterations (OracleConfig)
    dagger_rounds: int = 1  # further rounds, each visiting the states of the policy so far
    dagger_steps: int = 10_000  # labels per further round
    workers: int = 2  # labelling processes

    def __post_init__(self) -> None:
        check_range("warm_start.steps", self.steps, lo=1)
        check_range("warm_start.oracle_beta", self.oracle_beta, 0.0, 1.0)
        check_range("warm_start.oracle_horizon_s", self.oracle_horizon_s, lo=1e-3)
        check_range("warm_start.oracle_horizon_steps", self.oracle_horizon_steps, lo=0)
        check_range("warm_start.dagger_rounds", self.dagger_rounds, lo=0)
        check_range("warm_start.dagger_steps", self.dagger_steps, lo=1)
        check_range("warm_start.workers", self.workers, lo=1)
        check_range("warm_start.epochs", self.epochs, lo=1)
        check_range("warm_start.batch_size", self.batch_size, lo=1)
        check_range("warm_start.learning_rate", self.learning_rate, 1e-7, 1.0)
        check_range("warm_start.label_smoothing", self.label_smoothing, 0.0, 0.9)


@dataclass
class Demonstrations:
    obs: np.ndarray  # (N, NUM_FEATURES) raw features
    actions: np.ndarray  # (N,) expert action indices
    rewards: np.ndarray  # (N,) raw rewards
    episode_starts: np.ndarray  # (N,) True where an episode begins


def collect(env: SpecDecodeEnv, expert: str, steps: int, seed: int) -> Demonstrations:
    """The expert's decisions over whole episodes until `steps` are recorded."""
    obs_l, act_l, rew_l, start_l = [], [], [], []
    controller = make_controller(expert)
    episode = 0
    while len(act_l) < steps:
        obs, _ = env.reset(seed=seed + episode)
        controller.reset(control_context(env.scenario, env.backend))
        episode += 1
        first, done = True, False
        while not done:
            action = controller.decide(env.tracker).index(env.k_max)
            obs_l.append(obs)
            act_l.append(action)
            start_l.append(first)
            obs, reward, term, trunc, _ = env.step(action)
            rew_l.append(reward)
            first, done = False, term or trunc
    return Demonstrations(
        np.asarray(obs_l, dtype=np.float32),
        np.asarray(act_l),
        np.asarray(rew_l),
        np.asarray(start_l),
    )


def seed_normalization(venv, demos: Demonstrations, gamma: float) -> None:
    """Give VecNormalize the statistics it would have seen running the expert."""
    venv.obs_rms.update(demos.obs)
    running = np.zeros(len(demos.rewards))
    ret = 0.0
    for i, (r, start) in enumerate(zip(demos.rewards, demos.episode_starts, strict=True)):
        ret = (0.0 if start else ret) * gamma + r
        running[i] = ret
    venv.ret_rms.update(running)


def discounted_returns(rewards: np.ndarray, starts: np.ndarray, gamma: float) -> np.ndarray:
    out = np.zeros_like(rewards, dtype=np.float64)
    acc = 0.0
    for i in range(len(rewards) - 1, -1, -1):
        acc = rewards[i] + gamma * acc
        out[i] = acc
        if starts[i]:
            acc = 0.0
    return out


def behaviour_clone(
    model, venv, demos, cfg: WarmStartConfig, gamma: float, seed: int,
    regret: np.ndarray | None = None,
) -> dict:  # fmt: skip
    """Fit the actor and the critic (MSE to normalised returns); returns the fit's figures.

    Without `regret`, the actor is fitted by cross-entropy to `demos.actions`. With an
    (N, A) `regret` (oracle distillation), it minimises the expected regret
    `sum_a pi(a|s) regret[s, a]`, scaled by its mean so the loss is O(1); in both cases
    `label_smoothing` mixes in the cross-entropy to the uniform policy.
    """
    import torch
    import torch.nn.functional as F

    policy = model.policy
    obs = torch.as_tensor(venv.normalize_obs(demos.obs), dtype=torch.float32)
    actions = torch.as_tensor(demos.actions, dtype=torch.long)
    returns = discounted_returns(venv.normalize_reward(demos.rewards), demos.episode_starts, gamma)
    targets = torch.as_tensor(returns, dtype=torch.float32)
    if regret is not None:
        cost = torch.as_tensor(regret / max(float(regret.mean()), 1e-12), dtype=torch.float32)
        labels = cost.argmin(dim=1)
    else:
        labels = actions
    ls = cfg.label_smoothing

    def actor_loss(logits, idx):
        if regret is None:
            return F.cross_entropy(logits, labels[idx], label_smoothing=ls)
        expected = (logits.softmax(dim=1) * cost[idx]).sum(dim=1).mean()
        return (1 - ls) * expected - ls * logits.log_softmax(dim=1).mean()

    optim = torch.optim.Adam(policy.parameters(), lr=cfg.learning_rate)
    gen = torch.Generator().manual_seed(seed)
    n = len(actions)
    policy.set_training_mode(True)
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            logits = policy.get_distribution(obs[idx]).distribution.logits
            values = policy.predict_values(obs[idx]).flatten()
            loss = actor_loss(logits, idx) + 0.5 * F.mse_loss(values, targets[idx])
            optim.zero_grad()
            loss.backward()
            optim.step()
    policy.set_training_mode(False)
    with torch.no_grad():
        values, log_prob, _ = policy.evaluate_actions(obs, labels)
        dist = policy.get_distribution(obs)
        chosen = dist.distribution.probs.argmax(dim=1)
        stats = {"bc/nll": float(-log_prob.mean()),
                 "bc/agreement": (chosen == labels).float().mean().item(),
                 "bc/value_mse": F.mse_loss(values.flatten(), targets).item(),
                 "bc/entropy": dist.entropy().mean().item(), "bc/samples": n}  # fmt: skip
        if regret is not None:  # request-seconds per decision over the best action
            stats["bc/regret_policy"] = float(regret[np.arange(n), chosen.numpy()].mean())
            stats["bc/regret_played"] = float(regret[np.arange(n), demos.actions].mean())
    return stats
