"""The live-vs-simulated sweep's context (`rlspec.calibration.sweep`): what needs no engine."""

from __future__ import annotations

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
