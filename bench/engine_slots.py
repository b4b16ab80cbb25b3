"""An A/A test of the engines-in-turns design: one controller on every engine, same requests.

    python bench/engine_slots.py [--profile cpu-tiny-amx] [--controller goodput] [--rounds 3]
    # -> results/engine_slots-P.json

`bench/sim_to_real.py eval` compares the policy with analytical controllers from episodes run
together (`rlspec.calibration.interleave`), and the policy always takes the first engine.
The design assumes that every engine of a group meets the host at one speed. If one engine
slot is faster, the policy's paired ratio carries that slot's advantage. Here every engine
serves the same controller on the same requests, so any difference between slots is the
engines', not the controllers': each slot's mean latency and step time over the profile's
prediction, relative to the group's mean, per round. The same episodes on one engine alone
then show what taking turns costs the steps themselves.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from common import ROOT, write_result

sys.path.insert(0, str(ROOT))

from sim_to_real import LIVE_SCENARIOS, load_scale, open_context  # noqa: E402

import rlspec.engines.vllm  # noqa: E402,F401  (Intel OpenMP before vLLM)
from rlspec.calibration.interleave import Job  # noqa: E402
from rlspec.calibration.quiet import wait_quiet  # noqa: E402
from rlspec.calibration.sweep import Workload  # noqa: E402


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
    args = ap.parse_args()
    if args.engines < 2 or args.rounds < 1:
        raise SystemExit("--engines: at least 2; --rounds: at least 1")

    rate = round(args.rate * load_scale(args.profile), 4)
    sc = Workload("poisson", str(LIVE_SCENARIOS[0]), "rate", (rate,), args.requests).variant(rate)
    ctx = open_context(args.profile, sc, engines=args.engines, quiet=args.wait_quiet)
    rounds = []
    try:
        matched = ctx.match(sc)
        for r in range(args.rounds):
            # run_live_together refuses a repeated controller: drive the engines directly
            wait_quiet(args.wait_quiet, ctx.quiet_timeout_s)
            results, others = ctx.together.run([Job(matched, args.controller, matched.seed)] * args.engines,
                                               ctx.baselines)  # fmt: skip
            lat = [m.mean_latency_s for m, _ in results]
            speed = [extra["step_time_vs_profile"] for _, extra in results]
            rounds.append({"mean_latency_s": lat, "step_time_vs_profile": speed, "other_load_cores": others})
            print(f"round {r}: latency " + " ".join(f"{x:.3f}" for x in lat)
                  + " s; steps vs profile " + " ".join(f"{x:.3f}" for x in speed), flush=True)
    finally:
        ctx.close()
    # The same episodes on one engine alone: what taking turns costs the engines' steps.
    ctx = open_context(args.profile, sc, engines=1, quiet=args.wait_quiet)
    try:
        matched = ctx.match(sc)
        alone = [ctx.run_live(matched, args.controller) for _ in range(args.rounds)]
    finally:
        ctx.close()
    alone_out = {k: [a[k] for a in alone] for k in ("mean_latency_s", "step_time_vs_profile")}
    print("one engine alone: latency " + " ".join(f"{x:.3f}" for x in alone_out["mean_latency_s"])
          + " s; steps vs profile " + " ".join(f"{x:.3f}" for x in alone_out["step_time_vs_profile"]))

    def rel(key: str) -> list[float]:
        """Each slot's value over its round's mean, averaged over rounds."""
        return [statistics.fmean(rd[key][i] / statistics.fmean(rd[key]) for rd in rounds) for i in range(args.engines)]

    out = {"profile": args.profile, "controller": args.controller, "rate": rate, "requests": args.requests,
           "engines": args.engines, "rounds": rounds, "alone": alone_out,
           "slot_latency_vs_mean": rel("mean_latency_s"), "slot_step_time_vs_mean": rel("step_time_vs_profile")}  # fmt: skip
    print("slot latency / group mean:", " ".join(f"{x:.3f}" for x in out["slot_latency_vs_mean"]))
    print("slot step time / group mean:", " ".join(f"{x:.3f}" for x in out["slot_step_time_vs_mean"]))
    write_result(f"engine_slots-{args.profile}", out)


if __name__ == "__main__":
    main()
