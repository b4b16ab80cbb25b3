"""Iteration-level simulator of a vLLM-like server doing speculative decoding.

It is the training ground of the RL controller, so it must be fast and faithful to the
mechanisms that make the right k depend on load: continuous batching under a token budget,
chunked prefill, KV blocks with lookahead slots for drafts, preemption by recompute, one
verify pass per step whose cost is roofline-bound, and a drafter whose weights can leave
the device (freeing KV blocks) and must come back (transfer + KV refill) before speculating.

Requests live in struct-of-arrays form indexed by request id, so the common iteration (all
running requests decoding, memory available) is a handful of vectorised numpy operations.

Token accounting follows vLLM: a decoding request holds `prompt + generated - 1` tokens in
KV (the last sampled token is the next step's input). A decode step schedules 1 + d tokens,
accepts `a <= d` drafts and emits `a + 1` tokens. A (re)prefill covers `prompt + generated`
tokens and samples one token when it completes.

Drafts lag the action by one step, as in vLLM: the drafter proposes after a step's forward
pass, at that step's k, and the target verifies those d drafts at the request's next step.
So the step after a switch of k verifies the old k's drafts (and pays for them), while its
drafter already runs at the new k. A request drafts nothing after a partial prefill chunk,
a preemption or a step without the drafter (notes/vllm.md section 4).

Drafter refill follows the live backend (notes/vllm.md section 5): while the drafter is away
it skips every token, so each request remembers the first KV position computed without it
(`stale`); on reload every running request is rewound to that position and the tokens
since are recomputed as a prefill through target and drafter, under the token budget.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from rlspec.control.action import Action
from rlspec.engines.base import Backend
from rlspec.engines.snapshot import DrafterState, RequestRecord, Snapshot
from rlspec.perf.acceptance import AcceptanceConfig, AcceptanceModel
from rlspec.perf.profile import Profile
from rlspec.perf.step_time import NO_DRIFT, SpeedDrift, StepTimeModel, prefill_attention_pairs
from rlspec.sim.config import EngineConfig
from rlspec.sim.kv import BlockPool
from rlspec.sim.verdicts import DraftVerdicts
from rlspec.workload.request import Request


class Simulator(Backend):
    """A seeded, instance-owned simulation of one serving engine."""

    copyable = True  # all state, the RNG included, is plain Python / numpy
    # Read-only once built (the cost models, the workload and the episode's luck), so a copy
    # (one of the oracle's rollouts) shares them instead of duplicating ~1 MB each time.
    _SHARED_ON_COPY = ("profile", "engine", "cost", "_clock", "requests", "arrival", "prompt",
                       "output", "acc_prob", "_luck", "_luck_start", "_verdicts")  # fmt: skip

    def __init__(
        self,
        profile: Profile,
        engine: EngineConfig,
        acceptance: AcceptanceConfig,
        seed: int = 0,
        drift: SpeedDrift = NO_DRIFT,
    ):
        self.profile = profile
        self.engine = engine
        self.k_max = engine.k_max
        self.cost = StepTimeModel(profile)  # what controllers are given: the profile
        self._clock = StepTimeModel(profile, drift) if drift != NO_DRIFT else self.cost
        self.acceptance_cfg = acceptance
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._acc = AcceptanceModel(acceptance, self._rng)
        self._drift = drift
        self._jitter_rng = _jitter_stream(seed)
        # The token counts this engine has run, kept across episodes as a live engine process
        # keeps its GEMM primitives (`drift.first_meeting` prices the first of each).
        self._met: set[int] = set()
        self._draft_pos = np.arange(self.k_max)  # offsets of a step's drafts from its position
        self._episode = 0
        self._verdicts: DraftVerdicts | None = None
        self.start([])

    # ------------------------------------------------------------------ episode set-up
    def start(self, requests: Sequence[Request]) -> Snapshot:
        """Reset all engine state; the RNG stream continues (reseed via `reseed`)."""
        n = len(requests)
        ids = [r.request_id for r in requests]
        if ids != list(range(n)):
            raise ValueError("requests must have ids 0..n-1 in arrival order")
        arrivals = np.array([r.arrival_s for r in requests], dtype=np.float64)
        if n and np.any(np.diff(arrivals) < 0):
            raise ValueError("requests must be sorted by arrival_s")
        self.requests = list(requests)
        self.arrival = arrivals
        self.prompt = np.array([r.prompt_len for r in requests], dtype=np.int64)
        self.output = np.array([r.output_len for r in requests], dtype=np.int64)
        if n and (self.prompt.min() < 1 or self.output.min() < 1):
            raise ValueError("every request needs prompt_len >= 1 and output_len >= 1")
        self.computed = np.zeros(n, dtype=np.int64)  # tokens in KV
        self.generated = np.zeros(n, dtype=np.int64)
        self.blocks = np.zeros(n, dtype=np.int64)  # KV blocks held
        self.first_token = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.preempted = np.zeros(n, dtype=np.int64)
        self.drafts = np.zeros(n, dtype=np.int64)  # proposed last step, verified at the next
        # First KV position computed while the drafter was away (-1: drafter KV current).
        self.stale = np.full(n, -1, dtype=np.int64)
        # All of an episode's luck is drawn here, keyed by request and output position: a
        # request's acceptance probability (drift is by arrival time), and for each output
        # position the uniform that decides a draft there. The text decides whether a draft
        # matches, not the draft length, so every k (and each of the oracle's rollouts, which
        # copy this state) meets the same luck at the same position: rollouts that differ
        # only in their actions differ only by what the actions cause.
        self.acc_prob = self._acc.draw_requests(arrivals)
        span = self.output + self.k_max
        self._luck_start = np.cumsum(span) - span  # (n,) first uniform of each request
        self._luck = 1.0 - self._rng.random(int(span.sum()))  # in (0, 1]
        self._replay_verdicts()

        self.kv = BlockPool.for_profile(self.profile, self.engine)
        self.clock = 0.0
        self._next_arrival = 0  # index of the next request not yet arrived
        self.waiting: deque[int] = deque()
        self.running: list[int] = []  # admission order; preemption takes from the end
        self._run_arr: np.ndarray | None = None  # `running` as an array, rebuilt on change
        self.prefilling = 0  # running requests not yet in the decode state
        self.completed = 0
        self.drafter = DrafterState.RESIDENT
        self.k = 0
        self._want = Action(k=0)
        self._episode += 1
        self.iterations = 0
        self.refill_tokens = 0  # tokens rewound for drafter-KV refill this episode
        self._arrive_until(0.0)
        return self._snapshot(0.0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0, (), ())

    def __deepcopy__(self, memo: dict) -> Simulator:
        for name in self._SHARED_ON_COPY:
            value = getattr(self, name)
            memo.setdefault(id(value), value)
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    def redraw_luck(self, seed: int) -> None:
        """Draw new luck for everything still undecided: the acceptance of requests that have
        not arrived and the verdict at every output position (positions already passed are
        never read again). For variance studies: the same state, another future's luck."""
        rng = np.random.default_rng(seed)
        fresh = AcceptanceModel(self.acceptance_cfg, rng).draw_requests(self.arrival)
        self.acc_prob = np.concatenate([self.acc_prob[: self._next_arrival],
                                        fresh[self._next_arrival :]])  # fmt: skip
        self._luck = 1.0 - rng.random(len(self._luck))
        self._replay_verdicts()

    def replay(self, verdicts: DraftVerdicts | None) -> None:
        """From the next `start` on, decide the drafts at the positions `verdicts` knows by
        their measured verdicts (a request set's own luck: `verdicts.py`); None: draw all.
        The episodes must serve the request set the verdicts were measured on."""
        self._verdicts = verdicts

    def _replay_verdicts(self) -> None:
        if self._verdicts is None or not self.requests:
            return
        rid, pos, ok = self._verdicts.luck_at(self.requests, self.k_max)
        # 0 falls under every acceptance probability and 1 under none (they stay inside (0, 1)).
        self._luck[self._luck_start[rid] + pos] = np.where(ok, 0.0, 1.0)

    def reseed(self, seed: int) -> None:
        """Restart the random stream: same seed and workload, same trajectory."""
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._acc = AcceptanceModel(self.acceptance_cfg, self._rng)
        self._jitter_rng = _jitter_stream(seed)

    def set_action(self, action: Action) -> None:
        if action.k > self.k_max:
            raise ValueError(f"action k={action.k} exceeds engine.k_max={self.k_max}")
        self._want = action

    @property
    def token_counts_met(self) -> int:
        """How many distinct token counts this engine has run, over all its episodes."""
        return len(self._met)

    @property
    def finished(self) -> bool:
        return self.completed == len(self.requests)

    @property
    def num_in_system(self) -> int:
        return len(self.running) + len(self.waiting)

    # ------------------------------------------------------------------ one iteration
    def step(self) -> Snapshot:
        if not self.running and not self.waiting and not self._placement_change_wanted():
            return self._idle()
        self.iterations += 1
        stall = 0.0
        transition = self._apply_drafter_action()
        if transition is DrafterState.OFFLOADING or transition is DrafterState.LOADING:
            stall = self._clock.transfer_s
        preemptions = self._preempted_for_reload if transition is DrafterState.LOADING else 0
        resident = self.drafter is DrafterState.RESIDENT and transition is None
        k = self._want.k if resident else 0
        self.k = k

        dec, d, drafted, pre, pre_chunks, n_preempt = self._schedule()
        preemptions += n_preempt
        n_dec = len(dec)
        context = int(self.computed[dec].sum()) if n_dec else 0
        prefill_tokens = prefill_pairs = 0
        for rid, chunk in zip(pre, pre_chunks, strict=True):
            before = int(self.computed[rid])
            context += before
            prefill_tokens += chunk
            prefill_pairs += prefill_attention_pairs(chunk, before)
        # The reload step runs the drafter again (over the re-filled tokens, no drafts yet).
        drafter_runs = resident or transition is DrafterState.LOADING
        if not drafter_runs:
            self._mark_stale(dec, pre)

        busy = n_dec or prefill_tokens
        step = (
            self._clock.iteration(n_dec, k, prefill_tokens, context, drafter_runs,
                                  prefill_pairs=prefill_pairs, spec_tokens=drafted)  # fmt: skip
            if busy
            else 0.0
        )
        if busy and (tokens := n_dec + drafted + prefill_tokens) not in self._met:
            self._met.add(tokens)
            step *= self._drift.first_meeting_factor(tokens)
        if busy and self._drift.jitter:
            sd = self._drift.jitter
            step *= math.exp(sd * self._jitter_rng.standard_normal() - 0.5 * sd * sd)
        step += stall
        t0 = self.clock
        t1 = t0 + step
        self.clock = t1

        n_sys_before = self.num_in_system
        accepted = emitted = draft_reqs = 0
        acc_pos: tuple[int, ...] = ()
        drf_pos: tuple[int, ...] = ()
        done: list[int] = []
        if n_dec:
            remaining = self.output[dec] - self.generated[dec]
            top = int(d.max()) if drafted else 0
            uniform = drafted == top * n_dec  # every decode verifies `top` drafts (the rule)
            if drafted:
                pos = (self._luck_start[dec] + self.generated[dec])[:, None] + self._draft_pos[:top]
                acc = self._acc.accepted(self.acc_prob[dec], top, self._luck[pos])
                if uniform:
                    draft_reqs = n_dec
                    drf_pos = (n_dec,) * top
                else:  # luck is by position: the first d of `top` verdicts are d drafts' verdicts
                    acc = np.minimum(acc, d)
                    draft_reqs = int(np.count_nonzero(d))
                    drf_pos = _at_least(d, top)
                accepted = int(acc.sum())
                acc_pos = _at_least(acc, top)
                out = np.minimum(acc + 1, remaining)
            else:
                out = np.ones(n_dec, dtype=np.int64)
            emitted = int(out.sum())
            self.computed[dec] += out
            self.generated[dec] += out
            if not (uniform and top == k):
                self.drafts[dec] = k  # the drafter proposes at this step's k after the pass
            finished_mask = out == remaining
            if finished_mask.any():
                done.extend(dec[finished_mask].tolist())
        for rid, chunk in zip(pre, pre_chunks, strict=True):
            self.computed[rid] += chunk
            target = self.prompt[rid] + self.generated[rid]
            if self.computed[rid] == target:  # prefill complete: it samples a token
                if self.generated[rid] == 0:
                    self.first_token[rid] = t1
                self.generated[rid] += 1
                self.prefilling -= 1
                emitted += 1
                self.drafts[rid] = k
                if self.generated[rid] == self.output[rid]:
                    done.append(rid)
            elif self.generated[rid] and self.computed[rid] + 1 == target:
                # A recompute that stopped one short: that token is the next decode input.
                self.prefilling -= 1
                self.drafts[rid] = k
        for rid in done:
            self.finish[rid] = t1
            self.kv.used_blocks -= int(self.blocks[rid])
            self.blocks[rid] = 0
        if done:
            gone = set(done)
            self.running = [r for r in self.running if r not in gone]
            self._run_arr = None
            self.completed += len(done)

        if transition is DrafterState.OFFLOADING:
            self.drafter = DrafterState.OFFLOADED
            self.kv.drafter_resident = False
        elif transition is DrafterState.LOADING:
            self.drafter = DrafterState.RESIDENT

        n_arr, arr_area = self._arrive_until(t1)
        area = n_sys_before * step + arr_area
        return self._snapshot(
            step,
            n_dec + drafted + prefill_tokens,
            prefill_tokens,
            n_dec,
            k,
            drafted,
            accepted,
            emitted,
            n_arr,
            len(done),
            preemptions,
            area,
            draft_reqs,
            acc_pos,
            drf_pos,
            transition,
        )

    def _placement_change_wanted(self) -> bool:
        return self._want.offload == (self.drafter is DrafterState.RESIDENT)

    def _apply_drafter_action(self) -> DrafterState | None:
        """Start an offload or reload if the action asks for one; returns the transition."""
        self._preempted_for_reload = 0
        if self._want.offload and self.drafter is DrafterState.RESIDENT:
            return DrafterState.OFFLOADING
        if not self._want.offload and self.drafter is DrafterState.OFFLOADED:
            # The weights need their blocks back before they can land.
            need = self.kv.drafter_blocks
            while self.kv.free < need and self.running:
                self._preempt(self.running.pop())
                self._preempted_for_reload += 1
            if self.kv.free < need:
                return None  # cannot happen: with nothing running every block is free
            self.kv.drafter_resident = True
            self._rewind_stale()
            return DrafterState.LOADING
        return None

    def _mark_stale(self, dec: np.ndarray, pre: list[int]) -> None:
        """Tokens computed now skip the drafter: remember where each request's went stale."""
        ids = np.concatenate([np.asarray(dec, dtype=np.int64), np.asarray(pre, dtype=np.int64)])
        if len(ids):
            fresh = ids[self.stale[ids] < 0]
            self.stale[fresh] = self.computed[fresh]

    def _rewind_stale(self) -> None:
        """On reload, like the live backend: every running request whose drafter KV went
        stale is rewound to that position, and the tokens since are recomputed (a prefill
        through target and drafter, under the token budget) from this step on."""
        for rid in self.running:
            s = int(self.stale[rid])
            if 0 <= s < self.computed[rid]:
                target = self.prompt[rid] + self.generated[rid]
                if self.generated[rid] and self.computed[rid] + 1 == target:
                    self.prefilling += 1  # was decoding, prefills again
                self.refill_tokens += int(self.computed[rid]) - s
                self.computed[rid] = s
                self.drafts[rid] = 0
        self.stale[:] = -1
        self._run_arr = None

    def _schedule(self) -> tuple[np.ndarray, np.ndarray, int, list[int], list[int], int]:
        """vLLM V1 order: running requests first, then admit waiting ones under the budget.
        A decode schedules its input token and the drafts it verifies.

        Returns (decode ids, their drafts, the drafts' sum, prefill ids, prefill chunk sizes,
        preemptions).
        """
        bs = self.engine.block_size
        budget = self.engine.max_num_batched_tokens
        run = self.running
        preemptions = 0
        # Fast path: everyone decoding, tokens and blocks suffice.
        if run:
            ra = self._run_arr
            if ra is None:
                ra = self._run_arr = np.asarray(run, dtype=np.int64)
            if not self.prefilling:
                drafts = self.drafts[ra]
                drafted = int(drafts.sum())
                tokens = len(run) + drafted
                if tokens <= budget:
                    comp = self.computed[ra]
                    need = np.maximum((comp + drafts + bs) // bs - self.blocks[ra], 0)  # ceil((c+1+d)/bs)
                    total = int(need.sum())
                    if total <= self.kv.free:
                        if total:
                            self.blocks[ra] += need
                            self.kv.used_blocks += total
                        budget -= tokens
                        pre, chunks = self._admit(budget, bs)
                        return ra, drafts, drafted, pre, chunks, 0
        dec = []
        pre: list[int] = []
        chunks: list[int] = []
        i = 0
        while i < len(run):
            rid = run[i]
            target = int(self.prompt[rid] + self.generated[rid])
            comp = int(self.computed[rid])
            decoding = comp + 1 == target and self.generated[rid] > 0
            if decoding:
                tokens = 1 + int(self.drafts[rid])
            else:
                tokens = min(target - comp, budget)
            if tokens <= 0 or budget < tokens:
                break
            need = max(-(-(comp + tokens) // bs) - int(self.blocks[rid]), 0)
            while need > self.kv.free:
                victim = run.pop()
                self._preempt(victim)
                preemptions += 1
                if victim == rid:
                    break
            else:
                self.blocks[rid] += need
                self.kv.used_blocks += need
                budget -= tokens
                if decoding:
                    dec.append(rid)
                else:
                    pre.append(rid)
                    chunks.append(tokens)
                i += 1
                continue
            break  # rid itself was preempted
        if not preemptions:
            more, more_chunks = self._admit(budget, bs)
            pre += more
            chunks += more_chunks
        dec_ids = np.asarray(dec, dtype=np.int64)
        drafts = self.drafts[dec_ids]
        return dec_ids, drafts, int(drafts.sum()), pre, chunks, preemptions

    def _admit(self, budget: int, bs: int) -> tuple[list[int], list[int]]:
        """FCFS admission of waiting requests while seats, tokens and blocks last."""
        pre: list[int] = []
        chunks: list[int] = []
        while self.waiting and budget > 0 and len(self.running) < self.engine.max_num_seqs:
            rid = self.waiting[0]
            chunk = min(int(self.prompt[rid] + self.generated[rid]), budget)
            need = -(-chunk // bs)
            if need > self.kv.free:
                break
            self.waiting.popleft()
            self.running.append(rid)
            self._run_arr = None
            self.prefilling += 1
            self.blocks[rid] = need
            self.kv.used_blocks += need
            budget -= chunk
            pre.append(rid)
            chunks.append(chunk)
        return pre, chunks

    def _preempt(self, rid: int) -> None:
        """Recompute-style preemption: drop its KV, requeue it at the head."""
        self._run_arr = None
        if not (
            self.generated[rid] and self.computed[rid] + 1 == self.prompt[rid] + self.generated[rid]
        ):
            self.prefilling -= 1
        self.kv.used_blocks -= int(self.blocks[rid])
        self.blocks[rid] = 0
        self.computed[rid] = 0
        self.drafts[rid] = 0  # vLLM drops a preempted request's drafts
        self.stale[rid] = -1  # recomputed from scratch
        self.preempted[rid] += 1
        self.waiting.appendleft(rid)

    def _arrive_until(self, t: float) -> tuple[int, float]:
        """Queue requests arriving by time t; returns (count, their area up to t)."""
        i0 = i = self._next_arrival
        n = len(self.requests)
        area = 0.0
        while i < n and self.arrival[i] <= t:
            self.waiting.append(i)
            area += t - self.arrival[i]
            i += 1
        self._next_arrival = i
        return i - i0, area

    def _idle(self) -> Snapshot:
        """Nothing to run: jump the clock to the next arrival (or stay, if none is left)."""
        if self._next_arrival < len(self.requests):
            t = float(self.arrival[self._next_arrival])
            gap = max(t - self.clock, 0.0)
            self.clock = max(self.clock, t)
        else:
            gap = 0.0
        n_arr, _ = self._arrive_until(self.clock)
        # The k in force, as the live backend reports it: an idle engine keeps its draft length,
        # and a controller reading "k in use" after a pause must see what it will run at.
        k = self._want.k if self.drafter is DrafterState.RESIDENT else 0
        return self._snapshot(gap, 0, 0, 0, k, 0, 0, 0, n_arr, 0, 0, 0.0, 0, (), ())

    def _snapshot(
        self,
        step: float,
        sched: int,
        prefill: int,
        n_dec: int,
        k: int,
        drafted: int,
        accepted: int,
        emitted: int,
        n_arr: int,
        n_done: int,
        preemptions: int,
        area: float,
        draft_reqs: int,
        acc_pos: tuple[int, ...],
        drf_pos: tuple[int, ...],
        transition: DrafterState | None = None,
    ) -> Snapshot:
        return Snapshot(
            clock_s=self.clock,
            step_time_s=step,
            num_running=len(self.running),
            num_waiting=len(self.waiting),
            kv_used_blocks=self.kv.used_blocks,
            kv_total_blocks=self.kv.capacity,
            num_scheduled_tokens=sched,
            num_prefill_tokens=prefill,
            num_decode_reqs=n_dec,
            k=k,
            num_drafted=drafted,
            num_accepted=accepted,
            num_emitted=emitted,
            num_arrivals=n_arr,
            num_completions=n_done,
            num_preemptions=preemptions,
            num_draft_reqs=draft_reqs,
            request_seconds=area,
            drafter=transition if transition is not None else self.drafter,
            accepted_per_pos=acc_pos,
            drafted_per_pos=drf_pos,
        )

    # ------------------------------------------------------------------ results
    def records(self) -> list[RequestRecord]:
        out = []
        for r in self.requests[: self._next_arrival]:
            i = r.request_id
            ft, fin = self.first_token[i], self.finish[i]
            out.append(
                RequestRecord(
                    request_id=i,
                    arrival_s=r.arrival_s,
                    prompt_len=r.prompt_len,
                    output_len=r.output_len,
                    first_token_s=None if np.isnan(ft) else float(ft),
                    finish_s=None if np.isnan(fin) else float(fin),
                    num_generated=int(self.generated[i]),
                    num_preemptions=int(self.preempted[i]),
                )
            )
        return out


def _jitter_stream(seed: int) -> np.random.Generator:
    """The step-time noise's own stream: switching jitter on leaves every luck draw as it was."""
    return np.random.default_rng((seed, 1))


def _at_least(counts: np.ndarray, top: int) -> tuple[int, ...]:
    """For j = 1..top, how many of `counts` are at least j (per-position tallies)."""
    return tuple(int(c) for c in np.bincount(counts, minlength=top + 1)[::-1].cumsum()[::-1][1:])
