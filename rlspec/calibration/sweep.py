"""Live-vs-simulated sweeps over request rates (bench/fidelity.py, bench/sim_to_real.py).

One live engine serves every point; each point is a matched scenario (`matching.py`), so
the live engine and the simulator get the same requests, engine limits and KV capacity.
On a shared machine each live episode can wait for the CPU to be quiet and is re-run if
another process took more than `quiet` cores meanwhile; the load is recorded either way.
The simulator's answer is the mean over a few engine seeds (its acceptance draws are
random); the live engine gives one sample per point.

vLLM's CPU GEMMs (oneDNN, `vllm/model_executor/layers/utils.py`) build a primitive for each
token count M the first time they meet it, and keep only the last 32 per weight shape (plus
oneDNN's own cache of 1,024): on the AMX Xeon a prefill step of a new M costs 40-100 ms more
than one of an M met before (notes/calibration.md section 22). Controllers served in turn on
one engine would rank by who met a point's prefill shapes first, so `warm_runs` serves each
live episode that many times unmeasured before the measured one: every controller then meets
an engine warm for its own shapes, as a GPU engine is after CUDA-graph capture and as
calibration measured it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlspec.calibration.interleave import check_turn_s
from rlspec.calibration.matching import (
    Tally,
    at_profile_dtype,
    matched_scenario,
    measured_acceptance,
    profile_drift,
    profile_ref,
    tallied_episode,
)
from rlspec.control.base import Controller
from rlspec.control.registry import BaselinesConfig, make_controller
from rlspec.engines.base import Backend
from rlspec.engines.factory import make_backend
from rlspec.perf.acceptance import AcceptanceConfig
from rlspec.scenario import Scenario, load_scenario
from rlspec.sim.verdicts import DraftVerdicts

log = logging.getLogger(__name__)

METRICS = ("mean_latency_s", "p50_latency_s", "p99_latency_s", "ttft_p50_s", "tpot_p50_s",
           "throughput_tok_s", "slo_attainment", "completed", "preemptions", "mean_k",
           "offload_frac")  # fmt: skip


@dataclass(frozen=True)
class Workload:
    """A live scenario swept over a load knob: `rate` (poisson/gamma, via
    `Scenario.with_rate`) or `rate_scale` (trace replay)."""

    name: str
    scenario: str  # path of the live scenario YAML
    knob: str  # "rate" | "rate_scale"
    values: tuple[float, ...]
    requests: int = 40  # per episode: poisson duration = requests / rate; trace: max_requests

    def variant(self, value: float) -> Scenario:
        base = load_scenario(self.scenario)
        w = base.workload
        if self.knob == "rate":
            s = base.with_rate(value)
            return s.replace(workload=dataclasses.replace(s.workload, duration_s=self.requests / value))
        if self.knob == "rate_scale":
            return base.replace(
                workload=dataclasses.replace(w, rate_scale=value, max_requests=self.requests)
            )
        raise ValueError(f"unknown knob {self.knob!r}")


@dataclass
class SweepContext:
    """The live engine and what makes a scenario match it."""

    profile: Path
    block_size: int
    num_kv_blocks: int
    acceptance: AcceptanceConfig | None
    live: Any = None  # VLLMBackend (None: simulation only)
    together: Any = None  # InterleavedEngines: engines that run several controllers at once
    quiet: float | None = None  # CPU cores others may use during a live episode
    quiet_timeout_s: float = 120.0
    retries: int = 6
    sim_seeds: int = 5
    baselines: BaselinesConfig | None = None
    log: list[str] = field(default_factory=list)
    drift_tolerance: float = 1.25  # live / profile step time beyond which a run is flagged
    host: Any = None  # HostFingerprint of the machine the live engine runs on (None: simulation only)
    host_differences: list[str] = field(default_factory=list)  # this host vs the profile's (allowed)
    warm_runs: int = 0  # unmeasured serves of each live episode before the measured one
    turn_s: float = 0.0  # engines in turns: each turn's length (0: one iteration; interleave.py)

    def __post_init__(self) -> None:
        if self.warm_runs < 0:
            raise ValueError(f"warm_runs: {self.warm_runs!r} must be >= 0")
        check_turn_s(self.turn_s)

    @classmethod
    def open(cls, scenario: Scenario, profile: str | Path, live: bool = True, engines: int = 1,
             allow_host_mismatch: bool = False, start_together: bool = True,
             **kw: Any) -> SweepContext:  # fmt: skip
        """Start the live engine of `scenario` (if `live`; `engines` > 1: that many, run in
        turns by `run_live_together`) at the profile's dtype and read its KV pool. A live
        sweep against a profile fitted on another kind of host measures the host, not the
        simulator: it is refused unless `allow_host_mismatch` (then logged)."""
        from rlspec.perf.profile import load_profile

        prof = load_profile(profile)
        acc = measured_acceptance(prof)
        # The live backend's reference cost model (step_time_vs_profile, its host check) and
        # its dtype are the sweep's profile, not the one the scenario file names.
        scenario = at_profile_dtype(scenario.replace(profile=profile_ref(profile)), prof)
        # the KV pool a simulation-only sweep assumes; a live one reads the engine's
        block_size, num_kv_blocks = kw.pop("block_size", 128), kw.pop("num_kv_blocks", 232)
        if not live:
            return cls(Path(profile).resolve(), block_size, num_kv_blocks, acc, None, **kw)
        from rlspec.perf.host import local_device, this_host

        dtype = prof.host.dtype if prof.host else (scenario.live.dtype if scenario.live else "auto")
        kw["host"] = this_host(dtype, local_device())
        kw["host_differences"] = check_host(prof, allow_host_mismatch, kw["host"])
        if engines > 1:
            from rlspec.calibration.interleave import InterleavedEngines

            together = InterleavedEngines(scenario, engines, start_together=start_together)
            return cls(Path(profile).resolve(), together.facts.block_size, together.facts.usable_blocks,
                       acc, None, together=together, **kw)  # fmt: skip
        backend = make_backend(scenario, "vllm")
        from rlspec.calibration.live import engine_facts

        facts = engine_facts(backend)
        return cls(Path(profile).resolve(), facts.block_size, facts.usable_blocks, acc, backend, **kw)

    def close(self) -> None:
        for name in ("live", "together"):
            engine = getattr(self, name)
            if engine is not None:
                engine.close()
                setattr(self, name, None)

    def match(self, scenario: Scenario) -> Scenario:
        return matched_scenario(
            scenario,
            block_size=self.block_size,
            num_kv_blocks=self.num_kv_blocks,
            acceptance=self.acceptance_of(scenario),
            profile=self.profile,
        )

    def acceptance_of(self, scenario: Scenario) -> AcceptanceConfig | None:
        """The acceptance calibration measured on this scenario's workload, else the pooled
        one (None: the profile was not calibrated)."""
        from rlspec.perf.profile import load_profile

        return measured_acceptance(load_profile(self.profile), scenario.name)

    def run_live(self, scenario: Scenario, controller: str, seed: int | None = None,
                 warm_runs: int | None = None) -> dict[str, Any]:  # fmt: skip
        """One live episode. With `quiet` set: wait for a quiet CPU first, abort the episode
        as soon as another process takes more than `2 * quiet + 0.2` cores over a 2-s
        window, and re-run it if others used more than `quiet` cores on average (up to
        `retries` times; the last try is kept either way, its load recorded). The
        `warm_runs` unmeasured serves of the same episode come first (default: the
        context's; a repeat on an engine that has already served the episode needs none)."""
        from rlspec.calibration.quiet import OtherLoad, wait_quiet

        seed = scenario.seed if seed is None else seed
        requests = scenario.requests(seed)
        warm_runs = self.warm_runs if warm_runs is None else warm_runs
        if warm_runs < 0:
            raise ValueError(f"warm_runs: {warm_runs!r} must be >= 0")
        waited = 0.0
        t_warm = time.perf_counter()
        for _ in range(warm_runs):
            tallied_episode(self.live, make_controller(controller, self.baselines), requests, scenario)
        warm_s = time.perf_counter() - t_warm
        for attempt in range(self.retries + 1):
            if self.quiet is not None:
                waited += wait_quiet(self.quiet, self.quiet_timeout_s)
            t0 = time.perf_counter()
            last = attempt == self.retries
            guard = Guard(self.live, None if (self.quiet is None or last) else 2 * self.quiet + 0.2)
            try:
                with OtherLoad() as load:
                    m, extra = tallied_episode(
                        guard, make_controller(controller, self.baselines), requests, scenario
                    )
            except Disturbed as exc:
                self.log.append(f"aborted {scenario.name} {controller}: {exc}")
                continue
            if self.quiet is None or load.cores <= self.quiet or last:
                break
            self.log.append(f"re-run {scenario.name} {controller}: others used {load.cores:.2f} cores")
        self._check_drift(scenario, controller, extra["step_time_vs_profile"])
        return {**_metrics(m), **extra, "other_load_cores": round(load.cores, 3),
                "attempts": attempt + 1, "waited_s": round(waited, 1),
                "wall_s": round(time.perf_counter() - t0, 2),
                "warm_runs": warm_runs, "warm_s": round(warm_s, 2)}  # fmt: skip

    def run_live_together(self, scenario: Scenario, controllers: Sequence[str],
                          seed: int | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
        """One live episode per controller, the engines taking turns (one iteration each, or
        `turn_s` of iterations: `interleave.py`), so every controller meets the host at the
        same speed. With `quiet` set: wait for a quiet CPU first and re-run the group if other
        processes used more than `quiet` cores meanwhile (up to `retries` times; the last try
        is kept either way). The group is served `warm_runs` times unmeasured first, each
        engine its own episode."""
        from rlspec.calibration.interleave import Job
        from rlspec.calibration.quiet import wait_quiet

        if self.together is None:
            raise RuntimeError("run_live_together needs SweepContext.open(..., engines > 1)")
        if len(set(controllers)) != len(controllers):
            raise ValueError(f"controllers: {list(controllers)} repeats a controller")
        seed = scenario.seed if seed is None else seed
        jobs = [Job(scenario, c, seed) for c in controllers]
        waited = 0.0
        t_warm = time.perf_counter()
        for _ in range(self.warm_runs):
            self.together.run(jobs, self.baselines, turn_s=self.turn_s)
        warm_s = time.perf_counter() - t_warm
        for attempt in range(self.retries + 1):
            if self.quiet is not None:
                waited += wait_quiet(self.quiet, self.quiet_timeout_s)
            t0 = time.perf_counter()
            results, others = self.together.run(jobs, self.baselines, turn_s=self.turn_s)
            if self.quiet is None or others <= self.quiet or attempt == self.retries:
                break
            self.log.append(f"re-run {scenario.name} {'+'.join(controllers)}: others used {others:.2f} cores")
        wall = round(time.perf_counter() - t0, 2)
        out = {}
        for c, (m, extra) in zip(controllers, results, strict=True):
            self._check_drift(scenario, c, extra["step_time_vs_profile"])
            out[c] = {**_metrics(m), **extra, "other_load_cores": round(others, 3), "attempts": attempt + 1,
                      "waited_s": round(waited, 1), "wall_s": wall, "together": list(controllers),
                      "warm_runs": self.warm_runs, "warm_s": round(warm_s, 2),
                      "turn_s": self.turn_s}  # fmt: skip
        return out

    def _check_drift(self, scenario: Scenario, controller: str, ratio: float | None) -> None:
        warning = profile_drift(ratio, self.profile.stem, self.drift_tolerance)
        if warning:
            if not any(line.startswith("profile drift") for line in self.log):
                log.warning(warning)
            self.log.append(f"profile drift {scenario.name} {controller}: steps {ratio:.2f}x the profile's")

    def run_sim(self, scenario: Scenario, controller: str | Callable[[Backend], Controller],
                seed: int | None = None, keep_requests: bool = False,
                keep_decisions: bool = False, verdicts: DraftVerdicts | None = None) -> dict[str, Any]:  # fmt: skip
        """The mean over `sim_seeds` engine seeds, the same seeds for every controller (so
        two controllers meet the same luck). `controller`: a spec, or a function of the
        episode's backend for a controller that plans on it (the lookahead oracle).
        `keep_requests`: each seed's `request_log` too, as `request_logs`; `keep_decisions`:
        each seed's `decision_log`, as `decision_logs`; `verdicts`: the episode's request set's
        measured draft verdicts, replayed in place of drawn luck where known (`Simulator.replay`)."""
        seed = scenario.seed if seed is None else seed
        requests = scenario.requests(seed)
        make = controller if callable(controller) else lambda _: make_controller(controller, self.baselines)
        runs = []
        for i in range(self.sim_seeds):
            backend = make_backend(scenario, "sim", seed=seed + 7919 * i)
            backend.replay(verdicts)
            try:
                runs.append(tallied_episode(backend, make(backend), requests, scenario, keep_requests,
                                            keep_decisions))  # fmt: skip
            finally:
                backend.close()
        out: dict[str, Any] = {}
        for key in METRICS:
            vals = [getattr(m, key) for m, _ in runs]
            out[key] = _finite_mean(vals)
        drafted = sum(e["drafted"] for _, e in runs)
        accepted = sum(e["accepted"] for _, e in runs)
        out["acceptance"] = accepted / drafted if drafted else None
        out["drafted"], out["accepted"] = drafted, accepted
        out["iterations"] = statistics.fmean(e["iterations"] for _, e in runs)
        out["busy_s"] = statistics.fmean(e["busy_s"] for _, e in runs)
        steps = [e["mean_step_s"] for _, e in runs if e["mean_step_s"]]
        out["mean_step_s"] = statistics.fmean(steps) if steps else None
        out["mean_latency_s_spread"] = (
            statistics.pstdev(m.mean_latency_s for m, _ in runs) if len(runs) > 1 else 0.0
        )
        out["mean_latency_s_per_seed"] = [m.mean_latency_s for m, _ in runs]  # for ratios paired by seed
        out["seeds"] = self.sim_seeds
        if keep_requests:
            out["request_logs"] = [e["request_log"] for _, e in runs]
        if keep_decisions:
            out["decision_logs"] = [e["decision_log"] for _, e in runs]
        return out


class HostMismatchError(RuntimeError):
    """A live sweep was asked of a profile fitted on another kind of host."""


def check_host(profile: Any, allow: bool = False, here: Any = None) -> list[str]:
    """How this machine (`here`, measured now when not given) departs from the host `profile`
    was fitted on (empty: it matches, or the profile records none - then only the drift ratio
    of the first episode can tell). Raises HostMismatchError on a difference unless `allow`,
    which logs it instead."""
    from rlspec.perf.host import local_device, mismatch_message, this_host

    if profile.host is None:
        log.warning("profile %r records no host fingerprint (fitted before calibrate recorded one): "
                    "cannot check it was fitted on this kind of machine", profile.name)  # fmt: skip
        return []
    here = here or this_host(profile.host.dtype, local_device())
    diffs = profile.host.differences(here)
    if diffs:
        msg = mismatch_message(profile.name, profile.host, here, diffs)
        if not allow:
            raise HostMismatchError(msg + " (or pass --allow-host-mismatch to measure anyway)")
        log.warning(msg)
    return diffs


class Disturbed(RuntimeError):
    """Another process took the CPU during a live episode."""


class Guard(Tally):
    """A Tally that aborts the episode when other processes use more than `limit` cores
    over a 2-s window (checked between steps)."""

    def __init__(self, inner: Any, limit: float | None, window_s: float = 2.0) -> None:
        super().__init__(inner)
        self.limit = limit
        self.window_s = window_s
        self._win: Any = None
        self._t = 0.0

    def start(self, requests: Any) -> Any:
        from rlspec.calibration.quiet import OtherLoad

        snap = super().start(requests)
        if self.limit is not None:
            self._win = OtherLoad().__enter__()
            self._t = time.monotonic()
        return snap

    def step(self) -> Any:
        s = super().step()
        if self._win is not None and time.monotonic() - self._t >= self.window_s:
            self._win.__exit__()
            if self._win.cores > self.limit:
                raise Disturbed(f"others used {self._win.cores:.2f} cores over {self._win.wall_s:.1f} s")
            self._win.__enter__()
            self._t = time.monotonic()
        return s


def _metrics(m: Any) -> dict[str, Any]:
    d = m.as_dict()
    return {k: d[k] for k in METRICS}


def _finite_mean(vals: Sequence[float]) -> float:
    good = [float(v) for v in vals if v is not None and not math.isnan(float(v))]
    return statistics.fmean(good) if good else float("nan")


def mean_of_present(vals: Iterable[float | None]) -> float | None:
    """Mean of the values that were measured (None where none was), e.g. the live-only
    `step_time_vs_profile` of a sweep's episodes."""
    good = [v for v in vals if v is not None]
    return statistics.fmean(good) if good else None


def rel_err(sim: float | None, live: float | None) -> float | None:
    if sim is None or live is None or not live or math.isnan(sim) or math.isnan(live):
        return None
    return abs(sim - live) / abs(live)


def offered_rate(scenario: Scenario, seed: int | None = None) -> float:
    """Requests per second the workload offers (arrivals / span of arrivals)."""
    reqs = scenario.requests(scenario.seed if seed is None else seed)
    if len(reqs) < 2 or reqs[-1].arrival_s <= 0:
        return float("nan")
    return (len(reqs) - 1) / reqs[-1].arrival_s
