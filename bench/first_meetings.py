"""How much of a controller's live loss to static:3 its engines' first meetings with token counts make.

    python bench/first_meetings.py --from turns_bias-cpu-tiny-amx-azure-moving \
        turns_bias-cpu-tiny-amx-azure-moving-run2 ... --seeds 32 --out first_meetings-cpu-tiny-amx-azure

Live, a step whose token count its engine had not run before costs 1.05-1.32x a seen count's
step of its band: vLLM's CPU GEMMs build a oneDNN primitive per token count on first use
(notes/calibration.md section 22). A controller that chooses k by the engine's state schedules
more distinct counts than a static one, and meets new ones again in every round, since its
trajectory differs each time (`first_meetings` of bench/turns_bias.py). The simulator charges
nothing for that unless `SpeedDrift.first_meeting` says so.

This bench serves bench/turns_bias.py's episodes in its order on two simulated engines that keep
the counts they have met across episodes, as engine processes keep their primitives: a warm-up
(A beside B, then B beside A, `--warm-rounds` times), then rounds of A beside B, B beside A, and A, B, B, A on the first
engine. The factors by band are pooled from the given turns_bias results' `cost_by_band` (each
band's log factor weighted by its new steps), and A's acceptance is matched to the share it
verified live in them (`drift_robustness.matched_acceptance`). For each controller B it reports
B / A of mean latency over the rounds, with and without the cost, and the share of steps of a
new count. Every B meets A on the same seeds. Drawn luck differs from episode to episode where
live serves the same text each time, so a simulated static controller schedules new counts in
every episode; `--verdicts` replays the requests' measured draft verdicts in every episode
instead (bench/verdict_replay.py), as live.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time

from common import RESULTS, ROOT, write_result
from tqdm import tqdm

sys.path.insert(0, str(ROOT))

from drift_robustness import matched_acceptance  # noqa: E402
from fidelity import WORKLOADS  # noqa: E402
from sim_to_real import open_context  # noqa: E402
from turns_bias import BAND_NAMES, BANDS, live_share  # noqa: E402
from verdict_replay import verdicts_of  # noqa: E402

from rlspec.calibration.matching import tallied_episode  # noqa: E402
from rlspec.control.registry import make_controller  # noqa: E402
from rlspec.engines.factory import make_backend  # noqa: E402

# Per engine, the controllers it serves, in bench/turns_bias.py's order (engine, controller
# A or B): a round of A beside B, B beside A, then A, B, B, A alone on engine 0.
WARM_UP = ((0, "a"), (1, "b"), (0, "b"), (1, "a"))
ROUND = (*WARM_UP, (0, "a"), (0, "b"), (0, "b"), (0, "a"))


def pooled_factors(results: list[dict]) -> tuple[tuple[int, float], ...]:
    """`SpeedDrift.first_meeting` bands from the results' `first_meetings.cost_by_band`: each
    band's log factor averaged over the results, weighted by its new steps; a band none of
    them measured costs nothing."""
    logs: dict[str, list[tuple[float, int]]] = {}
    for d in results:
        for band, v in d["first_meetings"]["cost_by_band"].items():
            logs.setdefault(band, []).append((math.log(v["vs_seen"]), v["new"]))
    factors = []
    for lower, name in zip((0, *BANDS), BAND_NAMES, strict=True):
        xs = logs.get(name, [])
        n = sum(w for _, w in xs)
        factors.append((lower, round(math.exp(sum(x * w for x, w in xs) / n), 4) if n else 1.0))
    return tuple(factors)


def serve_rounds(ctx, scenario, a: str, b: str, seed: int, rounds: int, warm_rounds: int,
                 verdicts=None) -> tuple[list[float], dict[str, float]]:  # fmt: skip
    """bench/turns_bias.py's episodes on two simulated engines: log(B / A) of mean latency per
    round after `warm_rounds` warm-ups, and each controller's share of steps of a count new to
    its engine."""
    requests = scenario.requests(scenario.seed)
    engines = [make_backend(scenario, "sim", seed=seed * 7919 + i) for i in range(2)]
    for e in engines:
        e.replay(verdicts)
    which = {"a": a, "b": b}
    new = {"a": [0, 0], "b": [0, 0]}
    out = []
    try:
        for r in range(-warm_rounds, rounds):
            latency: dict[str, list[float]] = {"a": [], "b": []}
            for engine, c in WARM_UP if r < 0 else ROUND:
                sim = engines[engine]
                met = sim.token_counts_met
                m, _ = tallied_episode(sim, make_controller(which[c], ctx.baselines), requests, scenario)
                if r >= 0:
                    latency[c].append(m.mean_latency_s)
                    new[c][0] += sim.token_counts_met - met
                    new[c][1] += sim.iterations  # `start` zeroes it: this episode's iterations
            if r >= 0:
                out.append(math.log(statistics.fmean(latency["b"]) / statistics.fmean(latency["a"])))
    finally:
        for e in engines:
            e.close()
    return out, {which[c]: n / steps for c, (n, steps) in new.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="sources", nargs="+", required=True, metavar="NAME",
                    help="turns_bias results kept with --iterations, all of one workload point and one A")  # fmt: skip
    ap.add_argument("--b", default=None,
                    help="the controllers to set against A, comma-separated (default: the results' B controllers)")  # fmt: skip
    ap.add_argument("--seeds", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm-rounds", default="1",
                    help="warm-ups before the rounds, as turns_bias --warm-rounds; comma-separated to compare")  # fmt: skip
    ap.add_argument("--verdicts", default=None, metavar="NAME",
                    help="a bench/verdict_replay.py result of the same point: every episode replays its requests' "
                         "measured draft verdicts, as live serves the same text each time, instead of drawing luck")  # fmt: skip
    ap.add_argument("--jitter", type=float, default=0.0,
                    help="SpeedDrift.jitter of every episode: live steps' noise, which moves a live episode's "
                         "batches and a policy's decisions from one serve of the same text to the next")  # fmt: skip
    ap.add_argument("--out", default="first_meetings", metavar="NAME")
    args = ap.parse_args(argv)
    results = [json.loads((RESULTS / f"{n}.json").read_text()) for n in args.sources]
    points = {(d["profile"], d["workload"]["name"], d["workload"]["value"], d["workload"]["requests"], d["a"])
              for d in results}  # fmt: skip
    if len(points) != 1:
        raise SystemExit(f"--from: the results are of different points or A controllers: {sorted(points)}")
    missing = [n for n, d in zip(args.sources, results, strict=True) if "first_meetings" not in d]
    if missing:
        raise SystemExit(f"--from: {missing} kept no iterations (turns_bias --iterations)")
    profile, workload, value, n_requests, a = points.pop()
    bs = args.b.split(",") if args.b else list(dict.fromkeys(d["b"] for d in results))
    factors = pooled_factors(results)
    share = live_share([r for d in results for r in d["rounds"]], a)
    w = dataclasses.replace(next(x for x in WORKLOADS if x.name == workload), values=(value,), requests=n_requests)
    warm = [int(x) for x in args.warm_rounds.split(",")]
    if min(warm) < 1:
        raise SystemExit(f"--warm-rounds: {args.warm_rounds!r}; at least 1 each")
    ctx = open_context(profile, w.variant(value), live=False, sim_seeds=3)  # seeds of the acceptance match
    t0 = time.perf_counter()
    try:
        sc = ctx.match(w.variant(value))
        acc = matched_acceptance(ctx, sc, a, share)
        plain = sc.replace(acceptance=acc, speed_drift=dataclasses.replace(sc.speed_drift, jitter=args.jitter))
        verdicts = None
        if args.verdicts:
            vr = json.loads((RESULTS / f"{args.verdicts}.json").read_text())
            if (vr["profile"], vr["workload"]["name"], vr["workload"]["value"], vr["workload"]["requests"]) != (
                    profile, workload, value, n_requests):  # fmt: skip
                raise SystemExit(f"--verdicts: {args.verdicts} is of {vr['workload']}, not of the --from results' point")
            verdicts = verdicts_of(sc.requests(sc.seed), vr["live_runs"])[0]
        costed = plain.replace(speed_drift=dataclasses.replace(plain.speed_drift, first_meeting=factors))
        rows = {}
        for b in tqdm(bs, desc="controllers", unit="controller", dynamic_ncols=True):
            by_warm: dict[str, dict] = {}
            for n_warm in warm:
                for name, scenario in (("without", plain), ("with", costed)):
                    logs, shares = [], {}
                    for seed in range(args.seeds):
                        xs, sh = serve_rounds(ctx, scenario, a, b, seed, args.rounds, n_warm, verdicts)
                        logs += xs
                        for c, v in sh.items():
                            shares.setdefault(c, []).append(v)
                    by_warm.setdefault(str(n_warm), {})[name] = {
                        "b_over_a": round(math.exp(statistics.fmean(logs)), 4),
                        "rel_se": round(statistics.stdev(logs) / math.sqrt(len(logs)), 4),
                        "new_share": {c: round(statistics.fmean(v), 4) for c, v in shares.items()}}  # fmt: skip
                cell = by_warm[str(n_warm)]
                cell["cost_of_first_meetings"] = round(cell["with"]["b_over_a"] / cell["without"]["b_over_a"], 4)
                print(f"{b}, {n_warm} warm-up(s): B / {a} {cell['without']['b_over_a']:.4f} without, "
                      f"{cell['with']['b_over_a']:.4f} with first meetings", flush=True)  # fmt: skip
            rows[b] = {"by_warm_rounds": by_warm}
            live = [r["turns_b_over_a"]["mean_latency_s"] for d in results if d["b"] == b for r in d["rounds"]]
            if live:
                logs = [math.log(x) for x in live]
                rows[b]["live_turns"] = {"b_over_a": round(math.exp(statistics.fmean(logs)), 4), "rounds": len(logs),
                                         "rel_se": round(statistics.stdev(logs) / math.sqrt(len(logs)), 4)
                                         if len(logs) > 1 else None}  # fmt: skip
    finally:
        ctx.close()
    write_result(args.out, {
        "profile": profile,
        "workload": {"name": workload, "value": value, "requests": n_requests},
        "a": a,
        "sources": args.sources,
        "verdicts": args.verdicts,
        "jitter": args.jitter,
        "first_meeting": factors,
        "matched_acceptance": {"controller": a, "live_share": round(share, 4), "profile_mean": sc.acceptance.mean,
                               "matched_mean": acc.mean},
        "seeds": args.seeds,
        "rounds": args.rounds,
        "warm_rounds": warm,
        "wall_s": round(time.perf_counter() - t0, 1),
        "controllers": rows,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
