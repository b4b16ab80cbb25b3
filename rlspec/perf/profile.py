"""Hardware and model profiles: the numbers the cost model is made of.

Profiles are data (`rlspec/perf/profiles/*.yaml`), each number with its source, so a
user can add their own accelerator or model pair without touching code; calibration
writes the same format with fitted coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rlspec.config import ConfigError, check_range, from_dict, load_yaml
from rlspec.perf.host import HostFingerprint

PROFILE_DIR = Path(__file__).parent / "profiles"


@dataclass(frozen=True)
class HardwareProfile:
    name: str
    peak_flops: float  # dense FLOP/s at the model's dtype
    mem_bandwidth: float  # bytes/s of device memory
    host_link_bandwidth: float  # bytes/s device <-> host (drafter offload/reload)
    memory_bytes: float  # device memory
    compute_efficiency: float = 0.6  # achieved share of peak_flops in large GEMMs
    bandwidth_efficiency: float = 0.8  # achieved share of mem_bandwidth when streaming weights/KV

    def __post_init__(self) -> None:
        for name in ("peak_flops", "mem_bandwidth", "host_link_bandwidth", "memory_bytes"):
            check_range(f"hardware.{name}", getattr(self, name), lo=1.0)
        check_range("hardware.compute_efficiency", self.compute_efficiency, 0.01, 1.0)
        check_range("hardware.bandwidth_efficiency", self.bandwidth_efficiency, 0.01, 1.0)


@dataclass(frozen=True)
class ModelProfile:
    name: str
    params: float  # parameter count
    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int = 2

    def __post_init__(self) -> None:
        check_range("model.params", self.params, lo=1.0)
        for name in ("layers", "kv_heads", "head_dim", "dtype_bytes"):
            check_range(f"model.{name}", getattr(self, name), lo=1)

    @property
    def weight_bytes(self) -> float:
        return self.params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> float:
        return 2.0 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes


@dataclass(frozen=True)
class FittedStepTime:
    """Linear step-time coefficients fitted on a live engine (`rlspec calibrate`).

    A pass over `tokens` new tokens attending to `context` cached tokens costs
    `base + per_token * tokens + per_context * context` seconds: the load-independent
    part (weights streamed once) and the load-dependent parts of the latency model. The
    target's prefill chunks add `per_prefill_pair` per query-key pair their causal
    attention scores (`rlspec.perf.step_time.prefill_attention_pairs`); profiles fitted
    before it was measured carry 0: the step time they were fitted with.

    A step that proposes drafts (k >= 1) also pays `draft_propose_s` once, beyond its drafter
    passes: sampling the drafts and preparing the proposer's inputs. Without it a line
    through the passes charges k = 1 too little and k = 4 too much (the AMX Xeon's drafter
    measured 1.10-1.17x its charge at k = 1 and 0.92-0.99x at k = 4; notes/calibration.md
    section 23); profiles fitted before it carry 0.
    """

    target_base_s: float
    target_per_token_s: float
    target_per_context_s: float
    draft_base_s: float
    draft_per_token_s: float
    draft_per_context_s: float
    target_per_prefill_pair_s: float = 0.0
    draft_propose_s: float = 0.0

    def __post_init__(self) -> None:
        for f in self.__dataclass_fields__:
            check_range(f"fitted.{f}", getattr(self, f), lo=0.0)


@dataclass(frozen=True)
class KVPool:
    """The KV cache the live engine had when it was calibrated. A live run that means to
    reproduce the calibrated engine (the sweeps, the probes) starts vLLM with this pool
    rather than letting it size one from the memory free at that moment."""

    block_size: int  # tokens per block
    num_blocks: int  # vLLM's pool, including its null block
    block_bytes: int  # every layer of target and drafter, K and V, at the engine's dtype

    def __post_init__(self) -> None:
        check_range("kv_pool.block_size", self.block_size, lo=1)
        check_range("kv_pool.num_blocks", self.num_blocks, lo=2)
        check_range("kv_pool.block_bytes", self.block_bytes, lo=1)

    @property
    def usable_blocks(self) -> int:
        """Blocks requests can hold (vLLM keeps one as its null block): a matched
        simulator's `engine.num_kv_blocks`."""
        return self.num_blocks - 1

    @property
    def memory_bytes(self) -> int:
        """vLLM's `kv_cache_memory_bytes` for exactly this pool."""
        return self.num_blocks * self.block_bytes


@dataclass(frozen=True)
class Profile:
    """One deployment: an accelerator serving a target model with a draft model."""

    name: str
    hardware: HardwareProfile
    target: ModelProfile
    draft: ModelProfile
    iteration_overhead_s: float  # scheduler, sampling, launch: paid once per iteration
    draft_pass_overhead_s: float  # launch cost of each sequential draft pass
    offload_fixed_s: float  # fixed cost of one drafter offload or reload (sync, allocator)
    kind: Literal["roofline", "fitted"] = "roofline"
    fitted: FittedStepTime | None = None
    # Where a fitted profile was measured (`rlspec calibrate` records it); the live backend
    # warns when it starts on a different kind of host. None: not recorded (roofline, older fits).
    host: HostFingerprint | None = None
    kv_pool: KVPool | None = None  # recorded by `rlspec calibrate`; None: not recorded
    sources: dict[str, str] = field(default_factory=dict)  # where each number comes from

    def __post_init__(self) -> None:
        check_range("iteration_overhead_s", self.iteration_overhead_s, lo=0.0)
        check_range("draft_pass_overhead_s", self.draft_pass_overhead_s, lo=0.0)
        check_range("offload_fixed_s", self.offload_fixed_s, lo=0.0)
        if self.kind == "fitted" and self.fitted is None:
            raise ConfigError("fitted: required when kind is 'fitted'")
        if self.kind == "roofline" and self.fitted is not None:
            raise ConfigError("fitted: only allowed when kind is 'fitted'")


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped profile by name (e.g. `h100-llama8b-1b`) or any profile YAML by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"profile: unknown profile {str(name_or_path)!r}; shipped: {available_profiles()}"
                " (or give a path to a profile YAML)"
            )
    return from_dict(Profile, load_yaml(path), f"profile[{path.name}]")
