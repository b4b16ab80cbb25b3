"""Build and write a `kind: fitted` profile (same format as rlspec/perf/profiles/*.yaml).

Model shapes come from the HF `config.json` (layers, KV heads, head dim) and the parameter
count from the safetensors headers; the step-time coefficients from the fit; the drafter
transfer cost from measured offload/reload times. Every number gets a `sources` entry
saying whether it was measured, derived from a measurement, or nominal.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import yaml

from rlspec.perf.checkpoint import checkpoint_param_count
from rlspec.perf.host import HostFingerprint, cpu_model
from rlspec.perf.profile import (
    FittedStepTime,
    HardwareProfile,
    KVPool,
    ModelProfile,
    Profile,
    load_profile,
)

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4, "float": 4, "half": 2, "bf16": 2,
                "fp16": 2, "fp32": 4}  # fmt: skip


def model_profile_from_hf(
    model_dir: str | Path, dtype: str | None = None, name: str | None = None
) -> ModelProfile:
    """A ModelProfile from an HF model folder (`config.json` + safetensors).

    `dtype` is what the engine runs (e.g. vLLM's `model_config.dtype`); default: the
    checkpoint's `torch_dtype` / `dtype`.
    """
    model_dir = Path(model_dir)
    cfg = json.loads((model_dir / "config.json").read_text())
    heads = int(cfg["num_attention_heads"])
    head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // heads)
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    dt = str(dtype or cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16").replace("torch.", "")
    if dt not in _DTYPE_BYTES:
        raise ValueError(f"{model_dir}: unknown dtype {dt!r}")
    try:
        params = checkpoint_param_count(model_dir)
    except FileNotFoundError:
        params = _params_from_config(cfg)
    return ModelProfile(
        name=name or model_dir.name,
        params=float(params),
        layers=int(cfg["num_hidden_layers"]),
        kv_heads=kv_heads,
        head_dim=head_dim,
        dtype_bytes=_DTYPE_BYTES[dt],
    )


def _params_from_config(cfg: dict) -> int:
    h, v, f, n = cfg["hidden_size"], cfg["vocab_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads = cfg["num_attention_heads"]
    hd = cfg.get("head_dim") or h // heads
    kv = cfg.get("num_key_value_heads") or heads
    per_layer = h * hd * (heads * 2 + kv * 2) + 3 * h * f + 2 * h
    emb = v * h * (1 if cfg.get("tie_word_embeddings") else 2)
    return int(n * per_layer + emb + h)


def host_memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16.0e9


def build_profile(
    name: str,
    target: ModelProfile,
    draft: ModelProfile,
    fitted: FittedStepTime,
    *,
    transfer_s: float,
    host_bandwidth: float,
    hardware_name: str | None = None,
    memory_bytes: float | None = None,
    host: HostFingerprint | None = None,
    kv_pool: KVPool | None = None,
    sources: dict[str, str] | None = None,
) -> Profile:
    """A fitted profile. The hardware numbers the fitted step time does not use are set
    to effective values derived from the fit (peak_flops, mem_bandwidth) or measured
    (host bandwidth, memory size), so roofline-style readers still get sensible figures.

    The drafter transfer cost is `draft bytes / host_link_bandwidth + offload_fixed_s`;
    `offload_fixed_s` takes what the measured `transfer_s` leaves after the copy.
    """
    copy_s = draft.weight_bytes / host_bandwidth
    fixed = max(transfer_s - copy_s, 0.0)
    per_tok = max(fitted.target_per_token_s, 1e-12)
    eff_flops = 2.0 * target.params / per_tok
    eff_bw = target.weight_bytes / max(fitted.target_base_s, 1e-9)
    hw = HardwareProfile(
        name=hardware_name or f"{cpu_model()} x{os.cpu_count()} cores",
        peak_flops=float(eff_flops),
        mem_bandwidth=float(eff_bw),
        host_link_bandwidth=float(host_bandwidth),
        memory_bytes=float(memory_bytes or host_memory_bytes()),
        compute_efficiency=1.0,
        bandwidth_efficiency=1.0,
    )
    return Profile(
        name=name,
        hardware=hw,
        target=target,
        draft=draft,
        iteration_overhead_s=0.0,
        draft_pass_overhead_s=0.0,
        offload_fixed_s=float(fixed),
        kind="fitted",
        fitted=fitted,
        host=host,
        kv_pool=kv_pool,
        sources=dict(sources or {}),
    )


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    d = dataclasses.asdict(profile)
    order = ["name", "kind", "hardware", "target", "draft", "iteration_overhead_s",
             "draft_pass_overhead_s", "offload_fixed_s", "fitted", "host", "kv_pool", "sources"]  # fmt: skip
    return {k: d[k] for k in order if k in d and d[k] is not None}


def write_profile(path: str | Path, profile: Profile, header: str = "") -> Path:
    """Write the profile YAML and check it loads back to the same profile."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(profile_to_dict(profile), sort_keys=False, width=100)
    text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body
    path.write_text(text)
    loaded = load_profile(path)
    if loaded != profile:
        raise RuntimeError(f"{path}: written profile does not load back identically")
    return path
