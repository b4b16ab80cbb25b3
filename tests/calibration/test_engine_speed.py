"""Holding the live engine's speed fixed when comparing controllers."""

import math
from statistics import fmean

import numpy as np
import pytest

from rlspec.calibration.engine_speed import speed_adjusted


def _episodes(true_latency: dict[str, float], speeds: dict[str, list[float]], slope: float):
    return {c: [true_latency[c] * s**slope for s in speeds[c]] for c in true_latency}


def test_a_controller_that_drew_a_slow_engine_is_not_penalised():
    # equal controllers; "b" happened to run on a slower host, which near saturation
    # costs latency with an elasticity of 3
    true = {"a": 2.0, "b": 2.0, "c": 2.6}
    speeds = {"a": [0.95, 1.02], "b": [1.15, 1.25], "c": [1.0, 1.1]}
    lat = _episodes(true, speeds, slope=3.0)
    assert fmean(lat["b"]) / fmean(lat["a"]) > 1.4  # the raw comparison is swamped
    adj = speed_adjusted(lat, speeds)
    assert adj is not None
    assert adj.slope == pytest.approx(3.0)
    assert adj.r2 == pytest.approx(1.0)
    assert adj.latency_s["b"] / adj.latency_s["a"] == pytest.approx(1.0)
    assert adj.latency_s["c"] / adj.latency_s["a"] == pytest.approx(1.3)
    grand = math.exp(np.mean(np.log([s for v in speeds.values() for s in v])))
    assert adj.mean_speed == pytest.approx(grand)
    assert adj.latency_s["a"] == pytest.approx(2.0 * grand**3.0)
    assert adj.episodes == 6


def test_noise_around_the_speed_effect_leaves_the_ranking_and_a_partial_fit():
    rng = np.random.default_rng(0)
    true = {"policy": 3.0, "goodput": 3.09, "static:3": 3.3}
    speeds = {c: list(rng.uniform(0.9, 1.3, size=6)) for c in true}
    lat = {c: [x * math.exp(rng.normal(0, 0.02)) for x in v] for c, v in _episodes(true, speeds, 2.5).items()}
    adj = speed_adjusted(lat, speeds)
    assert 0.8 < adj.r2 < 1.0
    assert adj.slope == pytest.approx(2.5, abs=0.3)
    assert sorted(adj.latency_s, key=adj.latency_s.get) == ["policy", "goodput", "static:3"]
    assert adj.latency_s["goodput"] / adj.latency_s["policy"] == pytest.approx(1.03, abs=0.015)


def test_uncorrelated_speed_changes_little():
    # speed that does not move latency gets a slope near zero; adjusted means stay near raw
    rng = np.random.default_rng(1)
    speeds = {c: list(rng.uniform(0.9, 1.2, size=8)) for c in ("a", "b")}
    lat = {c: list(2.0 * np.exp(rng.normal(0, 0.03, size=8))) for c in speeds}
    adj = speed_adjusted(lat, speeds)
    assert abs(adj.slope) < 0.3
    for c in lat:
        assert adj.latency_s[c] == pytest.approx(fmean(lat[c]), rel=0.03)


def test_the_slope_needs_two_episodes_at_different_speeds():
    assert speed_adjusted({"a": [1.0], "b": [2.0]}, {"a": [1.0], "b": [1.2]}) is None
    assert speed_adjusted({"a": [1.0, 1.1]}, {"a": [1.05, 1.05]}) is None


@pytest.mark.parametrize(
    ("lat", "spd", "match"),
    [
        ({"a": [1.0, 2.0]}, {"a": [1.0]}, "'a': 2 latencies but 1 speeds"),
        ({"a": [1.0]}, {"b": [1.0]}, "different controllers"),
        ({"a": [1.0, -2.0]}, {"a": [1.0, 1.0]}, "positive and finite"),
        ({"a": [1.0, 2.0]}, {"a": [1.0, float("nan")]}, "positive and finite"),
    ],
)
def test_bad_inputs_name_the_controller(lat, spd, match):
    with pytest.raises(ValueError, match=match):
        speed_adjusted(lat, spd)

