import pytest

from rlspec.config import ConfigError
from rlspec.control.action import OFFLOAD, Action
from rlspec.control.base import ControlContext
from rlspec.control.registry import make_controller
from rlspec.engines.snapshot import DrafterState, Snapshot
from rlspec.features import FeatureTracker
from rlspec.perf.step_time import StepTimeModel


def snap(running=1, waiting=0, kv_used=10, kv_total=1000, k=0, clock=1.0, arrivals=0, **kw):
    fields = dict(
        clock_s=clock, step_time_s=0.01, num_running=running, num_waiting=waiting,
        kv_used_blocks=kv_used, kv_total_blocks=kv_total, num_scheduled_tokens=running * (k + 1),
        num_prefill_tokens=0, num_decode_reqs=running, k=k, num_drafted=0, num_accepted=0,
        num_emitted=running, num_arrivals=arrivals, num_completions=0, num_preemptions=0,
        num_draft_reqs=0, request_seconds=0.01 * running, drafter=DrafterState.RESIDENT,
    )  # fmt: skip
    fields.update(kw)
    return Snapshot(**fields)


@pytest.fixture
def ctx(h100):
    return ControlContext(k_max=4, max_num_seqs=256, cost=StepTimeModel(h100), decision_interval=8)


def tracker_with(acceptance: float, running: int, ctx, rate: float = 0.0, **kw) -> FeatureTracker:
    t = ctx.tracker()
    # Feed verify outcomes that pin the acceptance estimate: per request accepted a/(1-a)
    # on average with one rejection each.
    for _ in range(200):
        acc = int(round(100 * acceptance / (1 - acceptance)))
        t.update(snap(running=running, k=4, num_draft_reqs=100, num_accepted=acc,
                      num_drafted=400, accepted_per_pos=(0, 0, 0, 0), **kw))  # fmt: skip
    t.rate_fast = rate
    return t


def test_registry_names_and_errors():
    assert make_controller("static:3").name == "static:3"
    for name in ("batch-table", "goodput", "latency-model", "nightjar"):
        assert make_controller(name).name == name
    with pytest.raises(ConfigError, match="allowed"):
        make_controller("smartspec")
    with pytest.raises(ConfigError, match="integer"):
        make_controller("static:x")


def test_static_rejects_k_above_k_max(ctx):
    c = make_controller("static:5")
    with pytest.raises(ConfigError, match="k_max"):
        c.reset(ctx)


def test_cycle_takes_its_draft_lengths_in_turn_from_every_reset(ctx):
    c = make_controller("cycle:2/3")
    assert c.name == "cycle:2/3"
    c.reset(ctx)
    t = ctx.tracker()
    assert [c.decide(t).k for _ in range(5)] == [2, 3, 2, 3, 2]
    c.reset(ctx)
    assert c.decide(t).k == 2
    with pytest.raises(ConfigError, match="k_max"):
        make_controller("cycle:1/5").reset(ctx)
    for bad, match in (("cycle:3", "two or more"), ("cycle:2/x", "integers"), ("cycle:2/-1", ">= 0")):
        with pytest.raises(ConfigError, match=match):
            make_controller(bad)


def test_tracker_recovers_acceptance(ctx):
    t = tracker_with(0.75, 4, ctx)
    assert t.acceptance_fast == pytest.approx(0.75, abs=0.01)
    assert t.acceptance_slow == pytest.approx(0.75, abs=0.03)


def test_goodput_speculates_when_drafts_are_accepted_and_stops_when_not(ctx):
    c = make_controller("goodput")
    c.reset(ctx)
    assert c.decide(tracker_with(0.85, 1, ctx)).k >= 3
    assert c.decide(tracker_with(0.1, 1, ctx)).k == 0
    # At a large batch the verify pass is compute-bound: shorter drafts.
    assert (
        c.decide(tracker_with(0.85, 256, ctx, kv_used=256 * 32)).k
        < c.decide(tracker_with(0.85, 1, ctx)).k
    )


def test_latency_model_shortens_drafts_as_the_rate_grows(ctx):
    c = make_controller("latency-model")
    c.reset(ctx)
    low = c.decide(tracker_with(0.8, 8, ctx, rate=1.0, kv_used=8 * 40)).k
    high = c.decide(tracker_with(0.8, 200, ctx, rate=40.0, kv_used=200 * 40)).k
    assert low >= 3
    assert high < low


def test_batch_table_follows_the_table(ctx):
    c = make_controller("batch-table")
    c.reset(ctx)
    assert c.decide(tracker_with(0.8, 4, ctx)) == Action(4)
    assert c.decide(tracker_with(0.8, 40, ctx)) == Action(2)
    assert c.decide(tracker_with(0.8, 200, ctx)) == Action(0)


def test_nightjar_offloads_under_queueing_and_reloads_with_hysteresis(ctx):
    c = make_controller("nightjar")
    c.reset(ctx)
    t = ctx.tracker()
    t.update(snap(running=256, waiting=80, kv_used=990))
    decisions = [c.decide(t) for _ in range(3)]
    assert decisions[-1] == OFFLOAD and decisions[0] != OFFLOAD
    t.update(snap(running=10, waiting=0, kv_used=100))
    calm = [c.decide(t) for _ in range(3)]
    assert calm[0] == OFFLOAD and calm[-1] != OFFLOAD
