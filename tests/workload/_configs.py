"""Valid `workload:` mappings shared by the config and generate tests."""

from rlspec.config import from_dict
from rlspec.workload import WorkloadConfig

LENGTHS = {
    "prompt": {"dist": "fixed", "value": 100},
    "output": {"dist": "uniform", "low": 1, "high": 50},
}
VALID = {
    "poisson": {"rate": 5.0},
    "gamma": {"rate": 5.0, "cv": 3.0},
    "onoff": {"rate_on": 10.0, "on_s": 5.0, "off_s": 20.0},
    "ramp": {"rate_start": 0.0, "rate_end": 10.0},
    "diurnal": {"base_rate": 5.0, "amplitude": 5.0, "period_s": 600.0},
    "flash": {
        "base_rate": 2.0,
        "spike_rate": 40.0,
        "spike_start_s": 60.0,
        "spike_duration_s": 10.0,
    },
}


def synthetic(kind: str, **extra: object) -> dict:
    """A valid 120 s workload of `kind`, with `extra` keys added or overridden."""
    return {"kind": kind, "duration_s": 120.0, **VALID[kind], **LENGTHS, **extra}


def load(mapping: dict) -> WorkloadConfig:
    return from_dict(WorkloadConfig, mapping, "workload")
