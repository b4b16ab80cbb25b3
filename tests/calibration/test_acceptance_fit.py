"""Acceptance by draft position: the closed form matches the simulator, the fit inverts it."""

from __future__ import annotations

import numpy as np
import pytest

from rlspec.calibration.acceptance import (
    PositionCounts,
    WorkloadAcceptance,
    fit_acceptance,
    fit_concentration,
    marginal_rates,
)
from rlspec.control.action import Action
from rlspec.perf.acceptance import AcceptanceConfig, AcceptanceModel
from rlspec.perf.profile import load_profile
from rlspec.sim.config import EngineConfig
from rlspec.sim.simulator import Simulator
from rlspec.workload.request import Request


@pytest.mark.parametrize("mean,decay,conc", [(0.55, 1.0, 20.0), (0.7, 0.9, 10.0), (0.4, 0.95, 50.0)])
def test_closed_form_matches_the_simulators_acceptance_model(mean, decay, conc):
    rng = np.random.default_rng(0)
    model = AcceptanceModel(AcceptanceConfig(mean=mean, concentration=conc, position_decay=decay), rng)
    k, n = 4, 200_000
    a = model.draw_requests(np.zeros(n))
    acc = model.accepted(a, k, 1.0 - rng.random((n, k)))
    measured = [(acc > j).mean() for j in range(k)]
    np.testing.assert_allclose(marginal_rates(mean, decay, conc, k), measured, atol=0.004)


def test_fit_recovers_mean_and_decay():
    drafted = [40_000, 40_000, 30_000, 20_000]
    r = marginal_rates(0.58, 0.93, 20.0, 4)
    counts = PositionCounts(drafted, [int(round(d * x)) for d, x in zip(drafted, r, strict=False)])
    fit = fit_acceptance(counts, concentration=20.0)
    assert fit.mean == pytest.approx(0.58, abs=0.003)
    assert fit.position_decay == pytest.approx(0.93, abs=0.005)
    assert fit.max_abs_error < 0.002
    no_decay = fit_acceptance(counts, concentration=20.0, fit_decay=False)
    assert no_decay.position_decay == 1.0


def test_position_counts_sum_steps_of_any_k():
    c = PositionCounts.total([((4, 4), (3, 1)), ((4, 4, 4, 4), (2, 2, 1, 0)), ((), ())])
    assert c.drafted == [8, 8, 4, 4] and c.accepted == [5, 3, 1, 0]
    assert c.mean == pytest.approx(9 / 24)
    assert c.marginal[:2] == [5 / 8, 3 / 8]
    assert c.conditional[1] == pytest.approx(3 / 5)


def test_fit_refuses_no_drafts():
    with pytest.raises(ValueError, match="k >= 1"):
        fit_acceptance(PositionCounts([0, 0], [0, 0]))


def test_decay_can_be_held_while_the_mean_is_fitted():
    drafted = [30_000] * 4
    r = marginal_rates(0.64, 0.95, 20.0, 4)
    counts = PositionCounts(drafted, [int(round(d * x)) for d, x in zip(drafted, r, strict=True)])
    held = fit_acceptance(counts, concentration=20.0, fit_decay=False, decay=0.95)
    assert held.position_decay == 0.95 and held.mean == pytest.approx(0.64, abs=0.002)


def test_a_workloads_mean_is_the_one_the_simulator_reproduces_it_with():
    """Requests served to completion: those that accept more finish sooner, so the closed
    form reads a low mean off their drafts; the simulator-matched fit recovers the truth."""
    profile = load_profile("cpu-tiny")
    engine = EngineConfig(max_num_seqs=16, max_num_batched_tokens=2048, block_size=128, k_max=4,
                          num_kv_blocks=278)  # fmt: skip
    lengths = tuple((int(p), int(o)) for p, o in zip(np.linspace(32, 600, 40), np.linspace(8, 120, 40), strict=True))
    truth = AcceptanceConfig(mean=0.62, concentration=20.0, position_decay=0.97)
    reqs = [Request(i, 0.0, p, o) for i, (p, o) in enumerate(lengths)]
    pairs = []
    for seed in (101, 102, 103, 104):  # the "live" measurement: seeds the fit does not use
        sim = Simulator(profile, engine, truth, seed=seed)
        sim.start(reqs)
        while not sim.finished:
            sim.set_action(Action(k=3))
            snap = sim.step()
            pairs.append((snap.drafted_per_pos, snap.accepted_per_pos))
    w = WorkloadAcceptance("code", lengths, 3, PositionCounts.total(pairs))
    assert WorkloadAcceptance.from_dict(w.to_dict()) == w and w.requests == 40
    own = fit_acceptance(w.counts, concentration=20.0, fit_decay=False, decay=0.97)
    assert own.mean < 0.60  # the closed form is biased low on finished requests
    # the pooled probes (other requests) decay faster; the workload keeps its own decay
    pooled = fit_acceptance(w.counts, concentration=20.0, fit_decay=False, decay=0.90)
    fit = w.fit(pooled, profile, engine)
    assert fit.concentration == 20.0
    assert fit.position_decay == pytest.approx(0.97, abs=0.03)
    assert fit.mean == pytest.approx(0.62, abs=0.02)
    # and the simulator at the fitted acceptance verifies the measured share
    cfg = AcceptanceConfig(mean=fit.mean, concentration=20.0, position_decay=fit.position_decay)
    assert w.simulated_share(cfg, profile, engine) == pytest.approx(w.counts.mean, abs=0.005)


def _served(truth: AcceptanceConfig, outputs: np.ndarray, k: int, seed: int) -> list:
    """Each request's verify steps at static k until its output is out, as vLLM's
    per-request metrics report them: the simulator's own acceptance model draws them."""
    rng = np.random.default_rng(seed)
    model = AcceptanceModel(truth, rng)
    a = model.draw_requests(np.zeros(len(outputs)))
    served = []
    for i, out in enumerate(outputs):
        left, drafted, accepted = int(out) - 1, [], []  # the prefill samples the first token
        while left > 0:
            acc = int(model.accepted(a[i : i + 1], k, 1.0 - rng.random((1, k)))[0])
            drafted.append(k)
            accepted.append(acc)
            left -= acc + 1
        served.append((tuple(drafted), tuple(accepted)))
    return served


@pytest.mark.parametrize("conc", [5.0, 60.0])
def test_the_spread_between_requests_is_recovered_from_their_own_steps(conc):
    """Pooled position counts cannot tell spread from decay; each request's steps can."""
    outputs = np.random.default_rng(1).integers(20, 121, 600)
    served = _served(AcceptanceConfig(mean=0.57, concentration=conc, position_decay=0.97), outputs, 4, seed=2)
    fit = fit_concentration(served, decay=0.97)
    lo, hi = fit.concentration_interval
    assert lo <= conc <= hi and hi / lo < 2.5  # the interval holds the truth, and is narrow
    assert fit.mean == pytest.approx(0.57, abs=0.025)
    assert fit.requests == 600 and fit.steps == sum(len(d) for d, _ in served)
    assert fit.log_likelihood_gain > 10  # a spread is found, not "every request alike"


def test_spread_mean_and_decay_are_fitted_together():
    outputs = np.random.default_rng(3).integers(20, 121, 400)
    served = _served(AcceptanceConfig(mean=0.6, concentration=20.0, position_decay=0.92), outputs, 4, seed=4)
    steps = [a for _, acs in served for a in acs]
    counts = PositionCounts([len(steps)] * 4, [sum(a > j for a in steps) for j in range(4)])
    w = WorkloadAcceptance("chat", tuple((64, int(o)) for o in outputs), 4, counts, tuple(served))
    assert WorkloadAcceptance.from_dict(w.to_dict()) == w
    fit = w.spread
    assert fit.position_decay == pytest.approx(0.92, abs=0.015)
    assert fit.concentration_interval[0] <= 20.0 <= fit.concentration_interval[1]
    assert fit.mean == pytest.approx(0.6, abs=0.03)
    assert WorkloadAcceptance("chat", w.lengths, 4, w.counts).spread is None


def test_spread_refuses_steps_it_cannot_have_seen():
    with pytest.raises(ValueError, match="no request had a verify step"):
        fit_concentration([((), ()), ((), ())])
    with pytest.raises(ValueError, match="3 accepted of 2 drafts"):
        fit_concentration([((2,), (3,))], decay=1.0)
