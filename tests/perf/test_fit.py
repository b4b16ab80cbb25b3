import dataclasses

import numpy as np
import pytest

from rlspec.perf.fit import TERMS, IterationSample, fit_step_time
from rlspec.perf.profile import FittedStepTime
from rlspec.perf.step_time import StepTimeModel


def synthetic(profile, truth: FittedStepTime, noise: float, seed: int = 0):
    fitted = dataclasses.replace(profile, kind="fitted", fitted=truth, iteration_overhead_s=0.0)
    model = StepTimeModel(fitted)
    rng = np.random.default_rng(seed)
    samples = []
    for b in (1, 2, 4, 8, 16):
        for k in (0, 1, 2, 3, 4):
            for prefill in (0, 64, 256):
                for ctx_per_req in (32, 256, 1024, 4096):
                    for resident in (True, False):
                        kk = k if resident else 0
                        t = model.iteration(b, kk, prefill, b * ctx_per_req, resident)
                        samples.append(IterationSample(b, kk, prefill, b * ctx_per_req, resident,
                                                       t * (1 + noise * rng.standard_normal())))  # fmt: skip
    return samples


def test_fit_recovers_known_coefficients_within_two_percent(h100):
    truth = FittedStepTime(0.012, 2.0e-4, 1.5e-7, 0.0015, 2.5e-5, 4.0e-8)
    report = fit_step_time(synthetic(h100, truth, noise=0.002))
    for name in TERMS:
        assert getattr(report.fitted, name) == pytest.approx(getattr(truth, name), rel=0.02), name
    assert report.mape < 0.01
    assert all(e < 0.02 for e in report.rel_error.values())


def test_fit_refuses_measurements_that_cannot_separate_the_terms(h100):
    truth = FittedStepTime(0.01, 1e-4, 1e-7, 1e-3, 1e-5, 1e-8)
    only_k0 = [s for s in synthetic(h100, truth, 0.0) if s.k == 0 and s.drafter_resident]
    with pytest.raises(ValueError, match="separate"):
        fit_step_time(only_k0)


def timed(profile, truth: FittedStepTime, noise: float, seed: int = 0):
    """`synthetic` samples that also carry the drafter's share of each step (noisy alike)."""
    fitted = dataclasses.replace(profile, kind="fitted", fitted=truth, iteration_overhead_s=0.0)
    model = StepTimeModel(fitted)
    rng = np.random.default_rng(seed + 1)
    out = []
    for s in synthetic(profile, truth, noise, seed):
        bare = model.iteration(s.decode_reqs, s.k, s.prefill_tokens, s.context, False)
        full = model.iteration(s.decode_reqs, s.k, s.prefill_tokens, s.context, s.drafter_resident)
        d = (full - bare) * (1 + noise * rng.standard_normal()) if s.drafter_resident else 0.0
        out.append(dataclasses.replace(s, drafter_time_s=d))
    return out


def test_timed_drafter_passes_are_fitted_apart_and_recover_the_coefficients(h100):
    truth = FittedStepTime(0.012, 2.0e-4, 1.5e-7, 0.0015, 2.5e-5, 4.0e-8)
    report = fit_step_time(timed(h100, truth, noise=0.002), relative=True)
    assert report.drafter_timed
    for name in TERMS:
        assert getattr(report.fitted, name) == pytest.approx(getattr(truth, name), rel=0.02), name
    assert report.mape < 0.01


def test_timing_the_drafter_splits_the_parts_better_than_the_joint_fit(h100):
    """Where the drafter is resident its per-token term is nearly collinear with the
    target's, so step-time noise moves it far; its timed share pins it down."""
    truth = FittedStepTime(0.012, 2.0e-4, 1.5e-7, 0.0015, 2.5e-5, 4.0e-8)
    samples = timed(h100, truth, noise=0.03, seed=4)
    split = fit_step_time(samples, relative=True)
    joint = fit_step_time([dataclasses.replace(s, drafter_time_s=None) for s in samples], True)
    assert not joint.drafter_timed

    def err(r):
        return abs(r.fitted.draft_per_token_s / truth.draft_per_token_s - 1)

    assert err(split) < 0.05
    assert err(split) < err(joint) / 2
    assert split.rel_error["draft_per_token_s"] < joint.rel_error["draft_per_token_s"] / 2
