"""Training scenarios sampled from a distribution declared in YAML (`envs/distributions/`).

A policy that has only seen one load level learns that level; one trained across rates,
burstiness, acceptance, lengths, memory sizes and host speed learns the mechanism. Each reset draws
one scenario: a workload template chosen by weight with every `[lo, hi]` range sampled
uniformly, on top of a base scenario that fixes the profile, engine and SLOs. The shipped
evaluation scenarios (`envs/*.yaml`) and `envs/held-out/` are never sampled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlspec.config import ConfigError, check_range, from_dict, load_yaml
from rlspec.perf.acceptance import AcceptanceConfig
from rlspec.perf.step_time import SpeedDrift
from rlspec.scenario import Scenario, load_scenario
from rlspec.workload import LengthConfig, WorkloadConfig

Range = list[float]  # [lo, hi], sampled uniformly; lo == hi fixes the value


@dataclass(frozen=True)
class WorkloadTemplate:
    kind: str
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)  # field -> value or [lo, hi]
    # this template's own length ranges (e.g. long prompts with a few output tokens, the
    # shape of code completion); None: the distribution's
    prompt_mean: Range | None = None
    output_mean: Range | None = None
    # this template's own episode length: code-completion traffic at these rates queues up over
    # minutes, deeper than a chat episode of the distribution's length ever gets; None: the
    # distribution's
    duration_s: Range | None = None

    def __post_init__(self) -> None:
        check_range("workloads[].weight", self.weight, lo=0.0)
        if self.kind == "trace":
            raise ConfigError("workloads[].kind: trace replay is for evaluation, not sampling")
        for name in ("prompt_mean", "output_mean", "duration_s"):
            if getattr(self, name) is not None:
                _check_range_pair(f"workloads[].{name}", getattr(self, name))


@dataclass(frozen=True)
class ScenarioDistribution:
    name: str
    base: str  # scenario (name in envs/ or path) providing profile, engine, SLOs
    workloads: list[WorkloadTemplate]
    duration_s: Range = field(default_factory=lambda: [30.0, 90.0])
    prompt_mean: Range = field(default_factory=lambda: [256.0, 1024.0])
    output_mean: Range = field(default_factory=lambda: [128.0, 384.0])
    acceptance_mean: Range = field(default_factory=lambda: [0.5, 0.9])
    # The acceptance mean's change over an episode (end minus start; None: constant). A request
    # set's acceptance moves as its text does (the Azure code evaluation set verifies 0.45 before
    # its first burst and 0.33 in its second, notes/calibration.md section 31), and a policy that
    # never met a moving mean in training reads a slow estimate as the present. When given, the
    # mean moves linearly by arrival time from the drawn `acceptance_mean` to that plus the drawn
    # change at the episode's end (kept inside [0.05, 0.95]).
    acceptance_change: Range | None = None
    gpu_memory_utilization: Range = field(default_factory=lambda: [0.35, 0.9])
    # SpeedDrift field -> [lo, hi]: the simulated host's departure from the profile (domain
    # randomisation); fields left out keep the base scenario's value.
    speed_drift: dict[str, Range] = field(default_factory=dict)
    # The simulated engine's price of a token count's first step (SpeedDrift.first_meeting,
    # ((lower, factor), ...) by band; not drawn). Each episode runs on a fresh simulated engine,
    # which meets every count for the first time, so a policy trained with it learns what the
    # variety of its token counts costs a CPU engine (notes/calibration.md section 33).
    first_meeting: list[list[float]] | None = None
    # The same scenarios on another host: the base scenario's profile replaced (None: its
    # own), and every arrival rate times `load_scale` (that host's capacity relative to the
    # one the rates were written for), so the loads span the same range relative to capacity.
    profile: str | None = None
    load_scale: float = 1.0
    base_dir: str = ""

    def __post_init__(self) -> None:
        if not self.workloads:
            raise ConfigError("workloads: at least one template is required")
        for name in ("duration_s", "prompt_mean", "output_mean", "acceptance_mean",
                     "gpu_memory_utilization"):  # fmt: skip
            _check_range_pair(name, getattr(self, name))
        if self.acceptance_change is not None:
            _check_range_pair("acceptance_change", self.acceptance_change)
            if not -1.0 <= self.acceptance_change[0] <= self.acceptance_change[1] <= 1.0:
                raise ConfigError(f"acceptance_change: {self.acceptance_change} must lie within [-1, 1]")
        if self.first_meeting is not None:
            SpeedDrift(first_meeting=self.first_meeting)  # raises naming speed_drift.first_meeting
        allowed = [f.name for f in dataclasses.fields(SpeedDrift) if f.type in (float, "float")]  # ranges of numbers only
        for name, r in self.speed_drift.items():
            if name not in allowed:
                raise ConfigError(f"speed_drift.{name}: unknown field; allowed: {allowed}")
            _check_range_pair(f"speed_drift.{name}", r)
        check_range("load_scale", self.load_scale, lo=1e-3)

    def sample(self, rng: np.random.Generator) -> Scenario:
        base = self._base()
        weights = np.array([t.weight for t in self.workloads], dtype=float)
        t = self.workloads[int(rng.choice(len(weights), p=weights / weights.sum()))]
        duration = _draw(rng, t.duration_s or self.duration_s)
        prompt_mean = _draw(rng, t.prompt_mean or self.prompt_mean)
        output_mean = _draw(rng, t.output_mean or self.output_mean)
        prompt = LengthConfig(dist="lognormal", mean=prompt_mean, cv=0.8, min=16, max=8192)
        # floor: 8 tokens, or half the mean when that is smaller (a mean of 4 is a few tokens)
        floor = min(8, max(1, round(output_mean / 2)))
        output = LengthConfig(dist="lognormal", mean=output_mean, cv=0.8, min=floor, max=2048)
        params = {k: (_draw(rng, v) if isinstance(v, list) else v) for k, v in t.params.items()}
        if t.kind == "flash":
            params["spike_start_s"] = params.get("spike_start_s", 0.0) % duration
        workload = WorkloadConfig(
            kind=t.kind, duration_s=duration, prompt=prompt, output=output, **params
        )
        if self.load_scale != 1.0:
            workload = workload.at_load(self.load_scale)
        acceptance = dataclasses.replace(base.acceptance, mean=_draw(rng, self.acceptance_mean))
        if self.acceptance_change is not None:  # drawn only when asked, as speed_drift below
            end = float(np.clip(acceptance.mean + _draw(rng, self.acceptance_change), 0.05, 0.95))
            acceptance = dataclasses.replace(acceptance, drift=[(0.0, acceptance.mean), (duration, end)])
        engine = dataclasses.replace(
            base.engine, gpu_memory_utilization=_draw(rng, self.gpu_memory_utilization)
        )
        drift = base.speed_drift
        if self.speed_drift:  # drawn only when asked, so older distributions sample as before
            drift = dataclasses.replace(
                drift, **{k: _draw(rng, r) for k, r in self.speed_drift.items()}
            )
        if self.first_meeting is not None:
            drift = dataclasses.replace(drift, first_meeting=self.first_meeting)
        return base.replace(
            name=f"{self.name}:{t.kind}", workload=workload, acceptance=acceptance, engine=engine,
            speed_drift=drift,
        )

    def _base(self) -> Scenario:
        path = Path(self.base)
        if path.suffix and not path.is_absolute() and self.base_dir:
            path = Path(self.base_dir) / path
        return load_scenario(path if path.suffix else self.base).on_host(self.profile)


def _check_range_pair(name: str, r: Range) -> None:
    if len(r) != 2 or r[0] > r[1]:
        raise ConfigError(f"{name}: expected [lo, hi] with lo <= hi, got {r}")


def _draw(rng: np.random.Generator, r: Range | float) -> float:
    if not isinstance(r, list):
        return float(r)
    _check_range_pair("range", r)
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _resolved_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's keys over those of the distribution it `extends:` (a path relative to it),
    with the parent's relative `base:` re-anchored so it still names the same scenario."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path.name}: extends: cycle through {[p.name for p in seen]}")
    data = load_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    parent_path = path.parent / parent
    if not parent_path.is_file():
        raise ConfigError(f"{path.name}: extends: no distribution file {parent_path}")
    inherited = _resolved_yaml(parent_path, (*seen, path))
    base = inherited.get("base")
    if isinstance(base, str) and Path(base).suffix and not Path(base).is_absolute():
        inherited["base"] = str(parent_path.parent / base)
    return {**inherited, **data}


def load_distribution(path: str | Path) -> ScenarioDistribution:
    path = Path(path)
    data = _resolved_yaml(path)
    data["base_dir"] = str(path.resolve().parent)
    dist = from_dict(ScenarioDistribution, data, f"distribution[{path.name}]")
    # Fail now, not at the first reset, if a template names a bad field or range.
    dist.sample(np.random.default_rng(0))
    for i, t in enumerate(dist.workloads):
        try:
            dataclasses.replace(dist, workloads=[t]).sample(np.random.default_rng(i))
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{path.name}: workloads[{i}] ({t.kind}): {exc}") from exc
    return dist


__all__ = ["AcceptanceConfig", "ScenarioDistribution", "WorkloadTemplate", "load_distribution"]
