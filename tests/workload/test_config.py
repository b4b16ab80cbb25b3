import pytest

from rlspec.config import ConfigError
from rlspec.workload import LengthConfig

from ._configs import LENGTHS, VALID, load, synthetic


def error(mapping: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        load(mapping)
    return str(exc.value)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_every_synthetic_kind_loads(kind):
    cfg = load(synthetic(kind, max_requests=10, length_scale=0.5))
    assert cfg.kind == kind
    assert isinstance(cfg.prompt, LengthConfig)


def test_trace_loads_with_options():
    cfg = load(
        {
            "kind": "trace",
            "path": "../traces/x.csv",
            "rate_scale": 2.0,
            "length_scale": 0.1,
            "start_s": 10.0,
            "duration_s": 60.0,
            "max_requests": 5,
            "max_prompt_len": 512,
            "max_output_len": 64,
        }
    )
    assert cfg.rate_scale == 2.0 and cfg.prompt is None


def test_unknown_key_is_named():
    assert "unknown key(s) ['rtae']" in error(synthetic("poisson", rtae=3.0))


def test_unknown_kind():
    assert "workload.kind: 'weibull' is not one of" in error({"kind": "weibull"})


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("poisson", "cv", 2.0),
        ("poisson", "rate_scale", 2.0),
        ("gamma", "rate_on", 1.0),
        ("ramp", "rate", 1.0),
        ("diurnal", "spike_rate", 1.0),
        ("flash", "amplitude", 1.0),
        ("onoff", "path", "x.csv"),
        ("poisson", "max_prompt_len", 100),
    ],
)
def test_field_of_another_kind_is_rejected(kind, field, value):
    msg = error(synthetic(kind, **{field: value}))
    assert f"workload.{field}: not used when kind is {kind!r}" in msg


def test_trace_rejects_synthetic_fields():
    msg = error({"kind": "trace", "path": "t.csv", "rate": 3.0})
    assert "workload.rate: not used when kind is 'trace'" in msg
    msg = error({"kind": "trace", "path": "t.csv", **LENGTHS})
    assert "workload.prompt: not used when kind is 'trace'" in msg


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ({"kind": "poisson", "rate": 1.0, **LENGTHS}, "workload.duration_s: required"),
        ({"kind": "gamma", "duration_s": 9.0, "rate": 1.0, **LENGTHS}, "workload.cv: required"),
        ({"kind": "poisson", "duration_s": 9.0, "rate": 1.0}, "workload.prompt: required"),
        ({"kind": "trace"}, "workload.path: required"),
    ],
)
def test_missing_required_field_is_named(mapping, needle):
    assert needle in error(mapping)


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("poisson", "rate", 0.0),
        ("poisson", "rate", -1.0),
        ("poisson", "rate", "nan"),
        ("poisson", "duration_s", 0.0),
        ("poisson", "max_requests", 0),
        ("poisson", "length_scale", 0.0),
        ("gamma", "cv", 0.0),
        ("onoff", "off_s", -1.0),
        ("ramp", "rate_start", -1.0),
        ("diurnal", "amplitude", 6.0),
        ("diurnal", "period_s", 0.0),
        ("flash", "spike_start_s", 120.0),
        ("flash", "spike_duration_s", 0.0),
        ("flash", "base_rate", -1.0),
    ],
)
def test_out_of_range_value_is_named(kind, field, value):
    assert f"workload.{field}" in error(synthetic(kind, **{field: value}))


def test_ramp_needs_some_load():
    msg = error(synthetic("ramp", rate_start=0.0, rate_end=0.0))
    assert "rate_start and rate_end are both 0" in msg


@pytest.mark.parametrize(
    ("field", "value"),
    [("rate_scale", 0.0), ("start_s", -1.0), ("max_output_len", 0), ("path", " ")],
)
def test_trace_option_ranges(field, value):
    assert f"workload.{field}" in error({"kind": "trace", "path": "t.csv", field: value})


def test_wrong_type_is_named():
    assert "workload.rate: expected a number" in error(synthetic("poisson", rate="fast"))
    assert "workload.prompt.value: expected an integer" in error(
        synthetic("poisson", prompt={"dist": "fixed", "value": "many"})
    )
