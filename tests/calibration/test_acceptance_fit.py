"""Acceptance by draft position: the closed form matches the simulator, the fit inverts it."""

from __future__ import annotations

import numpy as np
import pytest

from rlspec.calibration.acceptance import (
    PositionCounts,
    WorkloadAcceptance,
    fit_acceptance,
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
