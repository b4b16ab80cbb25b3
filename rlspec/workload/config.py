"""The `workload:` block of a scenario: which arrival process, how long, which lengths.

One flat dataclass tagged by `kind`, so scenario YAMLs stay flat and readable. Each kind
names the fields it needs; a field of another kind is an error rather than ignored, so a
typo can't leave a scenario quietly different from what its file says.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from rlspec.config import ConfigError, check_range
from rlspec.workload.checks import check_nonnegative, check_positive, check_variant
from rlspec.workload.lengths import LengthConfig

Kind = Literal["poisson", "gamma", "onoff", "ramp", "diurnal", "flash", "trace"]

_SYNTHETIC = ("duration_s", "prompt", "output")
# kind -> (required, optional); kind, max_requests and length_scale apply to every kind
_FIELDS = {
    "poisson": (("rate", *_SYNTHETIC), ()),
    "gamma": (("rate", "cv", *_SYNTHETIC), ()),
    "onoff": (("rate_on", "on_s", "off_s", *_SYNTHETIC), ()),
    "ramp": (("rate_start", "rate_end", *_SYNTHETIC), ()),
    "diurnal": (("base_rate", "amplitude", "period_s", *_SYNTHETIC), ()),
    "flash": (("base_rate", "spike_rate", "spike_start_s", "spike_duration_s", *_SYNTHETIC), ()),
    "trace": (
        ("path",),
        ("rate_scale", "start_s", "duration_s", "max_prompt_len", "max_output_len"),
    ),
}


# Requests per second, in every synthetic kind (`WorkloadConfig.at_load` scales them).
_RATE_FIELDS = ("rate", "rate_on", "rate_start", "rate_end", "base_rate", "amplitude", "spike_rate")


@dataclass(frozen=True)
class WorkloadConfig:
    """What requests arrive and when. Rates are requests per second, times are seconds.

    Every kind: `max_requests` (keep the first n), `length_scale` (multiply prompt and
    output lengths, round, min 1; default 1.0).
    Synthetic kinds need `duration_s`, `prompt` and `output` length distributions, and:
      poisson: `rate`.  gamma: `rate`, `cv` (inter-arrival CV; 1 = Poisson, 2-4 bursty).
      onoff: `rate_on` during busy periods, mean busy `on_s` and idle `off_s` (exponential).
      ramp: rate moves linearly from `rate_start` to `rate_end` over `duration_s`.
      diurnal: `base_rate + amplitude * sin(2 pi t / period_s)`.
      flash: `base_rate`, but `spike_rate` in [`spike_start_s`, + `spike_duration_s`).
    trace: `path` to a trace CSV (relative to the scenario file's directory), optional
      `rate_scale` (2.0 = twice as fast), `start_s`/`duration_s` (window of the scaled
      timeline), `max_prompt_len`/`max_output_len` (clip after length scaling).
    """

    kind: Kind
    duration_s: float | None = None
    max_requests: int | None = None
    length_scale: float = 1.0
    prompt: LengthConfig | None = None
    output: LengthConfig | None = None
    rate: float | None = None
    cv: float | None = None
    rate_on: float | None = None
    on_s: float | None = None
    off_s: float | None = None
    rate_start: float | None = None
    rate_end: float | None = None
    base_rate: float | None = None
    amplitude: float | None = None
    period_s: float | None = None
    spike_rate: float | None = None
    spike_start_s: float | None = None
    spike_duration_s: float | None = None
    path: str | None = None
    rate_scale: float | None = None
    start_s: float | None = None
    max_prompt_len: int | None = None
    max_output_len: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in _FIELDS:
            raise ConfigError(f"workload.kind: {self.kind!r} is not one of {list(_FIELDS)}")
        check_variant(self, "workload.", "kind", _FIELDS)
        check_positive("workload.length_scale", self.length_scale)
        positive = ("duration_s", "rate", "cv", "rate_on", "on_s", "off_s", "period_s")
        for name in (*positive, "spike_rate", "spike_duration_s", "rate_scale"):
            value = getattr(self, name)
            if value is not None:
                check_positive(f"workload.{name}", value)
        for name in ("rate_start", "rate_end", "spike_start_s", "start_s", "amplitude"):
            value = getattr(self, name)
            if value is not None:
                check_nonnegative(f"workload.{name}", value)
        for name in ("max_requests", "max_prompt_len", "max_output_len"):
            value = getattr(self, name)
            if value is not None:
                check_range(f"workload.{name}", value, lo=1)
        if self.path is not None and not self.path.strip():
            raise ConfigError("workload.path: must not be empty")
        self._check_kind_ranges()

    def at_load(self, factor: float) -> WorkloadConfig:
        """The same workload with every arrival rate times `factor` (a trace replayed
        `factor` times as fast): on a host with `factor` of another's capacity it is as
        loaded as the original was there. Lengths and times are kept."""
        check_positive("load_scale", factor)
        if self.kind == "trace":
            return dataclasses.replace(self, rate_scale=(self.rate_scale or 1.0) * factor)
        rates = {n: getattr(self, n) * factor for n in _RATE_FIELDS if getattr(self, n) is not None}
        return dataclasses.replace(self, **rates)

    def _check_kind_ranges(self) -> None:
        """Constraints that relate several fields of one kind."""
        if self.kind == "ramp" and self.rate_start == 0 and self.rate_end == 0:
            raise ConfigError("workload.rate_end: rate_start and rate_end are both 0")
        if self.kind == "diurnal":
            check_positive("workload.base_rate", self.base_rate)
            check_range("workload.amplitude", self.amplitude, 0.0, self.base_rate)
        if self.kind == "flash":
            check_nonnegative("workload.base_rate", self.base_rate)
            if self.spike_start_s >= self.duration_s:
                raise ConfigError(
                    f"workload.spike_start_s: {self.spike_start_s!r} must be before"
                    f" duration_s={self.duration_s!r}"
                )
