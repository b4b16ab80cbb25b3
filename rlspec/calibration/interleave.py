"""Live episodes of several controllers run together, one engine iteration at a time.

On a shared VM the host's speed moves by tens of percent from one minute to the next, and
near saturation the queue turns that into larger latency swings than good controllers
differ by: episodes run one after another mostly rank which controller drew the fast host.
Here every controller gets its own engine (one worker process each, same engine config)
and the engines take turns: one iteration of engine 1, then one of engine 2, ... Each
backend's clock advances only by its own measured step times (DESIGN.md section 5), so a
turn spent waiting costs nothing, while every engine meets the host at the same speed to
within one round of turns (a few hundred ms). Only one engine computes at a time; a turn
also holds the controller's decision after its step, so no worker competes with another's.

Each engine holds its own KV pool and weights (~6 GB for the tiny pair once its pool has
been written), which bounds how many run at once: the pool refuses to start more engines
than the host's free memory holds, and `bench/sim_to_real.py` runs groups of controllers
that each include the policy.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rlspec.calibration.matching import ITERATION_FIELDS, Tally, iteration_shape
from rlspec.calibration.quiet import OtherLoad

# resident growth an engine is allowed past its startup size (activations scale with the batch)
_MEMORY_HEADROOM = 0.15


# A job's `iteration_log`: what each busy iteration scheduled, whether it was the first of its
# turn (the one that meets caches another engine used and cores that slept), its time
# measured and as the engine's profile predicts it, and the episode's virtual clock when it
# ended (to place it among the requests of the job's `request_log`).
TURN_ITERATION_FIELDS = (*ITERATION_FIELDS, "first_in_turn", "measured_s", "predicted_s", "clock_s")


@dataclass(frozen=True)
class Job:
    """One live episode: the scenario's requests (drawn with `seed`) under `controller`.
    `keep_iterations`: return every busy iteration (TURN_ITERATION_FIELDS) as the result's
    `iteration_log`, to see which of a controller's steps taking turns charges.
    `keep_requests`: return each request's timeline (`matching.REQUEST_FIELDS`) as its
    `request_log`, to see which requests a controller serves later.
    `keep_decisions`: return each decision and its observation (`matching.DECISION_FIELDS`) as
    its `decision_log`, to set the controller's live choices beside its simulated ones."""

    scenario: Any  # Scenario (matched to the engine)
    controller: str
    seed: int
    keep_iterations: bool = False
    keep_requests: bool = False
    keep_decisions: bool = False


def check_turn_s(turn_s: float) -> None:
    """A turn's length, as `InterleavedEngines.run` and `SweepContext.turn_s` take it."""
    if not 0.0 <= turn_s <= 60.0:
        raise ValueError(f"turn_s: {turn_s!r} must be in [0, 60] seconds")


def seated(group: Sequence[str], seat: int) -> list[str]:
    """`group` in engine order (engine i serves element i), rotated so its first member
    takes engine `seat % len(group)`.

    The engines in turns are not alike: in `bench/turns_bias.py` the first served the same
    episode 1-3% slower than the second, whichever controller it ran (notes/calibration.md
    section 25; it was the engine started alone, section 28), and a paired comparison whose
    reference always sits on one engine carries that engine's speed. A sweep seats the
    reference (the policy, first in every group) at group index + point index, so it takes
    every engine equally over a point's groups and the others move from engine to engine over
    the points. That rotation is the same in every run; `bench/sim_to_real.py eval
    --seat-offset` turns it further, so runs at offsets 0..n-1 pooled balance the seats."""
    if not group:
        raise ValueError("group: empty; give at least one controller")
    s = seat % len(group)
    return [*group[len(group) - s :], *group[: len(group) - s]]


class _TakeTurns(Tally):
    """The episode's Tally, handing the CPU to the coordinator once its turn has lasted
    `turn_s` (0: before every iteration).

    Every message a worker sends answers exactly one "go": a turn runs from a "go" to the
    first `step()` call past `turn_s` ("turn"), the episode's end ("done") or a failure
    ("error")."""

    def __init__(self, inner: Any, conn: Any, turn_s: float = 0.0, keep_iterations: bool = False) -> None:
        super().__init__(inner)
        self._conn = conn
        self._turn_s = turn_s
        self._turn_start = 0.0
        self.turns = 0
        self._keep = keep_iterations
        self.iteration_log: list[tuple] = []  # TURN_ITERATION_FIELDS per busy iteration (with keep)
        self._fresh = False  # no busy iteration yet in this turn
        self._k_before = 0  # k of the last busy iteration

    def wait_turn(self) -> None:
        msg = self._conn.recv()
        if msg != "go":
            raise RuntimeError(f"interleave worker: expected 'go', got {msg!r}")
        self.turns += 1
        self._fresh = True
        self._turn_start = time.perf_counter()

    def step(self) -> Any:
        if time.perf_counter() - self._turn_start >= self._turn_s:
            self._conn.send(("turn", None))
            self.wait_turn()
        if not self._keep:
            return super().step()
        measured, predicted = self.inner.measured_busy_s, self.inner.predicted_busy_s
        s = super().step()
        if s.num_scheduled_tokens:
            self.iteration_log.append((*iteration_shape(self.inner, s, self._k_before), self._fresh,
                                       round(self.inner.measured_busy_s - measured, 6),
                                       round(self.inner.predicted_busy_s - predicted, 6),
                                       round(s.clock_s, 6)))  # fmt: skip
            self._fresh = False
            self._k_before = s.k
        return s


def _worker(conn: Any, scenario: Any, blocktime_ms: int) -> None:
    """Worker process: one live engine; runs the episodes it is sent, taking turns."""
    # Intel OpenMP's threads spin for KMP_BLOCKTIME after a parallel region (200 ms by
    # default): a finished engine's threads would compete with the next engine's step
    # (measured: steps 1.28x slower in pairs). vLLM's own CPU workers use 5 ms.
    os.environ["KMP_BLOCKTIME"] = str(blocktime_ms)
    try:
        import rlspec.engines.vllm  # noqa: F401  (Intel OpenMP before vLLM)
        from rlspec.calibration.live import engine_facts
        from rlspec.calibration.matching import tallied_episode
        from rlspec.control.registry import make_controller
        from rlspec.engines.factory import make_backend

        backend = make_backend(scenario, "vllm")
        facts = engine_facts(backend)
    except BaseException:  # noqa: BLE001 - reported to the coordinator, which raises
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ready", facts))
    try:
        while True:
            msg = conn.recv()
            if msg is None:
                break
            job, baselines, turn_s = msg
            wrapped = _TakeTurns(backend, conn, turn_s, job.keep_iterations)
            wrapped.wait_turn()
            try:
                m, extra = tallied_episode(wrapped, make_controller(job.controller, baselines),
                                           job.scenario.requests(job.seed), job.scenario,
                                           keep_requests=job.keep_requests,
                                           keep_decisions=job.keep_decisions)  # fmt: skip
            except BaseException:  # noqa: BLE001
                conn.send(("error", traceback.format_exc()))
                continue
            log = {"iteration_log": wrapped.iteration_log} if job.keep_iterations else {}
            conn.send(("done", (m, {**extra, "turns": wrapped.turns, **log})))
    finally:
        backend.close()


def _proc_kb(path: str, key: str) -> int | None:
    """A `key: N kB` line of a /proc file in bytes (None where /proc is unavailable)."""
    try:
        with open(path) as fh:
            line = next(x for x in fh if x.startswith(key + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) * 1024


class InterleavedEngines:
    """`n` live engines in worker processes, driven in turns by `run(jobs)`."""

    def __init__(self, scenario: Any, n: int, blocktime_ms: int = 5, start_timeout_s: float = 600.0,
                 start_together: bool = True) -> None:  # fmt: skip
        """Start `n` engines of `scenario`. One engine starts first, alone, to size the KV pool
        every engine then gets and to check that `n` of them fit in memory. With
        `start_together` it then goes, and all `n` start at once: the engine that started
        alone and sat idle while the others started served the same episodes 3-4% slower
        than they did, in whichever place it took its turns (`bench/engine_slots.py
        --reverse-turns`, notes/calibration.md section 28); started together, the engines
        read within 0.5%. False keeps it as the first engine, as before 2026-12-06."""
        if n < 1:
            raise ValueError(f"n: {n!r} engines, must be >= 1")
        if blocktime_ms < 0:
            raise ValueError(f"blocktime_ms: {blocktime_ms!r}, must be >= 0")
        self.blocktime_ms = blocktime_ms
        self._mp = mp.get_context("spawn")
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        try:
            # vLLM sizes a CPU engine's KV pool from the memory free when it starts, so engines
            # started side by side would get different pools: the first one's size is pinned
            # for the rest.
            self.facts = self._start([scenario], start_timeout_s)[0]
            if n > 1:
                self._check_memory(n)
                live = scenario.live
                if live is not None and live.kv_cache_memory_bytes is None:
                    scenario = scenario.replace(
                        live=dataclasses.replace(live, kv_cache_memory_bytes=self.facts.pool_bytes))
                if start_together:
                    self.close()
                    facts = self._start([scenario] * n, start_timeout_s)
                    self.facts = facts[0]
                else:
                    facts = [self.facts, *self._start([scenario] * (n - 1), start_timeout_s)]
                shapes = {(f.num_gpu_blocks, f.block_size, f.holdback_blocks) for f in facts}
                if len(shapes) > 1:
                    raise RuntimeError(
                        f"interleaved engines differ in KV pool (blocks, block size, held back): {shapes}")
        except BaseException:
            self.close()
            raise

    def _check_memory(self, n: int) -> None:
        """Refuse before the OOM killer does. vLLM zero-fills its KV pool when it starts
        (`vllm.v1.worker.utils.allocate_kv_cache`), so the first engine's resident size
        already holds its pool: each further engine needs that much, plus headroom for
        the activations that grow with the batch."""
        rss = _proc_kb(f"/proc/{self._procs[0].pid}/status", "VmRSS")
        free = _proc_kb("/proc/meminfo", "MemAvailable")
        if rss is None or free is None:
            return
        need = (n - 1) * rss * (1 + _MEMORY_HEADROOM)
        if need > free:
            raise MemoryError(
                f"{n} engines need ~{need / 2**30:.1f} GiB more ({rss / 2**30:.1f} GiB each at startup, "
                f"KV pool included, + {_MEMORY_HEADROOM:.0%}), {free / 2**30:.1f} GiB is available; "
                f"run fewer at once")

    def _start(self, scenarios: Sequence[Any], timeout_s: float) -> list[Any]:
        first = len(self._conns)
        for sc in scenarios:
            parent, child = self._mp.Pipe()
            p = self._mp.Process(target=_worker, args=(child, sc, self.blocktime_ms), daemon=True)
            p.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(p)
        facts = []
        for i in range(first, len(self._conns)):
            kind, payload = self._recv(i, timeout_s)
            if kind != "ready":
                raise RuntimeError(f"interleaved engine {i} failed to start:\n{payload}")
            facts.append(payload)
        return facts

    @property
    def size(self) -> int:
        return len(self._conns)

    def _recv(self, i: int, timeout_s: float) -> tuple[str, Any]:
        conn = self._conns[i]
        if not conn.poll(timeout_s):
            raise RuntimeError(f"interleaved engine {i} did not answer within {timeout_s:.0f} s")
        try:
            return conn.recv()
        except EOFError as exc:
            raise RuntimeError(f"interleaved engine {i} (pid {self._procs[i].pid}) died") from exc

    def run(self, jobs: Sequence[Job], baselines: Any = None, turn_timeout_s: float = 600.0,
            between_turns: Callable[[], None] | None = None, turn_s: float = 0.0,
            turn_order: Sequence[int] | None = None) -> tuple[list[tuple[Any, dict]], float]:  # fmt: skip
        """Run `jobs` together (one engine each), round-robin one iteration per turn, or with
        `turn_s` > 0 as many iterations as start within `turn_s` of the turn's start.

        Taking turns costs an engine a few ms at the start of each (its caches hold another
        engine's weights, its cores were asleep), which a deployed engine stepping back to back
        never pays. Paid once per iteration, it charges a controller that takes many short
        steps more than one that takes fewer long ones (`bench/turns_bias.py`); a turn of
        several iterations spreads it thin, alike for every controller, while the engines
        still meet the host within a round of turns.

        Between turns the coordinator waits out the OpenMP block time, so the last engine's
        threads are asleep before the next engine computes. `between_turns`, if given, runs
        in the coordinator after every turn, while no engine computes: `bench/engine_slots.py`
        uses it to reproduce one part of what the other engines' turns do to an engine
        (time idle, caches overwritten) without the rest. `turn_order` is the order in which
        the engines take their turns in every round (a permutation of the jobs' indices;
        default: engine 0 first), which tells an engine's own speed from its place in the
        round (`bench/engine_slots.py --reverse-turns`). Returns each job's
        (EpisodeMetrics, extra) in job order, and the CPU cores that processes other than
        the coordinator and its engines used meanwhile."""
        gap_s = (self.blocktime_ms + 1) / 1000 if len(jobs) > 1 else 0.0
        if not 1 <= len(jobs) <= self.size:
            raise ValueError(f"jobs: {len(jobs)} given, this pool runs 1..{self.size} at once")
        check_turn_s(turn_s)
        active = list(range(len(jobs))) if turn_order is None else [int(i) for i in turn_order]
        if sorted(active) != list(range(len(jobs))):
            raise ValueError(f"turn_order: {list(turn_order or ())} is not a permutation of 0..{len(jobs) - 1}")
        for i in active:
            self._conns[i].send((jobs[i], baselines, turn_s))
        results: list[Any] = [None] * len(jobs)
        errors: list[str] = []
        with OtherLoad(exclude_pids=tuple(self._procs[i].pid for i in active)) as load:
            while active:
                for i in list(active):
                    self._conns[i].send("go")
                    kind, payload = self._recv(i, turn_timeout_s)
                    if between_turns is not None:
                        between_turns()
                    time.sleep(gap_s)
                    if kind == "turn":
                        continue
                    active.remove(i)
                    if kind == "done":
                        results[i] = payload
                    else:
                        errors.append(f"job {i} ({jobs[i].controller}):\n{payload}")
        if errors:
            raise RuntimeError("interleaved episode failed: " + "\n".join(errors))
        return results, load.cores

    def close(self) -> None:
        """Stop the workers (each shuts its engine down); safe to call twice."""
        for c in self._conns:
            try:
                c.send(None)
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + 60
        for p in self._procs:
            p.join(max(deadline - time.monotonic(), 0.1))
            if p.is_alive():
                p.kill()
        for c in self._conns:
            c.close()
        self._conns, self._procs = [], []

    def __enter__(self) -> InterleavedEngines:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
