"""`ServingScheduler`: the `scheduler_cls` that `rlspec serve` gives vLLM's server.

It runs in vLLM's engine-core process. Before every `schedule()` (the hook of
`RLSpecScheduler`) it

1. turns what the previous step did into a `Snapshot` with the live backend's fields and
   semantics (`rlspec.engines.vllm.backend`): step time, running/waiting, KV blocks
   (usable minus held back), scheduled/prefill/decode counts (`StepPlan`), the k used,
   drafted/accepted tokens per position (from the scheduler's own spec-decode accounting),
   emitted tokens, arrivals, completions, preemptions, request-seconds, drafter state.
   The clock is wall time: a step lasts from one `schedule()` to the next; when the
   engine went idle in between, the busy part ends when the step's outputs were made and
   the idle gap becomes an idle snapshot (as the backend reports one);
2. feeds it to the `FeatureTracker` (`rlspec.features`, the training code) and, every
   `decision_interval` steps, asks the controller through `SafeDecider` (fallback rules);
3. applies the action: k through vLLM's dynamic-SD lookup (`RLSpecScheduler.set_k`),
   drafter offload / reload on every worker through `executor.collective_rpc`
   (`worker_ops.drafter_op`), the optional KV hold-back (`KVHoldBack`) and, after a
   reload, the drafter-KV refill (rewinding `num_computed_tokens` of running requests to
   where the drafter fell behind, as the backend does; vLLM recomputes them losslessly).

Nothing in here may stop serving: any failure around a decision uses the safe k and is
counted (`reason="internal"`); a failed transfer leaves the drafter where it is
(`rlspec_drafter_transfer_errors_total`) and speculation off while it is away.

Import this module only where vLLM is installed; vLLM imports it by the path
`rlspec.serving.hook.ServingScheduler`.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import rlspec.engines.vllm  # noqa: F401  (Intel OpenMP before vLLM's kernels, if not preloaded)
from rlspec.engines.snapshot import DrafterState, Snapshot
from rlspec.engines.vllm.scheduler_hook import RLSpecScheduler, StepPlan
from rlspec.serving.config import ServeConfig, build_controller, control_context
from rlspec.serving.metrics import ServingMetrics
from rlspec.serving.runtime import SafeDecider

try:
    from vllm.logger import init_logger

    logger = init_logger("vllm.rlspec.serving")  # a child of vLLM's logger: same handler/format
except Exception:  # noqa: BLE001
    import logging

    logger = logging.getLogger("rlspec.serving")


class _SpecTally:
    """Drafted / accepted tokens of one step, as vLLM's SpecDecodingStats counts them."""

    __slots__ = ("drafts", "tokens", "accepted", "acc_pos", "drf_pos")

    def __init__(self, k_max: int) -> None:
        self.drafts = self.tokens = self.accepted = 0
        self.acc_pos = [0] * k_max
        self.drf_pos = [0] * k_max

    def observe(self, drafted: int, accepted: int) -> None:
        self.drafts += 1
        self.tokens += drafted
        self.accepted += accepted
        for i in range(min(accepted, len(self.acc_pos))):
            self.acc_pos[i] += 1
        for i in range(min(drafted, len(self.drf_pos))):
            self.drf_pos[i] += 1


def _check_profile_host(profile: Any, vllm_config: Any, metrics: ServingMetrics) -> None:
    """Serving goes on against a profile of another kind of host (the analytical controllers
    and the policy's features then read wrong step costs), but says so once, in the log and
    in `rlspec_profile_host_differences`."""
    from rlspec.perf.host import mismatch_message, vllm_host

    if profile.host is None:
        metrics.profile_host(None)
        return
    try:
        here = vllm_host(vllm_config)
    except Exception as exc:  # noqa: BLE001  (a check, never a reason to stop serving)
        logger.warning("rlspec serve: could not read this host to check profile %s: %s", profile.name, exc)
        return
    diffs = profile.host.differences(here)
    metrics.profile_host(diffs)
    if diffs:
        logger.warning("rlspec serve: %s", mismatch_message(profile.name, profile.host, here, diffs))


def _find_executor() -> Any:
    """The engine core that is constructing this scheduler holds the executor."""
    f = sys._getframe(1)
    for _ in range(12):
        if f is None:
            break
        obj = f.f_locals.get("self")
        ex = getattr(obj, "model_executor", None)
        if ex is not None and hasattr(ex, "collective_rpc"):
            return ex
        f = f.f_back
    return None


class ServingScheduler(RLSpecScheduler):
    """RLSpecScheduler driven by an rlspec controller; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = ServeConfig.from_env()
        if self.num_spec_tokens != cfg.k_max:
            raise RuntimeError(
                f"rlspec serve: the engine runs num_speculative_tokens={self.num_spec_tokens} "
                f"but the controller was configured for k_max={cfg.k_max}"
            )
        self._rl_cfg = cfg
        self._rl_executor = _find_executor()
        block_size = int(getattr(self, "block_size", None) or self.cache_config.block_size)
        ctx = control_context(cfg, self.scheduler_config.max_num_seqs, block_size)
        controller = build_controller(cfg.controller, cfg.baselines)
        self._rl_metrics = ServingMetrics(cfg.controller, cfg.k_max)
        _check_profile_host(ctx.cost.profile, self.vllm_config, self._rl_metrics)
        self._rl = SafeDecider(controller, ctx, cfg, self._rl_metrics, logger)
        self._rl_resident = True
        self._rl_hold = None
        if cfg.kv_holdback:
            from rlspec.engines.vllm.offload import KVHoldBack
            from rlspec.perf.checkpoint import checkpoint_param_count

            dtype = self.vllm_config.model_config.dtype
            itemsize = getattr(dtype, "itemsize", 2)
            self._rl_hold = KVHoldBack(self, checkpoint_param_count(cfg.draft_model) * itemsize)
            self._rl_hold.hold()
        if self._rl_executor is None and cfg.allow_offload:
            logger.warning(
                "rlspec serve: could not find vLLM's executor from the scheduler; drafter "
                "offload is disabled (offload actions run as k=0, drafter resident)"
            )
        # Step accounting (perf_counter seconds).
        self._rl_t0 = time.perf_counter()
        self._rl_step_start: float | None = None
        self._rl_step_end: float | None = None
        self._rl_idle_after = False
        self._rl_n_sys_start = 0
        self._rl_step_k = 0
        self._rl_step_transition: DrafterState | None = None
        self._rl_spec = _SpecTally(cfg.k_max)
        self._rl_emitted = 0
        self._rl_completions = 0
        self._rl_arrivals: list[float] = []
        self._rl_stale_from: dict[str, int] = {}
        self._rl_started = False
        self.set_k(cfg.safe_k)
        self.rlspec_before_schedule = _before_schedule
        logger.info(
            "rlspec serve: controller %s, k_max=%d, decision every %d steps, budget %g us, "
            "safe k=%d, profile %s, offload %s (executor %s), KV hold-back %s",
            cfg.controller, cfg.k_max, cfg.decision_interval, cfg.decision_budget_us,
            cfg.safe_k, cfg.profile, "on" if cfg.allow_offload else "off",
            type(self._rl_executor).__name__,
            "off" if self._rl_hold is None else f"{self._rl_hold.num_blocks} blocks",
        )  # fmt: skip

    # ------------------------------------------------------------------ vLLM overrides
    def add_request(self, request: Any) -> None:
        super().add_request(request)
        self._rl_arrivals.append(time.perf_counter())

    def make_spec_decoding_stats(
        self,
        spec_decoding_stats: Any,
        num_draft_tokens: int,
        num_accepted_tokens: int,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        try:
            drafted = num_draft_tokens
            invalid = kwargs.get("num_invalid_spec_tokens")
            rid = kwargs.get("request_id")
            if invalid and rid is not None:
                drafted -= invalid.get(rid, 0)
            if drafted > 0:
                self._rl_spec.observe(drafted, num_accepted_tokens)
        except Exception:  # noqa: BLE001 - accounting must never break a step
            pass
        return super().make_spec_decoding_stats(
            spec_decoding_stats, num_draft_tokens, num_accepted_tokens, *args, **kwargs
        )

    def update_from_output(self, scheduler_output: Any, model_runner_output: Any) -> Any:
        outs = super().update_from_output(scheduler_output, model_runner_output)
        try:
            for eco in outs.values():
                for o in eco.outputs:
                    self._rl_emitted += len(o.new_token_ids)
                    if o.finish_reason is not None:
                        self._rl_completions += 1
            self._rl_step_end = time.perf_counter()
            running, waiting = self.get_request_counts()
            self._rl_idle_after = running + waiting == 0
        except Exception:  # noqa: BLE001
            pass
        return outs

    def shutdown(self) -> None:
        try:
            logger.info("rlspec controller %s at shutdown: %s", self._rl_cfg.controller,
                        self._rl_metrics.summary())  # fmt: skip
        except Exception:  # noqa: BLE001
            pass
        super().shutdown()

    # ------------------------------------------------------------------ snapshots
    def _rl_snapshot(
        self, now: float, dt: float, plan: StepPlan | None, arrivals: list[float], busy: bool
    ) -> Snapshot:
        held = 0 if self._rl_hold is None else self._rl_hold.held
        area = sum(now - t for t in arrivals)
        if busy:
            spec, self._rl_spec = self._rl_spec, _SpecTally(self._rl_cfg.k_max)
            emitted, self._rl_emitted = self._rl_emitted, 0
            done, self._rl_completions = self._rl_completions, 0
            area += self._rl_n_sys_start * dt
            transition = self._rl_step_transition
            k = self._rl_step_k
        else:
            spec, emitted, done, transition = None, 0, 0, None
            k = self.rlspec_k if self._rl_resident else 0
        if spec is not None and spec.tokens:
            acc_pos, drf_pos = tuple(spec.acc_pos), tuple(spec.drf_pos)
        else:
            acc_pos = drf_pos = ()
        if transition is not None:
            drafter = transition
        else:
            drafter = DrafterState.RESIDENT if self._rl_resident else DrafterState.OFFLOADED
        return Snapshot(
            clock_s=now - self._rl_t0,
            step_time_s=max(dt, 0.0),
            **self.rlspec_snapshot_fields(plan, held),
            k=int(k),
            num_drafted=0 if spec is None else spec.tokens,
            num_accepted=0 if spec is None else spec.accepted,
            num_emitted=int(emitted),
            num_arrivals=len(arrivals),
            num_completions=int(done),
            num_draft_reqs=0 if spec is None else spec.drafts,
            request_seconds=float(area),
            drafter=drafter,
            accepted_per_pos=acc_pos,
            drafted_per_pos=drf_pos,
        )

    def _rl_observe(self, now: float) -> None:
        """Snapshots of what happened since the last schedule() -> the tracker."""
        rl = self._rl
        arrivals, self._rl_arrivals = self._rl_arrivals, []
        if not self._rl_started:  # the first call: an initial idle snapshot (backend.start)
            self._rl_started = True
            rl.observe(self._rl_snapshot(now, 0.0, None, arrivals, busy=False), busy=False)
            return
        start = self._rl_step_start
        plan = self.rlspec_last_plan
        if not self._rl_resident and plan is not None:
            stale = self._rl_stale_from
            for rid, before in plan.computed_before.items():
                prev = stale.get(rid)
                if prev is None or before < prev:
                    stale[rid] = before
        end = self._rl_step_end
        if self._rl_idle_after and end is not None and end >= start:
            busy_arr = [t for t in arrivals if t <= end]
            idle_arr = [t for t in arrivals if t > end]
            rl.observe(self._rl_snapshot(end, end - start, plan, busy_arr, busy=True))
            rl.observe(self._rl_snapshot(now, now - end, None, idle_arr, busy=False), busy=False)
        else:
            rl.observe(self._rl_snapshot(now, now - start, plan, arrivals, busy=True))

    # ------------------------------------------------------------------ actions
    def _rl_apply(self, action: Any) -> None:
        transition = None
        can_move = self._rl_executor is not None and self._rl_cfg.allow_offload
        if can_move and action.offload and self._rl_resident:
            if self._rl_offload():
                transition = DrafterState.OFFLOADING
        elif can_move and not action.offload and not self._rl_resident:
            if self._rl_reload():
                transition = DrafterState.LOADING
        k = action.k if self._rl_resident else 0
        self.set_k(k)
        self.rlspec_track_computed = not self._rl_resident
        self._rl_step_k = k
        self._rl_step_transition = transition
        self._rl_metrics.state(k, not self._rl_resident)

    def _rl_rpc(self, op: str) -> list[dict[str, Any]]:
        from rlspec.serving.worker_ops import drafter_op

        out = self._rl_executor.collective_rpc(drafter_op, args=(op,))
        return out if isinstance(out, list) else [out]

    def _rl_offload(self) -> bool:
        t0 = time.perf_counter()
        try:
            reports = self._rl_rpc("offload")
        except Exception as exc:  # noqa: BLE001
            self._rl_metrics.transfer_error()
            logger.error("rlspec: drafter offload failed, drafter stays resident: %s", exc)
            return False
        dt = time.perf_counter() - t0
        if self._rl_hold is not None:
            self._rl_hold.release()
        self._rl_stale_from.clear()
        self._rl_resident = False
        self._rl_metrics.transfer("offload", dt)
        freed = sum(r.get("freed_bytes", 0) for r in reports)
        on_worker = max((r.get("seconds", 0.0) for r in reports), default=0.0)
        logger.info("rlspec: drafter offloaded on %d worker(s) in %.1f ms (%.1f ms on the "
                    "worker; freed %.1f MB)", len(reports), 1e3 * dt, 1e3 * on_worker,
                    freed / 1e6)  # fmt: skip
        return True

    def _rl_reload(self) -> bool:
        t0 = time.perf_counter()
        hold = self._rl_hold
        if hold is not None:
            pool = hold.pool
            while pool.get_num_free_blocks() < hold.num_blocks and self.running:
                req = self.running.pop()  # vLLM preempts from the back of `running`
                self._preempt_request(req, time.monotonic())
                self._rl_stale_from.pop(req.request_id, None)
        try:
            reports = self._rl_rpc("reload")
        except Exception as exc:  # noqa: BLE001
            self._rl_metrics.transfer_error()
            logger.error("rlspec: drafter reload failed, speculation stays off: %s", exc)
            return False
        if hold is not None:
            try:
                hold.hold()
            except RuntimeError as exc:  # not enough free blocks left: run without it
                logger.warning("rlspec: KV hold-back after reload skipped: %s", exc)
        refill = 0
        if self._rl_cfg.refill_on_reload:
            for req in self.running:
                s = self._rl_stale_from.get(req.request_id)
                if s is not None and s < req.num_computed_tokens:
                    refill += req.num_computed_tokens - s
                    req.num_computed_tokens = s  # recomputed next step by target + drafter
        self._rl_stale_from.clear()
        self._rl_resident = True
        dt = time.perf_counter() - t0
        self._rl_metrics.transfer("reload", dt)
        self._rl_metrics.refill(refill)
        on_worker = max((r.get("seconds", 0.0) for r in reports), default=0.0)
        logger.info("rlspec: drafter reloaded on %d worker(s) in %.1f ms (%.1f ms on the "
                    "worker), %d tokens to refill", len(reports), 1e3 * dt, 1e3 * on_worker,
                    refill)  # fmt: skip
        return True


def _before_schedule(sched: ServingScheduler) -> None:
    now = time.perf_counter()
    rl = sched._rl
    try:
        sched._rl_observe(now)
        decision = rl.decide() if rl.due else None
        action = rl.current if decision is None else decision.action
    except Exception as exc:  # noqa: BLE001 - never stop serving because of the controller
        action = rl.internal_fallback(exc).action
    try:
        sched._rl_apply(action)
    except Exception as exc:  # noqa: BLE001
        rl.internal_fallback(exc)
        try:
            sched.set_k(rl.safe.k if sched._rl_resident else 0)
            sched._rl_step_k = sched.rlspec_k
        except Exception:  # noqa: BLE001
            pass
    sched._rl_step_start = now  # the step's time includes this decision and any transfer
    try:
        running, waiting = sched.get_request_counts()
        sched._rl_n_sys_start = running + waiting
        rl.maybe_log_summary()
    except Exception:  # noqa: BLE001
        pass
