"""Acceptance by draft position: the closed form matches the simulator, the fit inverts it."""

from __future__ import annotations

import numpy as np
import pytest

from rlspec.calibration.acceptance import PositionCounts, fit_acceptance, marginal_rates
from rlspec.perf.acceptance import AcceptanceConfig, AcceptanceModel


@pytest.mark.parametrize("mean,decay,conc", [(0.55, 1.0, 20.0), (0.7, 0.9, 10.0), (0.4, 0.95, 50.0)])
def test_closed_form_matches_the_simulators_acceptance_model(mean, decay, conc):
    rng = np.random.default_rng(0)
    model = AcceptanceModel(AcceptanceConfig(mean=mean, concentration=conc, position_decay=decay), rng)
    k, n = 4, 200_000
    a = np.array([model.draw_request(0.0) for _ in range(n)])
    acc = model.accepted(a, k, 1.0 - rng.random(n))
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
