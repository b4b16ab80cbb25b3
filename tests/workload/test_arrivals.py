import numpy as np
import pytest

from rlspec.workload import arrivals


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def cv(times: np.ndarray) -> float:
    gaps = np.diff(times)
    return float(gaps.std() / gaps.mean())


ALL = {
    "poisson": lambda g, **kw: arrivals.poisson(g, rate=20.0, **kw),
    "gamma": lambda g, **kw: arrivals.gamma(g, rate=20.0, cv=3.0, **kw),
    "onoff": lambda g, **kw: arrivals.onoff(g, rate_on=50.0, on_s=5.0, off_s=10.0, **kw),
    "ramp": lambda g, **kw: arrivals.ramp(g, rate_start=1.0, rate_end=30.0, **kw),
    "diurnal": lambda g, **kw: arrivals.diurnal(
        g, base_rate=20.0, amplitude=10.0, period_s=60.0, **kw
    ),
    "flash": lambda g, **kw: arrivals.flash(
        g, base_rate=5.0, spike_rate=80.0, spike_start_s=100.0, spike_duration_s=20.0, **kw
    ),
}


@pytest.mark.parametrize("kind", sorted(ALL))
def test_sorted_within_horizon_and_deterministic(kind):
    make = ALL[kind]
    times = make(rng(3), duration_s=300.0)
    assert len(times) > 100
    assert np.all(np.diff(times) >= 0)
    assert times[0] >= 0.0 and times[-1] < 300.0
    assert np.array_equal(times, make(rng(3), duration_s=300.0))
    assert not np.array_equal(times[:50], make(rng(4), duration_s=300.0)[:50])


@pytest.mark.parametrize("kind", sorted(ALL))
def test_max_requests_truncates_to_earliest(kind):
    make = ALL[kind]
    full = make(rng(5), duration_s=300.0)
    cut = make(rng(5), duration_s=300.0, max_requests=40)
    assert np.array_equal(cut, full[:40])


def test_poisson_rate_and_cv():
    times = arrivals.poisson(rng(), rate=50.0, duration_s=2000.0)
    assert len(times) / 2000.0 == pytest.approx(50.0, rel=0.02)
    assert cv(times) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("target", [1.0, 2.0, 4.0])
def test_gamma_rate_and_cv(target):
    times = arrivals.gamma(rng(), rate=20.0, cv=target, duration_s=3000.0)
    assert len(times) / 3000.0 == pytest.approx(20.0, rel=0.05)
    assert cv(times) == pytest.approx(target, rel=0.1)


def test_onoff_has_idle_gaps_and_expected_mean_rate():
    times = arrivals.onoff(rng(), rate_on=40.0, on_s=5.0, off_s=20.0, duration_s=5000.0)
    gaps = np.diff(times)
    assert (gaps > 10.0).sum() > 50  # many idle periods longer than 10 s
    # duty cycle 5 / 25, so the long-run rate is 40 * 0.2 = 8 req/s
    assert len(times) / 5000.0 == pytest.approx(8.0, rel=0.15)
    assert cv(times) > 3.0


def test_ramp_rate_at_start_and_end():
    times = arrivals.ramp(rng(), rate_start=2.0, rate_end=40.0, duration_s=1000.0)
    first = np.sum(times < 100.0) / 100.0  # mean rate over the first tenth: 3.9
    last = np.sum(times >= 900.0) / 100.0  # over the last tenth: 38.1
    assert first == pytest.approx(3.9, rel=0.2)
    assert last == pytest.approx(38.1, rel=0.1)


def test_ramp_down():
    times = arrivals.ramp(rng(), rate_start=30.0, rate_end=0.0, duration_s=1000.0)
    assert np.sum(times < 100.0) > 10 * np.sum(times >= 900.0)


def test_diurnal_peak_and_trough():
    times = arrivals.diurnal(
        rng(), base_rate=20.0, amplitude=15.0, period_s=100.0, duration_s=2000.0
    )
    phase = times % 100.0
    peak = np.sum((phase >= 15.0) & (phase < 35.0))  # around t = period / 4
    trough = np.sum((phase >= 65.0) & (phase < 85.0))  # around t = 3 period / 4
    # mean rate over +-10 s of the peak is 20 + 15 * sin(0.2 pi)/(0.2 pi) ~ 34.0, trough ~ 6.0
    assert peak / (20 * 20.0) == pytest.approx(34.0, rel=0.1)
    assert trough / (20 * 20.0) == pytest.approx(6.0, rel=0.15)


def test_flash_spike_density():
    times = arrivals.flash(
        rng(),
        base_rate=4.0,
        spike_rate=100.0,
        spike_start_s=200.0,
        spike_duration_s=30.0,
        duration_s=600.0,
    )
    inside = np.sum((times >= 200.0) & (times < 230.0)) / 30.0
    outside = np.sum((times < 200.0) | (times >= 230.0)) / 570.0
    assert inside == pytest.approx(100.0, rel=0.1)
    assert outside == pytest.approx(4.0, rel=0.15)


def test_flash_spike_past_the_end_is_cut():
    times = arrivals.flash(
        rng(),
        base_rate=0.0,
        spike_rate=10.0,
        spike_start_s=50.0,
        spike_duration_s=100.0,
        duration_s=100.0,
    )
    assert times.min() >= 50.0 and times.max() < 100.0


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="rate"):
        arrivals.poisson(rng(), rate=0.0, duration_s=10.0)
    with pytest.raises(ValueError, match="amplitude"):
        arrivals.diurnal(rng(), base_rate=1.0, amplitude=2.0, period_s=10.0, duration_s=10.0)
    with pytest.raises(ValueError, match="duration_s"):
        arrivals.poisson(rng(), rate=1.0, duration_s=0.0)
