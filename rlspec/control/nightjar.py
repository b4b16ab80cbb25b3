"""`nightjar`: Nightjar-style adaptive SD (arXiv 2512.22420).

Two parts:
- a bandit per batch-size bucket (powers of two) over k in 0..k_max, rewarded with the
  measured goodput (emitted tokens per second) of the interval the arm was played in,
  choosing by discounted UCB so it tracks drifting acceptance;
- offload under pressure: when requests queue (or KV is nearly full with a queue) for
  `patience` decisions, speculation stops and the drafter leaves the accelerator, giving its
  memory to KV; it comes back only after the queue has been empty and KV below
  `reload_kv_below` for `patience` decisions (hysteresis, since a reload costs a transfer
  and a drafter-KV refill).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlspec.config import check_range
from rlspec.control.action import OFFLOAD, Action
from rlspec.control.base import ControlContext, Controller
from rlspec.features import FeatureTracker


@dataclass(frozen=True)
class NightjarConfig:
    exploration: float = 0.3  # UCB bonus scale, relative to the bucket's best goodput
    discount: float = 0.98  # per play of the bucket: forget old rewards
    offload_waiting_frac: float = 0.05  # queue length / max_num_seqs that counts as pressure
    offload_kv_above: float = 0.95  # KV usage that counts as pressure when anything waits
    reload_kv_below: float = 0.7
    patience: int = 3  # consecutive decisions before switching placement

    def __post_init__(self) -> None:
        check_range("nightjar.exploration", self.exploration, 0.0, 10.0)
        check_range("nightjar.discount", self.discount, 0.5, 1.0)
        check_range("nightjar.offload_waiting_frac", self.offload_waiting_frac, 0.0, 10.0)
        check_range("nightjar.offload_kv_above", self.offload_kv_above, 0.0, 1.0)
        check_range("nightjar.reload_kv_below", self.reload_kv_below, 0.0, 1.0)
        check_range("nightjar.patience", self.patience, lo=1)


class NightjarController(Controller):
    name = "nightjar"

    def __init__(self, cfg: NightjarConfig | None = None):
        self.cfg = cfg or NightjarConfig()

    def reset(self, ctx: ControlContext) -> None:
        super().reset(ctx)
        buckets = max(ctx.max_num_seqs, 1).bit_length() + 1
        arms = ctx.k_max + 1
        self._n = [[0.0] * arms for _ in range(buckets)]  # discounted plays
        self._g = [[0.0] * arms for _ in range(buckets)]  # discounted reward sums
        self._last: tuple[int, int] | None = None  # (bucket, arm) awaiting its reward
        self._offloaded = False
        self._streak = 0

    def decide(self, obs: FeatureTracker) -> Action:
        self._credit(obs)
        s = obs.last
        if s is not None and self._placement(obs):
            self._last = None
            return OFFLOAD
        bucket = obs.batch_size.bit_length()
        arm = self._choose(bucket)
        self._last = (bucket, arm)
        return Action(k=arm)

    def _credit(self, obs: FeatureTracker) -> None:
        if self._last is None or obs.interval_time_s <= 0:
            return
        bucket, arm = self._last
        reward = obs.interval_emitted / obs.interval_time_s
        n, g = self._n[bucket], self._g[bucket]
        d = self.cfg.discount
        for i in range(len(n)):
            n[i] *= d
            g[i] *= d
        n[arm] += 1.0
        g[arm] += reward

    def _choose(self, bucket: int) -> int:
        n, g = self._n[bucket], self._g[bucket]
        for arm, plays in enumerate(n):
            if plays == 0.0:
                return arm  # try every arm once per bucket
        means = [gi / ni for gi, ni in zip(g, n, strict=True)]
        scale = max(means) or 1.0
        total = sum(n)
        bonus = self.cfg.exploration * scale
        return max(
            range(len(n)), key=lambda a: means[a] + bonus * math.sqrt(math.log(total) / n[a])
        )

    def _placement(self, obs: FeatureTracker) -> bool:
        """Update the hysteresis state; True while the drafter should be off the device."""
        s = obs.last
        c = self.cfg
        pressure = s.num_waiting > c.offload_waiting_frac * self.ctx.max_num_seqs or (
            s.num_waiting > 0 and s.kv_usage > c.offload_kv_above
        )
        calm = s.num_waiting == 0 and s.kv_usage < c.reload_kv_below
        flip = calm if self._offloaded else pressure
        self._streak = self._streak + 1 if flip else 0
        if self._streak >= c.patience:
            self._offloaded = not self._offloaded
            self._streak = 0
        return self._offloaded
