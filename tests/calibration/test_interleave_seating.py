"""Seating a sweep's groups on the engines in turns (`rlspec.calibration.interleave.seated`):
the engines are not alike, so the controller compared with every group must not sit on one."""

from __future__ import annotations

from collections import Counter

import pytest

from rlspec.calibration.interleave import seated

GROUPS = [["policy", "static:0", "static:3"], ["policy", "goodput", "latency-model"],
          ["policy", "nightjar", "batch-table"]]  # fmt: skip


def test_a_point_seats_the_policy_on_every_engine_once():
    for point in range(4):
        engines = [seated(g, gi + point).index("policy") for gi, g in enumerate(GROUPS)]
        assert sorted(engines) == [0, 1, 2]


def test_over_a_sweep_every_controller_visits_every_engine():
    seats: dict[str, Counter] = {}
    for point in range(3):
        for gi, g in enumerate(GROUPS):
            for engine, c in enumerate(seated(g, gi + point)):
                seats.setdefault(c, Counter())[engine] += 1
    assert seats["policy"] == Counter({0: 3, 1: 3, 2: 3})
    for c in ("static:0", "static:3", "goodput", "latency-model", "nightjar", "batch-table"):
        assert seats[c] == Counter({0: 1, 1: 1, 2: 1}), c


def test_seating_keeps_the_group_and_its_cyclic_order():
    g = ["policy", "a", "b"]
    assert seated(g, 0) == g
    assert seated(g, 1) == ["b", "policy", "a"]
    assert seated(g, 2) == ["a", "b", "policy"]
    assert seated(g, 5) == seated(g, 2)
    assert g == ["policy", "a", "b"]  # the caller's list is not rotated in place


def test_an_empty_group_is_refused():
    with pytest.raises(ValueError, match="group: empty"):
        seated([], 1)
