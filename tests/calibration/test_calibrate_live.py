"""`rlspec calibrate` end to end on the live engine with the small test pair (vLLM needed)."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

import rlspec.engines.vllm  # noqa: F401  (Intel OpenMP before vLLM)

pytest.importorskip("vllm")

from rlspec.calibration.cli import add_arguments, run  # noqa: E402
from rlspec.calibration.live import LiveMeasurement  # noqa: E402
from rlspec.perf.fit import TERMS  # noqa: E402
from rlspec.perf.profile import load_profile  # noqa: E402
from rlspec.perf.step_time import StepTimeModel  # noqa: E402
from rlspec.sim.verdicts import DraftVerdicts  # noqa: E402
from rlspec.workload.request import Request  # noqa: E402

pytestmark = pytest.mark.vllm


def _workload(path, prompt: int) -> str:
    path.write_text(yaml.safe_dump({
        "workload": {"kind": "poisson", "rate": 4.0, "duration_s": 4.0,
                     "prompt": {"dist": "uniform", "low": prompt // 2, "high": prompt},
                     "output": {"dist": "uniform", "low": 8, "high": 24}},
    }))  # fmt: skip
    return str(path)


def test_quick_calibration_writes_a_loadable_profile(tiny_pair, tmp_path, capsys):
    target, draft = tiny_pair
    p = argparse.ArgumentParser()
    add_arguments(p)
    out = tmp_path / "cpu-test.yaml"
    engine = ["--backend", "vllm", "--model", target, "--draft-model", draft, "--max-num-seqs", "4",
              "--max-num-batched-tokens", "512", "--max-model-len", "512",
              "--kv-cache-memory-bytes", str(24 << 20), "--block-size", "32", "--dtype", "float32"]  # fmt: skip
    args = p.parse_args([
        *engine, "--out", str(out), "--quick", "--no-progress", "--save-measurements", str(tmp_path / "m.json"),
        "--acceptance-workload", _workload(tmp_path / "short.yaml", 32), "--acceptance-requests", "6",
    ])  # fmt: skip
    assert run(args) == 0
    text = capsys.readouterr().out
    assert all(t in text for t in TERMS) and "acceptance: mean accepted/drafted" in text
    prof = load_profile(out)
    assert prof.kind == "fitted" and prof.iteration_overhead_s == 0.0
    assert prof.target.layers == 4 and prof.draft.layers == 1 and prof.target.dtype_bytes == 4
    assert "measured" in prof.sources["fitted"]
    assert "drafter terms on those" in prof.sources["fitted"]  # the drafter was timed apart
    m = LiveMeasurement.from_dict(json.loads((tmp_path / "m.json").read_text()))
    resident = [r for r in m.records if r.resident and r.scheduled_tokens and not r.transition]
    assert resident and all(0 < r.drafter_time_s < r.step_time_s for r in resident)
    assert all(r.drafter_time_s == 0 for r in m.records if not r.resident)
    acc = float(prof.sources["acceptance.measured_mean"])
    assert 0.05 < acc < 0.95
    cost = StepTimeModel(prof)
    # Speculating costs time; a bigger batch costs more than a small one.
    assert cost.iteration(4, 3, 0, 400, True) > cost.iteration(4, 0, 0, 400, False)
    assert cost.iteration(4, 0, 0, 400, True) >= cost.iteration(1, 0, 0, 100, True)
    assert cost.transfer_s > 0
    assert (tmp_path / "m.json").is_file()
    # The workload's own held-out requests were run for its acceptance, and the profile keeps it.
    (w,) = m.workload_acceptance
    assert (w.workload, w.requests, w.k) == ("short", 6, 4) and sum(w.counts.drafted) > 0
    # vLLM reported each request's verify steps, and they add up to the steps' position counts.
    assert len(w.per_request) == 6 and all(len(d) == len(a) > 0 for d, a in w.per_request)
    assert sum(sum(d) for d, _ in w.per_request) == sum(w.counts.drafted)
    assert sum(sum(a) for _, a in w.per_request) == sum(w.counts.accepted)
    # At a static k every decode step verifies drafts, so each request's steps tile its output
    # and reveal its verdicts by position (what bench/verdict_replay.py replays).
    held = [Request(i, 0.0, p, o) for i, (p, o) in enumerate(w.lengths)]
    verdicts, untiled = DraftVerdicts.from_steps(held, dict(enumerate(w.per_request)))
    assert untiled == [] and verdicts.revealed >= len(held)
    assert "spread between short's requests" in text
    assert 0.0 < float(prof.sources["acceptance.workload.short.mean"]) < 1.0
    # Saved measurements gain another workload's acceptance with only that run on the engine.
    again = tmp_path / "again.yaml"
    args = p.parse_args([
        *engine, "--out", str(again), "--from-measurements", str(tmp_path / "m.json"),
        "--save-measurements", str(tmp_path / "m2.json"), "--acceptance-requests", "4",
        "--acceptance-workload", _workload(tmp_path / "long.yaml", 400),
    ])  # fmt: skip
    assert run(args) == 0
    m2 = LiveMeasurement.from_dict(json.loads((tmp_path / "m2.json").read_text()))
    assert m2.records == m.records and [w.workload for w in m2.workload_acceptance] == ["short", "long"]
    refit = load_profile(again)
    assert refit.fitted == prof.fitted
    assert {"acceptance.workload.short.mean", "acceptance.workload.long.mean"} <= set(refit.sources)
    # The profile records this host, and a refit of its saved measurements keeps that host.
    from rlspec.perf.host import cpu_features

    assert prof.host is not None and (prof.host.dtype, prof.host.isa) == ("float32", cpu_features())
    assert refit.host == prof.host
    # A live sweep against it runs the engine at the profile's dtype with the profile as the
    # backend's reference, on a host of the same kind (nothing to refuse).
    _sweep_against(prof, out, target, draft)


def _sweep_against(prof, path, target: str, draft: str) -> None:
    import dataclasses

    from rlspec.calibration.sweep import SweepContext
    from rlspec.scenario import load_scenario

    sc = load_scenario("envs/live/tiny-poisson.yaml")  # names profile cpu-tiny, dtype auto
    w = sc.workload
    sc = sc.replace(
        base_dir="",
        live=dataclasses.replace(sc.live, model=target, draft_model=draft, max_model_len=512,
                                 kv_cache_memory_bytes=24 << 20, block_size=32),
        engine=dataclasses.replace(sc.engine, max_num_seqs=4, max_num_batched_tokens=512),
        workload=dataclasses.replace(w, rate=4.0, duration_s=2.0, prompt=dataclasses.replace(w.prompt, max=64),
                                     output=dataclasses.replace(w.output, max=16)),
    )  # fmt: skip
    ctx = SweepContext.open(sc, path, warm_runs=1)
    try:
        assert ctx.host_differences == []
        assert ctx.live.config.dtype == "float32" and ctx.live.reference_profile == prof.name == "cpu-test"
        out = ctx.run_live(ctx.match(sc), "static:2")
        assert out["completed"] == len(sc.requests()) and out["step_time_vs_profile"] > 0
        assert out["warm_runs"] == 1 and out["warm_s"] > 0  # the episode was served once unmeasured first
        # a repeat on the engine that has just served the episode skips the warm-up
        again = ctx.run_live(ctx.match(sc), "static:2", warm_runs=0)
        assert again["warm_runs"] == 0 and again["warm_s"] == 0.0
        assert again["completed"] == out["completed"]
        with pytest.raises(ValueError, match=r"warm_runs: -1 must be >= 0"):
            ctx.run_live(ctx.match(sc), "static:2", warm_runs=-1)
    finally:
        ctx.close()
