"""An A/A test of the engines-in-turns design, and what taking turns costs an engine's steps.

    python bench/engine_slots.py [--profile cpu-tiny-amx] [--controller goodput] [--rounds 3]
    # -> results/engine_slots-P.json

`bench/sim_to_real.py eval` compares the policy with analytical controllers from episodes run
together (`rlspec.calibration.interleave`), and the policy always takes the first engine.
The design assumes that every engine of a group meets the host at one speed. If one engine
slot is faster, the policy's paired ratio carries that slot's advantage. Here every engine
serves the same controller on the same requests, so any difference between slots is the
engines', not the controllers': each slot's mean latency and step time over the profile's
prediction, relative to the group's mean, per round.

Steps in turns run slower than the profile, which was fitted on one engine alone. The same
episode then runs on the first engine by itself three ways, to take apart what the other
engines' turns do to it:

- `evicted`: after every step the coordinator reads a buffer as large as the other engines'
  weights (from the profile), then waits out the rest of the time the other engines' turns
  took. The engine's next step finds the caches holding the buffer, not its own weights.
- `idle`: after every step the coordinator only waits, as long as under `evicted`. The
  engine's cores sleep between steps as they do in turns, and nothing touches the caches.
- `alone`: steps back to back.

If `idle` reads like `alone` and `evicted` like the engines in turns, the turns cost an
engine its cached weights. Each round runs the four episodes in the same order on the same
requests, so the host's drift moves them alike, and the comparison is made within a round.

`--reverse-turns` also serves each round's group with the engines taking their turns in the
reverse order, which tells an engine's own speed (it stays with the engine) from its place in
the round (it moves to the other end). `--first-alone` starts the engines as the pool did before
2026-12-06 late night: the one started alone to size the others stays as the first engine
(it read 3-4% slower in every place; notes/calibration.md section 28). `--slots-only` leaves out
the three episodes on the first engine alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
from common import ROOT, write_result

sys.path.insert(0, str(ROOT))

from sim_to_real import LIVE_SCENARIOS, load_scale, open_context  # noqa: E402

import rlspec.engines.vllm  # noqa: E402,F401  (Intel OpenMP before vLLM)
from rlspec.calibration.interleave import Job  # noqa: E402
from rlspec.calibration.quiet import wait_quiet  # noqa: E402
from rlspec.calibration.sweep import Workload  # noqa: E402
from rlspec.perf.profile import load_profile  # noqa: E402

KEYS = ("mean_latency_s", "step_time_vs_profile")


def engine_weight_bytes(profile: str) -> int:
    """One engine's weights as it holds them: target and drafter at the profile's dtype."""
    p = load_profile(profile)
    return int(p.target.weight_bytes + p.draft.weight_bytes)


class BetweenTurns:
    """The coordinator's work after each of one engine's steps: read `buffer` (if any), then
    wait until `pause_s` has passed since the step ended. Records how long each pause took."""

    def __init__(self, pause_s: float, buffer: np.ndarray | None = None) -> None:
        self.pause_s = pause_s
        self.buffer = buffer
        self.pauses: list[float] = []

    def __call__(self) -> None:
        t0 = time.perf_counter()
        if self.buffer is not None:
            self.buffer.sum()  # every cache line, in order, as a step streams its weights
        rest = self.pause_s - (time.perf_counter() - t0)
        if rest > 0:
            time.sleep(rest)
        self.pauses.append(time.perf_counter() - t0)

    @property
    def mean_pause_s(self) -> float:
        return statistics.fmean(self.pauses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="cpu-tiny-amx", help="the calibrated host (default: %(default)s)")
    ap.add_argument("--controller", default="goodput", help="run on every engine (default: %(default)s)")
    ap.add_argument("--rate", type=float, default=1.0, help="Poisson rate on cpu-tiny's host, times the profile's "
                    "capacity (default: %(default)s)")  # fmt: skip
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--engines", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--wait-quiet", type=float, default=0.3, metavar="CORES")
    ap.add_argument("--turn-s", type=float, default=0.0, help="turn length, as sim_to_real's (default: %(default)s)")
    ap.add_argument("--reverse-turns", action="store_true",
                    help="also serve each round with the engines' turns in reverse order")  # fmt: skip
    ap.add_argument("--first-alone", action="store_true",
                    help="keep the engine that starts alone (to size the others) as the first engine, as before "
                         "2026-12-06 late night; default: it goes, and every engine starts at once")  # fmt: skip
    ap.add_argument("--slots-only", action="store_true", help="leave out the first engine's episodes alone")
    ap.add_argument("--out", default=None, metavar="NAME", help="results/NAME.json (default: engine_slots-P)")
    args = ap.parse_args()
    if args.engines < 2 or args.rounds < 1:
        raise SystemExit("--engines: at least 2; --rounds: at least 1")

    rate = round(args.rate * load_scale(args.profile), 4)
    sc = Workload("poisson", str(LIVE_SCENARIOS[0]), "rate", (rate,), args.requests).variant(rate)
    evict_bytes = (args.engines - 1) * engine_weight_bytes(args.profile)
    # written once, so its pages are resident
    buffer = None if args.slots_only else np.ones(evict_bytes // 8, dtype=np.uint64)
    ctx = open_context(args.profile, sc, engines=args.engines, quiet=args.wait_quiet,
                       start_together=not args.first_alone)  # fmt: skip
    rounds = []
    try:
        matched = ctx.match(sc)
        job = Job(matched, args.controller, matched.seed)

        def episode(jobs: list[Job], hook: BetweenTurns | None = None,
                    order: list[int] | None = None) -> tuple[list[dict], float]:  # fmt: skip
            wait_quiet(args.wait_quiet, ctx.quiet_timeout_s)
            t0 = time.perf_counter()
            results, others = ctx.together.run(jobs, ctx.baselines, between_turns=hook, turn_s=args.turn_s,
                                               turn_order=order)  # fmt: skip
            wall = time.perf_counter() - t0
            per_turn = wall / sum(extra["turns"] for _, extra in results)
            out = [{"mean_latency_s": m.mean_latency_s, "step_time_vs_profile": extra["step_time_vs_profile"],
                    "other_load_cores": others} for m, extra in results]  # fmt: skip
            return out, per_turn

        episode([job] * args.engines)  # unmeasured: every engine meets the episode's token counts once
        for r in range(args.rounds):
            # run_live_together refuses a repeated controller: drive the engines directly
            turns, turn_s = episode([job] * args.engines)
            rd = {"turns": {k: [e[k] for e in turns] for k in KEYS}, "turn_s": turn_s}
            if args.reverse_turns:  # the same engines, each result still under its engine's index
                back, _ = episode([job] * args.engines, order=list(range(args.engines))[::-1])
                rd["turns_reversed"] = {k: [e[k] for e in back] for k in KEYS}
            if not args.slots_only:
                # as long as the other engines' turns took, or the read, if that takes longer
                evicting = BetweenTurns((args.engines - 1) * turn_s, buffer)
                (evicted,), _ = episode([job], evicting)
                idling = BetweenTurns(evicting.mean_pause_s)
                (idle,), _ = episode([job], idling)
                (alone,), _ = episode([job])
                rd |= {"evicted": evicted, "evicted_pause_s": evicting.mean_pause_s,
                       "idle": idle, "idle_pause_s": idling.mean_pause_s, "alone": alone}  # fmt: skip
            rounds.append(rd)
            print(f"round {r}: steps vs profile by engine - in turns "
                  + " ".join(f"{x:.3f}" for x in rd["turns"]["step_time_vs_profile"])
                  + ("" if not args.reverse_turns else ", turns reversed "
                     + " ".join(f"{x:.3f}" for x in rd["turns_reversed"]["step_time_vs_profile"]))
                  + ("" if args.slots_only else
                     f", evicted {evicted['step_time_vs_profile']:.3f} (pause {evicting.mean_pause_s * 1e3:.0f} ms)"
                     f", idle {idle['step_time_vs_profile']:.3f} (pause {idling.mean_pause_s * 1e3:.0f} ms)"
                     f", alone {alone['step_time_vs_profile']:.3f}"), flush=True)  # fmt: skip
    finally:
        ctx.close()

    def rel(key: str, side: str = "turns") -> list[float]:
        """Each engine's value over its round's mean, averaged over rounds."""
        return [statistics.fmean(rd[side][key][i] / statistics.fmean(rd[side][key]) for rd in rounds)
                for i in range(args.engines)]  # fmt: skip

    def vs_alone(key: str) -> dict[str, float]:
        """Each way of running the first engine over the same round's `alone`, averaged over rounds."""
        return {
            "turns": statistics.fmean(rd["turns"][key][0] / rd["alone"][key] for rd in rounds),
            "evicted": statistics.fmean(rd["evicted"][key] / rd["alone"][key] for rd in rounds),
            "idle": statistics.fmean(rd["idle"][key] / rd["alone"][key] for rd in rounds),
        }

    out = {"profile": args.profile, "controller": args.controller, "rate": rate, "requests": args.requests,
           "engines": args.engines, "start_together": not args.first_alone, "turn_s": args.turn_s,
           "evict_bytes": evict_bytes, "rounds": rounds,
           "slot_latency_vs_mean": rel("mean_latency_s"), "slot_step_time_vs_mean": rel("step_time_vs_profile")}
    if args.reverse_turns:  # by engine (start order), with the turns in reverse
        out |= {"slot_latency_vs_mean_reversed": rel("mean_latency_s", "turns_reversed"),
                "slot_step_time_vs_mean_reversed": rel("step_time_vs_profile", "turns_reversed")}
    if not args.slots_only:
        out |= {"step_time_vs_alone": vs_alone("step_time_vs_profile"), "latency_vs_alone": vs_alone("mean_latency_s")}
    for key in [k for k in out if k.startswith("slot_")]:
        print(f"{key}: {' '.join(f'{x:.3f}' for x in out[key])}")
    if not args.slots_only:
        print("first engine's step time / alone's:",
              ", ".join(f"{k} {v:.3f}" for k, v in out["step_time_vs_alone"].items()))  # fmt: skip
    write_result(args.out or f"engine_slots-{args.profile}", out)


if __name__ == "__main__":
    main()
