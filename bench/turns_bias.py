"""Does taking turns favour one controller over another? An A/B test of the engines-in-turns design.

    python bench/turns_bias.py --profile cpu-tiny-amx --pair static:0,batch-table --wait-quiet 0.3
    python bench/turns_bias.py --pair static:0,batch-table --turn-s 0.5 --out turns_bias-cpu-tiny-amx-turn0.5
    python bench/turns_bias.py --summarise turns_bias-cpu-tiny-amx

`bench/sim_to_real.py eval` judges the policy by paired ratios: the policy and the analytical
controllers on their own engines, taking turns one iteration at a time, so every engine meets
the host at one speed. `bench/engine_slots.py` (an A/A test: one controller on every engine)
read the engines' step times within 0.6% of one another, and steps in turns ~9% slower than
steps back to back, as steps after an idle pause do. If that cost is a fixed time per step
rather than a share of it, turns charge a controller that takes many short steps (k = 0) more
than one that takes fewer, longer ones (k = 4), and the paired ratio tilts between them in a
way a deployed engine, which steps back to back, never sees.

Each round serves one sweep point's requests under controllers A and B four ways on two
engines: in turns with A on the first engine, in turns with B on it, then A, B, B, A one after
another on the first engine alone (ABBA: a linear drift of the host's speed cancels). Before
the rounds each engine serves both controllers `--warm-rounds` times, unmeasured, so every
episode meets an engine that has built shapes (sections 22-23 of notes/calibration.md; a fresh
engine needs ~6 episodes of a state-dependent controller to meet most of its token counts,
section 33). The ratio B / A
of mean latency and of step time over the profile, in turns and alone, per round; the bias
of the design is their quotient, (B / A in turns) / (B / A alone), beside the simulator's B / A.
`--per-request` keeps each request's timeline in every episode and beside them the simulator's
for the same requests, with the profile's acceptance and with the mean matched to what A (a
static k) verified live (`per_request`: which requests B serves later than A, live and
simulated; a request's live excess is its live B - A less its matched-simulator B - A).
`--decisions` keeps each decision and the observation it was made on, live and in the same two
simulators (`decisions`: how often B chose each k and the features it chose them on).
`--turn-s` makes each turn last that long (as many iterations as start within it) instead of
one iteration, which spreads the cost of a turn thin. Since both controllers run on both
engines, each round also measures the engines themselves: the first engine over the second,
whoever they serve (it read 1.2-2.7% slower in every round of both committed runs, which is
why `sim_to_real.py eval` seats its policy on every engine in turn). Writes results/NAME.json
(default turns_bias-<profile>); `--summarise NAME` recomputes a result's summary from its
rounds; `--pool A,B,... --out NAME` pools the rounds of several runs of one A/B.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import ROOT, controller_name, write_result

sys.path.insert(0, str(ROOT))

from drift_robustness import matched_acceptance  # noqa: E402
from fidelity import WORKLOADS  # noqa: E402
from sim_to_real import open_context  # noqa: E402

import rlspec.engines.vllm  # noqa: E402,F401  (Intel OpenMP before vLLM)
from rlspec.calibration.engine_speed import speed_adjusted  # noqa: E402
from rlspec.calibration.interleave import TURN_ITERATION_FIELDS, Job  # noqa: E402
from rlspec.calibration.matching import DECISION_FIELDS, REQUEST_FIELDS  # noqa: E402
from rlspec.calibration.quiet import wait_quiet  # noqa: E402
from rlspec.control.registry import make_controller  # noqa: E402

KEYS = ("mean_latency_s", "step_time_vs_profile")


def geomean(xs: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(x) for x in xs))


def b_over_a(key: str, eps_a: list[dict], eps_b: list[dict]) -> float:
    """B's episodes over A's, on `key` (geometric means)."""
    return geomean([e[key] for e in eps_b]) / geomean([e[key] for e in eps_a])


def first_over_second(turns: list[dict], key: str) -> float:
    """How much slower the first engine in turns served an episode than the second, on `key`:
    each controller's episode on the first over its episode on the second, geometric mean
    over the two controllers. `turns` is a round's [A on the first, B on the second, B on
    the first, A on the second]; the AB group ran before the BA group, so a linear drift of
    the host's speed cancels in the product."""
    a1, b2, b1, a2 = (e[key] for e in turns)
    return math.sqrt(a1 / a2 * (b1 / b2))


def summarise(rounds: list[dict], a: str, b: str) -> dict:
    """B / A per way of running, each round's figure and their geometric mean with its
    standard error (of the log, as a relative figure); the design's bias, turns over alone;
    and the engines' own difference, first engine over second, whoever they serve."""
    out: dict = {}
    for key in KEYS:
        turns = [r["turns_b_over_a"][key] for r in rounds]
        alone = [r["alone_b_over_a"][key] for r in rounds]
        bias = [t / a for t, a in zip(turns, alone, strict=True)]
        first = [first_over_second(r["turns"], key) for r in rounds]
        entry = {}
        for name, xs in (("turns", turns), ("alone", alone), ("bias", bias), ("first_over_second", first)):
            logs = [math.log(x) for x in xs]
            se = statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else float("nan")
            entry[name] = {"per_round": [round(x, 4) for x in xs], "mean": round(geomean(xs), 4),
                           "rel_se": round(se, 4)}  # fmt: skip
        out[key] = entry
    out["speed_adjusted"] = {way: speed_adjusted_b_over_a(rounds, way, a, b) for way in ("turns", "alone")}
    return out


ITERATION_AT = {f: i for i, f in enumerate(TURN_ITERATION_FIELDS)}


def _sum_iterations(rounds: list[dict], key: Callable[[str, list], str], order: Callable[[list[str]], list[str]]
                    ) -> dict:  # fmt: skip
    """Per way of running and controller, the busy iterations of all rounds summed by
    `key(way, row)`: count, seconds measured, seconds the profile predicts, and their ratio,
    cells in `order`."""
    out: dict = {}
    for way in ("turns", "alone"):
        for r in rounds:
            for e in r[way]:
                cells = out.setdefault(way, {}).setdefault(e["controller"], {})
                for row in e["iteration_log"]:
                    cell = cells.setdefault(key(way, row), [0, 0.0, 0.0])
                    cell[0] += 1
                    cell[1] += row[ITERATION_AT["measured_s"]]
                    cell[2] += row[ITERATION_AT["predicted_s"]]
    return {way: {c: {k: {"iterations": cells[k][0], "measured_s": round(cells[k][1], 3),
                          "predicted_s": round(cells[k][2], 3),
                          "vs_profile": round(cells[k][1] / cells[k][2], 4) if cells[k][2] else None}
                      for k in order(list(cells))}
                  for c, cells in per.items()}
            for way, per in out.items()}  # fmt: skip


def by_kind(rounds: list[dict]) -> dict:
    """The busy iterations by kind (phase, k, and whether it was the first of its turn). In turns
    both engines meet the host at one speed, so where B's ratio exceeds A's for the same kind
    of step, that kind is dearer for B itself."""

    def kind(way: str, row: list) -> str:
        first = "first of its turn" if way == "turns" and row[ITERATION_AT["first_in_turn"]] else "later"
        return f"{row[ITERATION_AT['phase']]}, k={row[ITERATION_AT['k']]}, {first}"

    return _sum_iterations(rounds, kind, sorted)


# scheduled tokens per iteration: pure decodes (< 64), small and large prefill chunks, the budget
BANDS = (64, 256, 512, 1024, 1536, 2000)
BAND_NAMES = (f"< {BANDS[0]}", *(f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(BANDS)), f">= {BANDS[-1]}")


def by_band(rounds: list[dict]) -> dict:
    """The busy iterations by how many tokens they scheduled (BANDS). A profile that prices a
    step's size right reads alike in every band, whatever the controller."""

    def band(way: str, row: list) -> str:
        return BAND_NAMES[sum(row[ITERATION_AT["scheduled_tokens"]] >= b for b in BANDS)]

    return _sum_iterations(rounds, band, lambda seen: [b for b in BAND_NAMES if b in seen])


# Beyond its size band, what a step's cost depends on besides its k: decode requests (0, 1-2,
# 3-5, 6-9, 10+), whether it carries a prefill chunk, whether it opens its turn, and the context
# it attends over. Matched on the band alone, a policy's k = 2 steps read 1.015 of static:3's,
# pooled (section 32); matched on all of these, 0.989-1.028 by run, and its steps as a whole
# 1.002-1.012 in turns (section 33).
DECODE_GROUPS = (1, 3, 6, 10)
CONTEXT_GROUPS = (500, 1000, 2000, 4000, 8000)


def _state(way: str, row: list) -> tuple:
    at = ITERATION_AT
    return (sum(row[at["scheduled_tokens"]] >= x for x in BANDS), sum(row[at["decode_reqs"]] >= x for x in DECODE_GROUPS),
            row[at["phase"]], way == "turns" and bool(row[at["first_in_turn"]]),
            sum(row[at["context"]] >= x for x in CONTEXT_GROUPS))  # fmt: skip


def live_share(rounds: list[dict], controller: str) -> float:
    """What `controller`'s episodes verified live, accepted over drafted (of the episodes that
    counted them)."""
    eps = [e for r in rounds for way in ("turns", "alone") for e in r[way]
           if e["controller"] == controller and "accepted" in e]  # fmt: skip
    return sum(e["accepted"] for e in eps) / sum(e["drafted"] for e in eps)


def _matched_logs(rounds: list[dict], way: str, a: str, b: str) -> dict[tuple, list[float]]:
    """log(measured / predicted) of every busy step of `way`, keyed by (controller, k, state);
    A's steps under k = -1, every k together."""
    logs: dict[tuple, list[float]] = {}
    for r in rounds:
        for e in r[way]:
            for row in e["iteration_log"]:
                k = row[ITERATION_AT["k"]] if e["controller"] == b else -1
                logs.setdefault((e["controller"], k, _state(way, row)), []).append(
                    math.log(row[ITERATION_AT["measured_s"]] / row[ITERATION_AT["predicted_s"]]))
    return logs


def _merged(parts: list[dict[tuple, list[float]]]) -> dict[tuple, list[float]]:
    out: dict[tuple, list[float]] = {}
    for part in parts:
        for key, xs in part.items():
            out.setdefault(key, []).extend(xs)
    return out


def _matched_difference(logs: dict[tuple, list[float]], a: str, b: str) -> dict[str, tuple[float, int]]:
    """B's mean log step cost over A's in the same state, weighted by B's steps per state
    (states where either has fewer than 3 steps left out), at each k of B's and over all ("all")."""
    sums: dict[str, list[float]] = {}
    for (c, k, state), xb in logs.items():
        xa = logs.get((a, -1, state), [])
        if c != b or len(xb) < 3 or len(xa) < 3:
            continue
        d = len(xb) * (statistics.fmean(xb) - statistics.fmean(xa))
        for key in (str(k), "all"):
            cell = sums.setdefault(key, [0.0, 0])
            cell[0] += d
            cell[1] += len(xb)
    return {key: (num / n, int(n)) for key, (num, n) in sorted(sums.items())}


def within_state(rounds: list[dict], a: str, b: str) -> dict:
    """B's busy steps at each k (and all of them) against A's steps in the same state (`_state`),
    on log(measured / predicted): exp of the mean difference, with a jackknife standard error
    over rounds (steps of one round share the host's moment, so they are not independent). In
    turns both meet the host at one speed; alone they meet it one after the other."""
    out: dict = {}
    for way in ("turns", "alone"):
        per_round = [_matched_logs([r], way, a, b) for r in rounds]
        full = _matched_difference(_merged(per_round), a, b)
        jack = [_matched_difference(_merged(per_round[:i] + per_round[i + 1 :]), a, b)
                for i in range(len(rounds))] if len(rounds) > 2 else []  # fmt: skip
        cells = {}
        for key, (diff, steps) in full.items():
            xs = [j[key][0] for j in jack if key in j]
            se = (math.sqrt((len(xs) - 1) / len(xs) * sum((x - statistics.fmean(xs)) ** 2 for x in xs))
                  if len(xs) == len(jack) and xs else None)  # fmt: skip
            cells[key] = {"vs_a": round(math.exp(diff), 4), "rel_se": None if se is None else round(se, 4),
                          "steps": steps}  # fmt: skip
        out[way] = cells
    return out


def _engine_history(rounds: list[dict]):
    """Every episode of the rounds in the order its engine served it, with the engine: each
    round serves A beside B (order[i] on engine i), then B beside A, then A, B, B, A alone on
    engine 0 (`main`)."""
    for i, r in enumerate(rounds):
        t = r["turns"]
        for engine, e in ((0, t[0]), (1, t[1]), (0, t[2]), (1, t[3])):
            yield i, "turns", engine, e
        for e in r["alone"]:
            yield i, "alone", 0, e


def first_meetings(rounds: list[dict], warm_counts: list[list[int]] | None = None) -> dict:
    """Steps whose token count their engine had not served before (vLLM's CPU GEMMs build a
    oneDNN primitive per token count on first use: section 22), and what they cost. With
    `warm_counts` (the counts each engine met in the warm-up) every round counts; without (runs
    before the warm-up was recorded) round 0 only marks counts, and a count met in the warm-up
    but not in round 0 reads as new: an upper bound. A controller that chooses k by state meets
    more counts than a static one, and meets them again in every round: `excess_share` is the
    share of its busy time that steps of a new count cost beyond a seen count's price in the
    same band (`cost_by_band`, pooled)."""
    seen: dict[int, set[int]] = {i: set(c) for i, c in enumerate(warm_counts or [])}
    first_counted = 0 if warm_counts else 1
    steps = []  # (way, controller, band, new, log cost over profile, measured s)
    for i, way, engine, e in _engine_history(rounds):
        met = seen.setdefault(engine, set())
        for row in e["iteration_log"]:
            m = row[ITERATION_AT["scheduled_tokens"]]
            new = m not in met
            met.add(m)
            if i >= first_counted:
                steps.append((way, e["controller"], sum(m >= x for x in BANDS), new,
                              math.log(row[ITERATION_AT["measured_s"]] / row[ITERATION_AT["predicted_s"]]),
                              row[ITERATION_AT["measured_s"]]))  # fmt: skip
    if not steps:
        return {}
    cost = {}
    for band, name in enumerate(BAND_NAMES):
        xn = [x for _, _, bd, new, x, _ in steps if bd == band and new]
        xs = [x for _, _, bd, new, x, _ in steps if bd == band and not new]
        if len(xn) >= 3 and len(xs) >= 3:
            cost[name] = {"new": len(xn), "seen": len(xs), "vs_seen": round(math.exp(statistics.fmean(xn) - statistics.fmean(xs)), 4)}
    out: dict = {"cost_by_band": cost}
    for way in ("turns", "alone"):
        for c in dict.fromkeys(c for w, c, *_ in steps if w == way):
            mine = [s for s in steps if s[0] == way and s[1] == c]
            extra = sum(m * (1 - 1 / cost[BAND_NAMES[bd]]["vs_seen"]) for _, _, bd, new, _, m in mine
                        if new and BAND_NAMES[bd] in cost)  # fmt: skip
            out.setdefault(way, {})[c] = {"steps": len(mine), "new_share": round(sum(s[3] for s in mine) / len(mine), 4),
                                          "excess_share": round(extra / sum(s[5] for s in mine), 4)}  # fmt: skip
    return out


def step_regression(rounds: list[dict], controller_prefix: str | None = None) -> dict:
    """What the profile misprices, step by step: per way of running, least squares of each busy
    iteration's log(measured / predicted) on what it scheduled, with one intercept per episode
    (which takes out the host's speed and the controller), for steps with a prefill chunk and
    decodes ("mixed") and for pure decodes. Coefficients (+- standard error) read as relative
    cost over the profile: `k_before=2` is a step verifying 2-token drafts against one verifying
    3; `prefill band` terms are against chunks under 128 tokens. Where the controller chooses
    k by the engine's state, a step's k is not independent of what else makes it slow; a
    controller that sets k without regard to state (`cycle:`) gives its causal price.
    `controller_prefix`: only that controller's episodes."""
    at = {f: i for i, f in enumerate(TURN_ITERATION_FIELDS)}
    edges = (128, 512, 1024, 1536, 2000)
    common = ["k_before=2", "k_before=4", "k changed", "decode reqs", "log context", "first of its turn"]
    names = {"mixed": [*common, "log prefill tokens", *(f"prefill band >= {e}" for e in edges)], "decode": common}
    out: dict = {}
    for way in ("turns", "alone"):
        for kind in ("mixed", "decode"):
            xs, ys, eps = [], [], []
            for r in rounds:
                for e in r[way]:
                    if controller_prefix and not e["controller"].startswith(controller_prefix):
                        continue
                    eps.append(len(eps))
                    for row in e["iteration_log"]:
                        pf, dec = row[at["prefill_tokens"]], row[at["decode_reqs"]]
                        if not dec or (kind == "mixed") != (pf > 0):
                            continue
                        kb = row[at["k_before"]]
                        x = [kb == 2, kb == 4, row[at["k"]] != kb, dec, math.log1p(row[at["context"]]),
                             way == "turns" and bool(row[at["first_in_turn"]])]  # fmt: skip
                        if kind == "mixed":
                            x += [math.log(pf), *(pf >= edge for edge in edges)]
                        xs.append([float(v) for v in x] + [float(i == eps[-1]) for i in range(len(rounds) * 8)])
                        ys.append(math.log(row[at["measured_s"]] / row[at["predicted_s"]]))
            if len(ys) < 50:
                continue
            x, y, n_terms = np.array(xs), np.array(ys), len(names[kind])
            episode = x[:, n_terms:].argmax(axis=1)
            # a term is estimable only where it varies within an episode (the intercepts take
            # the rest: a static controller's k, the first step of a turn alone)
            varies = [any(np.ptp(x[episode == e, j]) > 0 for e in np.unique(episode)) for j in range(n_terms)]
            keep = np.array([*varies, *x[:, n_terms:].any(axis=0)])
            x = x[:, keep]
            beta, *_ = np.linalg.lstsq(x, y, rcond=None)
            resid = y - x @ beta
            cov = resid @ resid / (len(y) - x.shape[1]) * np.linalg.pinv(x.T @ x)
            kept = [n for n, v in zip(names[kind], varies, strict=True) if v]
            out.setdefault(way, {})[kind] = {"iterations": len(y), **{
                n: {"coef": round(float(beta[i]), 4), "se": round(float(math.sqrt(max(cov[i, i], 0.0))), 4)}
                for i, n in enumerate(kept)}}  # fmt: skip
    return out


def _mean_by_request(logs: list[list], start: str, end: str) -> dict[int, float]:
    """Each finished request's time from `start` to `end` (REQUEST_FIELDS), averaged over
    episodes' `request_log`s."""
    at = {f: i for i, f in enumerate(REQUEST_FIELDS)}
    sums: dict[int, list[float]] = {}
    for log in logs:
        for row in log:
            if row[at["finish_s"]] is not None:
                sums.setdefault(row[at["request_id"]], []).append(row[at[end]] - row[at[start]])
    return {rid: statistics.fmean(xs) for rid, xs in sums.items()}


# a request's latency, and its two parts: waiting for the first token, then decoding the rest
SPANS = {"latency": ("arrival_s", "finish_s"), "ttft": ("arrival_s", "first_token_s"),
         "decode": ("first_token_s", "finish_s")}  # fmt: skip


def per_request(rounds: list[dict], sim_requests: dict, a: str, b: str) -> dict:
    """B - A per request, live in turns and alone and in each simulator of `sim_requests`
    ({acceptance: {controller: seed logs}}): on the mean, for latency and its parts (SPANS);
    and where the live latency difference in turns exceeds the matched simulator's, by output
    length, and how much of the excess the worst tenth of the requests holds. In turns both
    controllers meet one host speed, so their difference per request is the controllers' own;
    the simulator's, averaged over seeds, is what the profile expects of them on the same
    requests."""
    at = {f: i for i, f in enumerate(REQUEST_FIELDS)}
    shape = {row[at["request_id"]]: (row[at["prompt_len"]], row[at["output_len"]], row[at["arrival_s"]])
             for row in rounds[0]["turns"][0]["request_log"]}  # fmt: skip
    logs = {way: {c: [e["request_log"] for r in rounds for e in r[way] if e["controller"] == c] for c in (a, b)}
            for way in ("turns", "alone")}  # fmt: skip
    logs.update({f"sim_{acc}": per for acc, per in sim_requests.items()})
    diffs: dict[str, dict[str, dict[int, float]]] = {}
    for span, (start, end) in SPANS.items():
        for way, per in logs.items():
            ta, tb = (_mean_by_request(per[c], start, end) for c in (a, b))
            diffs.setdefault(span, {})[way] = {rid: tb[rid] - ta[rid] for rid in shape if rid in ta and rid in tb}
    out: dict = {"mean_b_minus_a_s": {span: {way: round(statistics.fmean(d.values()), 4) for way, d in per.items()}
                                      for span, per in diffs.items()}}  # fmt: skip
    diff = diffs["latency"]
    ref = "sim_matched" if "sim_matched" in diff else "sim_profile"
    excess = {rid: diff["turns"][rid] - diff[ref][rid] for rid in diff["turns"] if rid in diff[ref]}
    bands: dict[str, list[int]] = {}
    for rid in excess:
        n = shape[rid][1]
        bands.setdefault("1-3" if n <= 3 else "4-6" if n <= 6 else "7-9" if n <= 9 else "10+", []).append(rid)
    out["by_output_len"] = {band: {"requests": len(ids),
                                   **{way: round(statistics.fmean(diff[way][i] for i in ids), 4) for way in diff},
                                   "excess_s": round(statistics.fmean(excess[i] for i in ids), 4)}
                            for band, ids in sorted(bands.items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+")))}  # fmt: skip
    ranked = sorted(excess, key=excess.get, reverse=True)
    total = sum(excess.values())
    top = ranked[: max(1, len(ranked) // 10)]
    out["excess_reference"] = ref
    out["excess_total_s"] = round(total, 3)
    out["excess_worst_tenth_s"] = round(sum(excess[i] for i in top), 3)
    out["worst"] = [{"request_id": i, "prompt_len": shape[i][0], "output_len": shape[i][1],
                     "arrival_s": shape[i][2], "excess_s": round(excess[i], 3),
                     **{way: round(diff[way][i], 3) for way in diff}} for i in top]  # fmt: skip
    return out


def decisions(rounds: list[dict], sim_decisions: dict, b: str) -> dict:
    """B's decisions live (in turns, alone) and in each simulator of `sim_decisions`
    ({acceptance: seed logs}): how many, the share choosing each k, and the mean of each
    feature over the decisions choosing that k. Where B chooses unlike its simulated self on
    the same requests, the features it chose on show what it read differently."""
    at = {f: i for i, f in enumerate(DECISION_FIELDS)}
    logs = {way: [row for r in rounds for e in r[way] if e["controller"] == b for row in e["decision_log"]]
            for way in ("turns", "alone")}  # fmt: skip
    logs.update({f"sim_{acc}": [row for log in per for row in log] for acc, per in sim_decisions.items()})
    features = DECISION_FIELDS[3:]
    out: dict = {}
    for way, rows in logs.items():
        ks = sorted({row[at["k"]] for row in rows})
        out[way] = {"decisions": len(rows),
                    "k_share": {str(k): round(sum(row[at["k"]] == k for row in rows) / len(rows), 4) for k in ks},
                    "features_by_k": {str(k): {f: round(statistics.fmean(row[at[f]] for row in rows if row[at["k"]] == k), 4)
                                               for f in features} for k in ks}}  # fmt: skip
    return out


def speed_adjusted_b_over_a(rounds: list[dict], way: str, a: str, b: str) -> dict | None:
    """B / A of mean latency with every episode of `way` moved to one engine speed (one slope
    over all rounds' episodes, `rlspec.calibration.engine_speed`). Near saturation the host's
    speed moves latency by more than controllers differ, and alone it is not shared, so raw
    ratios alone are noisy. The slope also takes out what a controller's own steps cost over
    the profile; in turns, where the host is shared, the step-time ratio shows that part."""
    lat: dict[str, list[float]] = {}
    spd: dict[str, list[float]] = {}
    for r in rounds:
        for e in r[way]:
            lat.setdefault(e["controller"], []).append(e["mean_latency_s"])
            spd.setdefault(e["controller"], []).append(e["step_time_vs_profile"])
    adjusted = speed_adjusted(lat, spd)
    if adjusted is None:
        return None
    return {"b_over_a": round(adjusted.latency_s[b] / adjusted.latency_s[a], 4), "slope": round(adjusted.slope, 3), "r2": round(adjusted.r2, 3),
            "episodes": adjusted.episodes}  # fmt: skip


# What must match for runs to be one A/B: the pair, the point, the turn and the warm-up.
POOL_KEYS = ("profile", "workload", "a", "b", "turn_s", "warm_rounds")


def pool(names: list[str]) -> dict:
    """Several runs of one A/B as one set of rounds: each run's rounds are as exchangeable as
    one run's (both engines serve both controllers in every round), so the pooled summary has
    its standard error over all of them, where a run of 4-6 rounds leaves +-1.5-2.5%. Steps are
    matched on state (`within_state`) and B's steps regressed on what they scheduled
    (`step_regression`) over every run; first meetings stay per run, as each run starts its own
    engines."""
    docs = [json.loads((ROOT / "results" / f"{n}.json").read_text()) for n in names]
    for n, d in zip(names, docs, strict=True):
        d.setdefault("warm_rounds", 1)  # runs from before --warm-rounds warmed once
        for k in POOL_KEYS:
            if d.get(k) != docs[0].get(k):
                raise SystemExit(f"--pool: {n} has {k} = {d.get(k)!r} where {names[0]} has {docs[0].get(k)!r}; "
                                 f"pool runs of one A/B (same {', '.join(POOL_KEYS)})")  # fmt: skip
    rounds = [r for d in docs for r in d["rounds"]]
    a, b = docs[0]["a"], docs[0]["b"]
    lat = "mean_latency_s"
    out = {k: docs[0][k] for k in POOL_KEYS}
    out["pooled_from"] = [{"name": n, "rounds": len(d["rounds"]), "sim_b_over_a": d["sim_b_over_a"],
                           "turns": d["summary"][lat]["turns"], "alone": d["summary"][lat]["alone"]}
                          for n, d in zip(names, docs, strict=True)]  # fmt: skip
    out["sim_b_over_a"] = round(geomean([d["sim_b_over_a"] for d in docs]), 4)
    out["summary"] = summarise(rounds, a, b)
    if all("iteration_fields" in d for d in docs):
        out["within_state"] = within_state(rounds, a, b)
        out["step_regression"] = {b: step_regression(rounds, b)}
        out["first_meetings"] = {n: {**d["first_meetings"], "warm_recorded": "warm_counts" in d}
                                 for n, d in zip(names, docs, strict=True)}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu-tiny-amx")
    ap.add_argument("--workload", default="poisson", choices=[w.name for w in WORKLOADS])
    ap.add_argument("--value", type=float, default=1.47, help="the load knob (rate or rate_scale), as in a sweep")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--pair", default="static:0,batch-table", help="controllers A,B")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warm-rounds", type=int, default=1,
                    help="unmeasured rounds of A beside B and B beside A before the measured ones: a fresh engine "
                         "pays for each token count it meets (`first_meetings`), a controller that chooses k by "
                         "state meets more, and a deployed server has met them (default: %(default)s)")  # fmt: skip
    ap.add_argument("--turn-s", type=float, default=0.0,
                    help="each turn's length in seconds (0: one iteration; default: %(default)s)")  # fmt: skip
    ap.add_argument("--sim-seeds", type=int, default=5)
    ap.add_argument("--wait-quiet", type=float, default=0.3, metavar="CORES")
    ap.add_argument("--out", default=None, metavar="NAME", help="results/NAME.json (default: turns_bias-P)")
    ap.add_argument("--iterations", action="store_true",
                    help="keep every busy iteration of every episode, and sum them by kind (`by_kind`) and by tokens scheduled (`by_band`); B's steps at each k against A's in the same state (`within_state`), and steps of a token count new to their engine (`first_meetings`)")  # fmt: skip
    ap.add_argument("--per-request", action="store_true",
                    help="keep each request's timeline, live and simulated, and compare B - A per request "
                         "(`per_request`)")  # fmt: skip
    ap.add_argument("--decisions", action="store_true",
                    help="keep each decision and its observation, live and simulated (`decisions`)")  # fmt: skip
    ap.add_argument("--summarise", default=None, metavar="NAME",
                    help="recompute results/NAME.json's summary from its rounds (no engine runs)")  # fmt: skip
    ap.add_argument("--pool", default=None, metavar="NAME,NAME,...",
                    help="pool the rounds of these results/NAME.json runs of one A/B into results/OUT.json (no engine "
                         "runs; --out is required)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.pool:
        names = args.pool.split(",")
        if len(names) < 2 or not args.out:
            raise SystemExit(f"--pool: {args.pool!r}; give two or more result names and --out NAME")
        d = pool(names)
        write_result(args.out, d)
        t = d["summary"]["mean_latency_s"]
        print(f"{d['b']} / {d['a']} over {len(t['turns']['per_round'])} rounds: in turns {t['turns']['mean']:.3f} "
              f"+- {t['turns']['rel_se']:.3f}, alone {t['alone']['mean']:.3f} +- {t['alone']['rel_se']:.3f}")
        return 0
    if args.summarise:
        path = ROOT / "results" / f"{args.summarise}.json"
        d = json.loads(path.read_text())
        d["summary"] = summarise(d["rounds"], d["a"], d["b"])
        if "iteration_fields" in d:
            d["by_kind"], d["by_band"] = by_kind(d["rounds"]), by_band(d["rounds"])
            d["step_regression"] = {c: step_regression(d["rounds"], c) for c in (d["a"], d["b"])}
            d.pop("within_band", None)  # matched on the size band alone: superseded by within_state
            d["within_state"] = within_state(d["rounds"], d["a"], d["b"])
            d["first_meetings"] = first_meetings(d["rounds"], d.get("warm_counts"))
        if "sim_decisions" in d:
            d["decisions"] = decisions(d["rounds"], d["sim_decisions"], d["b"])
        if "sim_requests" in d:
            d["per_request"] = per_request(d["rounds"], d["sim_requests"], d["a"], d["b"])
        path.write_text(json.dumps(d, indent=2) + "\n")
        first = d["summary"]["mean_latency_s"]["first_over_second"]
        print(f"rewrote {path.relative_to(ROOT)}: first engine over second {first['mean']:.3f} +- {first['rel_se']:.3f}")
        return 0
    pair = args.pair.split(",")
    if len(pair) != 2 or pair[0] == pair[1]:
        raise SystemExit(f"--pair: {args.pair!r}; give two different controllers, A,B")
    if args.rounds < 1:
        raise SystemExit(f"--rounds: {args.rounds}; at least 1")
    if args.warm_rounds < 1:
        raise SystemExit(f"--warm-rounds: {args.warm_rounds}; at least 1")
    for c in pair:
        make_controller(c)  # refuse an unknown controller before the engines start
    a, b = pair
    if (args.per_request or args.decisions) and not a.startswith("static:"):
        raise SystemExit(f"--per-request, --decisions: A is {a!r}; they match the simulator's acceptance to A's live share, "
                         "so A must be a static k (static:K)")  # fmt: skip
    w = dataclasses.replace(next(w for w in WORKLOADS if w.name == args.workload), values=(args.value,),
                            requests=args.requests)  # fmt: skip
    ctx = open_context(args.profile, w.variant(args.value), engines=2, quiet=args.wait_quiet,
                       sim_seeds=args.sim_seeds)  # fmt: skip
    t0 = time.perf_counter()
    rounds = []
    try:
        sc = ctx.match(w.variant(args.value))
        job = {c: Job(sc, c, sc.seed, keep_iterations=args.iterations, keep_requests=args.per_request,
                   keep_decisions=args.decisions) for c in pair}  # fmt: skip
        logs = args.per_request or args.decisions  # the profile's simulator keeps its logs for them
        sim = {c: ctx.run_sim(sc, c, keep_requests=logs, keep_decisions=logs) for c in pair}

        def serve(order: list[str]) -> list[dict]:
            """One episode per controller of `order`, together in turns (engine i serves order[i])."""
            wait_quiet(args.wait_quiet, ctx.quiet_timeout_s)
            turn_s = args.turn_s if len(order) > 1 else 0.0
            results, others = ctx.together.run([job[c] for c in order], ctx.baselines, turn_s=turn_s)
            return [{"controller": controller_name(c), "mean_latency_s": m.mean_latency_s,
                     "step_time_vs_profile": extra["step_time_vs_profile"], "iterations": extra["iterations"],
                     "other_load_cores": round(others, 3), "drafted": extra["drafted"],
                     "accepted": extra["accepted"],
                     **({"iteration_log": extra["iteration_log"]} if args.iterations else {}),
                     **({"request_log": extra["request_log"]} if args.per_request else {}),
                     **({"decision_log": extra["decision_log"]} if args.decisions else {})}
                    for c, (m, extra) in zip(order, results, strict=True)]  # fmt: skip

        warm_counts: list[set[int]] = [set(), set()]  # token counts each engine met in the warm-up
        for _ in range(args.warm_rounds):  # warm-up: each engine builds both controllers' shapes, unmeasured
            for order in ([a, b], [b, a]):
                for engine, e in enumerate(serve(order)):
                    warm_counts[engine].update(row[ITERATION_AT["scheduled_tokens"]] for row in e.get("iteration_log", ()))
        print("engines warm", flush=True)
        for r in range(args.rounds):
            ab, ba = serve([a, b]), serve([b, a])
            alone = [serve([c])[0] for c in (a, b, b, a)]
            rd = {
                "turns": ab + ba,
                "alone": alone,
                "turns_b_over_a": {k: b_over_a(k, [ab[0], ba[1]], [ab[1], ba[0]]) for k in KEYS},
                "alone_b_over_a": {k: b_over_a(k, [alone[0], alone[3]], alone[1:3]) for k in KEYS},
            }
            rounds.append(rd)
            print(f"round {r}: {b} / {a} mean latency in turns {rd['turns_b_over_a']['mean_latency_s']:.3f}, "
                  f"alone {rd['alone_b_over_a']['mean_latency_s']:.3f}; steps vs profile in turns "
                  f"{rd['turns_b_over_a']['step_time_vs_profile']:.3f}, alone {rd['alone_b_over_a']['step_time_vs_profile']:.3f}",
                  flush=True)  # fmt: skip
        sim_requests, sim_decisions, matched = {}, {}, None
        if args.per_request or args.decisions:
            share = live_share(rounds, controller_name(a))
            acc = matched_acceptance(ctx, sc, a, share)
            matched = {"controller": a, "live_share": round(share, 4), "profile_mean": sc.acceptance.mean,
                       "matched_mean": acc.mean}  # fmt: skip
            print(f"{a} verified {share:.4f} live: acceptance mean {sc.acceptance.mean} -> {acc.mean}", flush=True)
            at_matched = sc.replace(acceptance=acc)
            for name, runs in (("profile", sim), ("matched", {c: ctx.run_sim(at_matched, c, keep_requests=True,
                                                                             keep_decisions=True) for c in pair})):
                sim_requests[name] = {controller_name(c): r["request_logs"] for c, r in runs.items()}
                sim_decisions[name] = runs[b]["decision_logs"]
    finally:
        ctx.close()
    summary = summarise(rounds, controller_name(a), controller_name(b))
    warm = [sorted(c) for c in warm_counts]
    kinds = by_kind(rounds) if args.iterations else None
    bands = by_band(rounds) if args.iterations else None
    regression = {controller_name(c): step_regression(rounds, controller_name(c)) for c in pair} if args.iterations else None
    sim_ratio = sim[b]["mean_latency_s"] / sim[a]["mean_latency_s"]
    write_result(args.out or f"turns_bias-{args.profile}", {
        "profile": args.profile,
        "workload": {"name": w.name, "scenario": str(Path(w.scenario).relative_to(ROOT)), "knob": w.knob,
                     "value": args.value, "requests": args.requests},
        "a": controller_name(a), "b": controller_name(b), "turn_s": args.turn_s, "warm_rounds": args.warm_rounds,
        "sim_seeds": args.sim_seeds,
        "sim": {controller_name(c): {"mean_latency_s": sim[c]["mean_latency_s"], "mean_step_s": sim[c]["mean_step_s"],
                           "mean_k": sim[c].get("mean_k")} for c in pair},
        "sim_b_over_a": round(sim_ratio, 4),
        "wall_s": round(time.perf_counter() - t0, 1),
        "rounds": rounds,
        "summary": summary,
        **({"iteration_fields": list(TURN_ITERATION_FIELDS), "by_kind": kinds, "by_band": bands,
            "step_regression": regression,
            "within_state": within_state(rounds, controller_name(a), controller_name(b)),
            "warm_counts": warm,
            "first_meetings": first_meetings(rounds, warm)} if kinds else {}),
        **({"matched_acceptance": matched} if matched else {}),
        **({"decision_fields": list(DECISION_FIELDS), "sim_decisions": sim_decisions,
            "decisions": decisions(rounds, sim_decisions, controller_name(b))} if args.decisions else {}),
        **({"request_fields": list(REQUEST_FIELDS), "sim_requests": sim_requests,
            "per_request": per_request(rounds, sim_requests, controller_name(a), controller_name(b))}
           if args.per_request else {}),
    })  # fmt: skip
    lat = summary["mean_latency_s"]
    print(f"{b} / {a} mean latency: in turns {lat['turns']['mean']:.3f}, alone {lat['alone']['mean']:.3f}, "
          f"simulated {sim_ratio:.3f}; turns over alone {lat['bias']['mean']:.3f} +- {lat['bias']['rel_se']:.3f}; "
          f"first engine over second {lat['first_over_second']['mean']:.3f} +- {lat['first_over_second']['rel_se']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
