"""Controllers by name, as the CLI and configs spell them.

`static:K`, `batch-table`, `goodput`, `latency-model`, `nightjar`, `policy:PATH`, and the
diagnostic `cycle:K1/K2/...`. The analytical controllers' knobs come from
`agents/baselines.yaml` (BaselinesConfig).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rlspec.config import ConfigError, from_dict, load_yaml
from rlspec.control.base import Controller
from rlspec.control.batch_table import BatchTableConfig, BatchTableController
from rlspec.control.cycle import CycleController
from rlspec.control.goodput import GoodputConfig, GoodputController
from rlspec.control.latency_model import LatencyModelConfig, LatencyModelController
from rlspec.control.nightjar import NightjarConfig, NightjarController
from rlspec.control.static import StaticController

ANALYTICAL = ("static:0", "static:1", "static:2", "static:3", "static:4",
              "batch-table", "goodput", "latency-model", "nightjar")  # fmt: skip
NAMES = "static:K, batch-table, goodput, latency-model, nightjar, policy:PATH, cycle:K1/K2/..."


@dataclass(frozen=True)
class BaselinesConfig:
    goodput: GoodputConfig = field(default_factory=GoodputConfig)
    latency_model: LatencyModelConfig = field(default_factory=LatencyModelConfig)
    nightjar: NightjarConfig = field(default_factory=NightjarConfig)
    batch_table: BatchTableConfig = field(default_factory=BatchTableConfig)

    @classmethod
    def load(cls, path: str | Path) -> BaselinesConfig:
        return from_dict(cls, load_yaml(path), f"baselines[{Path(path).name}]")


def make_controller(spec: str, baselines: BaselinesConfig | None = None) -> Controller:
    b = baselines or BaselinesConfig()
    spec = spec.strip()
    if spec.startswith("static:"):
        try:
            return StaticController(int(spec.split(":", 1)[1]))
        except ValueError as exc:
            raise ConfigError(f"controller {spec!r}: static:K needs an integer K") from exc
    if spec.startswith("cycle:"):
        try:
            ks = [int(k) for k in spec.split(":", 1)[1].split("/")]
        except ValueError as exc:
            raise ConfigError(f"controller {spec!r}: cycle:K1/K2/... needs integers") from exc
        return CycleController(ks)
    if spec.startswith("policy:"):
        from rlspec.control.policy import PolicyController

        return PolicyController.load(spec.split(":", 1)[1])
    simple = {
        "batch-table": lambda: BatchTableController(b.batch_table),
        "goodput": lambda: GoodputController(b.goodput),
        "latency-model": lambda: LatencyModelController(b.latency_model),
        "nightjar": lambda: NightjarController(b.nightjar),
    }
    if spec not in simple:
        raise ConfigError(f"controller: unknown {spec!r}; allowed: {NAMES}")
    return simple[spec]()


def parse_controllers(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ConfigError(f"--controllers: give a comma-separated list of {NAMES}")
    return names
