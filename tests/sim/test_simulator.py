import dataclasses
import math

import numpy as np
import pytest

from rlspec.control.action import OFFLOAD, Action
from rlspec.engines.snapshot import DrafterState
from rlspec.perf.acceptance import AcceptanceConfig
from rlspec.perf.profile import FittedStepTime
from rlspec.perf.step_time import SpeedDrift
from rlspec.sim.config import EngineConfig
from rlspec.sim.simulator import Simulator
from rlspec.workload import Request
from tests.conftest import poisson_requests


def run_random_schedule(sim, requests, seed, offload_every=0, check=None):
    """Serve `requests` with k redrawn every 5 iterations (and periodic offloads)."""
    rng = np.random.default_rng(seed)
    snaps = [sim.start(requests)]
    i = 0
    while not sim.finished:
        if i % 5 == 0:
            if offload_every and (i // 5) % offload_every == offload_every - 1:
                sim.set_action(OFFLOAD)
            else:
                sim.set_action(Action(k=int(rng.integers(0, sim.k_max + 1))))
        before = sim.generated.copy()
        s = sim.step()
        if check is not None:
            check(s, before)
        snaps.append(s)
        i += 1
        assert i < 1_000_000, "simulation did not terminate"
    return snaps


def test_every_request_completes_once_with_its_output_length(make_sim):
    reqs = poisson_requests(400, rate=40.0, seed=1)
    sim = make_sim(seed=3, num_kv_blocks=3000)  # tight memory: preemptions happen
    snaps = run_random_schedule(sim, reqs, seed=2, offload_every=4)
    assert sum(s.num_completions for s in snaps) == len(reqs)
    assert sum(s.num_arrivals for s in snaps) == len(reqs)
    assert sum(s.num_preemptions for s in snaps) > 0
    recs = sim.records()
    assert [r.request_id for r in recs] == list(range(len(reqs)))
    for r, req in zip(recs, reqs, strict=True):
        assert r.num_generated == req.output_len
        assert r.finish_s is not None and r.finish_s >= r.first_token_s >= r.arrival_s


def test_kv_blocks_never_exceed_capacity_and_tokens_per_step_bounded(make_sim):
    reqs = poisson_requests(300, rate=60.0, seed=4)
    sim = make_sim(seed=5, num_kv_blocks=2500)

    pending = np.zeros(len(reqs), dtype=np.int64)  # drafts proposed at the last step

    def check(s, before):
        assert 0 <= s.kv_used_blocks <= s.kv_total_blocks
        assert sim.kv.used_blocks == int(sim.blocks.sum())
        run = np.asarray(sim.running, dtype=int)
        decoding = (sim.computed[run] + 1 == sim.prompt[run] + sim.generated[run]) & (
            sim.generated[run] > 0
        )
        assert sim.prefilling == int((~decoding).sum())
        emitted = sim.generated - before
        assert emitted.min() >= 0
        assert (emitted <= pending + 1).all()  # a decode emits at most its drafts + 1
        assert s.num_emitted == int(emitted.sum())
        assert s.num_accepted <= s.num_drafted <= int(pending.sum())
        assert s.num_draft_reqs <= int(np.count_nonzero(pending))
        if s.num_drafted:
            assert s.drafted_per_pos[0] == s.num_draft_reqs
            assert sum(s.drafted_per_pos) == s.num_drafted
        assert set(sim.drafts[run].tolist()) <= {0, s.k}  # the next step verifies this k
        pending[:] = sim.drafts

    run_random_schedule(sim, reqs, seed=6, offload_every=3, check=check)


@pytest.mark.parametrize("k", [0, 1, 3, 4])
@pytest.mark.parametrize("output_len", [1, 2, 7, 64, 129])
def test_acceptance_one_needs_ceil_decode_steps(make_sim, k, output_len):
    """With every draft accepted, a lone request's prefill step emits the first token and
    each decode step k+1 more: ceil((output - 1) / (k + 1)) decode steps."""
    from rlspec.workload import Request

    sim = make_sim(acceptance=1.0)
    sim.start([Request(0, 0.0, 100, output_len)])
    sim.set_action(Action(k=k))
    decode_steps = 0
    while not sim.finished:
        s = sim.step()
        decode_steps += s.num_decode_reqs
    assert decode_steps == math.ceil((output_len - 1) / (k + 1))
    assert sim.generated[0] == output_len


def test_a_switch_of_k_is_verified_one_step_late(h100):
    """As in vLLM: the drafter proposes after a step's pass at that step's k, and the next
    step verifies those drafts. The step after a switch verifies (and pays for) the old k's
    drafts while its drafter already runs at the new k. The profile charges 1 s per target
    token, so a step's time is the tokens it verifies."""
    per_token = FittedStepTime(0.0, 1.0, 0.0, 0.0, 0.0, 0.0)
    profile = dataclasses.replace(h100, kind="fitted", fitted=per_token, iteration_overhead_s=0.0)
    sim = Simulator(profile, EngineConfig(), AcceptanceConfig(mean=1.0), seed=0)
    sim.start([Request(0, 0.0, 100, 200)])
    sim.set_action(Action(k=3))
    s = sim.step()  # the prefill: it samples a token, then drafts 3
    assert s.num_prefill_tokens == 100 and s.num_drafted == 0 and sim.drafts[0] == 3
    s = sim.step()
    assert (s.k, s.num_drafted, s.num_emitted) == (3, 3, 4)
    sim.set_action(Action(k=1))
    s = sim.step()
    assert (s.k, s.num_drafted, s.num_accepted, s.num_emitted) == (1, 3, 3, 4)
    assert s.num_scheduled_tokens == s.step_time_s == 1 + 3
    s = sim.step()
    assert (s.k, s.num_drafted, s.num_emitted, s.step_time_s) == (1, 1, 2, 2.0)
    sim.set_action(Action(k=0))
    s = sim.step()
    assert (s.k, s.num_drafted, s.num_emitted, s.step_time_s) == (0, 1, 2, 2.0)
    s = sim.step()
    assert (s.k, s.num_drafted, s.num_emitted, s.step_time_s) == (0, 0, 1, 1.0)


def test_offload_frees_and_reload_takes_back_exactly_the_drafter_memory(make_sim, h100):
    sim = make_sim()
    sim.start(poisson_requests(50, rate=20.0))
    kv = sim.kv
    expected_blocks = math.ceil(h100.draft.weight_bytes / kv.block_bytes)
    assert kv.drafter_blocks == expected_blocks
    # The held-back bytes cover the drafter's weights to within one block.
    assert 0 <= kv.drafter_blocks * kv.block_bytes - h100.draft.weight_bytes < kv.block_bytes
    resident_capacity = kv.capacity
    sim.set_action(OFFLOAD)
    s = sim.step()
    assert s.drafter is DrafterState.OFFLOADING
    assert s.k == 0 and s.num_drafted == 0
    assert s.step_time_s >= sim.cost.transfer_s
    assert kv.capacity - resident_capacity == expected_blocks
    s = sim.step()
    assert s.drafter is DrafterState.OFFLOADED and s.kv_total_blocks == kv.capacity
    sim.set_action(Action(k=3))
    s = sim.step()
    assert s.drafter is DrafterState.LOADING and s.num_drafted == 0
    assert kv.capacity == resident_capacity
    s = sim.step()
    assert s.drafter is DrafterState.RESIDENT and s.k == 3


def test_reload_under_full_memory_preempts_to_make_room(make_sim):
    sim = make_sim(num_kv_blocks=1200, max_num_seqs=512)
    sim.start(poisson_requests(400, rate=400.0, prompt=(400, 800), output=(200, 400)))
    sim.set_action(OFFLOAD)
    for _ in range(60):
        s = sim.step()
    assert s.drafter is DrafterState.OFFLOADED
    assert sim.kv.free < sim.kv.drafter_blocks
    sim.set_action(Action(k=2))
    s = sim.step()
    assert s.drafter is DrafterState.LOADING
    assert s.num_preemptions > 0
    assert s.kv_used_blocks <= s.kv_total_blocks


def test_reload_pays_transfer_and_refill(make_sim):
    sim = make_sim()
    sim.start(poisson_requests(40, rate=1000.0))
    for _ in range(20):
        sim.step()
    sim.set_action(OFFLOAD)
    sim.step()
    sim.step()
    plain = sim.step().step_time_s
    sim.set_action(Action(k=2))
    s = sim.step()
    assert s.step_time_s > plain + sim.cost.transfer_s
    assert sim.refill_tokens > 0


def test_same_seed_same_trajectory_different_seed_differs(make_sim):
    reqs = poisson_requests(200, rate=30.0, seed=7)

    def clocks(seed):
        return [
            (s.clock_s, s.num_accepted)
            for s in run_random_schedule(make_sim(seed=seed), reqs, seed=1)
        ]

    assert clocks(11) == clocks(11)
    assert clocks(11) != clocks(12)


def revealed_draft_outcomes(sim, requests, schedule_seed) -> dict[tuple[int, int], bool]:
    """(request, output position) -> whether the draft there was accepted, for every
    position a verify step revealed. Memory is ample and the drafter stays, so a request
    that has sampled a token decodes in every step until it finishes."""
    seen: dict[tuple[int, int], bool] = {}
    pending = np.zeros(len(requests), dtype=np.int64)  # drafts the step verifies

    def check(s, before):
        for rid in np.flatnonzero((before >= 1) & (sim.generated > before) & (pending > 0)):
            g, out = int(before[rid]), int(sim.generated[rid])
            accepted = out - g - 1
            for j in range(accepted):
                seen[(int(rid), g + j)] = True
            if accepted < pending[rid] and out < sim.output[rid]:  # not cut short by the output
                seen[(int(rid), g + accepted)] = False
        pending[:] = sim.drafts

    run_random_schedule(sim, requests, seed=schedule_seed, check=check)
    return seen


def test_every_draft_length_meets_the_same_luck_at_the_same_position(make_sim):
    """Whether a draft at a request's output position is accepted is fixed per episode (the
    text decides it), so two schedules of k on one seed agree wherever both looked. The
    oracle's rollouts rely on it: they must differ by what their actions cause, not by luck."""
    reqs = poisson_requests(120, rate=20.0, seed=4)
    a = revealed_draft_outcomes(make_sim(seed=5, acceptance=0.6), reqs, schedule_seed=1)
    b = revealed_draft_outcomes(make_sim(seed=5, acceptance=0.6), reqs, schedule_seed=2)
    both = a.keys() & b.keys()
    assert len(both) > 2_000
    assert {a[p] for p in both} == {True, False}
    assert all(a[p] == b[p] for p in both)
    other = revealed_draft_outcomes(make_sim(seed=6, acceptance=0.6), reqs, schedule_seed=2)
    assert any(other[p] != b[p] for p in other.keys() & b.keys())


def test_a_copy_shares_the_workload_and_its_luck_but_not_its_state(make_sim):
    import copy

    sim = make_sim(seed=1)
    sim.start(poisson_requests(50, rate=10.0, seed=2))
    twin = copy.deepcopy(sim)
    assert twin._luck is sim._luck and twin.acc_prob is sim.acc_prob and twin.requests is sim.requests
    assert twin.generated is not sim.generated and twin.kv is not sim.kv
    twin.set_action(Action(k=3))
    while not twin.finished:
        twin.step()
    assert sim.completed == 0 and twin.completed == 50


def test_area_under_requests_in_system_is_total_latency(make_sim):
    """Little's Law bookkeeping the reward relies on: sum of N dt == sum of latencies."""
    reqs = poisson_requests(300, rate=25.0, seed=9)
    sim = make_sim(seed=1)
    snaps = run_random_schedule(sim, reqs, seed=3, offload_every=5)
    area = sum(s.request_seconds for s in snaps)
    total = sum(r.latency_s for r in sim.records())
    assert area == pytest.approx(total, rel=1e-9)


def test_clock_is_monotone_and_idle_jumps_to_next_arrival(make_sim):
    from rlspec.workload import Request

    sim = make_sim()
    sim.start([Request(0, 0.0, 50, 3), Request(1, 100.0, 50, 3)])
    last = 0.0
    while not sim.finished:
        s = sim.step()
        assert s.clock_s >= last
        last = s.clock_s
    recs = sim.records()
    assert recs[1].first_token_s > 100.0
    assert recs[0].finish_s < 1.0


def test_an_idle_jump_reports_the_k_in_force_as_the_live_backend_does(make_sim):
    # A controller reading "k in use" (the k_frac feature) after a pause must see the draft
    # length the engine will run at, live and simulated alike (it read 0 in the simulator
    # only, and a policy trained there decided every burst's first step on another state).
    sim = make_sim()
    sim.start([Request(0, 0.0, 50, 3), Request(1, 100.0, 50, 3)])
    sim.set_action(Action(k=3))
    idle = []
    while not sim.finished:
        s = sim.step()
        if not s.num_scheduled_tokens:
            idle.append(s)
    assert len(idle) == 1 and idle[0].clock_s == 100.0 and idle[0].k == 3
    sim.start([Request(0, 0.0, 50, 3), Request(1, 100.0, 50, 3)])
    sim.set_action(OFFLOAD)
    idle = []
    while not sim.finished:
        s = sim.step()
        if not s.num_scheduled_tokens and s.drafter is DrafterState.OFFLOADED:
            idle.append(s)
    assert idle and all(s.k == 0 for s in idle)  # no drafter, no drafts


def test_rejects_unsorted_or_empty_requests(make_sim):
    from rlspec.workload import Request

    sim = make_sim()
    with pytest.raises(ValueError, match="sorted"):
        sim.start([Request(0, 1.0, 5, 5), Request(1, 0.5, 5, 5)])
    with pytest.raises(ValueError, match="output_len"):
        sim.start([Request(0, 0.0, 5, 0)])
    with pytest.raises(ValueError, match="k_max"):
        sim.set_action(Action(k=9))


def test_recompute_chunk_that_stops_one_token_short_joins_the_decode_batch(make_sim):
    """Tight token budgets make recompute chunks end anywhere; the bookkeeping that
    lets the fast path run must follow every request into the decode state."""
    reqs = poisson_requests(150, rate=80.0, seed=12, prompt=(30, 90), output=(150, 400))
    sim = make_sim(seed=2, num_kv_blocks=1200, max_num_batched_tokens=37)

    def check(s, before):
        run = np.asarray(sim.running, dtype=int)
        decoding = (sim.computed[run] + 1 == sim.prompt[run] + sim.generated[run]) & (
            sim.generated[run] > 0
        )
        assert sim.prefilling == int((~decoding).sum())

    snaps = run_random_schedule(sim, reqs, seed=5, offload_every=3, check=check)
    assert sum(s.num_preemptions for s in snaps) > 0
    assert all(r.num_generated == r.output_len for r in sim.records())


def test_speed_drift_slows_the_clock_but_not_the_controllers_cost_model(h100):
    reqs = [Request(0, 0.0, 200, 50)]  # one request: its schedule cannot depend on timing

    def busy(drift):
        sim = Simulator(h100, EngineConfig(), AcceptanceConfig(mean=0.8), seed=1, drift=drift)
        sim.set_action(Action(k=0))
        sim.start(reqs)
        steps = []
        while not sim.finished:
            steps.append(sim.step().step_time_s)
        return sim, steps

    plain, t0 = busy(SpeedDrift())
    slow, t1 = busy(SpeedDrift(scale=2.0, overhead_s=0.001))
    assert len(t0) == len(t1)
    assert t1 == pytest.approx([0.001 + 2.0 * t for t in t0])
    assert slow.cost.drift == SpeedDrift()  # controllers and features see the profile
    assert slow.records()[0].finish_s > plain.records()[0].finish_s


def test_jitter_draws_each_step_around_its_price_and_leaves_the_luck_alone(h100):
    """Log-normal noise per busy step, mean kept, from its own stream: the same seed gives the
    same steps, and a draft's verdict is the one it met without jitter."""
    reqs = [Request(0, 0.0, 200, 3000)]  # one request: its schedule cannot depend on timing

    def busy(jitter, seed=1):
        sim = Simulator(h100, EngineConfig(), AcceptanceConfig(mean=0.7), seed=seed,
                        drift=SpeedDrift(jitter=jitter))  # fmt: skip
        sim.set_action(Action(k=3))
        sim.start(reqs)
        snaps = []
        while not sim.finished:
            snaps.append(sim.step())
        return snaps

    plain, noisy = busy(0.0), busy(0.2)
    assert [s.num_accepted for s in noisy] == [s.num_accepted for s in plain]
    logs = np.log([n.step_time_s / p.step_time_s for n, p in zip(noisy, plain, strict=True)])
    assert len(logs) > 500
    assert logs.std() == pytest.approx(0.2, rel=0.1)
    assert logs.mean() == pytest.approx(-0.02, abs=0.02)  # -sigma^2/2: the mean step is kept
    assert np.exp(logs).mean() == pytest.approx(1.0, abs=0.03)
    assert [s.step_time_s for s in busy(0.2)] == [s.step_time_s for s in noisy]
    assert [s.step_time_s for s in busy(0.2, seed=2)] != [s.step_time_s for s in noisy]


def test_a_token_count_costs_more_the_first_time_its_engine_runs_it(h100):
    """`first_meeting` prices the first step of each token count, once per simulated engine:
    a second episode on the same engine meets every count again and pays nothing."""
    reqs = [Request(0, 0.0, 200, 50), Request(1, 0.0, 30, 80)]  # arrive together: no timing in the schedule

    def steps(sim):
        sim.set_action(Action(k=2))
        sim.start(reqs)
        out = []
        while not sim.finished:
            out.append(sim.step().step_time_s)
        return out

    plain = Simulator(h100, EngineConfig(), AcceptanceConfig(mean=0.8), seed=1)
    met = Simulator(h100, EngineConfig(), AcceptanceConfig(mean=0.8), seed=1,
                    drift=SpeedDrift(first_meeting=((0, 2.0),)))  # fmt: skip
    base, first = steps(plain), steps(met)
    ratios = [round(f / b, 9) for f, b in zip(first, base, strict=True)]
    assert set(ratios) == {1.0, 2.0}  # a count seen earlier in the episode is priced plainly
    assert ratios.count(2.0) == met.token_counts_met == plain.token_counts_met
    plain.reseed(1)
    met.reseed(1)
    assert steps(met) == steps(plain)  # the engine has met them all


def test_chunked_prompts_are_charged_their_whole_causal_attention(h100):
    """However the token budget chunks the prompts, a fitted prefill-pair term charges each
    prompt p(p+1)/2 query-key pairs in all: with 1 s per iteration and 1 us per pair and
    nothing else, the busy time counts both."""
    per_pair = 1e-6
    fitted = FittedStepTime(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, target_per_prefill_pair_s=per_pair)
    profile = dataclasses.replace(h100, kind="fitted", fitted=fitted, iteration_overhead_s=0.0)
    prompts = (3000, 700, 90)
    sim = Simulator(profile, EngineConfig(max_num_batched_tokens=1024), AcceptanceConfig(mean=0.5), seed=0)
    sim.set_action(Action(k=2))
    sim.start([Request(i, 0.0, p, 6) for i, p in enumerate(prompts)])
    busy = []
    while not sim.finished:
        s = sim.step()
        busy += [s.step_time_s] if s.num_scheduled_tokens else []
        assert s.num_preemptions == 0
    assert len(busy) > 5  # chunked: 3,790 prompt tokens at 1,024 a step, then decodes
    assert sum(busy) == pytest.approx(len(busy) + per_pair * sum(p * (p + 1) // 2 for p in prompts))
