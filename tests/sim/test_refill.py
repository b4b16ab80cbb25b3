"""The simulator's drafter-KV refill matches the live backend's: on reload, running
requests are rewound to where the drafter fell behind and those tokens are recomputed as
a prefill through target and drafter (instead of a drafter-only pass over all context)."""

from __future__ import annotations

import numpy as np

from rlspec.control.action import OFFLOAD, Action
from rlspec.engines.snapshot import DrafterState
from rlspec.workload import Request


def test_reload_rewinds_exactly_the_tokens_computed_while_offloaded(make_sim):
    sim = make_sim(seed=1, max_num_seqs=8)
    reqs = [Request(i, 0.0, 64, 200) for i in range(4)]
    sim.start(reqs)
    sim.set_action(Action(k=2))
    for _ in range(6):
        sim.step()
    before = sim.computed[:4].copy()
    sim.set_action(OFFLOAD)
    s = sim.step()
    # The target alone still verifies the drafts proposed at the last resident step.
    assert s.drafter is DrafterState.OFFLOADING and s.k == 0 and s.num_drafted == 4 * 2
    advanced_offloading = s.num_emitted
    for _ in range(4):
        s = sim.step()
        assert s.drafter is DrafterState.OFFLOADED and s.num_decode_reqs == 4
        assert s.num_drafted == 0
    advanced = int((sim.computed[:4] - before).sum())
    assert advanced == advanced_offloading + 4 * 4  # then one token per request per step
    decode_step = sim.cost.iteration(4, 0, 0, int(sim.computed[:4].sum()), False)
    sim.set_action(Action(k=2))
    s = sim.step()
    assert s.drafter is DrafterState.LOADING
    assert sim.refill_tokens == advanced
    # The rewound tokens are re-prefilled in the reload step, drafter included.
    assert s.num_prefill_tokens == advanced + 4 and s.num_decode_reqs == 0
    assert s.step_time_s > sim.cost.transfer_s + decode_step
    np.testing.assert_array_equal(sim.stale[:4], -1)
    assert all(sim.step().drafter is DrafterState.RESIDENT for _ in range(3))
    while not sim.finished:
        sim.step()
    assert all(r.num_generated == r.output_len for r in sim.records())


def test_requests_admitted_while_offloaded_refill_from_the_start(make_sim):
    sim = make_sim(seed=2)
    sim.start([Request(0, 0.0, 300, 50), Request(1, 0.0, 120, 50)])
    sim.set_action(OFFLOAD)
    for _ in range(4):
        sim.step()
    assert (sim.stale[:2] == 0).all()
    held = sim.computed[:2].sum()
    sim.set_action(Action(k=1))
    sim.step()
    assert sim.refill_tokens == held
