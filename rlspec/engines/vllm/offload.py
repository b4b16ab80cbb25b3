"""Drafter offload / reload for an in-process vLLM engine, and the KV blocks it pays for.

vLLM has no drafter offload. What this module does (see notes/vllm.md for measurements):

* **Skipping the drafter.** `DraftModelProposer.propose` is wrapped on the instance:
  while the drafter is away it returns an empty `[batch, 0]` draft tensor, exactly what
  vLLM's own k=0 path returns, without running the draft model. A forward pre-hook on the
  draft model counts its forward passes (`forward_calls`), so tests can prove it never
  runs while offloaded.
* **Weights off the device.** `offload()` drops the draft `nn.Module` (`drafter.model =
  None`) so every tensor it owns is freed: on a GPU its parameters, on vLLM's CPU backend
  the oneDNN / SGL pre-packed weight copies the linear layers keep in closures (their
  `weight` parameters are already empty there). The Attention modules (which hold the
  binding to the drafter's KV-cache tensors, not weights) are kept aside. `reload()`
  rebuilds the draft model with vLLM's own loader (`drafter._get_model()`: read the
  checkpoint from host storage, pre-pack, move to the device) and puts the saved
  Attention modules back into it and into the forward context. Same code on CPU and GPU.
* **KV memory.** `KVHoldBack` takes `ceil(drafter weight bytes / KV bytes per block)`
  blocks out of the scheduler's block pool while the drafter is resident and returns them
  when it leaves, so the KV capacity the scheduler sees grows by the drafter's weight
  footprint while it is offloaded (vLLM cannot resize its KV tensors at run time).

Import this module only where vLLM is installed.
"""

from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch


def _rss_bytes() -> int:
    try:
        import psutil

        return int(psutil.Process(os.getpid()).memory_info().rss)
    except Exception:  # noqa: BLE001
        return 0


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:  # noqa: BLE001 - not glibc: RSS just stays higher
        pass


def _device_allocated(device: torch.device) -> int:
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.memory_allocated(device))
    return _rss_bytes()


@dataclass(slots=True)
class TransferRecord:
    kind: str  # "offload" | "reload"
    seconds: float
    freed_bytes: (
        int  # device bytes (CUDA allocated, or process RSS on CPU) released (+) / taken (-)
    )


class DrafterOffloader:
    """Owns the drafter's placement; see the module docstring."""

    def __init__(self, runner: Any, vllm_config: Any) -> None:
        drafter = getattr(runner, "drafter", None)
        if drafter is None or not hasattr(drafter, "_get_model") or drafter.model is None:
            raise RuntimeError("the model runner has no draft-model proposer to offload")
        self.runner = runner
        self.drafter = drafter
        self.vllm_config = vllm_config
        self.device = torch.device(getattr(runner, "device", "cpu"))
        self.resident = True
        self.forward_calls = 0  # forward passes of the draft model (all of them, ever)
        self.propose_s = 0.0  # wall time inside the drafter's propose() (all of it, ever)
        self.sync_timing = False  # synchronize a CUDA device around propose() (calibration)
        self.history: list[TransferRecord] = []
        self._saved_attn: dict[str, Any] = {}
        self._hook_model(drafter.model)
        self._orig_propose = drafter.propose
        drafter.propose = self._guarded_propose  # instance attribute shadows the method

    # ------------------------------------------------------------------ skipping
    def _hook_model(self, model: torch.nn.Module) -> None:
        def count(_module: Any, _args: Any) -> None:
            self.forward_calls += 1

        model.register_forward_pre_hook(count)

    def _guarded_propose(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.resident:
            sync = self.sync_timing and self.device.type == "cuda"
            if sync:
                torch.cuda.synchronize(self.device)
            t0 = time.perf_counter()
            out = self._orig_propose(*args, **kwargs)
            if sync:
                torch.cuda.synchronize(self.device)
            self.propose_s += time.perf_counter() - t0
            return out
        cad = kwargs.get("common_attn_metadata")
        if cad is None:
            raise RuntimeError("drafter offloaded but propose() got no common_attn_metadata")
        ref = kwargs.get("next_token_ids")
        device = ref.device if isinstance(ref, torch.Tensor) else self.device
        # Same result as vLLM's k=0 path: no drafts for any request of the batch.
        return torch.empty((cad.batch_size(), 0), device=device, dtype=torch.int64)

    # ------------------------------------------------------------------ placement
    def _forward_context(self) -> dict[str, Any]:
        return self.vllm_config.compilation_config.static_forward_context

    def offload(self) -> TransferRecord:
        if not self.resident:
            return TransferRecord("offload", 0.0, 0)
        t0 = time.perf_counter()
        before = _device_allocated(self.device)
        ctx = self._forward_context()
        names = sorted(self.drafter._draft_attn_layer_names)
        self._saved_attn = {n: ctx[n] for n in names}
        self.resident = False
        self.drafter.model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
        else:
            _malloc_trim()  # hand the freed heap back to the OS, like empty_cache on a GPU
        rec = TransferRecord(
            "offload", time.perf_counter() - t0, before - _device_allocated(self.device)
        )
        self.history.append(rec)
        return rec

    def reload(self) -> TransferRecord:
        if self.resident:
            return TransferRecord("reload", 0.0, 0)
        t0 = time.perf_counter()
        before = _device_allocated(self.device)
        ctx = self._forward_context()
        for n in self._saved_attn:
            ctx.pop(n, None)  # the rebuilt model registers Attention layers under the same names
        try:
            from vllm.config import set_current_vllm_config

            with set_current_vllm_config(self.vllm_config):
                model = self.drafter._get_model()
        except BaseException:
            ctx.update(self._saved_attn)
            raise
        for name, old in self._saved_attn.items():
            new = ctx.get(name)
            if new is not None and new is not old:
                _replace_submodule(model, new, old)
            ctx[name] = old
        self._hook_model(model)
        self.drafter.model = model
        self.resident = True
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        rec = TransferRecord(
            "reload", time.perf_counter() - t0, before - _device_allocated(self.device)
        )
        self.history.append(rec)
        return rec


def _replace_submodule(root: torch.nn.Module, old: torch.nn.Module, new: torch.nn.Module) -> None:
    for name, mod in root.named_modules():
        if mod is old:
            parent_name, _, attr = name.rpartition(".")
            parent = root.get_submodule(parent_name) if parent_name else root
            setattr(parent, attr, new)
            return
    raise RuntimeError("rebuilt draft model: attention layer not found in its module tree")


class KVHoldBack:
    """Keeps `num_blocks` KV blocks out of the scheduler's reach while the drafter is resident."""

    def __init__(self, scheduler: Any, drafter_bytes: int) -> None:
        self.pool = scheduler.kv_cache_manager.block_pool
        kv_cfg = scheduler.kv_cache_config
        total = sum(int(t.size) for t in kv_cfg.kv_cache_tensors)
        self.bytes_per_block = max(1, total // max(1, kv_cfg.num_blocks))
        self.drafter_bytes = int(drafter_bytes)
        usable = self.pool.num_gpu_blocks - 1  # block 0 is vLLM's null block
        self.num_blocks = min(math.ceil(self.drafter_bytes / self.bytes_per_block), usable - 1)
        self._held: list[Any] = []

    @property
    def held(self) -> int:
        return len(self._held)

    def hold(self) -> None:
        if self._held or self.num_blocks <= 0:
            return
        if self.pool.get_num_free_blocks() < self.num_blocks:
            raise RuntimeError(
                f"need {self.num_blocks} free KV blocks for the drafter, "
                f"have {self.pool.get_num_free_blocks()}"
            )
        self._held = self.pool.get_new_blocks(self.num_blocks)

    def release(self) -> None:
        if self._held:
            self.pool.free_blocks(self._held)
            self._held = []
