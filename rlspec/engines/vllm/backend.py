"""`VLLMBackend`: a live in-process vLLM engine behind the Backend protocol.

The workload is replayed on a virtual clock that advances by the measured wall time of
each `engine.step()` call (plus any drafter transfer stall), never by the wall time between
calls, so PPO updates or logging never flood the queue (DESIGN.md section 5). With
`clock="profile"` it advances instead by the cost model's time for the iteration the engine
actually scheduled (and the profile's transfer time): tokens, acceptance, batching and KV
stay the real engine's, and an episode replays identically (Gymnasium's `check_env`,
debugging a policy, separating acceptance effects from timing noise):

* a request enters the engine when the virtual clock passes its arrival time (requests
  that arrive during a step are queued at its end, as in the simulator);
* with nothing in the engine the clock jumps to the next arrival (an idle snapshot);
* prompts are random token ids (seeded per request: `default_rng([seed, request_id])`) of
  the request's `prompt_len`, generated with `max_tokens=output_len`, `ignore_eos=True`,
  greedy sampling;
* first-token and finish times are the virtual time at the end of the step whose output
  carried the request's first / last token (the engine reports tokens per step).

Control: `set_action(Action(k))` sets the draft length through the scheduler hook
(`RLSpecScheduler.set_k`, vLLM's dynamic-SD lookup) from the next step on; k drafted after
step t is verified at step t+1, so `Snapshot.num_drafted` lags `Snapshot.k` by one step.
`Action(offload=True)` drops the drafter's weights and skips its forward pass
(`offload.DrafterOffloader`), returning its weight bytes to the KV pool (`KVHoldBack`);
the next resident action reloads it, re-fills its KV for the requests in flight by
rewinding their `num_computed_tokens` to where the drafter fell behind (the tokens are
recomputed as a prefill chunk by target and drafter: lossless), and pays both costs in that
step's time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from rlspec.config import ConfigError
from rlspec.control.action import Action
from rlspec.engines.base import Backend
from rlspec.engines.snapshot import DrafterState, RequestRecord, Snapshot
from rlspec.engines.vllm.config import VLLMBackendConfig
from rlspec.engines.vllm.errors import EngineDiedError, RequestRejectedError, VLLMBackendError
from rlspec.perf.host import HostFingerprint, mismatch_message, vllm_host
from rlspec.perf.step_time import StepTimeModel
from rlspec.workload.request import Request

log = logging.getLogger(__name__)


class VLLMBackend(Backend):
    """Live vLLM engine (CPU build or GPU wheel), one iteration per `step()`."""

    def __init__(
        self,
        config: VLLMBackendConfig,
        *,
        start_engine: bool = False,
        cost: StepTimeModel | None = None,
    ) -> None:
        if not isinstance(config, VLLMBackendConfig):
            raise TypeError(f"config must be a VLLMBackendConfig, got {type(config).__name__}")
        config.check_paths()
        if config.clock == "profile" and cost is None:
            raise ConfigError("vllm.clock: 'profile' needs a cost model (the scenario's profile)")
        self.config = config
        # Seed of the random prompt token ids (a request's tokens come from (prompt_seed, its
        # id)): calibration draws held-out prompts from another one on the same engine.
        self.prompt_seed = config.seed
        # The cost model is the clock (clock: profile) or, with the wall clock, the reference
        # the measured iterations are compared with: a profile fitted on another host (or
        # under other load) shows up as a ratio far from 1 before anyone trusts a simulated figure.
        self._cost = cost
        self._profile_clock = config.clock == "profile"
        self.measured_busy_s = 0.0
        self.predicted_busy_s = 0.0
        self.k_max = config.k_max if config.speculative else 0
        self._h: Any = None  # EngineHandle
        self._off: Any = None  # DrafterOffloader
        self._hold: Any = None  # KVHoldBack
        self._closed = False
        self._dead: str | None = None
        self._episode = 0
        self._requests: list[Request] = []
        self._next = 0
        self._records: dict[int, RequestRecord] = {}
        self._tokens: dict[int, list[int]] = {}
        # Finished requests' verify steps (drafted, accepted per step), where the engine runs
        # with vLLM's per_request_spec_decode_metrics="detailed" (calibration's acceptance).
        self.request_drafts: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self._live: dict[str, int] = {}  # engine (external) request id -> rlspec request id
        self._internal: dict[int, str] = {}  # rlspec id -> vLLM's internal (scheduler) id
        self._completed = 0
        self.clock = 0.0
        self._want = Action(k=config.initial_k if config.speculative else 0)
        self._stale_from: dict[str, int] = {}
        self.refill_tokens = 0  # tokens rewound for drafter-KV refill (whole lifetime)
        self.iterations = 0
        # How this machine departs from the host the cost model's profile was fitted on
        # (set by `open`; empty when it matches or the profile records no host).
        self.host_mismatch: list[str] = []
        if start_engine:
            self.open()

    # ------------------------------------------------------------------ engine lifetime
    def open(self) -> None:
        """Start the engine now (otherwise the first `start()` does)."""
        if self._closed:
            raise VLLMBackendError("backend is closed; build a new VLLMBackend")
        if self._h is not None:
            return
        from rlspec.engines.vllm.engine import build_engine  # imports vLLM

        h = build_engine(self.config)
        try:
            if self.config.speculative:
                from rlspec.engines.vllm.offload import DrafterOffloader, KVHoldBack
                from rlspec.perf.checkpoint import checkpoint_param_count

                self._off = DrafterOffloader(h.runner, h.engine.vllm_config)
                if self.config.hold_back_drafter_blocks:
                    dtype = h.engine.model_config.dtype
                    itemsize = dtype.itemsize if hasattr(dtype, "itemsize") else 2
                    nbytes = checkpoint_param_count(self.config.draft_model) * itemsize
                    self._hold = KVHoldBack(h.scheduler, nbytes)
                    self._hold.hold()
        except BaseException:
            from rlspec.engines.vllm.engine import shutdown_engine

            shutdown_engine(h.engine)
            raise
        self._h = h
        self._check_host()

    def host_fingerprint(self) -> HostFingerprint:
        """This machine and the dtype the engine runs at (what a fitted profile records)."""
        return vllm_host(self.engine_handle.engine.vllm_config)

    def _check_host(self) -> None:
        """Warn once, at start, when the profile was fitted on another kind of host: the
        drift ratio (`step_time_vs_profile`) would say so too, but only after an episode."""
        recorded = self._cost.profile.host if self._cost is not None else None
        if recorded is None:
            return
        here = self.host_fingerprint()
        self.host_mismatch = recorded.differences(here)
        if self.host_mismatch:
            log.warning(mismatch_message(self._cost.profile.name, recorded, here, self.host_mismatch))

    def close(self) -> None:
        """Shut the engine down (in process: nothing to orphan); safe to call twice."""
        if self._closed:
            return
        self._closed = True
        h, self._h = self._h, None
        self._off = self._hold = None
        if h is not None:
            from rlspec.engines.vllm.engine import shutdown_engine

            shutdown_engine(h.engine)

    def __enter__(self) -> VLLMBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def startup_s(self) -> float | None:
        return None if self._h is None else self._h.startup_s

    @property
    def engine_handle(self) -> Any:
        """The running engine's pieces (engine, scheduler, runner, stats collector)."""
        self._check_usable()
        if self._h is None:
            self.open()
        return self._h

    @property
    def reference_profile(self) -> str | None:
        """Name of the profile `step_time_vs_profile` compares with (None: no cost model)."""
        return None if self._cost is None else self._cost.profile.name

    @property
    def step_time_vs_profile(self) -> float | None:
        """Measured / profile-predicted busy time of this episode's iterations (None without
        a reference profile or before any iteration)."""
        if not self.predicted_busy_s:
            return None
        return self.measured_busy_s / self.predicted_busy_s

    @property
    def drafter_state(self) -> DrafterState:
        if self._off is None or not self._off.resident:
            return DrafterState.OFFLOADED
        return DrafterState.RESIDENT

    @property
    def drafter_forward_calls(self) -> int:
        """Forward passes of the draft model since the engine started."""
        return 0 if self._off is None else self._off.forward_calls

    @property
    def drafter_time_s(self) -> float:
        """Wall time the drafter's proposals took since the engine started (its share of the
        step times: calibration fits the drafter's terms on the difference per step)."""
        return 0.0 if self._off is None else self._off.propose_s

    def sync_drafter_timing(self, on: bool = True) -> None:
        """Synchronize a GPU around every proposal, so `drafter_time_s` is the drafter's work
        rather than its launches (calibration; serving leaves the pipeline alone)."""
        if self._off is not None:
            self._off.sync_timing = on

    @property
    def transfers(self) -> list[Any]:
        """Offload / reload records (seconds, device bytes freed)."""
        return [] if self._off is None else list(self._off.history)

    @property
    def kv_holdback_blocks(self) -> int:
        """KV blocks the resident drafter's weights take from the pool (0 if none)."""
        return 0 if self._hold is None else self._hold.num_blocks

    def _check_usable(self) -> None:
        if self._dead is not None:
            raise EngineDiedError(f"the vLLM engine died earlier: {self._dead}")
        if self._closed:
            raise VLLMBackendError("backend is closed; build a new VLLMBackend")

    # ------------------------------------------------------------------ episode
    def start(self, requests: Sequence[Request]) -> Snapshot:
        self._check_usable()
        requests = list(requests)
        self._validate(requests)
        if self._h is None:
            self.open()
        h = self._h
        if self._live:  # leftovers of an unfinished episode
            h.engine.abort_request(list(self._live))
            self._live.clear()
        h.collector.drain()
        self._episode += 1
        self._requests = requests
        self._next = 0
        self._records = {}
        self._tokens = {}
        self.request_drafts = {}
        self._internal = {}
        self._completed = 0
        self.clock = 0.0
        self.iterations = 0
        self.measured_busy_s = self.predicted_busy_s = 0.0
        self._stale_from.clear()
        h.scheduler.rlspec_track_computed = False
        if self._off is not None and not self._off.resident:
            self._reload(charge=False)
        self._want = Action(k=self.config.initial_k if self.config.speculative else 0)
        n_arr, _ = self._arrive_until(0.0)
        return self._no_work_snapshot(0.0, n_arr, self._want.k)

    def _validate(self, requests: list[Request]) -> None:
        if [r.request_id for r in requests] != list(range(len(requests))):
            raise ValueError("requests must have ids 0..n-1 in arrival order")
        limit = self.config.max_model_len
        last = -np.inf
        for r in requests:
            if r.arrival_s < last:
                raise ValueError("requests must be sorted by arrival_s")
            last = r.arrival_s
            if r.prompt_len < 1 or r.output_len < 1:
                raise RequestRejectedError(
                    f"request {r.request_id}: prompt_len and output_len must be >= 1, got "
                    f"{r.prompt_len} and {r.output_len}"
                )
            if r.prompt_len + r.output_len > limit:
                raise RequestRejectedError(
                    f"request {r.request_id}: prompt_len + output_len = "
                    f"{r.prompt_len + r.output_len} exceeds vllm.max_model_len={limit}"
                )

    def set_action(self, action: Action) -> None:
        self._check_usable()
        if not isinstance(action, Action):
            raise TypeError(f"expected an Action, got {type(action).__name__}")
        if action.k > self.k_max:
            raise ValueError(f"action k={action.k} exceeds k_max={self.k_max}")
        self._want = action

    @property
    def finished(self) -> bool:
        return self._completed == len(self._requests)

    def records(self) -> list[RequestRecord]:
        out = []
        sched = None if self._h is None else self._h.scheduler
        for rid in range(self._next):
            rec = self._records[rid]
            if rec.finish_s is None and sched is not None:
                req = sched.requests.get(self._internal.get(rid, ""))
                if req is not None:
                    rec.num_preemptions = int(req.num_preemptions)
            out.append(
                RequestRecord(
                    request_id=rec.request_id,
                    arrival_s=rec.arrival_s,
                    prompt_len=rec.prompt_len,
                    output_len=rec.output_len,
                    first_token_s=rec.first_token_s,
                    finish_s=rec.finish_s,
                    num_generated=rec.num_generated,
                    num_preemptions=rec.num_preemptions,
                )
            )
        return out

    def outputs(self) -> dict[int, list[int]]:
        """Generated token ids per arrived request (complete for finished ones)."""
        return {rid: list(toks) for rid, toks in self._tokens.items()}

    # ------------------------------------------------------------------ one iteration
    def step(self) -> Snapshot:
        self._check_usable()
        if self._h is None:
            raise VLLMBackendError("call start() before step()")
        h = self._h
        want_change = self._placement_change_wanted()
        if not self._live and not want_change:
            return self._idle()
        self.iterations += 1

        transition: DrafterState | None = None
        stall = 0.0
        if want_change:
            if self._want.offload:
                stall = self._offload()
                transition = DrafterState.OFFLOADING
            else:
                stall = self._reload(charge=True)
                transition = DrafterState.LOADING
            if self._profile_clock:
                stall = self._cost.transfer_s
        resident = self._off is not None and self._off.resident
        k = self._want.k if resident else 0
        sched = h.scheduler
        if self.config.speculative:
            sched.set_k(k)
        sched.rlspec_track_computed = not resident and self.config.speculative

        n_sys_before = len(self._live)
        plan = None
        emitted = n_done = 0
        dt = 0.0
        finished_now: list[tuple[int, str]] = []
        if self._live:
            t0 = time.perf_counter()
            try:
                outs = h.engine.step()
            except BaseException as exc:
                self._die(exc)
                raise EngineDiedError(
                    f"vLLM engine died during step {self.iterations} of episode "
                    f"{self._episode}: {type(exc).__name__}: {exc}"
                ) from exc
            dt = time.perf_counter() - t0
            plan = sched.rlspec_last_plan
            if self._cost is not None and plan is not None:
                # The drafts verified are the ones proposed at the last step's k (vLLM drafts
                # after the forward pass), so a step after a switch of k verifies the old k's.
                predicted = self._cost.iteration(plan.num_decode_reqs, k, plan.num_prefill_tokens,
                                                 plan.num_context_tokens, resident,
                                                 prefill_pairs=plan.num_prefill_pairs,
                                                 spec_tokens=plan.num_spec_tokens)  # fmt: skip
                self.measured_busy_s += dt
                self.predicted_busy_s += predicted
                if self._profile_clock:
                    dt = predicted
            if not resident and plan is not None:
                stale = self._stale_from
                for rid, before in plan.computed_before.items():
                    prev = stale.get(rid)
                    if prev is None or before < prev:
                        stale[rid] = before
            step_time = dt + stall
            t1 = self.clock + step_time
            for o in outs:
                rid = self._live.get(o.request_id)
                if rid is None:
                    continue
                rec = self._records[rid]
                new = o.outputs[0].token_ids if o.outputs else ()
                if new:
                    if rec.num_generated == 0:
                        rec.first_token_s = t1
                    rec.num_generated += len(new)
                    self._tokens[rid].extend(new)
                    emitted += len(new)
                if o.finished:
                    rec.finish_s = t1
                    finished_now.append((rid, o.request_id))
                    drafts = o.outputs[0].spec_decode_metrics if o.outputs else None
                    if drafts is not None:
                        self.request_drafts[rid] = (tuple(drafts.per_step_drafted), tuple(drafts.per_step_accepted))
        else:
            step_time = stall
            t1 = self.clock + step_time
        stats = h.collector.drain()
        for rid, eid in finished_now:
            self._live.pop(eid, None)
            iid = self._internal.get(rid, eid)
            self._stale_from.pop(iid, None)
            rec = self._records[rid]
            fp = stats.finished_preemptions
            rec.num_preemptions = int(fp.get(iid, fp.get(eid, rec.num_preemptions)))
            if rec.num_generated != rec.output_len:
                self._die(RuntimeError(f"request {rid} finished with {rec.num_generated} tokens"))
                raise EngineDiedError(
                    f"request {rid} finished after {rec.num_generated} tokens, "
                    f"expected output_len={rec.output_len}"
                )
            n_done += 1
        self._completed += n_done
        self.clock = t1
        n_arr, arr_area = self._arrive_until(t1)
        area = n_sys_before * step_time + arr_area
        return self._snapshot(
            step=step_time,
            plan=plan,
            stats=stats,
            emitted=emitted,
            n_arr=n_arr,
            n_done=n_done,
            area=area,
            k=k,
            transition=transition,
        )

    def _placement_change_wanted(self) -> bool:
        if self._off is None:
            return False
        return self._want.offload == self._off.resident

    def _idle(self) -> Snapshot:
        if self._next < len(self._requests):
            t = float(self._requests[self._next].arrival_s)
            gap = max(t - self.clock, 0.0)
            self.clock = max(self.clock, t)
        else:
            gap = 0.0
        n_arr, _ = self._arrive_until(self.clock)
        k = self._want.k if self.drafter_state is DrafterState.RESIDENT else 0
        return self._no_work_snapshot(gap, n_arr, k)

    def _no_work_snapshot(self, step: float, n_arr: int, k: int) -> Snapshot:
        """Episode start or an idle jump: nothing ran, only arrivals happened."""
        return self._snapshot(step=step, plan=None, stats=None, emitted=0, n_arr=n_arr,
                              n_done=0, area=0.0, k=k, transition=None)  # fmt: skip

    def _engine_id(self, rid: int) -> str:
        return f"e{self._episode}-r{rid}"

    def _arrive_until(self, t: float) -> tuple[int, float]:
        """Add the requests arriving by virtual time t to the engine."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        h = self._h
        vocab = h.vocab_size
        n0 = self._next
        area = 0.0
        while self._next < len(self._requests) and self._requests[self._next].arrival_s <= t:
            r = self._requests[self._next]
            rng = np.random.default_rng([self.prompt_seed, r.request_id])
            low = 4 if vocab > 8 else 0
            ids = rng.integers(low, vocab, size=r.prompt_len).tolist()
            sp = SamplingParams(
                max_tokens=r.output_len,
                ignore_eos=True,
                temperature=0.0,
                detokenize=False,
                output_kind=RequestOutputKind.DELTA,
            )
            eid = self._engine_id(r.request_id)
            try:
                iid = h.engine.add_request(eid, {"prompt_token_ids": ids}, sp)
            except (ValueError, TypeError) as exc:
                raise RequestRejectedError(
                    f"vLLM rejected request {r.request_id} (prompt_len={r.prompt_len}, "
                    f"output_len={r.output_len}): {exc}"
                ) from exc
            except BaseException as exc:
                self._die(exc)
                raise EngineDiedError(
                    f"vLLM engine died adding request {r.request_id}: {exc}"
                ) from exc
            self._live[eid] = r.request_id
            self._internal[r.request_id] = iid if isinstance(iid, str) else eid
            self._records[r.request_id] = RequestRecord(
                request_id=r.request_id,
                arrival_s=r.arrival_s,
                prompt_len=r.prompt_len,
                output_len=r.output_len,
            )
            self._tokens[r.request_id] = []
            area += t - r.arrival_s
            self._next += 1
        return self._next - n0, area

    # ------------------------------------------------------------------ drafter placement
    def _offload(self) -> float:
        t0 = time.perf_counter()
        self._off.offload()
        if self._hold is not None:
            self._hold.release()
        self._stale_from.clear()
        return time.perf_counter() - t0

    def _reload(self, charge: bool) -> float:
        """Weights back, KV blocks back (preempting if needed), drafter KV refill."""
        t0 = time.perf_counter()
        sched = self._h.scheduler
        if self._hold is not None:
            pool = self._hold.pool
            while pool.get_num_free_blocks() < self._hold.num_blocks and sched.running:
                req = sched.running.pop()  # vLLM preempts from the back of `running`
                sched._preempt_request(req, time.monotonic())
                self._stale_from.pop(req.request_id, None)
        self._off.reload()
        if self._hold is not None:
            self._hold.hold()
        if self.config.refill_on_reload:
            for req in sched.running:
                s = self._stale_from.get(req.request_id)
                if s is not None and s < req.num_computed_tokens:
                    self.refill_tokens += req.num_computed_tokens - s
                    req.num_computed_tokens = s  # recomputed next step by target + drafter
        self._stale_from.clear()
        return time.perf_counter() - t0 if charge else 0.0

    def _die(self, exc: BaseException) -> None:
        self._dead = f"{type(exc).__name__}: {exc}"
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ snapshot
    def _snapshot(
        self,
        *,
        step: float,
        plan: Any,
        stats: Any,
        emitted: int,
        n_arr: int,
        n_done: int,
        area: float,
        k: int,
        transition: DrafterState | None,
    ) -> Snapshot:
        held = 0 if self._hold is None else self._hold.held
        k_max = self.k_max
        if stats is not None and stats.num_draft_tokens:
            acc_pos = tuple(int(x) for x in stats.accepted_per_pos[:k_max])
            drf_pos = tuple(int(x) for x in stats.drafted_per_pos[:k_max])
        else:
            acc_pos = drf_pos = ()
        return Snapshot(
            clock_s=self.clock,
            step_time_s=step,
            **self._h.scheduler.rlspec_snapshot_fields(plan, held),
            k=int(k),
            num_drafted=0 if stats is None else int(stats.num_draft_tokens),
            num_accepted=0 if stats is None else int(stats.num_accepted_tokens),
            num_emitted=int(emitted),
            num_arrivals=int(n_arr),
            num_completions=int(n_done),
            num_draft_reqs=0 if stats is None else int(stats.num_drafts),
            request_seconds=float(area),
            drafter=transition if transition is not None else self.drafter_state,
            accepted_per_pos=acc_pos,
            drafted_per_pos=drf_pos,
        )
