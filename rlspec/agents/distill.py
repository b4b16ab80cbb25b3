"""Oracle distillation: a DAgger warm start whose labels are the costs of every action.

Cloning `goodput` gives PPO a policy that ties goodput and nothing more (notes/headroom.md):
in this simulator goodput is close to step-optimal, and PPO's gradient on a reward that
the workload dominates is too noisy to find the few percent left. The lookahead oracle
(rlspec/oracle.py) finds them by rolling every action forward on a copy of the simulator.
It sees the future, so its single best action is partly luck; what a feature-only policy
can learn is the action that is cheapest *on average* over the futures consistent with what
it observes. So each visited state is labelled with the rollout cost of every action, and
the actor minimises the expected regret `sum_a pi(a|s) (c_a - min_b c_b)`, whose minimiser
puts its mass on `argmin_a E[c_a | features]` (cost-sensitive classification).

DAgger (Ross et al., 2011): round 0 visits the states of `expert` (goodput), mixed with the
oracle's own choice with probability `beta`; each later round visits the states of the
policy fitted so far, and the fit is redone on all labels gathered. Labelling is the cost:
every decision plays `k_max + 2` rollouts, so episodes run in parallel worker processes,
in a fixed order, so that the same seed gives the same labels whatever the worker count.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from rlspec.control.registry import make_controller
from rlspec.envs.reward import RewardConfig
from rlspec.evaluate import control_context
from rlspec.oracle import LookaheadOracle, OracleConfig


@dataclass
class OracleLabels:
    obs: np.ndarray  # (N, NUM_FEATURES) raw features of the visited states
    costs: np.ndarray  # (N, k_max + 2) rollout request-seconds of each action
    actions: np.ndarray  # (N,) the action that was played
    rewards: np.ndarray  # (N,) raw env reward of the played action
    episode_starts: np.ndarray  # (N,) True where an episode begins

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def regret(self) -> np.ndarray:
        """(N, A) request-seconds each action costs over the best one in its state."""
        return self.costs - self.costs.min(axis=1, keepdims=True)

    def save(self, path: Path, meta: dict) -> None:
        arrays = {f: getattr(self, f) for f in _FIELDS}
        np.savez_compressed(path, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)

    @classmethod
    def load(cls, path: Path, meta: dict | None = None) -> OracleLabels | None:
        """The labels in `path`; None if `meta` is given and the file was made otherwise."""
        with np.load(path) as z:
            if meta is not None and str(z["meta"]) != json.dumps(meta, sort_keys=True):
                return None
            return cls(*(z[f] for f in _FIELDS))

    @classmethod
    def concat(cls, parts: list[OracleLabels]) -> OracleLabels:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))


_FIELDS = tuple(f.name for f in fields(OracleLabels))


@dataclass(frozen=True)
class LabelJob:
    """One episode to label; everything a worker process needs to rebuild its env."""

    distribution: str
    reward: RewardConfig
    max_episode_steps: int
    decision_interval: int | None
    seed: int
    actor: str  # controller spec whose states are visited (`goodput`, `policy:FILE`)
    beta: float  # probability of playing the oracle's choice instead of the actor's
    horizon_s: float
    horizon_steps: int


def label_episode(job: LabelJob) -> OracleLabels:
    """Play one episode of the training distribution, labelling every decision."""
    from rlspec.envs import make_randomized_env

    env = make_randomized_env(job.distribution, reward=job.reward,
                              max_episode_steps=job.max_episode_steps,
                              decision_interval=job.decision_interval)  # fmt: skip
    obs, _ = env.reset(seed=job.seed)
    ctx = control_context(env.scenario, env.backend)
    oracle = LookaheadOracle(
        env.backend, OracleConfig(horizon_s=job.horizon_s, horizon_steps=job.horizon_steps))
    actor = make_controller(job.actor)
    oracle.reset(ctx)
    actor.reset(ctx)
    rng = np.random.default_rng(job.seed)
    rows: list[tuple] = []
    done = False
    while not done:
        costs = oracle.action_costs(env.tracker)
        action = actor.decide(env.tracker).index(env.k_max)  # every step: actors keep state
        if rng.random() < job.beta:
            action = int(np.argmin(costs))
        start = not rows
        next_obs, reward, term, trunc, _ = env.step(action)
        rows.append((obs, costs, action, reward, start))
        obs, done = next_obs, term or trunc
    env.close()
    o, c, a, r, s = zip(*rows, strict=True)
    return OracleLabels(np.asarray(o, dtype=np.float32), np.asarray(c), np.asarray(a),
                        np.asarray(r), np.asarray(s))  # fmt: skip


def _in_order(pool: Executor, jobs: Iterator[LabelJob], ahead: int) -> Iterator[OracleLabels]:
    """Results in submission order, `ahead` episodes in flight."""
    pending: deque[Future] = deque(pool.submit(label_episode, next(jobs)) for _ in range(ahead))
    while pending:
        result = pending.popleft().result()
        pending.append(pool.submit(label_episode, next(jobs)))
        yield result


def collect_labels(
    template: LabelJob, steps: int, workers: int = 1, progress: bool = True
) -> OracleLabels:
    """Whole episodes (seeds `template.seed`, +1, ...) until `steps` decisions are labelled.

    The episodes kept are the first ones in seed order that reach `steps`, so the labels
    do not depend on `workers` or on which worker finishes first."""
    from tqdm import tqdm

    jobs = (replace(template, seed=template.seed + i) for i in itertools.count())
    parts: list[OracleLabels] = []
    with (
        tqdm(total=steps, desc=f"oracle labels ({template.actor})", unit="decision",
             disable=not progress) as bar,
        # spawn: forking a process that runs threads (tqdm's monitor, BLAS, torch) can hang
        ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool,
    ):  # fmt: skip
        done = 0
        for part in _in_order(pool, jobs, ahead=workers):
            parts.append(part)
            bar.update(min(len(part), steps - done))
            done += len(part)
            if done >= steps:
                pool.shutdown(wait=True, cancel_futures=True)
                break
    return OracleLabels.concat(parts)


def _weights_digest(path: Path) -> str:
    """Digest of a frozen policy's arrays, not of its metadata (which has export times)."""
    h = hashlib.sha256()
    with np.load(path, allow_pickle=False) as z:
        for name in sorted(n for n in z.files if n != "meta"):
            h.update(name.encode())
            h.update(np.ascontiguousarray(z[name]).tobytes())
    return h.hexdigest()


def _ground_digest(distribution: str, samples: int = 16) -> str:
    """The training ground by content: scenarios drawn from the distribution (file paths
    left out) and the profile each one simulates. A clone at another path reuses shipped
    labels; a refitted profile or an edited range relabels."""
    from rlspec.config import load_yaml
    from rlspec.envs.distribution import load_distribution
    from rlspec.scenario import load_scenario

    h = hashlib.sha256()
    if "workload" in load_yaml(distribution):
        drawn = [load_scenario(distribution)]
    else:
        dist = load_distribution(distribution)
        rng = np.random.default_rng(0)
        drawn = [dist.sample(rng) for _ in range(samples)]
    for sc in drawn:
        h.update(repr(sc.replace(base_dir="")).encode())
        h.update(repr(sc.load_profile()).encode())
    return h.hexdigest()


def cached_labels(
    path: Path, template: LabelJob, steps: int, workers: int, progress: bool
) -> OracleLabels:
    """`collect_labels`, reusing `path` when it holds labels made by the same job.

    Labelling is most of a distillation run's time; a run stopped after it, or re-run to
    change the fit, keeps its labels. The distribution is identified by its content and a
    policy actor by its weights' digest."""
    meta = {"job": {k: v for k, v in vars(template).items() if k != "reward"},
            "reward": vars(template.reward), "steps": steps}  # fmt: skip
    meta["job"]["distribution"] = _ground_digest(template.distribution)
    if template.actor.startswith("policy:"):
        meta["actor_sha256"] = _weights_digest(Path(template.actor.removeprefix("policy:")))
        meta["job"]["actor"] = "policy"
    if path.is_file() and (labels := OracleLabels.load(path, meta)) is not None:
        print(f"reusing {len(labels):,} oracle labels from {path}")
        return labels
    labels = collect_labels(template, steps, workers, progress)
    labels.save(path, meta)
    return labels


def distill(cfg, model, venv, run_dir: Path, progress: bool = True) -> dict:
    """DAgger over oracle labels into `model` (an SB3 PPO) and `venv` (its VecNormalize).

    Writes `run_dir/dagger/`: each round's labels (`labels-<r>.npz`, enough to refit) and
    the frozen policy that drove the next round (`round-<r>/policy.npz`)."""
    from rlspec.agents.export import export_policy
    from rlspec.agents.warmstart import behaviour_clone, seed_normalization

    w = cfg.warm_start
    out = Path(run_dir) / "dagger"
    out.mkdir(parents=True, exist_ok=True)
    template = LabelJob(str(cfg.resolve(cfg.distribution).resolve()), cfg.reward, cfg.max_episode_steps,
                        cfg.decision_interval, cfg.seed + 10_000, w.oracle_actor, w.oracle_beta,
                        w.oracle_horizon_s, w.oracle_horizon_steps)  # fmt: skip
    parts = [cached_labels(out / "labels-0.npz", template, w.steps, w.workers, progress)]
    seed_normalization(venv, parts[0], cfg.ppo.gamma)
    stats: dict = {}
    for r in range(w.dagger_rounds + 1):
        labels = OracleLabels.concat(parts)
        stats = behaviour_clone(model, venv, labels, w, cfg.ppo.gamma, cfg.seed + r, labels.regret)
        print(f"dagger round {r}: {len(labels):,} labels, policy regret "
              f"{stats['bc/regret_policy']:.3g} vs played {stats['bc/regret_played']:.3g} "
              f"request-s per decision, agrees with the oracle on {stats['bc/agreement']:.1%}")  # fmt: skip
        if r == w.dagger_rounds:
            break
        driver = out / f"round-{r}"
        driver.mkdir(exist_ok=True)
        model.save(driver / "model.zip")
        venv.save(str(driver / "vecnormalize.pkl"))
        policy = export_policy(driver)
        job = replace(template, seed=template.seed + 1_000_000 * (r + 1),
                      actor=f"policy:{policy}", beta=0.0)  # fmt: skip
        labels_path = out / f"labels-{r + 1}.npz"
        parts.append(cached_labels(labels_path, job, w.dagger_steps, w.workers, progress))
    stats["bc/dagger_rounds"] = w.dagger_rounds
    return stats
