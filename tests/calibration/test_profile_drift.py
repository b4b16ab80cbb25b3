"""Flagging a fitted profile that no longer describes the engine it is compared with."""

from __future__ import annotations

import pytest

from rlspec.calibration.matching import profile_drift


@pytest.mark.parametrize("ratio", [None, 1.0, 0.81, 1.24, 1 / 1.25, 1.25])
def test_no_warning_within_tolerance(ratio):
    assert profile_drift(ratio, "cpu-tiny") is None


@pytest.mark.parametrize("ratio, shown", [(2.2, "2.20x"), (0.5, "0.50x"), (1.26, "1.26x")])
def test_warning_names_the_ratio_the_profile_and_the_fix(ratio, shown):
    msg = profile_drift(ratio, "cpu-tiny")
    assert msg is not None and shown in msg and "'cpu-tiny'" in msg and "rlspec calibrate" in msg


def test_tolerance_is_configurable_and_validated():
    assert profile_drift(1.3, "p", tolerance=1.5) is None
    assert profile_drift(1.3, "p", tolerance=1.1) is not None
    with pytest.raises(ValueError, match="tolerance"):
        profile_drift(1.0, "p", tolerance=1.0)
