"""The acceptance estimate reads each step's verify outcome right across switches of k."""

import dataclasses

import numpy as np
import pytest

from rlspec.control.action import Action
from rlspec.features import FeatureTracker
from rlspec.perf.step_time import StepTimeModel
from tests.conftest import poisson_requests


def test_a_step_after_a_switch_counts_its_full_accepts_at_the_length_it_verified(make_sim):
    """With every draft accepted nothing is ever rejected, whatever k does: the step after a
    switch verifies the old k's drafts, and their full accepts are read at that length."""
    sim = make_sim(seed=1, acceptance=1.0)
    tracker = FeatureTracker(sim.k_max, 256, 16, StepTimeModel(sim.profile))
    tracker.update(sim.start(poisson_requests(60, rate=30.0, seed=2)))
    ks = np.random.default_rng(3).integers(0, sim.k_max + 1, size=10_000)
    switched_steps = 0
    for k in ks:
        if sim.finished:
            break
        sim.set_action(Action(k=int(k)))
        s = sim.step()
        tracker.update(s)
        if s.num_draft_reqs:
            assert s.num_fully_accepted == s.num_draft_reqs
            switched_steps += len(s.drafted_per_pos) != s.k
    assert switched_steps > 50
    assert tracker.acceptance_fast == pytest.approx(1.0, abs=1e-6)


def test_full_accepts_are_read_at_the_last_drafted_position(make_sim):
    """vLLM pads its per-position counts to k_max; the simulator stops at the longest draft."""
    s = make_sim().start([])
    for drafted, accepted, full in (
        ((4, 4, 4, 0), (4, 3, 2, 0), 2),  # verified 3 drafts (k was 3), now k = 1
        ((4, 0, 0, 0), (3, 0, 0, 0), 3),  # verified 1 draft, now k = 3
        ((4,), (1,), 1),
        ((), (), 0),
    ):
        snap = dataclasses.replace(s, drafted_per_pos=drafted, accepted_per_pos=accepted)
        assert snap.num_fully_accepted == full
