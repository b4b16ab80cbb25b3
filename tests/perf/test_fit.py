import dataclasses

import numpy as np
import pytest

from rlspec.perf.fit import TERMS, IterationSample, design_row, fit_step_time
from rlspec.perf.profile import FittedStepTime
from rlspec.perf.step_time import StepTimeModel, prefill_attention_pairs

# Coefficients of the shape a CPU engine fits (notes/calibration.md), prefill attention included.
TRUTH = FittedStepTime(0.012, 2.0e-4, 1.5e-7, 0.0015, 2.5e-5, 4.0e-8, target_per_prefill_pair_s=2.5e-8,
                       draft_propose_s=6.0e-4)


def synthetic(profile, truth: FittedStepTime, noise: float, seed: int = 0):
    """Iterations over batch, k, placement, context and one prefill chunk that starts a
    prompt (short contexts) or continues one (long contexts)."""
    fitted = dataclasses.replace(profile, kind="fitted", fitted=truth, iteration_overhead_s=0.0)
    model = StepTimeModel(fitted)
    rng = np.random.default_rng(seed)
    samples = []
    for b in (1, 2, 4, 8, 16):
        for k in (0, 1, 2, 3, 4):
            for prefill in (0, 64, 256, 1024):
                for ctx_per_req in (32, 256, 1024, 4096):
                    for resident in (True, False):
                        kk = k if resident else 0
                        before = ctx_per_req if ctx_per_req >= 1024 else 0
                        ctx = b * ctx_per_req + (before if prefill else 0)
                        pairs = prefill_attention_pairs(prefill, before)
                        t = model.iteration(b, kk, prefill, ctx, resident, prefill_pairs=pairs)
                        samples.append(IterationSample(b, kk, prefill, ctx, resident,
                                                       t * (1 + noise * rng.standard_normal()),
                                                       prefill_pairs=pairs))  # fmt: skip
    return samples


def test_fit_recovers_known_coefficients_within_two_percent(h100):
    # relative errors, as `rlspec calibrate` fits: step times here span 12 ms to 0.4 s
    report = fit_step_time(synthetic(h100, TRUTH, noise=0.002), relative=True)
    assert report.pairs_recorded
    for name in TERMS:
        assert getattr(report.fitted, name) == pytest.approx(getattr(TRUTH, name), rel=0.02), name
    assert report.mape < 0.01
    assert all(e < 0.02 for e in report.rel_error.values())


def test_measurements_saved_without_prefill_pairs_fit_with_that_term_held_at_zero(h100):
    truth = dataclasses.replace(TRUTH, target_per_prefill_pair_s=0.0)
    old = [dataclasses.replace(s, prefill_pairs=None) for s in synthetic(h100, truth, noise=0.002)]
    report = fit_step_time(old, relative=True)
    assert not report.pairs_recorded and report.fitted.target_per_prefill_pair_s == 0.0
    for name in TERMS:
        assert getattr(report.fitted, name) == pytest.approx(getattr(truth, name), rel=0.02), name


def test_leaving_prefill_attention_out_underestimates_long_prompts(h100):
    """What the term is for: a line through short and long prefill chunks alike is too
    fast on the chunks with the most attention, so a prefill-heavy workload runs slower
    live than simulated."""
    samples = synthetic(h100, TRUTH, noise=0.0)
    without = fit_step_time([dataclasses.replace(s, prefill_pairs=None) for s in samples], relative=True)
    full = fit_step_time(samples, relative=True)
    model = StepTimeModel(dataclasses.replace(h100, kind="fitted", fitted=without.fitted, iteration_overhead_s=0.0))
    most = max(s.prefill_pairs for s in samples)
    heaviest = [s for s in samples if s.prefill_pairs == most]
    ratios = [s.step_time_s / model.iteration(s.decode_reqs, s.k, s.prefill_tokens, s.context, s.drafter_resident)
              for s in heaviest]  # fmt: skip
    assert min(ratios) > 1.1, ratios
    assert full.mape < without.mape / 10


def test_fit_refuses_measurements_that_cannot_separate_the_terms(h100):
    only_k0 = [s for s in synthetic(h100, TRUTH, 0.0) if s.k == 0 and s.drafter_resident]
    with pytest.raises(ValueError, match="separate"):
        fit_step_time(only_k0)
    decode_only = [s for s in synthetic(h100, TRUTH, 0.0) if not s.prefill_tokens]
    with pytest.raises(ValueError, match="short and long prompts"):
        fit_step_time(decode_only)


def timed(profile, truth: FittedStepTime, noise: float, seed: int = 0):
    """`synthetic` samples that also carry the drafter's share of each step (noisy alike)."""
    fitted = dataclasses.replace(profile, kind="fitted", fitted=truth, iteration_overhead_s=0.0)
    model = StepTimeModel(fitted)
    rng = np.random.default_rng(seed + 1)
    out = []
    for s in synthetic(profile, truth, noise, seed):
        bare = model.iteration(s.decode_reqs, s.k, s.prefill_tokens, s.context, False, prefill_pairs=s.prefill_pairs)
        full = model.iteration(s.decode_reqs, s.k, s.prefill_tokens, s.context, s.drafter_resident,
                               prefill_pairs=s.prefill_pairs)  # fmt: skip
        d = (full - bare) * (1 + noise * rng.standard_normal()) if s.drafter_resident else 0.0
        out.append(dataclasses.replace(s, drafter_time_s=d))
    return out


def test_timed_drafter_passes_are_fitted_apart_and_recover_the_coefficients(h100):
    report = fit_step_time(timed(h100, TRUTH, noise=0.002), relative=True)
    assert report.drafter_timed
    for name in TERMS:
        assert getattr(report.fitted, name) == pytest.approx(getattr(TRUTH, name), rel=0.02), name
    assert report.mape < 0.01


def test_timing_the_drafter_splits_the_parts_better_than_the_joint_fit(h100):
    """Where the drafter is resident its per-token term is nearly collinear with the
    target's, so step-time noise moves it far; its timed share pins it down."""
    truth = TRUTH
    samples = timed(h100, truth, noise=0.03, seed=4)
    split = fit_step_time(samples, relative=True)
    joint = fit_step_time([dataclasses.replace(s, drafter_time_s=None) for s in samples], True)
    assert not joint.drafter_timed

    def err(r):
        return abs(r.fitted.draft_per_token_s / truth.draft_per_token_s - 1)

    assert err(split) < 0.05
    assert err(split) < err(joint) / 2
    assert split.rel_error["draft_per_token_s"] < joint.rel_error["draft_per_token_s"] / 2


def test_the_fit_charges_exactly_what_the_cost_model_charges(h100):
    """The design matrix and `StepTimeModel.iteration` share one accounting of the
    drafter's passes and proposals: a row times the coefficients is the model's step time,
    prefill-only steps at k > 1 and offloaded ones included."""
    model = StepTimeModel(dataclasses.replace(h100, kind="fitted", fitted=TRUTH, iteration_overhead_s=0.0))
    coef = np.array([getattr(TRUTH, n) for n in TERMS])
    for b, k, prefill, ctx, resident in [(0, 3, 512, 0, True), (1, 0, 0, 40, True), (4, 1, 0, 900, True),
                                         (16, 4, 128, 9000, True), (8, 0, 64, 3000, False)]:  # fmt: skip
        s = IterationSample(b, k, prefill, ctx, resident, 0.0, prefill_pairs=prefill_attention_pairs(prefill, 0))
        assert np.dot(design_row(s), coef) == pytest.approx(
            model.iteration(b, k, prefill, ctx, resident, prefill_pairs=s.prefill_pairs)
        )


def test_a_drafting_step_pays_the_proposal_cost_once(h100):
    model = StepTimeModel(dataclasses.replace(h100, kind="fitted", fitted=TRUTH, iteration_overhead_s=0.0))
    bare = dataclasses.replace(TRUTH, draft_propose_s=0.0)
    without = StepTimeModel(dataclasses.replace(h100, kind="fitted", fitted=bare, iteration_overhead_s=0.0))
    for k, paid in ((0, 0.0), (1, TRUTH.draft_propose_s), (4, TRUTH.draft_propose_s)):
        assert model.decode_step(8, k, 500, True) - without.decode_step(8, k, 500, True) == pytest.approx(paid)
    assert model.decode_step(8, 4, 500, False) == without.decode_step(8, 4, 500, False)  # offloaded
