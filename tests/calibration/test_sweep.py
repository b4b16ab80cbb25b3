"""The live-vs-simulated sweep's context (`rlspec.calibration.sweep`): what needs no engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlspec.calibration.sweep import SweepContext


def test_negative_warm_runs_are_refused_with_the_field_name():
    with pytest.raises(ValueError, match=r"warm_runs: -1 must be >= 0"):
        SweepContext(Path("profile.yaml"), 128, 100, None, warm_runs=-1)
