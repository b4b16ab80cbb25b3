import numpy as np
import pytest

from rlspec.config import ConfigError, from_dict
from rlspec.workload.lengths import LengthConfig, sample, scale_lengths


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_fixed():
    out = sample(LengthConfig(dist="fixed", value=7), 5, rng())
    assert out.dtype == np.int64
    assert out.tolist() == [7] * 5


def test_uniform_is_inclusive_and_covers_range():
    out = sample(LengthConfig(dist="uniform", low=3, high=6), 10_000, rng())
    assert set(out.tolist()) == {3, 4, 5, 6}


def test_lognormal_mean_and_cv():
    out = sample(LengthConfig(dist="lognormal", mean=200.0, cv=1.5), 200_000, rng())
    assert out.min() >= 1
    assert out.mean() == pytest.approx(200.0, rel=0.03)
    assert out.std() / out.mean() == pytest.approx(1.5, rel=0.1)


def test_lognormal_clip():
    cfg = LengthConfig(dist="lognormal", mean=100.0, cv=2.0, min=20, max=300)
    out = sample(cfg, 10_000, rng())
    assert out.min() == 20 and out.max() == 300


def test_lognormal_small_mean_never_below_one():
    out = sample(LengthConfig(dist="lognormal", mean=1.0, cv=3.0), 10_000, rng())
    assert out.min() >= 1


def test_empirical_resamples_given_values():
    out = sample(LengthConfig(dist="empirical", values=[5, 50, 500]), 3_000, rng())
    assert set(out.tolist()) == {5, 50, 500}
    assert np.mean(out == 50) == pytest.approx(1 / 3, abs=0.05)


def test_same_seed_same_lengths_different_seed_different():
    cfg = LengthConfig(dist="lognormal", mean=100.0, cv=1.0)
    assert np.array_equal(sample(cfg, 100, rng(1)), sample(cfg, 100, rng(1)))
    assert not np.array_equal(sample(cfg, 100, rng(1)), sample(cfg, 100, rng(2)))


def test_scale_lengths_rounds_and_keeps_at_least_one():
    assert scale_lengths(np.array([1, 4, 15, 1000]), 0.1).tolist() == [1, 1, 2, 100]


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ({"dist": "fixed"}, "length.value: required"),
        ({"dist": "fixed", "value": 0}, "length.value"),
        ({"dist": "fixed", "value": 4, "mean": 3.0}, "length.mean: not used when dist is 'fixed'"),
        ({"dist": "uniform", "low": 5, "high": 4}, "length.high"),
        ({"dist": "uniform", "low": 1, "high": 4, "max": 9}, "length.max: not used"),
        ({"dist": "lognormal", "mean": 10.0}, "length.cv: required"),
        ({"dist": "lognormal", "mean": -1.0, "cv": 1.0}, "length.mean"),
        ({"dist": "lognormal", "mean": 10.0, "cv": -1.0}, "length.cv"),
        ({"dist": "lognormal", "mean": 10.0, "cv": 1.0, "min": 9, "max": 3}, "length.max"),
        ({"dist": "empirical", "values": []}, "length.values"),
        ({"dist": "empirical", "values": [3, 0]}, "length.values"),
        ({"dist": "normal", "mean": 3.0}, "prompt.dist: 'normal' is not one of"),
        ({"dist": "fixed", "value": 3, "mena": 3.0}, "unknown key(s) ['mena']"),
    ],
)
def test_invalid_length_configs(mapping, needle):
    with pytest.raises(ConfigError) as exc:
        from_dict(LengthConfig, mapping, "prompt")
    assert needle in str(exc.value)
