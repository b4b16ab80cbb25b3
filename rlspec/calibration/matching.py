"""The simulated twin of a live scenario, and episodes that also count acceptance.

A fidelity comparison is only fair if the simulator serves the same thing the live
engine does: the same requests (both take them from `scenario.requests(seed)`), the same
engine limits (`engine:` drives both), the same KV capacity in tokens (the live pool's
block size and block count, measured by calibration, replace the simulated GPU's), the
acceptance measured on the live pair, and the calibrated profile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlspec.control.action import Action
from rlspec.control.base import ControlContext, Controller
from rlspec.engines.base import Backend
from rlspec.engines.snapshot import RequestRecord, Snapshot
from rlspec.evaluate import run_episode
from rlspec.features import FEATURE_NAMES, FeatureTracker
from rlspec.metrics import EpisodeMetrics
from rlspec.perf.acceptance import AcceptanceConfig
from rlspec.perf.profile import Profile, load_profile
from rlspec.scenario import Scenario
from rlspec.workload.request import Request


def matched_scenario(
    scenario: Scenario,
    *,
    block_size: int,
    num_kv_blocks: int,
    acceptance: AcceptanceConfig | None = None,
    profile: str | Path | None = None,
) -> Scenario:
    """`scenario` with the live engine's KV pool (block size, usable blocks incl. the
    drafter's hold-back), the measured acceptance and the calibrated profile. The live
    backend ignores `engine.block_size` / `num_kv_blocks` (vLLM sizes its own pool), so
    one scenario object drives both backends."""
    engine = dataclasses.replace(scenario.engine, block_size=block_size, num_kv_blocks=num_kv_blocks)
    changes: dict[str, Any] = {"engine": engine}
    if acceptance is not None:
        changes["acceptance"] = acceptance
    if profile is not None:
        changes["profile"] = profile_ref(profile)
        return at_profile_dtype(scenario.replace(**changes), load_profile(profile))
    return scenario.replace(**changes)


def profile_ref(profile: str | Path) -> str:
    """How a scenario names `profile`: a shipped name as is, a file by its absolute path."""
    return str(Path(profile).resolve()) if Path(profile).suffix else str(profile)


def at_profile_dtype(scenario: Scenario, profile: Profile) -> Scenario:
    """`scenario` with its live engine at the dtype `profile` was fitted at (recorded in its
    host), so the live side runs what the profile's costs describe: on a CPU without BF16
    units a bf16 checkpoint is fitted, and served, at float32."""
    if scenario.live is None or profile.host is None or scenario.live.dtype == profile.host.dtype:
        return scenario
    return scenario.replace(live=dataclasses.replace(scenario.live, dtype=profile.host.dtype))


def measured_acceptance(profile: Profile, workload: str | None = None) -> AcceptanceConfig | None:
    """The acceptance `rlspec calibrate` measured on the live pair (kept in the profile's
    `sources` as `acceptance.mean`, `.position_decay`, `.concentration`), as a scenario's
    acceptance; with `workload` (a scenario name) measured on that workload's requests
    (`acceptance.workload.<name>.mean`, `.position_decay`, `.concentration`), when it was.
    None for a profile that was not calibrated."""
    src = profile.sources
    pooled_decay = src.get("acceptance.position_decay", 1.0)
    pooled_conc = src.get("acceptance.concentration", 20.0)
    own = f"acceptance.workload.{workload}."
    try:
        if workload and f"{own}mean" in src:
            # profiles fitted before workloads had their own decay / spread record only the mean
            mean, decay = src[f"{own}mean"], src.get(f"{own}position_decay", pooled_decay)
            conc = src.get(f"{own}concentration", pooled_conc)
        else:
            mean, decay, conc = src["acceptance.mean"], pooled_decay, pooled_conc
        return AcceptanceConfig(mean=float(mean), position_decay=float(decay), concentration=float(conc))
    except (KeyError, ValueError):
        return None


# What a busy live iteration scheduled (`iteration_shape`), the leading fields of every
# per-iteration log a bench keeps.
ITERATION_FIELDS = ("phase", "k_before", "k", "decode_reqs", "spec_tokens", "prefill_tokens", "context",
                    "scheduled_tokens")  # fmt: skip


def iteration_shape(backend: Any, s: Snapshot, k_before: int) -> tuple:
    """ITERATION_FIELDS of the busy iteration `s` a live VLLMBackend just ran: `k_before` is the
    k of the last busy iteration, the length of the drafts this one verified (vLLM drafts after
    the forward pass), and the context is the cached tokens the batch attended."""
    plan = backend.engine_handle.scheduler.rlspec_last_plan
    return ("prefill" if s.num_prefill_tokens else "decode", k_before, s.k, s.num_decode_reqs, s.num_drafted,
            s.num_prefill_tokens, plan.num_context_tokens, s.num_scheduled_tokens)  # fmt: skip


class Tally(Backend):
    """Wraps a backend and sums what episode metrics leave out: drafts proposed and
    accepted (by position), busy time, iterations."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.k_max = inner.k_max
        self.reset()

    def reset(self) -> None:
        self.drafted = 0
        self.accepted = 0
        self.iterations = 0
        self.busy_s = 0.0
        self.tokens = 0

    def __getattr__(self, name: str) -> Any:  # e.g. the simulator's `cost`
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def start(self, requests: Sequence[Request]) -> Snapshot:
        self.reset()
        return self.inner.start(requests)

    def set_action(self, action: Action) -> None:
        self.inner.set_action(action)

    def step(self) -> Snapshot:
        s = self.inner.step()
        self.drafted += s.num_drafted
        self.accepted += s.num_accepted
        if s.num_scheduled_tokens:
            self.iterations += 1
            self.busy_s += s.step_time_s
            self.tokens += s.num_scheduled_tokens
        return s

    @property
    def finished(self) -> bool:
        return self.inner.finished

    def records(self) -> list[RequestRecord]:
        return self.inner.records()

    def close(self) -> None:
        self.inner.close()

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None


# Each decision of an episode (`decision_log`): when it was made, what it chose, and the
# observation it was made on (rlspec.features), to set a controller's live choices beside
# its simulated ones state by state.
DECISION_FIELDS = ("clock_s", "k", "offload", *FEATURE_NAMES)


class DecisionLog(Controller):
    """Wraps a controller and records each decision (DECISION_FIELDS) without changing it."""

    def __init__(self, inner: Controller) -> None:
        self.inner = inner
        self.name = inner.name
        self.log: list[tuple] = []

    def reset(self, ctx: ControlContext) -> None:
        super().reset(ctx)
        self.inner.reset(ctx)
        self.log = []

    def decide(self, obs: FeatureTracker) -> Action:
        action = self.inner.decide(obs)
        clock = obs.last.clock_s if obs.last is not None else 0.0
        self.log.append((round(clock, 6), action.k, action.offload, *(round(float(v), 5) for v in obs.vector())))
        return action


# Each request of an episode (`request_log`), to see which requests one controller serves later
# than another, live and simulated: virtual seconds, None where it did not happen.
REQUEST_FIELDS = ("request_id", "arrival_s", "prompt_len", "output_len", "first_token_s", "finish_s")


def request_log(records: Sequence[RequestRecord]) -> list[tuple]:
    """REQUEST_FIELDS of each record, in request order (times rounded to the microsecond)."""

    def t(x: float | None) -> float | None:
        return None if x is None else round(x, 6)

    return [(r.request_id, t(r.arrival_s), r.prompt_len, r.output_len, t(r.first_token_s), t(r.finish_s))
            for r in sorted(records, key=lambda r: r.request_id)]  # fmt: skip


def tallied_episode(
    backend: Backend, controller: Controller, requests: Sequence[Request], scenario: Scenario,
    keep_requests: bool = False, keep_decisions: bool = False,
) -> tuple[EpisodeMetrics, dict[str, Any]]:  # fmt: skip
    """`run_episode` plus acceptance, busy time and iterations of the episode; with
    `keep_requests`, each request's timeline too (`request_log`, REQUEST_FIELDS), with
    `keep_decisions` each decision (`decision_log`, DECISION_FIELDS)."""
    tally = backend if isinstance(backend, Tally) else Tally(backend)
    decisions = DecisionLog(controller) if keep_decisions else None
    m = run_episode(tally, decisions or controller, requests, scenario)
    extra = {
        "acceptance": tally.acceptance,
        "drafted": tally.drafted,
        "accepted": tally.accepted,
        "iterations": tally.iterations,
        "busy_s": tally.busy_s,
        "mean_step_s": tally.busy_s / tally.iterations if tally.iterations else None,
        # live only: measured / profile-predicted busy time of the iterations it ran
        "step_time_vs_profile": getattr(tally.inner, "step_time_vs_profile", None),
    }
    if keep_requests:
        extra["request_log"] = request_log(tally.records())
    if decisions is not None:
        extra["decision_log"] = decisions.log
    return m, extra


def profile_drift(ratio: float | None, profile: str, tolerance: float = 1.25) -> str | None:
    """A warning when the live engine's steps take more than `tolerance` times (or less than
    1/`tolerance` of) what the profile predicts for the same iterations: a fitted profile
    describes one host at one load, and a simulated figure from it is only as good as that
    match (this VM has measured 2.3x slower on another day)."""
    if tolerance <= 1.0:
        raise ValueError(f"tolerance: {tolerance!r} must be > 1")
    if ratio is None or 1.0 / tolerance <= ratio <= tolerance:
        return None
    return (
        f"live steps take {ratio:.2f}x the time profile {profile!r} predicts for the same "
        f"iterations (tolerance {tolerance:g}x): it was fitted on another host or under another "
        "load; simulated figures will not match the engine. Re-fit it on this machine with "
        "`rlspec calibrate`"
    )
