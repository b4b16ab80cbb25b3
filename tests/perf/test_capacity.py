import dataclasses

import pytest

from rlspec.calibration.profile_writer import write_profile
from rlspec.perf.capacity import capacity_ratio
from rlspec.perf.profile import load_profile


def test_a_host_twice_as_slow_serves_half_the_requests(tmp_path):
    prof = load_profile("cpu-tiny")
    f = prof.fitted
    slow = dataclasses.replace(
        prof, name="slow", iteration_overhead_s=2 * prof.iteration_overhead_s,
        draft_pass_overhead_s=2 * prof.draft_pass_overhead_s,
        fitted=dataclasses.replace(f, **{x.name: 2 * getattr(f, x.name) for x in dataclasses.fields(f)}),
    )  # fmt: skip
    path = write_profile(tmp_path / "slow.yaml", slow)
    assert capacity_ratio("cpu-tiny") == 1.0
    assert capacity_ratio(str(path)) == pytest.approx(0.5, rel=1e-9)
    assert capacity_ratio("cpu-tiny", reference=str(path)) == pytest.approx(2.0, rel=1e-9)


def test_the_avx2_host_serves_about_six_tenths_of_cpu_tinys():
    """The figure cpu-tiny-avx2's training distribution and sweeps are scaled by (0.58)."""
    assert round(capacity_ratio("cpu-tiny-avx2"), 2) == 0.58
