"""How much of a controller's live result is its answer to one request set's own luck?

    python bench/verdict_replay.py --profile cpu-tiny-amx --workload azure-code --value 0.735 --requests 120
    python bench/verdict_replay.py --from-verdicts verdict_replay-cpu-tiny-amx-azure-code   (simulator only)

The simulator draws every draft's verdict from the acceptance model, afresh for each seed. A
live request set has its own order of easy and hard stretches (notes/calibration.md section
31: the Azure code set at x0.735 accepts less as the trace goes on), which a controller that
tracks acceptance answers and fresh draws do not reproduce. With greedy sampling the verdict
at a request's output position does not depend on k (`rlspec/sim/verdicts.py`), so the live
engine serves the request set at each static k of `--ks` with vLLM's per-request draft metrics,
the runs' verify steps reveal the verdicts by position (first k's where two runs differ), and
the simulator replays them (`Simulator.replay`) where it would have drawn.

Every controller then runs in the simulator over the same `--sim-seeds` seeds, with the
acceptance mean matched to what `--reference` (a static k of `--ks`) verified live (it fills
the positions no run revealed), under five kinds of luck: drawn; the request set's own
verdicts; the same merged in the other order; with the positions where two runs differ drawn
(a greedy token that batch numerics flip changes the text after it, so those are another
text's verdicts); and with a random `--perturb` share of the verdicts drawn, a different share
in each of `--perturb-sets` sets (how far an outcome turns on a few verdicts); with
`--price-by-size`, drawn and replayed again on a clock that prices each step by its size as the
live A/Bs' steps read (`SpeedDrift.by_tokens`). Each is read as its ratio of mean latency to the
reference in the same simulator, beside the live ratio in turns that `bench/turns_bias.py`
measured on the same point (`--live`: those results, their rounds pooled per controller); where
those results logged a controller's decisions, how often the simulator's chose the same k. Writes results/NAME.json (default
verdict_replay-<profile>-<workload>), with the measured steps, so `--from-verdicts NAME`
recomputes the simulator side without an engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT, controller_name, write_result
from tqdm import tqdm

sys.path.insert(0, str(ROOT))

from drift_robustness import matched_acceptance  # noqa: E402
from fidelity import WORKLOADS  # noqa: E402
from sim_to_real import open_context  # noqa: E402
from turns_bias import BAND_NAMES, BANDS  # noqa: E402

import rlspec.engines.vllm  # noqa: E402,F401  (Intel OpenMP before vLLM)
from rlspec.calibration.matching import DECISION_FIELDS, tallied_episode  # noqa: E402
from rlspec.control.registry import make_controller  # noqa: E402
from rlspec.engines.factory import make_backend  # noqa: E402
from rlspec.sim.verdicts import DraftVerdicts  # noqa: E402

POLICY = "policy:checkpoints/cpu-tiny-amx-refit-oracle-ppo"
# Trained on the simulator with the idle k fixed, on the refit's distribution and with the
# acceptance mean moving within episodes (notes/calibration.md section 32).
RETRAINED = ["policy:checkpoints/cpu-tiny-amx-idlefix-oracle-ppo", "policy:checkpoints/cpu-tiny-amx-moving-oracle-ppo"]
CONTROLLERS = ["static:3", "static:2", "static:4", "goodput", "cycle:2/2/2/3/3/3", POLICY, *RETRAINED]
LIVE = ["turns_bias-cpu-tiny-amx-azure-policy", "turns_bias-cpu-tiny-amx-azure-policy-turn5",
        "turns_bias-cpu-tiny-amx-azure-policy-iters", "turns_bias-cpu-tiny-amx-azure-policy-requests",
        "turns_bias-cpu-tiny-amx-azure-policy-decisions", "turns_bias-cpu-tiny-amx-azure-static2",
        "turns_bias-cpu-tiny-amx-azure-cycle", "turns_bias-cpu-tiny-amx-azure-moving",
        "turns_bias-cpu-tiny-amx-azure-moving-run2"]  # fmt: skip
DETAILED = {"per_request_spec_decode_metrics": "detailed"}  # vLLM's per-request verify steps


def measure_steps(sc, requests, ks: list[int]) -> dict[str, dict]:
    """Serve `requests` once per static k on one live engine; per k: the episode's figures and
    each request's verify steps as vLLM reported them."""
    runs = {}
    backend = make_backend(sc, "vllm", engine_args=DETAILED)
    try:
        for k in ks:
            m, extra = tallied_episode(backend, make_controller(f"static:{k}"), requests, sc)
            steps = {str(rid): [list(d), list(a)] for rid, (d, a) in sorted(backend.request_drafts.items())}
            runs[str(k)] = {"mean_latency_s": m.mean_latency_s, "drafted": extra["drafted"],
                            "accepted": extra["accepted"], "share": round(extra["accepted"] / extra["drafted"], 4),
                            "steps": steps,
                            "tokens": {str(rid): t for rid, t in sorted(backend.outputs().items())}}  # fmt: skip
            print(f"static:{k} live: mean latency {m.mean_latency_s:.3f} s, verified {runs[str(k)]['share']:.4f}",
                  flush=True)  # fmt: skip
    finally:
        backend.close()
    return runs


def verdicts_of(requests, runs: dict[str, dict], differences: str = "first") -> tuple[DraftVerdicts, dict]:
    """The runs' verdicts merged (where two differ: the first run's, or with `differences`
    "drop" none), with what each revealed."""
    merged, facts = None, {"runs": {}, "order": list(runs)}
    for k, run in runs.items():
        steps = {int(rid): (d, a) for rid, (d, a) in run["steps"].items()}
        v, untiled = DraftVerdicts.from_steps(requests, steps)
        facts["runs"][k] = {"revealed": v.revealed, "share_revealed": round(v.share, 4), "untiled": untiled}
        if merged is None:
            merged = v
        else:
            # Per request, so a request whose text diverged (one flipped token changes the rest) shows.
            by_request = {r.request_id: merged_one(merged, v, i)[2] for i, r in enumerate(requests)}
            first = next(iter(runs.values()))
            merged, both, differ = merged.merged(v, differences)
            facts.setdefault("agreement", []).append({
                "with": k, "both_revealed": both, "differ": differ,
                "requests": [{"request_id": rid, "arrival_s": round(requests[rid].arrival_s, 2),
                              "output_len": requests[rid].output_len, "differ": n,
                              "text_differs_from": first_difference(first, run, rid)}
                             for rid, n in by_request.items() if n]})  # fmt: skip
    if merged is None:
        raise SystemExit("--ks: no runs to read verdicts from")
    positions = sum(max(o - 1, 0) for _, o in merged.shapes)
    inside = sum(p < o for (_, o), acc, rej in zip(merged.shapes, merged.accepted, merged.rejected, strict=True)
                 for p in (*acc, *rej))  # fmt: skip
    facts.update(revealed=merged.revealed, positions=positions, revealed_in_output=inside,
                 share_revealed=round(merged.share, 4))  # fmt: skip
    return merged, facts


def first_difference(a: dict, b: dict, rid: int) -> int | None:
    """The first output position where two runs generated different tokens for request `rid`
    (None: the same text, or a run that kept no tokens)."""
    ta, tb = a.get("tokens", {}).get(str(rid)), b.get("tokens", {}).get(str(rid))
    if ta is None or tb is None:
        return None
    return next((i for i, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y), None)


def merged_one(a: DraftVerdicts, b: DraftVerdicts, i: int) -> tuple[DraftVerdicts, int, int]:
    """`a.merged(b)` over request `i` alone."""
    def one(v: DraftVerdicts) -> DraftVerdicts:
        return DraftVerdicts((v.shapes[i],), (v.accepted[i],), (v.rejected[i],))

    return one(a).merged(one(b))


@functools.cache
def _result(name: str) -> dict:
    """results/NAME.json, read once however many of the summaries below ask for it."""
    path = ROOT / "results" / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"no results/{name}.json")
    return json.loads(path.read_text())


def priced_by_size(names: list[str], workload: dict) -> dict[str, float] | None:
    """Measured over predicted step time by band of tokens scheduled (`turns_bias.by_band`),
    pooled over every controller's steps in turns in results `names` on the same point."""
    if not names:
        return None
    sums: dict[str, list[float]] = {}
    for name in names:
        d = _result(name)
        if "by_band" not in d or d["workload"]["name"] != workload["name"] or d["workload"]["value"] != workload["value"]:
            raise SystemExit(f"--price-by-size: results/{name}.json has no by_band of {workload['name']} at "
                             f"{workload['value']:g} (run turns_bias with --iterations)")  # fmt: skip
        for cells in d["by_band"]["turns"].values():
            for band, v in cells.items():
                acc = sums.setdefault(band, [0.0, 0.0])
                acc[0] += v["measured_s"]
                acc[1] += v["predicted_s"]
    missing = [b for b in BAND_NAMES if b not in sums]
    if missing:
        raise SystemExit(f"--price-by-size: no steps in bands {missing}")
    return {b: round(sums[b][0] / sums[b][1], 4) for b in BAND_NAMES}


def pooled_live(names: list[str], workload: dict, reference: str) -> dict[str, dict]:
    """Each controller's live latency over the reference in turns, from turns_bias results on
    the same point (every round of every result, geometric mean and its relative SE), and the
    reference's own mean latency there."""
    per: dict[str, list[float]] = {}
    sources: dict[str, list[str]] = {}
    ref_s: list[float] = []
    for name in names:
        d = _result(name)
        same = {k: d["workload"][k] for k in ("name", "value", "requests")} == {
            k: workload[k] for k in ("name", "value", "requests")
        }
        if not same or d["a"] != reference:
            raise SystemExit(f"--live: results/{name}.json is {d['b']} / {d['a']} on {d['workload']}, "
                             f"not / {reference} on {workload}")  # fmt: skip
        per.setdefault(d["b"], []).extend(r["turns_b_over_a"]["mean_latency_s"] for r in d["rounds"])
        sources.setdefault(d["b"], []).append(name)
        ref_s.extend(e["mean_latency_s"] for r in d["rounds"] for e in r["turns"] if e["controller"] == reference)
    out: dict[str, dict] = {}
    if ref_s:  # the reference's own episodes in turns: the simulator's absolute latency beside them
        out[reference] = {"mean_latency_s": round(math.exp(statistics.fmean(math.log(x) for x in ref_s)), 4),
                          "episodes": len(ref_s)}  # fmt: skip
    for c, xs in per.items():
        logs = [math.log(x) for x in xs]
        se = statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else None
        out[c] = {"turns": round(math.exp(statistics.fmean(logs)), 4), "rel_se": None if se is None else round(se, 4),
                  "rounds": len(xs), "results": sources[c]}  # fmt: skip
    return out


def replay(ctx, sc, verdicts: dict[str, list[DraftVerdicts | None]], reference: str, share: float,
           controllers: list[str], by_size: dict[str, float] | None = None,
           keep_decisions: frozenset[str] = frozenset()) -> tuple[dict, dict, dict]:  # fmt: skip
    """Each controller in the matched simulator with each of `verdicts` (by name: one or more
    sets, each run over the context's seeds and pooled; None: drawn luck); with `by_size` (band
    name -> factor), each again on a clock that prices steps by size so. The decision logs of
    the controllers named in `keep_decisions`, drawn and replayed, come back beside."""
    acc = matched_acceptance(ctx, sc, reference, share)
    at = sc.replace(acceptance=acc)
    clocks = {"": at}
    if by_size:
        bands = tuple((lo, by_size[name]) for lo, name in zip((0, *BANDS), BAND_NAMES, strict=True))
        clocks[", priced by size"] = at.replace(speed_drift=dataclasses.replace(at.speed_drift, by_tokens=bands))
    matched = {"controller": reference, "live_share": share, "profile_mean": sc.acceptance.mean,
               "matched_mean": acc.mean}  # fmt: skip
    print(f"{reference} verified {share:.4f} live: acceptance mean {sc.acceptance.mean} -> {acc.mean}", flush=True)
    sims: dict[str, dict] = {}
    decision_logs: dict[str, dict[str, list]] = {}
    for c in tqdm(controllers, desc="replay", unit="controller", dynamic_ncols=True):
        row = {}
        for (clock, scenario), (luck, sets) in itertools.product(clocks.items(), verdicts.items()):
            if clock and luck not in ("drawn", "replayed"):
                continue  # the other replays are the replay's own uncertainty: once is enough
            keep = not clock and luck in ("drawn", "replayed") and controller_name(c) in keep_decisions
            rs = [ctx.run_sim(scenario, c, verdicts=v, keep_decisions=keep) for v in sets]
            if keep:
                decision_logs.setdefault(controller_name(c), {})[luck] = rs[0]["decision_logs"]
            per_seed = [x for r in rs for x in r["mean_latency_s_per_seed"]]
            row[luck + clock] = {"mean_latency_s": statistics.fmean(per_seed), "per_seed_s": per_seed,
                         "mean_k": statistics.fmean(r["mean_k"] for r in rs),
                         "share": sum(r["accepted"] for r in rs) / sum(r["drafted"] for r in rs)}  # fmt: skip
        sims[controller_name(c)] = row
    ref = sims[controller_name(reference)]
    for row in sims.values():
        for luck, v in row.items():
            v["vs_reference"] = round(v["mean_latency_s"] / ref[luck]["mean_latency_s"], 4)
            # Paired by seed (the same drawn luck beside the same replayed verdicts): the spread
            # of the ratio over seeds, which the close calls and unrevealed positions leave.
            logs = [math.log(x / y) for x, y in zip(v["per_seed_s"], ref[luck]["per_seed_s"], strict=True)]
            v["ratio_per_seed"] = {"min": round(math.exp(min(logs)), 4), "max": round(math.exp(max(logs)), 4),
                                   "rel_se": round(statistics.stdev(logs) / math.sqrt(len(logs)), 4)
                                   if len(logs) > 1 else None}  # fmt: skip
    return sims, matched, decision_logs


def live_decisions(names: list[str]) -> dict[str, list[list]]:
    """Each controller's live decision logs (turns and alone) in turns_bias results kept with
    `--decisions`, by controller."""
    out: dict[str, list[list]] = {}
    for name in names:
        d = _result(name)
        if "decision_fields" not in d:
            continue
        if d["decision_fields"] != list(DECISION_FIELDS):
            raise SystemExit(f"--live: results/{name}.json logged decisions as {d['decision_fields']}")
        out.setdefault(d["b"], []).extend(e["decision_log"] for r in d["rounds"] for way in ("turns", "alone")
                                          for e in r[way] if e["controller"] == d["b"])  # fmt: skip
    return out


def _agreement(a_logs: list[list], b_logs: list[list], pairs, before_s: float | None, tol_s: float) -> float | None:
    """Share of the decisions of `a` (before `before_s`) whose nearest decision of `b` in time,
    within `tol_s`, chose the same k, over the (a, b) log pairs `pairs` yields."""
    at_k, at_clock = DECISION_FIELDS.index("k"), DECISION_FIELDS.index("clock_s")
    same = total = 0
    for a, b in pairs(a_logs, b_logs):
        clocks = np.array([x[at_clock] for x in b])
        for x in a:
            if before_s is not None and x[at_clock] >= before_s:
                continue
            j = int(np.abs(clocks - x[at_clock]).argmin())
            same += int(abs(clocks[j] - x[at_clock]) <= tol_s and b[j][at_k] == x[at_k])
            total += 1
    return round(same / total, 4) if total else None


def decision_agreement(sim_logs: dict[str, list], logs: list[list], first_burst_s: float,
                       tol_s: float = 0.5) -> dict:  # fmt: skip
    """How often the simulator's controller chose the k live chose: each live decision against
    the simulator's nearest one in time (within `tol_s`, else a miss), under each kind of luck,
    over the whole episode and before `first_burst_s`; beside it, live episodes against each
    other (the same controller agrees with itself only so far once timings part)."""
    out: dict = {"live_episodes": len(logs)}
    for span, before in (("all", None), (f"before {first_burst_s:g} s", first_burst_s)):
        row = {}
        for luck in ("drawn", "replayed"):
            row[luck] = _agreement(logs, sim_logs[luck], itertools.product, before, tol_s)
        row["live vs live"] = _agreement(logs, logs, lambda a, _: itertools.combinations(a, 2), before, tol_s)
        out[span] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu-tiny-amx")
    ap.add_argument("--workload", default="azure-code", choices=[w.name for w in WORKLOADS])
    ap.add_argument("--value", type=float, default=0.735, help="the load knob (rate or rate_scale), as in a sweep")
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--ks", default="4,3", help="static k the live engine serves the requests at (default: %(default)s)")
    ap.add_argument("--reference", default="static:3", help="a static k of --ks (default: %(default)s)")
    ap.add_argument("--controllers", default=",".join(CONTROLLERS))
    ap.add_argument("--sim-seeds", type=int, default=6)
    ap.add_argument("--perturb", type=float, default=0.02, metavar="SHARE",
                    help="also replay with this share of the verdicts drawn instead (0: not; default: %(default)s)")
    ap.add_argument("--perturb-sets", type=int, default=8, help="different random sets of them (default: %(default)s)")
    ap.add_argument("--live", default=",".join(LIVE), help="turns_bias results on the same point ('' for none)")
    ap.add_argument("--price-by-size", default=",".join(n for n in LIVE if n.endswith(("requests", "decisions", "static2",
                                                                                      "cycle"))),
                    help="turns_bias results with logged iterations: also run every controller on a clock that "
                         "prices steps by size as their steps in turns read ('' for not)")  # fmt: skip
    ap.add_argument("--first-burst-s", type=float, default=100.0,
                    help="decisions before this time are also compared apart (default: %(default)s, the Azure "
                         "trace's first burst at x0.735)")  # fmt: skip
    ap.add_argument("--from-verdicts", default=None, metavar="NAME",
                    help="take the measured steps from results/NAME.json instead of serving (no engine)")  # fmt: skip
    ap.add_argument("--out", default=None, metavar="NAME")
    args = ap.parse_args(argv)
    ks = [int(k) for k in args.ks.split(",") if k]
    if not ks or any(k < 1 for k in ks) or len(set(ks)) != len(ks):
        raise SystemExit(f"--ks: {args.ks!r}; give distinct draft lengths >= 1 (verdicts need drafts)")
    kind, _, ref_k = args.reference.partition(":")
    if kind != "static" or not ref_k.isdigit() or int(ref_k) not in ks:
        raise SystemExit(f"--reference: {args.reference!r}; a static k of --ks {ks}, whose live share is matched")
    controllers = [c for c in args.controllers.split(",") if c]
    if args.reference not in controllers:
        controllers.insert(0, args.reference)
    for c in controllers:
        make_controller(c)  # refuse an unknown controller before anything runs
    w = dataclasses.replace(next(w for w in WORKLOADS if w.name == args.workload), values=(args.value,),
                            requests=args.requests)  # fmt: skip
    workload = {"name": w.name, "scenario": str(Path(w.scenario).relative_to(ROOT)), "knob": w.knob,
                "value": args.value, "requests": args.requests}  # fmt: skip
    live = pooled_live([n for n in args.live.split(",") if n], workload, args.reference)
    t0 = time.perf_counter()
    ctx = open_context(args.profile, w.variant(args.value), live=False, sim_seeds=args.sim_seeds)
    sc = ctx.match(w.variant(args.value))
    requests = sc.requests(sc.seed)
    if args.from_verdicts:
        saved = _result(args.from_verdicts)
        if saved["workload"] != workload or saved["profile"] != args.profile:
            raise SystemExit(f"--from-verdicts: results/{args.from_verdicts}.json measured {saved['profile']} on "
                             f"{saved['workload']}, not {args.profile} on {workload}")  # fmt: skip
        runs = {k: saved["live_runs"][k] for k in map(str, ks)}
    else:
        runs = measure_steps(sc, requests, ks)
    verdicts, facts = verdicts_of(requests, runs)
    print(f"verdicts at {facts['revealed_in_output']} of the outputs' {facts['positions']} positions and "
          f"{facts['revealed'] - facts['revealed_in_output']} past their ends ({facts['share_revealed']:.4f} accepted); "
          f"agreement {facts.get('agreement')}", flush=True)  # fmt: skip
    replays: dict[str, list] = {"drawn": [None], "replayed": [verdicts]}
    if len(runs) > 1:  # where the runs differ (close calls): the other run's verdicts, or drawn ones
        replays["replayed, last run first"] = [verdicts_of(requests, dict(reversed(list(runs.items()))))[0]]
        replays["replayed, close calls drawn"] = [verdicts_of(requests, runs, "drop")[0]]
    if args.perturb:  # a few verdicts of this set drawn instead, a different few per set
        replays[f"replayed, {args.perturb:.0%} drawn"] = [verdicts.thinned(args.perturb, seed)
                                                          for seed in range(args.perturb_sets)]  # fmt: skip
    by_size = priced_by_size([n for n in args.price_by_size.split(",") if n], workload)
    logged = live_decisions([n for n in args.live.split(",") if n])
    sims, matched, sim_decisions = replay(ctx, sc, replays, args.reference, runs[ref_k]["share"], controllers,
                                          by_size, frozenset(logged))  # fmt: skip
    agreement = {c: decision_agreement(sim_decisions[controller_name(c)], logged[controller_name(c)],
                                       args.first_burst_s)
                 for c in controllers if logged.get(controller_name(c))}  # fmt: skip
    for c, a in agreement.items():
        print(f"{c}: decisions as live's {a}")
    for c, row in sims.items():
        seen = live.get(c, {}).get("turns")
        print(f"{c:<55} " + "  ".join(f"{luck} {v['vs_reference']:.3f}" for luck, v in row.items())
              + f"  live {'-' if seen is None else f'{seen:.3f}'}")  # fmt: skip
    write_result(args.out or f"verdict_replay-{args.profile}-{args.workload}", {
        "profile": args.profile, "workload": workload, "ks": ks, "reference": args.reference,
        "sim_seeds": args.sim_seeds, "perturb": args.perturb, "perturb_sets": args.perturb_sets, "wall_s": round(time.perf_counter() - t0, 1),
        "engine_args": DETAILED, "verdicts": facts, "matched_acceptance": matched,
        "priced_by_size": by_size, "sim": sims, "live_turns": live, "decision_agreement": agreement,
        "live_runs": runs,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
