"""Calibration: fit the simulator's cost and acceptance models to a live engine.

`rlspec calibrate --backend vllm --model DIR --draft-model DIR [--out PROFILE]` runs a
measurement plan (`plan.py`) on the live vLLM backend (`live.py`), turns the measured
iterations into `IterationSample`s, fits the step-time coefficients with
`rlspec.perf.fit.fit_step_time`, measures acceptance by draft position
(`acceptance.py`) and drafter transfer times, and writes a `kind: fitted` profile
(`profile_writer.py`) that `--profile` / a scenario's `profile:` accepts everywhere.
`matching.py` builds the simulated twin of a live scenario for fidelity checks;
`engine_speed.py` compares controllers across live episodes the host ran at different speeds.

Importing this package does not import vLLM.
"""

from rlspec.calibration.acceptance import AcceptanceFit, PositionCounts, fit_acceptance
from rlspec.calibration.plan import (
    MeasurementPlan,
    Probe,
    StepRecord,
    default_plan,
    robust_fit,
    samples_from_records,
)
from rlspec.calibration.profile_writer import (
    build_profile,
    model_profile_from_hf,
    profile_to_dict,
    write_profile,
)

__all__ = [
    "AcceptanceFit",
    "MeasurementPlan",
    "PositionCounts",
    "Probe",
    "StepRecord",
    "build_profile",
    "default_plan",
    "fit_acceptance",
    "model_profile_from_hf",
    "profile_to_dict",
    "robust_fit",
    "samples_from_records",
    "write_profile",
]
