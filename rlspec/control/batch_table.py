"""`batch-table`: vLLM's dynamic speculative decoding, a fixed batch-size -> k table.

Mirrors `speculative_config.num_speculative_tokens_per_batch_size = [[lo, hi, k], ...]`,
looked up with the number of running requests each step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlspec.config import ConfigError
from rlspec.control.action import Action
from rlspec.control.base import ControlContext, Controller
from rlspec.features import FeatureTracker


@dataclass(frozen=True)
class BatchTableConfig:
    table: list[list[int]] = field(
        default_factory=lambda: [
            [1, 8, 4],
            [9, 32, 3],
            [33, 64, 2],
            [65, 128, 1],
            [129, 1 << 30, 0],
        ]
    )

    def __post_init__(self) -> None:
        prev_hi = 0
        for i, row in enumerate(self.table):
            if len(row) != 3:
                raise ConfigError(f"batch_table.table[{i}]: expected [lo, hi, k], got {row}")
            lo, hi, k = row
            if lo != prev_hi + 1 or hi < lo or k < 0:
                raise ConfigError(
                    f"batch_table.table[{i}]: rows must tile 1.. contiguously with k >= 0, got {row}"
                )
            prev_hi = hi


class BatchTableController(Controller):
    name = "batch-table"

    def __init__(self, cfg: BatchTableConfig | None = None):
        self.cfg = cfg or BatchTableConfig()

    def reset(self, ctx: ControlContext) -> None:
        super().reset(ctx)
        top = self.cfg.table[-1][1]
        self._lookup = [0] * (min(top, ctx.max_num_seqs) + 1)
        for lo, hi, k in self.cfg.table:
            for b in range(lo, min(hi, ctx.max_num_seqs) + 1):
                self._lookup[b] = min(k, ctx.k_max)
        if len(self._lookup) <= ctx.max_num_seqs:
            raise ConfigError(
                f"batch_table.table: covers batch sizes up to {top}, "
                f"engine.max_num_seqs is {ctx.max_num_seqs}"
            )

    def decide(self, obs: FeatureTracker) -> Action:
        return Action(k=self._lookup[min(obs.batch_size, self.ctx.max_num_seqs)])
