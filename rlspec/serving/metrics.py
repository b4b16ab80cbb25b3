"""The controller's Prometheus metrics, exported in vLLM's own `/metrics`.

The controller runs in vLLM's engine-core process, the HTTP server in the API-server
process. `rlspec serve` therefore always runs vLLM with `PROMETHEUS_MULTIPROC_DIR` set
(prometheus_client's multiprocess mode, which vLLM supports): every process writes its
samples to files there, and vLLM's `/metrics` handler reads them all through a
`MultiProcessCollector`. Gauges use `multiprocess_mode="mostrecent"` (vLLM does the same).

Names (all prefixed `rlspec_`):

| metric | type | meaning |
|---|---|---|
| `rlspec_controller_info{controller}` | gauge | 1, labelled with the controller spec |
| `rlspec_controller_k` | gauge | draft length in force now |
| `rlspec_controller_k_max` | gauge | the engine's k_max |
| `rlspec_drafter_offloaded` | gauge | 1 while the drafter is offloaded |
| `rlspec_controller_decisions_total` | counter | decisions taken (fallbacks included) |
| `rlspec_controller_actions_total{action}` | counter | applied actions: `k=0`..`k=K`, `offload` |
| `rlspec_controller_fallbacks_total{reason}` | counter | `exception`, `budget`, `invalid_action`, `internal` |
| `rlspec_controller_decision_seconds` | histogram | wall time of `controller.decide` |
| `rlspec_drafter_transfers_total{kind}` | counter | `offload` / `reload` done |
| `rlspec_drafter_transfer_seconds_total{kind}` | counter | time spent in them |
| `rlspec_drafter_transfer_errors_total` | counter | transfers that failed (serving went on at k=0) |
| `rlspec_drafter_refill_tokens_total` | counter | tokens recomputed to refill the drafter's KV |
| `rlspec_scheduler_steps_total` | counter | scheduling steps observed |
| `rlspec_profile_host_differences` | gauge | ways this host departs from the one the profile was fitted on (0: same kind; -1: the profile records none) |
"""

from __future__ import annotations

from collections import Counter as _Counter
from typing import Any

DECISION_BUCKETS = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3,
                    1e-2, 5e-2, 0.1, 1.0)  # fmt: skip
FALLBACK_REASONS = ("exception", "budget", "invalid_action", "internal")


class ServingMetrics:
    """Local counters (for logs and tests) mirrored into Prometheus when it is available."""

    def __init__(self, controller: str, k_max: int, registry: Any = None, prometheus: bool = True):
        self.k_max = k_max
        self.decisions = 0
        self.fallbacks: _Counter[str] = _Counter()
        self.actions: _Counter[str] = _Counter()
        self.transfers: _Counter[str] = _Counter()
        self.transfer_s: _Counter[str] = _Counter()
        self.transfer_errors = 0
        self.refill_tokens = 0
        self.steps = 0
        self.k = 0
        self.offloaded = False
        self.decision_s_sum = 0.0
        self.decision_s_max = 0.0
        self.host_differences: list[str] | None = None  # None: the profile records no host
        self._p: dict[str, Any] = {}
        if prometheus:
            try:
                self._make_prometheus(controller, registry)
            except ImportError:  # prometheus_client is a vLLM dependency; tests may lack it
                self._p = {}

    def _make_prometheus(self, controller: str, registry: Any) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = REGISTRY if registry is None else registry
        kw = {"registry": reg}
        g = {"multiprocess_mode": "mostrecent", **kw}
        p = self._p
        p["info"] = Gauge("rlspec_controller_info", "rlspec controller in use (value 1)",
                          ["controller"], **g)  # fmt: skip
        p["k"] = Gauge("rlspec_controller_k", "Draft length k in force", **g)
        p["k_max"] = Gauge("rlspec_controller_k_max", "Largest draft length of the engine", **g)
        p["offloaded"] = Gauge("rlspec_drafter_offloaded", "1 while the drafter is offloaded", **g)
        p["decisions"] = Counter("rlspec_controller_decisions", "Controller decisions", **kw)
        p["actions"] = Counter("rlspec_controller_actions", "Applied actions", ["action"], **kw)
        p["fallbacks"] = Counter(
            "rlspec_controller_fallbacks",
            "Decisions replaced by the safe k (controller error, over budget, ...)",
            ["reason"],
            **kw,
        )
        p["decision_s"] = Histogram(
            "rlspec_controller_decision_seconds",
            "Wall time of one controller decision",
            buckets=DECISION_BUCKETS,
            **kw,
        )
        p["transfers"] = Counter("rlspec_drafter_transfers", "Drafter offloads / reloads",
                                 ["kind"], **kw)  # fmt: skip
        p["transfer_s"] = Counter("rlspec_drafter_transfer_seconds",
                                  "Seconds spent offloading / reloading the drafter",
                                  ["kind"], **kw)  # fmt: skip
        p["transfer_errors"] = Counter("rlspec_drafter_transfer_errors",
                                       "Failed drafter transfers", **kw)  # fmt: skip
        p["refill"] = Counter("rlspec_drafter_refill_tokens",
                              "Tokens recomputed to refill the drafter KV after a reload",
                              **kw)  # fmt: skip
        p["steps"] = Counter("rlspec_scheduler_steps", "Scheduling steps observed", **kw)
        p["host"] = Gauge("rlspec_profile_host_differences",
                          "Ways this host departs from the profile's (0 same kind, -1 not recorded)", **g)  # fmt: skip
        p["info"].labels(controller=controller).set(1)
        p["k_max"].set(self.k_max)
        p["k"].set(0)
        p["offloaded"].set(0)
        for r in FALLBACK_REASONS:  # export zeros so dashboards see the series from the start
            p["fallbacks"].labels(reason=r)
        for kind in ("offload", "reload"):
            p["transfers"].labels(kind=kind)
            p["transfer_s"].labels(kind=kind)

    # ------------------------------------------------------------------ updates
    def profile_host(self, differences: list[str] | None) -> None:
        """How this host departs from the profile's (None: the profile records none)."""
        self.host_differences = differences
        if self._p:
            self._p["host"].set(-1 if differences is None else len(differences))

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self._p:
            self._p["steps"].inc(n)

    def decision(self, seconds: float, action_label: str, fallback: str | None) -> None:
        self.decisions += 1
        self.decision_s_sum += seconds
        self.decision_s_max = max(self.decision_s_max, seconds)
        self.actions[action_label] += 1
        if fallback is not None:
            self.fallbacks[fallback] += 1
        p = self._p
        if p:
            p["decisions"].inc()
            p["decision_s"].observe(seconds)
            p["actions"].labels(action=action_label).inc()
            if fallback is not None:
                p["fallbacks"].labels(reason=fallback).inc()

    def state(self, k: int, offloaded: bool) -> None:
        if k != self.k or offloaded != self.offloaded:
            self.k, self.offloaded = k, offloaded
            if self._p:
                self._p["k"].set(k)
                self._p["offloaded"].set(1 if offloaded else 0)

    def transfer(self, kind: str, seconds: float) -> None:
        self.transfers[kind] += 1
        self.transfer_s[kind] += seconds
        if self._p:
            self._p["transfers"].labels(kind=kind).inc()
            self._p["transfer_s"].labels(kind=kind).inc(seconds)

    def transfer_error(self) -> None:
        self.transfer_errors += 1
        if self._p:
            self._p["transfer_errors"].inc()

    def refill(self, tokens: int) -> None:
        self.refill_tokens += tokens
        if self._p and tokens:
            self._p["refill"].inc(tokens)

    def summary(self) -> str:
        mean_us = 1e6 * self.decision_s_sum / self.decisions if self.decisions else 0.0
        fb = ", ".join(f"{r}={n}" for r, n in sorted(self.fallbacks.items())) or "0"
        acts = " ".join(f"{a}:{n}" for a, n in sorted(self.actions.items()))
        return (
            f"steps={self.steps} decisions={self.decisions} k={self.k} "
            f"offloaded={int(self.offloaded)} decision_us mean={mean_us:.1f} "
            f"max={1e6 * self.decision_s_max:.1f} fallbacks: {fb} "
            f"transfers: offload={self.transfers['offload']} reload={self.transfers['reload']} "
            f"actions: {acts}"
        )
