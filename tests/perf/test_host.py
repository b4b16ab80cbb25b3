"""Host fingerprints: what `rlspec calibrate` records and how another machine is compared."""

from __future__ import annotations

import dataclasses

import pytest

from rlspec.config import ConfigError
from rlspec.perf.host import HostFingerprint, cpu_features, cpu_model, mismatch_message, this_host

ZEN4 = HostFingerprint("cpu", "AMD EPYC", 2, ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"),
                       21.5e9, "bfloat16")  # fmt: skip

X86 = """processor\t: 0
model name\t: AMD EPYC 9R14
flags\t\t: fpu sse2 avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni sha_ni
processor\t: 1
flags\t\t: fpu
"""
ARM = "processor\t: 0\nFeatures\t: fp asimd asimdhp sve bf16 i8mm crc32\nCPU part\t: 0xd40\n"


def test_features_are_read_from_the_first_cpu_in_a_fixed_order():
    assert cpu_features(X86) == ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16")
    assert cpu_model(X86) == "AMD EPYC 9R14"
    assert cpu_features(ARM) == ("asimd", "asimdhp", "sve", "bf16", "i8mm")
    assert cpu_features("") == ()


def test_the_same_kind_of_host_matches_within_bandwidth_noise():
    assert ZEN4.differences(ZEN4) == []
    assert ZEN4.differences(dataclasses.replace(ZEN4, copy_bandwidth=11e9, cpu="AMD EPYC 9R14")) == []


def test_each_thing_the_step_costs_depend_on_is_reported():
    avx2_fp32 = dataclasses.replace(ZEN4, isa=("avx2", "fma"), dtype="float32", cores=4, copy_bandwidth=8.0e9)
    diffs = ZEN4.differences(avx2_fp32)
    assert diffs == [
        "dtype float32, profile's bfloat16",
        "CPU lacks avx512f+avx512bw+avx512_vnni+avx512_bf16",
        "4 cores, profile's 2",
        "copy bandwidth 8.0 GB/s, profile's 21.5 GB/s",
    ]
    more = dataclasses.replace(ZEN4, isa=(*ZEN4.isa, "amx_tile", "amx_bf16"))
    assert ZEN4.differences(more) == ["CPU adds amx_tile+amx_bf16"]
    gpu = HostFingerprint("NVIDIA H200", "Intel Xeon", 16, ("avx2",), 10e9, "bfloat16")
    # On an accelerator the host CPU does not set the step time; the device does.
    assert gpu.differences(dataclasses.replace(gpu, cores=32, isa=(), copy_bandwidth=40e9)) == []
    assert gpu.differences(dataclasses.replace(gpu, device="NVIDIA H100 80GB HBM3")) == [
        "device 'NVIDIA H100 80GB HBM3', profile's 'NVIDIA H200'"
    ]


def test_the_message_names_both_hosts_and_the_fix():
    here = dataclasses.replace(ZEN4, isa=("avx2", "fma"))
    msg = mismatch_message("cpu-tiny", ZEN4, here, ZEN4.differences(here))
    assert "CPU lacks avx512f" in msg and "avx2+fma+avx512f" in msg and "rlspec calibrate" in msg


def test_bad_fingerprints_are_refused_with_the_field():
    with pytest.raises(ConfigError, match=r"host\.isa: \['avx9000'\]"):
        HostFingerprint("cpu", "x", 2, ("avx9000",), 1e9, "float32")
    with pytest.raises(ConfigError, match=r"host\.cores"):
        HostFingerprint("cpu", "x", 0, (), 1e9, "float32")


def test_this_host_is_consistent_with_itself():
    a, b = this_host("torch.float32", bandwidth=20e9), this_host("float32", bandwidth=20e9)
    assert a == b and a.dtype == "float32" and a.cores >= 1 and a.differences(b) == []
    assert set(a.isa) == set(cpu_features())
