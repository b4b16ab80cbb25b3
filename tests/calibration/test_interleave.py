"""Live engines taking turns (`rlspec.calibration.interleave`), with the small test pair.

With the profile clock a live episode replays identically, so running beside another
engine must change nothing an episode reports: the check that turns only share the host.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import rlspec.engines.vllm  # noqa: F401  (Intel OpenMP before vLLM)

pytest.importorskip("vllm")

from rlspec.calibration.interleave import TURN_ITERATION_FIELDS, InterleavedEngines, Job, _proc_kb  # noqa: E402
from rlspec.calibration.matching import DECISION_FIELDS, REQUEST_FIELDS  # noqa: E402
from rlspec.scenario import load_scenario  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def scenario(tiny_pair, tmp_path_factory):
    target, draft = tiny_pair
    path = Path(tmp_path_factory.mktemp("interleave")) / "live.yaml"
    # No kv_cache_memory_bytes: the pool's size comes from free memory, which the engines
    # started second see differently; the pool pins the first one's size for the rest.
    # vLLM's CPU worker sizes it as utilization x the NUMA node's memory less the process's
    # RSS (~0.7 GiB), and a VM's node can hold as little as ~10 GiB until memory is hot-added:
    # 0.12 keeps the pool positive there.
    path.write_text(yaml.safe_dump({
        "profile": "h100-llama8b-1b",
        "engine": {"max_num_seqs": 8, "max_num_batched_tokens": 512, "k_max": 4, "num_kv_blocks": 2000},
        "live": {"model": target, "draft_model": draft, "max_model_len": 512, "clock": "profile",
                 "gpu_memory_utilization": 0.12, "block_size": 32, "dtype": "float32"},
        "workload": {"kind": "poisson", "rate": 20.0, "duration_s": 1.0,
                     "prompt": {"dist": "uniform", "low": 8, "high": 64},
                     "output": {"dist": "uniform", "low": 4, "high": 24}},
        "decision_interval": 2,
    }))  # fmt: skip
    return load_scenario(path)


@pytest.fixture(scope="module")
def pool(scenario):
    with InterleavedEngines(scenario, 2) as p:
        yield p


def _summary(result):
    m, extra = result
    return (m.as_dict(), extra["iterations"], extra["drafted"], extra["accepted"])


def test_running_beside_another_engine_changes_nothing_an_episode_reports(pool, scenario):
    n = len(scenario.requests(scenario.seed))
    (solo,), others = pool.run([Job(scenario, "goodput", scenario.seed)])
    assert others >= 0.0
    together, _ = pool.run([Job(scenario, "goodput", scenario.seed), Job(scenario, "static:0", scenario.seed)])
    (alone0,), _ = pool.run([Job(scenario, "static:0", scenario.seed)])
    twin, _ = pool.run([Job(scenario, "goodput", scenario.seed), Job(scenario, "goodput", scenario.seed)])

    assert solo[0].completed == n and solo[1]["drafted"] > 0
    # same episode alone, beside another controller, and on either engine
    assert _summary(together[0]) == _summary(solo)
    assert _summary(twin[0]) == _summary(twin[1]) == _summary(solo)
    assert _summary(together[1]) == _summary(alone0)
    assert together[1][1]["drafted"] == 0
    # every iteration waited for its turn
    for _m, extra in (*together, *twin):
        assert extra["turns"] >= extra["iterations"] + 1


def test_longer_turns_hold_several_iterations_and_change_nothing_reported(pool, scenario):
    jobs = [Job(scenario, "goodput", scenario.seed), Job(scenario, "static:0", scenario.seed)]
    short, _ = pool.run(jobs)
    long, _ = pool.run(jobs, turn_s=0.2)
    for one, sliced in zip(short, long, strict=True):
        assert _summary(sliced) == _summary(one)
        # a turn runs the iterations that start within 0.2 s of it, so fewer turns than iterations
        assert 1 <= sliced[1]["turns"] < sliced[1]["iterations"] < one[1]["turns"]
    with pytest.raises(ValueError, match=r"turn_s: -1 must be in \[0, 60\] seconds"):
        pool.run(jobs, turn_s=-1)


def test_a_turn_order_changes_nothing_reported_and_results_stay_in_job_order(pool, scenario):
    jobs = [Job(scenario, "goodput", scenario.seed), Job(scenario, "static:0", scenario.seed)]
    forward, _ = pool.run(jobs)
    backward, _ = pool.run(jobs, turn_order=[1, 0])
    assert [_summary(r) for r in backward] == [_summary(r) for r in forward]
    assert backward[1][1]["drafted"] == 0 < backward[0][1]["drafted"]  # static:0's result is still second
    for bad in ([0, 0], [0], [1, 2]):
        with pytest.raises(ValueError, match="turn_order: .* is not a permutation of 0..1"):
            pool.run(jobs, turn_order=bad)


def test_a_hook_between_turns_runs_once_per_turn_and_changes_nothing_reported(pool, scenario):
    (plain,), _ = pool.run([Job(scenario, "goodput", scenario.seed)])
    calls = []
    (hooked,), _ = pool.run([Job(scenario, "goodput", scenario.seed)], between_turns=lambda: calls.append(1))
    # the coordinator receives exactly one message per turn, the episode's last included
    assert len(calls) == hooked[1]["turns"] > hooked[1]["iterations"]
    assert _summary(hooked) == _summary(plain)


def test_an_iteration_log_adds_up_to_the_episode_and_marks_each_turns_first_step(pool, scenario):
    jobs = [Job(scenario, "goodput", scenario.seed), Job(scenario, "static:0", scenario.seed)]
    plain, _ = pool.run(jobs, turn_s=0.2)
    logged, _ = pool.run([jobs[0], Job(scenario, "static:0", scenario.seed, keep_iterations=True,
                                       keep_requests=True, keep_decisions=True)], turn_s=0.2)  # fmt: skip
    assert not {"iteration_log", "request_log", "decision_log"} & set(logged[0][1])
    assert [_summary(r) for r in logged] == [_summary(r) for r in plain]
    m, extra = logged[1]
    log = [dict(zip(TURN_ITERATION_FIELDS, row, strict=True)) for row in extra["iteration_log"]]
    assert len(log) == extra["iterations"]  # every busy iteration, once
    # the profile clock charges each iteration its prediction, so the log adds up to the busy time
    assert sum(r["predicted_s"] for r in log) == pytest.approx(extra["busy_s"], abs=1e-5 * len(log))
    assert all(r["measured_s"] > 0 for r in log)
    assert sum(r["scheduled_tokens"] for r in log) == sum(
        r["decode_reqs"] + r["spec_tokens"] + r["prefill_tokens"] for r in log)
    assert all(r["k"] == r["k_before"] == 0 and r["spec_tokens"] == 0 for r in log[1:])  # static:0 drafts nothing
    # each turn's first busy iteration is marked: the episode's first, and no more than one per turn
    first = sum(r["first_in_turn"] for r in log)
    assert log[0]["first_in_turn"] and 1 <= first <= extra["turns"]
    assert first < len(log)  # 0.2-s turns hold several iterations
    # each request's timeline: all of them, adding up to the episode's mean, each finishing as
    # a busy iteration ends (the log's clock runs forward)
    reqs = [dict(zip(REQUEST_FIELDS, row, strict=True)) for row in extra["request_log"]]
    assert [r["request_id"] for r in reqs] == sorted(r.request_id for r in scenario.requests(scenario.seed))
    assert sum(r["finish_s"] - r["arrival_s"] for r in reqs) / len(reqs) == pytest.approx(m.mean_latency_s, abs=1e-5)
    clocks = [r["clock_s"] for r in log]
    assert clocks == sorted(clocks)
    assert {r["finish_s"] for r in reqs} <= set(clocks)
    # each decision, on the observation it was made on: static:0 chose k = 0 every time
    decisions = [dict(zip(DECISION_FIELDS, row, strict=True)) for row in extra["decision_log"]]
    assert len(decisions) >= len(log) / scenario.decision_interval
    assert all(d["k"] == 0 and d["k_frac"] == 0 for d in decisions)
    assert [d["clock_s"] for d in decisions] == sorted(d["clock_s"] for d in decisions)


def test_errors_name_the_job_and_leave_the_pool_usable(pool, scenario):
    with pytest.raises(ValueError, match="runs 1..2 at once"):
        pool.run([Job(scenario, "goodput", 0)] * 3)
    with pytest.raises(RuntimeError, match=r"job 1 \(no-such-controller\)"):
        pool.run([Job(scenario, "static:1", 0), Job(scenario, "no-such-controller", 0)])
    (ok,), _ = pool.run([Job(scenario, "static:1", scenario.seed)])
    assert ok[0].completed == len(scenario.requests(scenario.seed))


def test_bad_sizes_are_refused_before_any_engine_starts(scenario):
    with pytest.raises(ValueError, match="n: 0"):
        InterleavedEngines(scenario, 0)
    with pytest.raises(ValueError, match="blocktime_ms"):
        InterleavedEngines(scenario, 1, blocktime_ms=-1)


def test_memory_check_counts_the_pool_once(pool):
    # vLLM zero-fills the KV pool at startup, so the first engine's resident size holds it:
    # the check asks for that size per further engine, not that size plus the pool again
    rss = _proc_kb(f"/proc/{pool._procs[0].pid}/status", "VmRSS")
    assert rss is not None and rss > pool.facts.pool_bytes > 0
    too_many = int(_proc_kb("/proc/meminfo", "MemAvailable") / rss) + 2
    with pytest.raises(MemoryError, match=f"{too_many} engines need .* KV pool included"):
        pool._check_memory(too_many)


def test_warm_runs_serve_the_group_unmeasured_first_and_change_nothing_reported(pool, scenario):
    from rlspec.calibration.sweep import METRICS, SweepContext

    served: list[list[str]] = []

    class CountingPool:  # the real pool, its groups recorded
        def run(self, jobs, baselines=None, turn_s=0.0):
            served.append([j.controller for j in jobs])
            return pool.run(jobs, baselines, turn_s=turn_s)

    def sweep(warm_runs: int) -> SweepContext:
        return SweepContext(Path("profile.yaml"), 32, 100, None, together=CountingPool(), warm_runs=warm_runs)

    group = ["goodput", "static:0"]
    cold = sweep(0).run_live_together(scenario, group)
    warm = sweep(2).run_live_together(scenario, group)
    assert served == [group] * 4  # one measured group cold; two unmeasured, then one measured, warm
    reported = (*METRICS, "iterations", "drafted", "accepted", "busy_s")
    for c in group:
        assert (cold[c]["warm_runs"], warm[c]["warm_runs"]) == (0, 2)
        assert cold[c]["warm_s"] < warm[c]["warm_s"]
        # the profile clock replays an episode exactly: warming changes what is measured only on the wall clock
        assert [warm[c][k] for k in reported] == [cold[c][k] for k in reported]
