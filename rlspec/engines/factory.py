"""Build the Backend a scenario asks for."""

from __future__ import annotations

from rlspec.config import ConfigError
from rlspec.engines.base import Backend
from rlspec.perf.step_time import NO_DRIFT
from rlspec.scenario import Scenario

BACKENDS = ("sim", "vllm")


def make_backend(scenario: Scenario, kind: str = "sim", seed: int | None = None,
                 engine_args: dict | None = None) -> Backend:  # fmt: skip
    """`engine_args`: more vLLM EngineArgs for the live engine (e.g. vLLM's per-request draft
    metrics, which the live backend then reports as `request_drafts`)."""
    seed = scenario.seed if seed is None else seed
    if engine_args and kind != "vllm":
        raise ConfigError(f"engine_args: {sorted(engine_args)} are vLLM's; the {kind!r} backend takes none")
    if kind == "sim":
        from rlspec.sim.simulator import Simulator

        return Simulator(scenario.load_profile(), scenario.engine, scenario.acceptance, seed=seed,
                         drift=scenario.speed_drift)
    if kind == "vllm":
        if scenario.speed_drift != NO_DRIFT:
            raise ConfigError(
                f"scenario {scenario.name!r}: speed_drift applies to the simulator; the live "
                "engine runs at its own speed (remove speed_drift for --backend vllm)"
            )
        return _live_backend(scenario, seed, engine_args or {})
    raise ConfigError(f"--backend: unknown {kind!r}; allowed: {list(BACKENDS)}")


def _live_backend(scenario: Scenario, seed: int, engine_args: dict) -> Backend:
    from rlspec.engines.vllm import make_vllm_backend

    live = scenario.live
    if live is None:
        raise ConfigError(
            f"scenario {scenario.name!r}: `--backend vllm` needs a `live:` block naming the model "
            "pair (see envs/live/*.yaml)"
        )
    model = scenario.resolve(live.model)
    draft = scenario.resolve(live.draft_model) if live.draft_model else None
    for role, path in (("live.model", model), ("live.draft_model", draft)):
        if path is not None and not (path / "config.json").is_file():
            raise ConfigError(
                f"scenario {scenario.name!r}: {role} {path} is not a model folder; build the "
                f"tiny pair with `rlspec models tiny --out {path.parent}`"
            )
    extra = {k: v for k, v in (("kv_cache_memory_bytes", live.kv_cache_memory_bytes),
                                ("block_size", live.block_size)) if v is not None}  # fmt: skip
    from rlspec.perf.step_time import StepTimeModel

    cost = StepTimeModel(scenario.load_profile())  # the clock (clock: profile), else a reference
    return make_vllm_backend(
        scenario.replace(seed=seed),
        str(model),
        None if draft is None else str(draft),
        cost=cost,
        clock=live.clock,
        max_model_len=live.max_model_len,
        gpu_memory_utilization=live.gpu_memory_utilization,
        dtype=live.dtype,
        extra_engine_args=engine_args,
        **extra,
    )
