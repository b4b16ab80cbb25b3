"""Engine limits of the simulated server: the knobs vLLM exposes under the same names."""

from __future__ import annotations

from dataclasses import dataclass

from rlspec.config import check_range


@dataclass(frozen=True)
class EngineConfig:
    max_num_seqs: int = 256  # most requests running at once (vLLM --max-num-seqs)
    max_num_batched_tokens: int = 8192  # token budget of one iteration (chunked prefill)
    block_size: int = 16  # tokens per KV block
    gpu_memory_utilization: float = 0.9  # share of device memory for weights + KV
    k_max: int = 4  # largest draft length; the action space is Discrete(k_max + 2)
    num_kv_blocks: int | None = None  # override the KV pool size (blocks incl. the drafter's share)

    def __post_init__(self) -> None:
        check_range("engine.max_num_seqs", self.max_num_seqs, lo=1)
        check_range("engine.max_num_batched_tokens", self.max_num_batched_tokens, lo=16)
        check_range("engine.block_size", self.block_size, lo=1)
        check_range("engine.gpu_memory_utilization", self.gpu_memory_utilization, 0.01, 1.0)
        check_range("engine.k_max", self.k_max, 1, 16)
        if self.num_kv_blocks is not None:
            check_range("engine.num_kv_blocks", self.num_kv_blocks, lo=1)
