"""The environment's reward (DESIGN section 5).

Default: minus the area under requests-in-system over the decision interval, in
request-seconds, scaled. By Little's Law its sum over an episode is minus the total time
all requests spent in the system, so maximising it minimises mean latency, the metric the
literature reports. Optional weighted terms: SLO violations (requests that completed this
interval outside their TTFT/TPOT SLO) and a cost per change of action.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlspec.config import check_range


@dataclass(frozen=True)
class RewardConfig:
    scale: float = 0.1  # reward = -scale * request-seconds (VecNormalize rescales anyway)
    slo_weight: float = 0.0  # penalty per request finishing outside its SLO this interval
    switch_weight: float = 0.0  # penalty per change of action

    def __post_init__(self) -> None:
        check_range("reward.scale", self.scale, lo=0.0)
        check_range("reward.slo_weight", self.slo_weight, lo=0.0)
        check_range("reward.switch_weight", self.switch_weight, lo=0.0)

    def __call__(self, request_seconds: float, slo_misses: int, switched: bool) -> float:
        return -(
            self.scale * request_seconds
            + self.slo_weight * slo_misses
            + (self.switch_weight if switched else 0.0)
        )
