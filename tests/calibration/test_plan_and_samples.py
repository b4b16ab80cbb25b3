"""Measurement plan -> measured iterations -> fit samples, without vLLM.

Records are made the way the live runner makes them, from a known fitted step-time model,
with the artefacts a live engine has (warm-up, idle steps, drafter transfers, the step
after a k switch, interference spikes, repeats) so the conversion and the robust fit are
checked against coefficients we know.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rlspec.calibration.plan import (
    OFF,
    MeasurementPlan,
    Probe,
    RobustFit,
    StepRecord,
    default_plan,
    fit_residuals,
    robust_fit,
    samples_from_records,
)
from rlspec.perf.fit import TERMS, FitReport, IterationSample, design_row
from rlspec.perf.profile import FittedStepTime
from rlspec.perf.step_time import StepTimeModel

TRUTH = FittedStepTime(0.012, 6.0e-4, 1.2e-5, 0.002, 9.0e-5, 1.0e-6, draft_propose_s=8.0e-4)


def model(h100) -> StepTimeModel:
    p = dataclasses.replace(h100, kind="fitted", fitted=TRUTH, iteration_overhead_s=0.0)
    return StepTimeModel(p)


def test_default_plan_spans_every_term_within_engine_limits():
    plan = default_plan(k_max=4, max_num_seqs=16, max_num_batched_tokens=2048, max_model_len=2048)
    grid = [p for p in plan.probes if not p.stream]
    streams = [p for p in plan.probes if p.stream]
    assert {p.batch for p in grid} >= {1, 16}
    assert len({p.prompt_len for p in grid}) >= 3
    ks = {k for p in grid for k, _ in p.schedule}
    assert ks == {0, 1, 2, 3, 4, OFF}
    assert streams and all(p.spacing_s > 0 for p in streams)
    for p in plan.probes:
        assert p.batch <= 16 or p.stream
        for r in p.requests():
            assert r.prompt_len + r.output_len <= 2048
    # Output long enough to keep every request decoding through the whole k schedule.
    decoding = [p for p in grid if p.output_len > 1]
    for p in decoding:
        assert p.output_len >= sum((k + 1 if k != OFF else 1) * n for k, n in p.schedule)
    # Prefill probes: one output token, prompts in one chunk, many lengths, run 3x per repeat.
    prefill = [p for p in grid if p.output_len == 1]
    assert len({p.prompt_len for p in prefill if p.batch == 1}) >= 8
    assert max(p.prompt_len for p in prefill) >= 1536  # the longest prompts the live workloads send
    assert all(p.batch * p.prompt_len <= 2048 and p.runs == 3 for p in prefill)


def test_probe_schedule_and_requests():
    p = Probe("g", 3, 64, 40, ((0, 2), (2, 3), (OFF, 1)))
    assert [p.action_at(i) for i in range(7)] == [0, 0, 2, 2, 2, OFF, None]
    reqs = p.requests()
    assert [(r.arrival_s, r.prompt_len, r.output_len) for r in reqs] == [(0.0, 64, 40)] * 3
    s = Probe("s", 10, 256, 32, ((3, 0),), spacing_s=0.1, seed=1)
    rs = s.requests()
    assert [r.request_id for r in rs] == list(range(10))
    assert all(b.arrival_s - a.arrival_s == pytest.approx(0.1) for a, b in zip(rs, rs[1:], strict=False))
    assert all(8 <= r.prompt_len <= 256 and 8 <= r.output_len <= 32 for r in rs)
    assert s.action_at(1000) == 3  # a stream keeps its k


def test_plan_order_interleaves_repeats_and_marks_warmup():
    probes = tuple(Probe(f"p{i}", 1, 8, 8, ((0, 1),)) for i in range(3))
    order = MeasurementPlan(probes, repeats=2, warmup=1).order()
    assert [(r, p.name) for r, p in order] == [
        (-1, "p0"), (0, "p0"), (0, "p1"), (0, "p2"), (1, "p2"), (1, "p1"), (1, "p0"),
    ]  # fmt: skip


def test_extra_runs_of_a_probe_spread_through_its_repeat():
    probes = (Probe("a", 1, 8, 8, ((0, 1),)), Probe("b", 1, 8, 1, ((0, 1),), runs=3), Probe("c", 1, 8, 1, ((0, 1),), runs=2))
    order = MeasurementPlan(probes, repeats=2, warmup=0).order()
    assert [(r, p.name) for r, p in order] == [
        (0, "a"), (0, "b"), (0, "c"), (0, "b"), (0, "c"), (0, "b"),
        (1, "c"), (1, "b"), (1, "a"), (1, "c"), (1, "b"), (1, "b"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="runs"):
        Probe("x", 1, 8, 1, ((0, 1),), runs=0)


def synthetic_records(h100, noise: float = 0.01, spikes: float = 0.03, seed: int = 0):
    """Iterations of two repeats of a grid over batch, k, offload, prefill and context."""
    cost = model(h100)
    rng = np.random.default_rng(seed)
    recs: list[StepRecord] = []

    def add(rep, i, b, k, pre, ctx, resident, *, transition=False, spec=None, t=None):
        tt = cost.iteration(b, k if resident else 0, pre, ctx, resident)
        tt *= 1 + noise * rng.standard_normal()
        if rng.random() < spikes:
            tt *= 3.0  # another process took the CPU
        spec_tokens = b * (k if resident else 0) if spec is None else spec
        recs.append(StepRecord("p", rep, i, b, k if resident else 0, spec_tokens, pre, ctx,
                               b * (1 + (k if resident else 0)) + pre if spec is None else b + spec + pre,
                               resident, transition, tt if t is None else t))  # fmt: skip

    for rep in (-1, 0, 1):
        i = 0
        for b in (1, 2, 4, 8, 16):
            for ctx_per_req in (32, 300, 1200):
                add(rep, i, 0, 2, b * ctx_per_req, 0, True)  # the prefill
                i += 1
                for k in (0, 1, 2, 3, 4):
                    if k:  # step after the switch: verifies k-1 drafts, drafts k
                        add(rep, i, b, k, 0, b * ctx_per_req, True, spec=b * (k - 1))
                        i += 1
                    for j in range(3):
                        add(rep, i, b, k, 0, b * (ctx_per_req + 8 * j + k), True)
                        add(rep, i + 1, b, k, 64, b * (ctx_per_req + 8 * j + k) + 32, True)
                        i += 2
                add(rep, i, b, 0, 0, b * ctx_per_req, False, transition=True, t=0.5)
                for j in range(3):
                    add(rep, i + 1 + j, b, 0, 0, b * (ctx_per_req + 40 + j), False)
                i += 4
                recs.append(StepRecord("p", rep, i, 0, 0, 0, 0, 0, 0, True, False, 0.3))  # idle
                i += 1
    return recs


def test_records_become_samples(h100):
    recs = synthetic_records(h100, noise=0.0, spikes=0.0)
    sset = samples_from_records(recs)
    assert sset.dropped["warm-up"] == sum(r.repeat < 0 for r in recs)
    assert sset.dropped["drafter transfer"] == 2 * 15
    assert sset.dropped["k switch (verified != drafted)"] == 2 * 15 * 4
    assert sset.dropped["idle"] == 2 * 15
    # Repeats of the same iteration are merged into one sample.
    usable = [r for r in recs if r.repeat >= 0 and r.scheduled_tokens and not r.transition and r.consistent]
    keys = {(r.decode_reqs, r.k, r.prefill_tokens, r.context, r.resident) for r in usable}
    assert len(sset.samples) == len(keys) <= len(usable) // 2
    assert sset.merged == len(usable) - len(keys)
    offloaded = [s for s in sset.samples if not s.drafter_resident]
    assert offloaded and all(s.k == 0 for s in offloaded)
    assert {s.k for s in sset.samples if s.drafter_resident} == {0, 1, 2, 3, 4}


def test_merge_takes_the_median_of_repeats():
    base = dict(probe="p", index=0, decode_reqs=4, k=2, spec_tokens=8, prefill_tokens=0,
                context=400, scheduled_tokens=12, resident=True, transition=False)  # fmt: skip
    recs = [StepRecord(repeat=r, step_time_s=t, **base) for r, t in ((0, 0.05), (1, 0.20), (2, 0.06))]
    (s,) = samples_from_records(recs).samples
    assert s.step_time_s == pytest.approx(0.06)
    (s,) = samples_from_records(recs, merge="min").samples
    assert s.step_time_s == pytest.approx(0.05)


def test_robust_fit_recovers_coefficients_despite_interference(h100):
    sset = samples_from_records(synthetic_records(h100, noise=0.002, spikes=0.05, seed=3))
    fit = robust_fit(sset.samples)
    assert fit.outliers, "spikes should be dropped"
    for name in TERMS:
        assert getattr(fit.report.fitted, name) == pytest.approx(getattr(TRUTH, name), rel=0.05), name
    assert fit.report.mape < 0.01
    assert fit.first.mape > fit.report.mape


def test_fit_residuals_find_the_band_the_line_misses_and_its_sign():
    coef = np.array([getattr(TRUTH, n) for n in TERMS])

    def sample(decode: int, k: int, prefill: int, slower: float = 1.0) -> IterationSample:
        s = IterationSample(decode, k, prefill, 400 * decode + prefill, True, 1.0)
        return dataclasses.replace(s, step_time_s=slower * float(np.dot(design_row(s), coef)))

    kept = [sample(8, 2, 0), sample(8, 0, 0), sample(4, 2, 300), sample(2, 0, 1000, 1.10),
            sample(1, 0, 1200, 1.10), sample(8, 4, 2000)]  # fmt: skip
    outliers = [sample(2, 0, 900, 3.0), sample(8, 2, 0, 3.0)]
    report = FitReport(TRUTH, {n: 0.0 for n in TERMS}, {n: 0.0 for n in TERMS}, 0.0, len(kept))
    res = fit_residuals(RobustFit(report, kept, outliers, report))

    bands = res["by_prefill_tokens"]
    assert list(bands) == ["256-767", "768-1599", "1600+"]  # in band order, empty bands left out
    assert bands["768-1599"].bias == pytest.approx(0.10)
    assert bands["768-1599"].abs_error == pytest.approx(1 - 1 / 1.10)
    assert (bands["768-1599"].n, bands["768-1599"].outliers) == (2, 1)
    assert bands["256-767"].bias == pytest.approx(0.0, abs=1e-12)
    kinds = res["by_kind"]
    assert kinds["resident k=0 + prefill"].bias == pytest.approx(0.10)
    assert kinds["resident k=2"].abs_error == pytest.approx(0.0, abs=1e-12)
    assert kinds["resident k=2"].outliers == 1
