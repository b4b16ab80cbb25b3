import dataclasses

import numpy as np
import pytest

from rlspec.config import ConfigError
from rlspec.perf.acceptance import AcceptanceConfig, AcceptanceModel, expected_tokens
from rlspec.perf.profile import FittedStepTime
from rlspec.perf.step_time import SpeedDrift, StepTimeModel, prefill_attention_pairs


def test_expected_tokens_formula():
    assert expected_tokens(0.8, 0) == 1.0
    assert expected_tokens(1.0, 4) == 5.0
    assert expected_tokens(0.0, 4) == 1.0
    assert expected_tokens(0.8, 4) == pytest.approx((1 - 0.8**5) / 0.2)


def test_decode_is_memory_bound_at_batch_1_and_compute_bound_when_large(h100):
    cost = StepTimeModel(h100)
    # Verifying k+1 tokens costs about one token at batch 1 ...
    t1 = cost.target_pass(1, 512)
    assert cost.target_pass(5, 512) == pytest.approx(t1)
    # ... but not when the batch is large: then the step grows with the verify tokens.
    assert cost.target_pass(256 * 5, 256 * 512) > 2.5 * cost.target_pass(256, 256 * 512)


def test_speculation_wins_at_low_load_and_loses_near_saturation(h100):
    cost = StepTimeModel(h100)
    a = 0.8

    def per_token(batch, k):
        return cost.decode_step(batch, k, 512, True) / expected_tokens(a, k)

    assert per_token(1, 4) < 0.6 * per_token(1, 0)
    assert per_token(256, 4) > per_token(256, 2)


def test_idle_resident_drafter_costs_time(h100):
    cost = StepTimeModel(h100)
    assert cost.iteration(16, 0, 0, 16 * 512, True) > cost.iteration(16, 0, 0, 16 * 512, False)


@pytest.mark.parametrize("profile_name,batch", [("h100", 256), ("cpu-tiny-amx", 8)])
def test_drafts_of_different_lengths_are_charged_as_tokens_verified(profile_name, batch, request):
    """Per-request k: the target verifies each request's own drafts; the drafter runs the
    longest k for the batch, so dropping drafts saves target tokens, not drafter passes.
    (The H100 batch is one where verifying is compute-bound, so tokens cost time.)"""
    from rlspec.perf.profile import load_profile

    prof = request.getfixturevalue("h100") if profile_name == "h100" else load_profile(profile_name)
    cost = StepTimeModel(prof)
    ctx = batch * 600
    same = cost.iteration(batch, 3, 0, ctx, True)
    assert cost.iteration(batch, 3, 0, ctx, True, spec_tokens=3 * batch) == same
    mixed = cost.iteration(batch, 3, 0, ctx, True, spec_tokens=3 * batch // 2)  # half at 3, half at 0
    assert cost.iteration(batch, 0, 0, ctx, True) < mixed < same
    # the longest draft's passes are paid whoever keeps them
    assert cost.iteration(batch, 3, 0, ctx, True, spec_tokens=0) > cost.iteration(batch, 0, 0, ctx, True)


def test_accepted_counts_follow_the_truncated_geometric():
    model = AcceptanceModel(AcceptanceConfig(mean=0.7), np.random.default_rng(0))
    rng = np.random.default_rng(1)
    n, k = 200_000, 4
    acc = model.accepted(np.full(n, 0.7), k, 1.0 - rng.random((n, k)))
    assert acc.min() == 0 and acc.max() == k
    assert acc.mean() + 1 == pytest.approx(expected_tokens(0.7, k), rel=0.01)
    for j in range(1, k + 1):
        assert (acc >= j).mean() == pytest.approx(0.7**j, abs=0.005)


def test_position_decay_lowers_later_positions():
    model = AcceptanceModel(
        AcceptanceConfig(mean=0.9, position_decay=0.8), np.random.default_rng(0)
    )
    rng = np.random.default_rng(2)
    acc = model.accepted(np.full(100_000, 0.9), 3, 1.0 - rng.random((100_000, 3)))
    assert (acc >= 1).mean() == pytest.approx(0.9, abs=0.01)
    assert (acc >= 2).mean() == pytest.approx(0.9 * 0.72, abs=0.01)


def test_drift_moves_the_mean_over_time():
    cfg = AcceptanceConfig(mean=0.8, concentration=50, drift=[(0.0, 0.9), (100.0, 0.5)])
    model = AcceptanceModel(cfg, np.random.default_rng(0))
    early = model.draw_requests(np.zeros(3000)).mean()
    late = model.draw_requests(np.full(3000, 100.0)).mean()
    assert early == pytest.approx(0.9, abs=0.01)
    assert late == pytest.approx(0.5, abs=0.02)


def test_speed_drift_scales_the_passes_and_adds_a_fixed_overhead(h100):
    base = StepTimeModel(h100)
    drift = SpeedDrift(scale=1.3, draft_scale=0.5, overhead_s=0.004)
    slow = StepTimeModel(h100, drift)
    args = (8, 3, 100, 8 * 400)
    target_only = base.iteration(*args, drafter_resident=False)
    drafter = base.iteration(*args, drafter_resident=True) - target_only
    assert slow.iteration(*args, drafter_resident=False) == pytest.approx(
        0.004 + 1.3 * target_only
    )
    assert slow.iteration(*args, drafter_resident=True) == pytest.approx(
        0.004 + 1.3 * (target_only + 0.5 * drafter)
    )
    assert slow.transfer_s == pytest.approx(1.3 * base.transfer_s)
    # No drift is exactly the profile (the simulator's episodes stay bit-identical).
    none = StepTimeModel(h100, SpeedDrift())
    assert none.iteration(*args, drafter_resident=True) == base.iteration(*args, True)


@pytest.mark.parametrize(
    "field, value", [("scale", 0.0), ("draft_scale", -1.0), ("overhead_s", -0.1)]
)
def test_speed_drift_rejects_out_of_range_fields_by_name(field, value):
    with pytest.raises(ConfigError, match=f"speed_drift.{field}"):
        SpeedDrift(**{field: value})


@pytest.mark.parametrize(("chunk", "before"), [(1, 0), (5, 0), (3, 2), (64, 100)])
def test_prefill_attention_pairs_count_the_causal_query_key_pairs(chunk, before):
    brute = sum(before + j + 1 for j in range(chunk))
    assert prefill_attention_pairs(chunk, before) == brute
    # however a prompt is chunked, its chunks score the whole prompt's pairs
    half = chunk // 2
    whole = prefill_attention_pairs(before + chunk, 0)
    assert prefill_attention_pairs(before, 0) + prefill_attention_pairs(half, before) + prefill_attention_pairs(
        chunk - half, before + half
    ) == whole


def test_a_fitted_prefill_pair_term_charges_prefill_and_leaves_decode_alone(h100):
    lines = FittedStepTime(0.01, 1e-4, 1e-7, 1e-3, 1e-5, 1e-8)
    with_pairs = dataclasses.replace(lines, target_per_prefill_pair_s=2e-8)
    a, b = (StepTimeModel(dataclasses.replace(h100, kind="fitted", fitted=f)) for f in (lines, with_pairs))
    pairs = prefill_attention_pairs(1024, 0)
    assert b.iteration(2, 1, 1024, 300, True, prefill_pairs=pairs) == pytest.approx(
        a.iteration(2, 1, 1024, 300, True) + 2e-8 * pairs
    )
    assert b.decode_step(8, 3, 500.0, True) == a.decode_step(8, 3, 500.0, True)


def test_pricing_by_size_multiplies_each_band_and_leaves_controllers_the_profile(h100):
    bands = SpeedDrift(by_tokens=((0, 1.1), (64, 1.0), (2000, 0.9)))
    plain, sized = StepTimeModel(h100), StepTimeModel(h100, bands)
    # 8 decodes at k=3: 32 tokens; 8 decodes with 1,000 prefill tokens; with 2,100.
    for args, factor in (((8, 3, 0, 4000, True), 1.1), ((8, 3, 1000, 4000, True), 1.0),
                         ((8, 3, 2100, 4000, True), 0.9)):  # fmt: skip
        assert sized.iteration(*args) == pytest.approx(factor * plain.iteration(*args))
    assert bands.size_factor(63) == 1.1 and bands.size_factor(64) == 1.0 and bands.size_factor(10**6) == 0.9
    assert SpeedDrift(by_tokens=[[0, 1.2]]).by_tokens == ((0, 1.2),)  # as YAML gives it
    with pytest.raises(ConfigError, match="start at 0 and increase"):
        SpeedDrift(by_tokens=((64, 1.0), (0, 1.1)))
    first = SpeedDrift(first_meeting=[[0, 1.2], [512, 1.1]])
    assert first.first_meeting_factor(511) == 1.2 and first.first_meeting_factor(512) == 1.1
    assert StepTimeModel(h100, first).iteration(8, 3, 0, 4000, True) == plain.iteration(8, 3, 0, 4000, True)
    with pytest.raises(ConfigError, match=r"speed_drift.first_meeting\[0\].factor"):
        SpeedDrift(first_meeting=((0, 0.0),))
