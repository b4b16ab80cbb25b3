"""The machine a fitted profile was measured on, and whether this one is the same kind.

A fitted profile's step costs belong to one host: the same tiny pair runs at 1.4 ms per
token on a CPU with AVX-512 BF16 and at 22 ms on one with only AVX2 (both "AMD EPYC, 2
cores" in /proc/cpuinfo), and fp32 instead of bf16 moves it again. `rlspec calibrate`
records a fingerprint of what decides that - the device, the matmul-relevant instruction
sets, the core count, the host copy bandwidth and the dtype vLLM ran - and the live backend
compares it with the machine it starts on, so a simulated figure is not trusted against
the wrong host before the first episode has even run.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlspec.config import ConfigError, check_range

# CPU features that change how fast a GEMM runs at a given dtype (x86 flags, aarch64 Features).
MATMUL_ISA = (
    "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "asimd", "asimdhp", "sve", "sve2", "bf16", "i8mm",
)  # fmt: skip

# Copy bandwidth varies ~10% between quiet runs on one VM, but up to ~2x when other processes
# share its memory bus (12 vs 23 GB/s seen in a parallel test run); hosts seen here ranged
# 9.5-35 GB/s. Only a gap beyond what load alone makes counts as another kind of host.
BANDWIDTH_TOLERANCE = 2.5


@dataclass(frozen=True)
class HostFingerprint:
    """What a profile's step costs depend on besides the model pair."""

    device: str  # "cpu" or the accelerator's name (torch.cuda.get_device_name)
    cpu: str  # /proc/cpuinfo model name
    cores: int  # CPUs this process may use
    isa: tuple[str, ...]  # the MATMUL_ISA features present, in MATMUL_ISA order
    copy_bandwidth: float  # bytes/s, host memory copy (read + write), best of 5
    dtype: str  # what the engine ran the models at, e.g. "bfloat16"

    def __post_init__(self) -> None:
        check_range("host.cores", self.cores, lo=1)
        check_range("host.copy_bandwidth", self.copy_bandwidth, lo=1.0)
        unknown = sorted(set(self.isa) - set(MATMUL_ISA))
        if unknown:
            raise ConfigError(f"host.isa: {unknown} not among the recorded features {list(MATMUL_ISA)}")

    def describe(self) -> str:
        isa = "+".join(self.isa) or "no SIMD matmul features"
        where = self.cpu if self.device == "cpu" else f"{self.device} on {self.cpu}"
        return (f"{where}, {self.cores} cores, {isa}, copy {self.copy_bandwidth / 1e9:.1f} GB/s, "
                f"{self.dtype}")  # fmt: skip

    def differences(self, other: HostFingerprint) -> list[str]:
        """How `other` (this machine) departs from `self` (the profile's): empty when the
        profile's step costs can be expected to hold on it."""
        out = []
        if self.device != other.device:
            out.append(f"device {other.device!r}, profile's {self.device!r}")
        if self.dtype != other.dtype:
            out.append(f"dtype {other.dtype}, profile's {self.dtype}")
        if self.device == "cpu" or other.device == "cpu":
            if set(self.isa) != set(other.isa):
                missing = [f for f in self.isa if f not in other.isa]
                extra = [f for f in other.isa if f not in self.isa]
                parts = ([f"lacks {'+'.join(missing)}"] if missing else []) + (
                    [f"adds {'+'.join(extra)}"] if extra else []
                )
                out.append(f"CPU {' and '.join(parts)}")
            if self.cores != other.cores:
                out.append(f"{other.cores} cores, profile's {self.cores}")
            ratio = other.copy_bandwidth / self.copy_bandwidth
            if not 1 / BANDWIDTH_TOLERANCE <= ratio <= BANDWIDTH_TOLERANCE:
                out.append(f"copy bandwidth {other.copy_bandwidth / 1e9:.1f} GB/s, profile's "
                           f"{self.copy_bandwidth / 1e9:.1f} GB/s")  # fmt: skip
        return out


def mismatch_message(profile: str, recorded: HostFingerprint, here: HostFingerprint, diffs: list[str]) -> str:
    return (
        f"profile {profile!r} was fitted on another kind of host ({'; '.join(diffs)}): its step "
        f"costs will not describe this engine, and simulated figures from it will not match. "
        f"Profile's host: {recorded.describe()}. This host: {here.describe()}. Fit one here with "
        "`rlspec calibrate --backend vllm --model DIR --draft-model DIR --out PROFILE.yaml`"
    )


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (from /proc/cpuinfo, or `cpuinfo` text)."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_features(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The MATMUL_ISA features the CPU reports (first `flags` / `Features` line of
    /proc/cpuinfo, or of `cpuinfo` text)."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key = line.split(":", 1)[0].strip()
        if key in ("flags", "Features"):
            present = set(line.split(":", 1)[1].split())
            return tuple(f for f in MATMUL_ISA if f in present)
    return ()


def copy_bandwidth(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Host memory copy bandwidth (bytes moved per second, read + write), best of N."""
    import time

    import numpy as np

    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * nbytes / best


def local_device() -> str:
    """The device an engine started here would run on (vLLM takes CUDA when it is there)."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def this_host(dtype: str, device: str = "cpu", bandwidth: float | None = None) -> HostFingerprint:
    """This machine's fingerprint for an engine running at `dtype` on `device`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return HostFingerprint(
        device=device,
        cpu=cpu_model(),
        cores=cores,
        isa=cpu_features(),
        copy_bandwidth=float(bandwidth if bandwidth is not None else copy_bandwidth()),
        dtype=dtype.replace("torch.", ""),
    )


def vllm_host(vllm_config: Any) -> HostFingerprint:
    """This machine as the vLLM engine of `vllm_config` runs on it (device and dtype from the
    engine's own config: what a fitted profile records)."""
    dev = vllm_config.device_config.device
    device = "cpu"
    if getattr(dev, "type", str(dev)) == "cuda":
        import torch

        device = torch.cuda.get_device_name(dev)
    return this_host(str(vllm_config.model_config.dtype), device)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
