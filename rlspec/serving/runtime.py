"""The decision loop of a served engine, without vLLM: observe snapshots, decide safely.

`SafeDecider` owns the controller, its `FeatureTracker` (the one feature code training
uses) and the safety rules of DESIGN section 7:

* every `decision_interval` observed steps it asks `controller.decide(tracker)`;
* an exception, an action that is not a valid `Action` for this engine, or a decision
  slower than `decision_budget_us` is replaced by the safe action `Action(k=safe_k)`
  for that decision, counted in `rlspec_controller_fallbacks_total{reason}` and logged
  (the first few individually, then in the periodic summary); serving goes on;
* with `allow_offload=False` an offload action is applied as k=0 with the drafter
  resident (the policy still sees its own action in the counters).

The vLLM scheduler hook (`rlspec.serving.hook`) builds the snapshots and applies the
actions; this module is plain Python so its rules are tested without an engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlspec.control.action import OFFLOAD, Action
from rlspec.engines.snapshot import Snapshot
from rlspec.serving.config import ServeConfig
from rlspec.serving.metrics import ServingMetrics

LOG_FIRST_FALLBACKS = 5  # log this many fallbacks one by one, then only in summaries


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action  # what will be applied
    seconds: float  # wall time of controller.decide
    fallback: str | None  # reason the safe action replaced the controller's, or None
    label: str  # "k=N" or "offload" (the applied action)


class SafeDecider:
    """Controller + features + fallback rules for one served engine."""

    def __init__(
        self,
        controller: Any,
        ctx: Any,
        cfg: ServeConfig,
        metrics: ServingMetrics,
        log: logging.Logger | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.controller = controller
        self.ctx = ctx
        self.cfg = cfg
        self.metrics = metrics
        self.log = log or logging.getLogger("rlspec.serving")
        self.clock = clock
        controller.reset(ctx)
        self.tracker = ctx.tracker()
        self.safe = Action(k=cfg.safe_k)
        self.budget_s = cfg.decision_budget_us * 1e-6
        self.steps_since_decision = 0
        self.current: Action = self.safe
        self._last_summary = clock()

    # ------------------------------------------------------------------ observe
    def observe(self, snapshot: Snapshot, busy: bool = True) -> None:
        self.tracker.update(snapshot)
        self.steps_since_decision += 1
        if busy:
            self.metrics.step()

    @property
    def due(self) -> bool:
        return (
            self.metrics.decisions == 0 or self.steps_since_decision >= self.cfg.decision_interval
        )

    # ------------------------------------------------------------------ decide
    def decide(self) -> Decision:
        """One decision with the safety rules applied; never raises."""
        fallback: str | None = None
        detail = ""
        t0 = self.clock()
        try:
            action = self.controller.decide(self.tracker)
        except Exception as exc:  # noqa: BLE001 - any controller failure falls back
            action = None
            fallback = "exception"
            detail = f"{type(exc).__name__}: {exc}"
        seconds = self.clock() - t0
        if fallback is None:
            if not isinstance(action, Action) or action.k > self.cfg.k_max:
                fallback = "invalid_action"
                detail = f"got {action!r} (k_max={self.cfg.k_max})"
            elif seconds > self.budget_s:
                fallback = "budget"
                detail = f"took {seconds * 1e6:.0f} us > budget {self.cfg.decision_budget_us:g} us"
        if fallback is not None:
            action = self.safe
        if action.offload and not self.cfg.allow_offload:
            action = Action(k=0)
        return self._record(action, seconds, fallback, detail)

    def internal_fallback(self, exc: BaseException) -> Decision:
        """The serving hook itself failed around a decision: count it, use the safe k."""
        return self._record(self.safe, 0.0, "internal", f"{type(exc).__name__}: {exc}")

    def _record(
        self, action: Action, seconds: float, fallback: str | None, detail: str
    ) -> Decision:
        label = "offload" if action.offload else f"k={action.k}"
        self.metrics.decision(seconds, label, fallback)
        if fallback is not None:
            n = sum(self.metrics.fallbacks.values())
            if n <= LOG_FIRST_FALLBACKS:
                more = (
                    " (further fallbacks only in the summary)" if n == LOG_FIRST_FALLBACKS else ""
                )
                self.log.warning(
                    "rlspec controller %s fell back to k=%d (%s: %s)%s",
                    self.cfg.controller, self.cfg.safe_k, fallback, detail, more,
                )  # fmt: skip
        self.tracker.begin_interval()
        self.steps_since_decision = 0
        self.current = action
        return Decision(action, seconds, fallback, label)

    def maybe_log_summary(self) -> None:
        if self.cfg.log_interval_s <= 0:
            return
        now = self.clock()
        if now - self._last_summary >= self.cfg.log_interval_s:
            self._last_summary = now
            self.log.info("rlspec controller %s: %s", self.cfg.controller, self.metrics.summary())


__all__ = ["OFFLOAD", "Decision", "SafeDecider"]
