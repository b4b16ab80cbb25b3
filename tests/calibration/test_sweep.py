"""The live-vs-simulated sweep's context (`rlspec.calibration.sweep`): what needs no engine."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from rlspec.calibration.sweep import SweepContext


def test_negative_warm_runs_are_refused_with_the_field_name():
    with pytest.raises(ValueError, match=r"warm_runs: -1 must be >= 0"):
        SweepContext(Path("profile.yaml"), 128, 100, None, warm_runs=-1)


def test_a_simulated_request_log_holds_every_request_and_adds_up_to_the_mean():
    from rlspec.calibration.matching import REQUEST_FIELDS
    from rlspec.scenario import load_scenario

    root = Path(__file__).resolve().parents[2]
    ctx = SweepContext.open(load_scenario(str(root / "envs/live/tiny-azure-code.yaml")),
                            root / "rlspec/perf/profiles/cpu-tiny-amx.yaml", live=False, sim_seeds=2)  # fmt: skip
    sc = ctx.match(load_scenario(str(root / "envs/live/tiny-azure-code.yaml")))
    plain = ctx.run_sim(sc, "static:3")
    kept = ctx.run_sim(sc, "static:3", keep_requests=True)
    assert "request_logs" not in plain
    assert {k: v for k, v in kept.items() if k != "request_logs"} == plain  # keeping changes nothing
    requests = sc.requests(sc.seed)
    assert len(kept["request_logs"]) == 2  # one per seed
    means = []
    for log in kept["request_logs"]:
        rows = [dict(zip(REQUEST_FIELDS, row, strict=True)) for row in log]
        assert [r["request_id"] for r in rows] == sorted(r.request_id for r in requests)
        assert all(r["arrival_s"] <= r["first_token_s"] <= r["finish_s"] for r in rows)
        means.append(sum(r["finish_s"] - r["arrival_s"] for r in rows) / len(rows))
    assert sum(means) / len(means) == pytest.approx(plain["mean_latency_s"], rel=1e-5)


def test_a_decision_log_records_what_the_controller_chose_and_on_what():
    from rlspec.calibration.matching import DECISION_FIELDS, tallied_episode
    from rlspec.control.registry import make_controller
    from rlspec.engines.factory import make_backend
    from rlspec.evaluate import EpisodeTrace, run_episode
    from rlspec.features import NUM_FEATURES
    from rlspec.scenario import load_scenario

    root = Path(__file__).resolve().parents[2]
    sc = load_scenario(str(root / "envs/live/tiny-azure-code.yaml"))
    requests = sc.requests(sc.seed)
    trace = EpisodeTrace([], [], [], [])
    plain = run_episode(make_backend(sc, "sim", seed=1), make_controller("goodput"), requests, sc, trace)
    m, extra = tallied_episode(make_backend(sc, "sim", seed=1), make_controller("goodput"), requests, sc,
                               keep_decisions=True)  # fmt: skip
    assert m == plain  # recording changes nothing
    rows = [dict(zip(DECISION_FIELDS, row, strict=True)) for row in extra["decision_log"]]
    assert len(DECISION_FIELDS) == 3 + NUM_FEATURES
    assert [r["k"] for r in rows] == trace.k and [r["offload"] for r in rows] == trace.offloaded
    assert [r["clock_s"] for r in rows] == pytest.approx(trace.clock_s, abs=1e-6)
    assert len({r["k"] for r in rows}) > 1  # goodput adapts, so the log is not one repeated row
    # the observation is the one the controller read: k in use is last decision's k
    assert all(r["k_frac"] * sc.engine.k_max == pytest.approx(prev["k"])
               for prev, r in itertools.pairwise(rows) if r["clock_s"] > prev["clock_s"])  # fmt: skip
