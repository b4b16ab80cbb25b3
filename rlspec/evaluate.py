"""Run controllers on a scenario: the loop `rlspec eval`, sweeps and benchmarks share.

Every controller sees the identical request list and the identical simulator seed, so
differences in the results are the controllers' doing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rlspec.control.base import ControlContext, Controller
from rlspec.control.registry import BaselinesConfig, make_controller
from rlspec.engines.base import Backend
from rlspec.engines.factory import make_backend
from rlspec.metrics import EpisodeMetrics, StepStats, summarize
from rlspec.perf.step_time import StepTimeModel
from rlspec.scenario import Scenario
from rlspec.workload import Request


@dataclass
class EpisodeTrace:
    """What happened, decision by decision (for plots of k over time)."""

    clock_s: list[float]
    k: list[int]
    offloaded: list[bool]
    in_system: list[int]


def control_context(scenario: Scenario, backend: Backend) -> ControlContext:
    cost = getattr(backend, "cost", None) or StepTimeModel(scenario.load_profile())
    return ControlContext(
        k_max=backend.k_max,
        max_num_seqs=scenario.engine.max_num_seqs,
        cost=cost,
        decision_interval=scenario.decision_interval,
        block_size=scenario.engine.block_size,
    )


def run_episode(
    backend: Backend,
    controller: Controller,
    requests: Sequence[Request],
    scenario: Scenario,
    trace: EpisodeTrace | None = None,
    max_iterations: int | None = None,
) -> EpisodeMetrics:
    """Serve `requests` to completion with `controller` deciding every interval."""
    ctx = control_context(scenario, backend)
    controller.reset(ctx)
    tracker = ctx.tracker()
    stats = StepStats()
    tracker.update(backend.start(requests))
    interval = scenario.decision_interval
    iterations = 0
    while not backend.finished:
        action = controller.decide(tracker)
        backend.set_action(action)
        tracker.begin_interval()
        if trace is not None:
            trace.clock_s.append(tracker.last.clock_s)
            trace.k.append(action.k)
            trace.offloaded.append(action.offload)
            trace.in_system.append(tracker.last.num_in_system)
        for _ in range(interval):
            s = backend.step()
            tracker.update(s)
            stats.add(s.k, s.step_time_s, s.num_scheduled_tokens > 0, s.drafter, s.num_preemptions)
            iterations += 1
            if backend.finished:
                break
        if max_iterations is not None and iterations >= max_iterations:
            break
    return summarize(backend.records(), stats, scenario.slo.ttft_s, scenario.slo.tpot_s)


def evaluate(
    scenario: Scenario,
    controllers: Sequence[str | Controller],
    seed: int | None = None,
    backend: str = "sim",
    baselines: BaselinesConfig | None = None,
    on_result: Callable[[str, EpisodeMetrics], None] | None = None,
) -> dict[str, EpisodeMetrics]:
    """Each controller on the identical workload and engine seed.

    A simulator is cheap, so each controller gets a fresh one (its random stream starts
    over); a live engine takes seconds to start, so one serves every controller in turn
    (`start()` resets it, and its prompts are a function of the seed and request id).
    """
    seed = scenario.seed if seed is None else seed
    requests = scenario.requests(seed)
    results: dict[str, EpisodeMetrics] = {}
    shared = make_backend(scenario, backend, seed=seed) if backend != "sim" else None
    try:
        for spec in controllers:
            controller = make_controller(spec, baselines) if isinstance(spec, str) else spec
            name = spec if isinstance(spec, str) else controller.name
            engine = shared or make_backend(scenario, backend, seed=seed)
            try:
                results[name] = run_episode(engine, controller, requests, scenario)
            finally:
                if shared is None:
                    engine.close()
            if on_result is not None:
                on_result(name, results[name])
    finally:
        if shared is not None:
            shared.close()
    return results
