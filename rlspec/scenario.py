"""A scenario: one deployment under one workload (a YAML file in `envs/`).

It names the hardware/model profile, the engine limits, the workload, the acceptance
behaviour of the model pair on that workload's data, the SLOs and how often a controller
decides. Like rl-baselines3-zoo's hyperparameter files, a scenario is the unit everything
else (eval, sweep, the Gymnasium env, training distributions) is keyed by.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlspec.config import ConfigError, check_range, from_dict, load_yaml
from rlspec.perf.acceptance import AcceptanceConfig
from rlspec.perf.profile import Profile, load_profile
from rlspec.perf.step_time import SpeedDrift
from rlspec.sim.config import EngineConfig
from rlspec.workload import Request, WorkloadConfig, generate

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "envs"


@dataclass(frozen=True)
class SLOConfig:
    ttft_s: float = 2.0  # time to first token
    tpot_s: float = 0.1  # time per output token after the first

    def __post_init__(self) -> None:
        check_range("slo.ttft_s", self.ttft_s, lo=0.0)
        check_range("slo.tpot_s", self.tpot_s, lo=0.0)


@dataclass(frozen=True)
class LiveEngineConfig:
    """The model pair and vLLM settings for `--backend vllm` (paths relative to the file).

    Engine limits (k_max, max_num_seqs, max_num_batched_tokens) come from `engine:`; block
    size and memory share here describe the real engine, not the simulated GPU.
    """

    model: str = "../../models/tiny/target"
    draft_model: str | None = "../../models/tiny/draft"
    max_model_len: int = 2048
    gpu_memory_utilization: float = 0.3  # on CPU: the share of host memory vLLM reserves
    kv_cache_memory_bytes: int | None = None
    block_size: int | None = None  # None: vLLM's default for the device
    dtype: str = "auto"
    # "measured": the virtual clock advances by measured step times (the real engine's
    # speed); "profile": by this scenario's cost model for the iterations the engine ran
    # (real tokens and acceptance, reproducible timing).
    clock: str = "measured"

    def __post_init__(self) -> None:
        if self.clock not in ("measured", "profile"):
            raise ConfigError(f"live.clock: {self.clock!r} is not one of ['measured', 'profile']")
        check_range("live.max_model_len", self.max_model_len, lo=16)
        check_range("live.gpu_memory_utilization", self.gpu_memory_utilization, 0.01, 1.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    workload: WorkloadConfig
    profile: str = "h100-llama8b-1b"  # shipped profile name or path to a profile YAML
    description: str = ""
    engine: EngineConfig = field(default_factory=EngineConfig)
    acceptance: AcceptanceConfig = field(default_factory=AcceptanceConfig)
    slo: SLOConfig = field(default_factory=SLOConfig)
    live: LiveEngineConfig | None = None  # the real engine for `--backend vllm`
    decision_interval: int = 8  # engine iterations per controller decision
    # How the simulated engine's speed departs from `profile` (controllers still see the
    # profile): training distributions randomise it; evaluation scenarios leave it at none.
    speed_drift: SpeedDrift = field(default_factory=SpeedDrift)
    seed: int = 0
    base_dir: str = ""  # directory relative paths resolve against (set by `load_scenario`)

    def __post_init__(self) -> None:
        check_range("decision_interval", self.decision_interval, lo=1)

    def load_profile(self) -> Profile:
        path = Path(self.profile)
        if path.suffix and not path.is_absolute() and self.base_dir:
            path = Path(self.base_dir) / path
        return load_profile(path if path.suffix else self.profile)

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p

    def requests(self, seed: int | None = None) -> list[Request]:
        """The workload's requests; a seed of its own keeps them identical across controllers."""
        rng = np.random.default_rng(self.seed if seed is None else seed)
        return generate(self.workload, rng, Path(self.base_dir) if self.base_dir else None)

    def replace(self, **changes: Any) -> Scenario:
        return dataclasses.replace(self, **changes)

    def on_host(self, profile: str | None = None, load_scale: float = 1.0) -> Scenario:
        """This scenario on another host: its cost model `profile` (None: its own) and
        every arrival rate times `load_scale`, that host's capacity relative to the one the
        rates were written for, so it is loaded alike."""
        sc = self if profile is None else self.replace(profile=profile)
        return sc if load_scale == 1.0 else sc.replace(workload=self.workload.at_load(load_scale))

    def shortened(self, duration_s: float) -> Scenario:
        """The first `duration_s` seconds of the workload (quick evaluations)."""
        w = self.workload
        if w.duration_s is not None and w.duration_s <= duration_s:
            return self
        return self.replace(workload=dataclasses.replace(w, duration_s=duration_s))

    def with_rate(self, rate: float) -> Scenario:
        """The same scenario at another mean request rate (for sweeps)."""
        w = self.workload
        if w.kind in ("poisson", "gamma"):
            return self.replace(workload=dataclasses.replace(w, rate=rate))
        raise ValueError(
            f"scenario {self.name!r}: sweeping the rate needs a poisson or gamma workload, "
            f"got kind {w.kind!r}"
        )


def load_scenario(path_or_name: str | Path) -> Scenario:
    """A scenario YAML by path, or by name from the shipped `envs/` folder."""
    path = Path(path_or_name)
    if not path.suffix:
        path = SCENARIO_DIR / f"{path_or_name}.yaml"
    data = load_yaml(path)
    if "base_dir" in data:
        raise ValueError(f"{path}: base_dir is set by the loader, not the file")
    data["base_dir"] = str(path.resolve().parent)
    data.setdefault("name", path.stem)
    return from_dict(Scenario, data, f"scenario[{path.name}]")
