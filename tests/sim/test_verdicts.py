"""Measured draft verdicts: read from vLLM-style verify steps, replayed as the simulator's luck."""

from __future__ import annotations

import numpy as np
import pytest

from rlspec.control.action import Action
from rlspec.control.registry import make_controller
from rlspec.engines.factory import make_backend
from rlspec.evaluate import run_episode
from rlspec.perf.acceptance import AcceptanceConfig
from rlspec.scenario import load_scenario
from rlspec.sim.verdicts import DraftVerdicts
from rlspec.workload.request import Request

SCENARIO = load_scenario("bursty").replace(acceptance=AcceptanceConfig(mean=0.6))


def _requests(outputs: list[int], gap_s: float = 0.05, prompt: int = 64) -> list[Request]:
    return [Request(i, i * gap_s, prompt, o) for i, o in enumerate(outputs)]


def test_steps_reveal_positions_up_to_each_first_rejection():
    # Output 8: token 0 from the prefill; a step at g accepting a of d reveals g..g+a-1 accepted
    # and g+a rejected, then moves to g+a+1 (the bonus token's position is never verified).
    reqs = _requests([8, 1])
    v, untiled = DraftVerdicts.from_steps(reqs, {0: ((3, 3, 3), (1, 3, 0)), 1: ((), ())})
    assert untiled == []
    assert v.accepted == ((1, 3, 4, 5), ()) and v.rejected == ((2, 7), ())
    assert v.revealed == 6 and v.share == pytest.approx(4 / 6)


def test_steps_that_do_not_tile_the_output_are_left_out():
    # 1 + (1+1) + (0+1) = 4 tokens, but the request generated 8: a step without drafts (a
    # recompute after preemption) is missing, so the positions after it are unknown.
    reqs = _requests([8, 8, 5])
    v, untiled = DraftVerdicts.from_steps(reqs, {0: ((3, 3), (1, 0)), 1: ((4, 4), (4, 1)), 2: ((4,), (4,))})
    assert untiled == [0]
    assert v.accepted[0] == () and v.rejected[0] == ()
    assert v.accepted[1] == (1, 2, 3, 4, 6) and v.rejected[1] == (7,)
    # The last step drafts past the output's end (vLLM keeps whole drafts): those verdicts count.
    assert v.accepted[2] == (1, 2, 3, 4)
    past, _ = DraftVerdicts.from_steps(_requests([3]), {0: ((4,), (2,))})
    assert past.accepted == ((1, 2),) and past.rejected == ((3,),)
    with pytest.raises(ValueError, match="0 <= accepted <= drafted"):
        DraftVerdicts.from_steps(reqs[:1], {0: ((2,), (3,))})


def test_merge_counts_the_positions_both_runs_revealed_and_keeps_the_first_on_a_difference():
    reqs = _requests([8])
    at4, _ = DraftVerdicts.from_steps(reqs, {0: ((4, 4), (2, 3))})  # 1,2 acc 3 rej; 4,5,6 acc 7 rej
    at3, _ = DraftVerdicts.from_steps(reqs, {0: ((3, 3, 3), (1, 3, 0))})  # 1 acc 2 rej; 3,4,5 acc; 7 rej
    merged, both, differ = at4.merged(at3)
    assert both == 6 and differ == 2  # positions 2 and 3
    assert merged.accepted == ((1, 2, 4, 5, 6),) and merged.rejected == ((3, 7),)
    assert DraftVerdicts.from_json(merged.to_json()) == merged
    thin = merged.thinned(0.5, seed=0)
    assert set(thin.accepted[0]) <= set(merged.accepted[0]) and set(thin.rejected[0]) <= set(merged.rejected[0])
    assert 0 < thin.revealed < merged.revealed and merged.thinned(0.5, seed=0) == thin
    assert merged.thinned(0.0, seed=1) == merged and merged.thinned(1.0, seed=1).revealed == 0
    agreed, _, _ = at4.merged(at3, differences="drop")  # close calls left to the simulator's draws
    assert agreed.accepted == ((1, 4, 5, 6),) and agreed.rejected == ((7,),)


def _full_verdicts(reqs: list[Request], seed: int, k_max: int) -> DraftVerdicts:
    """A verdict at every position an engine drafting up to `k_max` tokens can meet."""
    rng = np.random.default_rng(seed)
    acc, rej = [], []
    for r in reqs:
        ok = rng.random(r.output_len + k_max - 1) < 0.6
        acc.append(tuple(p for p, x in enumerate(ok, 1) if x))
        rej.append(tuple(p for p, x in enumerate(ok, 1) if not x))
    return DraftVerdicts(tuple((r.prompt_len, r.output_len) for r in reqs), tuple(acc), tuple(rej))


def _latency(spec: str, reqs: list[Request], seed: int, verdicts: DraftVerdicts | None = None) -> float:
    sim = make_backend(SCENARIO, "sim", seed=seed)
    sim.replay(verdicts)
    return run_episode(sim, make_controller(spec), reqs, SCENARIO).mean_latency_s


def test_verdicts_at_every_position_make_the_episode_independent_of_the_drawn_luck():
    reqs = _requests([int(x) for x in np.random.default_rng(1).integers(2, 60, 24)])
    verdicts = _full_verdicts(reqs, seed=2, k_max=SCENARIO.engine.k_max)
    for spec in ("static:3", "static:1", "cycle:1/4/2", "goodput"):
        assert _latency(spec, reqs, 0) != _latency(spec, reqs, 1), spec
        assert _latency(spec, reqs, 0, verdicts) == _latency(spec, reqs, 1, verdicts), spec


def _serve_at_k4(sim, reqs: list[Request], redraw: int | None = None) -> tuple[int, int]:
    """(drafted, accepted) of an episode at k = 4; `redraw`: new luck once it has started."""
    sim.start(reqs)
    if redraw is not None:
        sim.redraw_luck(redraw)
    sim.set_action(Action(k=4))
    drafted = accepted = 0
    while not sim.finished:
        s = sim.step()
        drafted, accepted = drafted + s.num_drafted, accepted + s.num_accepted
    return drafted, accepted


def test_rejections_everywhere_accept_nothing_and_survive_a_redraw(make_sim):
    reqs = _requests([40] * 12)
    nothing = DraftVerdicts(tuple((r.prompt_len, r.output_len) for r in reqs), ((),) * 12,
                            tuple(tuple(range(1, 40)) for _ in reqs))  # fmt: skip
    sim = make_sim(seed=0, acceptance=0.95)
    sim.replay(nothing)
    drafted, accepted = _serve_at_k4(sim, reqs, redraw=7)  # the oracle's rollouts redraw luck
    assert drafted > 0 and accepted == 0
    sim.replay(None)  # drawn luck again from the next episode
    drafted, accepted = _serve_at_k4(sim, reqs)
    assert accepted > 0.8 * drafted


def test_verdicts_of_another_request_set_are_refused(make_sim):
    reqs = _requests([10, 12])
    sim = make_sim()
    sim.replay(_full_verdicts(reqs, 0, k_max=4))
    with pytest.raises(ValueError, match="another request set .* first difference at request 1"):
        sim.start(_requests([10, 13]))
