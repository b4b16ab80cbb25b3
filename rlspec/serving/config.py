"""What `rlspec serve` hands to vLLM's engine-core process, validated on both sides.

The CLI process validates everything (controller, policy file, profile, ranges) before
vLLM starts, then passes a `ServeConfig` as JSON in the environment variable
`RLSPEC_SERVE_CONFIG`. vLLM starts its engine core (and workers) in other processes; the
scheduler there (`rlspec.serving.hook.ServingScheduler`) reads the variable back with
`ServeConfig.from_env()`, which validates it again, and builds the controller with
`build_controller()`, the same function the CLI used.

Nothing here imports vLLM.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rlspec.config import ConfigError, check_range

ENV_VAR = "RLSPEC_SERVE_CONFIG"
DEFAULT_PROFILE = "h100-llama8b-1b"  # the profile the shipped policy was trained on
# `module.path:ClassName` (a Controller subclass with a no-argument constructor).
_IMPORT_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_REGISTRY_PREFIXES = ("static:", "policy:")


@dataclass(frozen=True)
class ServeConfig:
    """The controller side of one `rlspec serve` deployment."""

    controller: str  # static:K | batch-table | goodput | latency-model | nightjar |
    #                  policy:PATH | module.path:ClassName
    draft_model: str  # draft model folder (its size is the KV hold-back)
    k_max: int = 4  # the engine's num_speculative_tokens
    decision_interval: int = 8  # scheduling steps per decision (as in training)
    decision_budget_us: float = 500.0  # slower decisions fall back to safe_k
    safe_k: int = 0  # k used when the controller fails or is too slow
    profile: str = DEFAULT_PROFILE  # cost model of the analytical controllers and features
    baselines: str | None = None  # agents/baselines.yaml-style knobs of analytical controllers
    allow_offload: bool = True  # False: an offload action becomes k=0, drafter resident
    kv_holdback: bool = False  # hold back the drafter's weight bytes of KV while resident
    refill_on_reload: bool = True  # recompute the drafter's stale KV after a reload
    log_interval_s: float = 10.0  # period of the summary log line (0 = off)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.controller, str) or not self.controller.strip():
            raise ConfigError("serve.controller: a controller spec is required")
        if not isinstance(self.draft_model, str) or not self.draft_model:
            raise ConfigError("serve.draft_model: a draft model folder is required")
        for name in ("k_max", "decision_interval", "safe_k"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ConfigError(f"serve.{name}: expected an integer, got {v!r}")
        check_range("serve.k_max (--k-max)", self.k_max, 1, 16)
        check_range("serve.decision_interval (--decision-interval)", self.decision_interval, 1)
        check_range("serve.safe_k (--safe-k)", self.safe_k, 0, self.k_max)
        check_range("serve.decision_budget_us (--decision-budget-us)", self.decision_budget_us, 1.0)
        check_range("serve.log_interval_s", self.log_interval_s, 0.0)
        for name in ("allow_offload", "kv_holdback", "refill_on_reload"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"serve.{name}: expected true or false")

    # ------------------------------------------------------------------ transport
    def to_env(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{ENV_VAR}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{ENV_VAR}: expected a JSON object")
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"{ENV_VAR}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{ENV_VAR}: {exc}") from exc

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServeConfig:
        env = os.environ if environ is None else environ
        text = env.get(ENV_VAR)
        if not text:
            raise ConfigError(
                f"{ENV_VAR} is not set: the rlspec serving scheduler is configured by "
                "`rlspec serve`, which sets it (see notes/serving.md)"
            )
        return cls.from_json(text)


# ---------------------------------------------------------------------- controllers
def build_controller(spec: str, baselines: str | None = None) -> Any:
    """A Controller from a spec: the registry's names, `policy:PATH`, or `module:Class`.

    Raises ConfigError (PolicyLoadError for policy files) with the reason.
    """
    from rlspec.control.base import Controller
    from rlspec.control.registry import BaselinesConfig, make_controller

    spec = spec.strip()
    if _IMPORT_SPEC.match(spec) and not spec.startswith(_REGISTRY_PREFIXES):
        mod_name, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"controller {spec!r}: cannot import {attr} from {mod_name} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        try:
            ctrl = obj()
        except Exception as exc:  # noqa: BLE001 - user code
            raise ConfigError(f"controller {spec!r}: constructing it failed: {exc}") from exc
        if not isinstance(ctrl, Controller):
            raise ConfigError(
                f"controller {spec!r}: {type(ctrl).__name__} is not an rlspec Controller "
                "(subclass rlspec.control.base.Controller)"
            )
        return ctrl
    b = BaselinesConfig.load(baselines) if baselines else None
    return make_controller(spec, b)


def control_context(cfg: ServeConfig, max_num_seqs: int, block_size: int) -> Any:
    """The ControlContext of a served engine (cost model from cfg.profile)."""
    from rlspec.control.base import ControlContext
    from rlspec.perf.profile import load_profile
    from rlspec.perf.step_time import StepTimeModel

    return ControlContext(
        k_max=cfg.k_max,
        max_num_seqs=int(max_num_seqs),
        cost=StepTimeModel(load_profile(cfg.profile)),
        decision_interval=cfg.decision_interval,
        block_size=int(block_size),
    )


def check_model_dir(flag: str, path: str) -> str:
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise ConfigError(f"{flag} {path}: not a model folder (no config.json)")
    return str(p.resolve())
