"""KV memory of the simulated engine, in vLLM-style blocks.

The pool is sized once, for target + drafter KV per token (vLLM allocates both models'
layers in one block table). While the drafter's weights are resident they hold back
`drafter_blocks` blocks; offloading returns exactly those blocks and reloading takes them
again. The live backend reclaims memory the same way (DESIGN section 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlspec.perf.profile import Profile
from rlspec.sim.config import EngineConfig


@dataclass
class BlockPool:
    total_blocks: int  # the whole pool
    drafter_blocks: int  # held back while the drafter is resident
    block_bytes: float
    used_blocks: int = 0  # held by requests
    drafter_resident: bool = True

    @classmethod
    def for_profile(cls, profile: Profile, engine: EngineConfig) -> BlockPool:
        per_token = profile.target.kv_bytes_per_token + profile.draft.kv_bytes_per_token
        block_bytes = engine.block_size * per_token
        drafter_blocks = math.ceil(profile.draft.weight_bytes / block_bytes)
        if engine.num_kv_blocks is not None:
            total = engine.num_kv_blocks
        else:
            budget = profile.hardware.memory_bytes * engine.gpu_memory_utilization
            total = int((budget - profile.target.weight_bytes) // block_bytes)
        if total <= drafter_blocks:
            raise ValueError(
                f"engine: KV pool of {total} blocks cannot hold the drafter's "
                f"{drafter_blocks} blocks; raise gpu_memory_utilization or num_kv_blocks"
            )
        return cls(total_blocks=total, drafter_blocks=drafter_blocks, block_bytes=block_bytes)

    @property
    def capacity(self) -> int:
        """Blocks requests may use right now."""
        return self.total_blocks - (self.drafter_blocks if self.drafter_resident else 0)

    @property
    def free(self) -> int:
        return self.capacity - self.used_blocks
