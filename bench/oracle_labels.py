"""How much of an oracle label is signal: the rollout costs of every action at one state,
under several draws of the future's luck.

    python bench/oracle_labels.py [--states 12] [--draws 6]

DAgger distils the lookahead oracle's action costs (rlspec/agents/distill.py). A feature-only
policy can learn `E[cost of a | state]`, so what matters is how well one label estimates the
differences between actions. At `--states` states on goodput's trajectory through each of the
sim-to-real sweep's eight points (the cpu-tiny simulator, Poisson 0.5-2 req/s and the Azure
code trace x0.5-x4), the simulator's luck is redrawn `--draws` times
(`Simulator.redraw_luck`) and every action rolled out, two ways:

- `shared`: all actions' rollouts meet the same luck (what the oracle does: the simulator
  keys acceptance by request and output position);
- `independent`: each action's rollout gets its own draw, so the rollouts of two actions
  agree on nothing but the arrivals (the most an unsynchronised random stream can lose).

Per point and way: the median over states and actions of |mean| / std of the cost difference
to goodput's action across draws (signal-to-noise; `noise_floor` is what pure noise gives with
this many draws), how often two draws agree on the cheapest action, and the difference's
standard deviation over the state's mean cost. Writes results/oracle_labels.json.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import numpy as np
from common import ROOT, write_result
from sim_to_real import WORKLOADS

sys.path.insert(0, str(ROOT))

from rlspec.control.action import Action  # noqa: E402
from rlspec.control.registry import make_controller  # noqa: E402
from rlspec.engines.factory import make_backend  # noqa: E402
from rlspec.evaluate import control_context  # noqa: E402
from rlspec.oracle import LookaheadOracle, OracleConfig  # noqa: E402

MODES = ("shared", "independent")


def goodput_states(scenario, count: int) -> tuple[list, object]:
    """`count` (backend, tracker, goodput's action index) copies, evenly spread over the
    decisions of goodput's episode taken while requests decode, and the control context."""
    backend = make_backend(scenario, "sim", seed=scenario.seed)
    ctx = control_context(scenario, backend)
    goodput = make_controller("goodput")
    goodput.reset(ctx)
    tracker = ctx.tracker()
    tracker.update(backend.start(scenario.requests()))
    states = []
    while not backend.finished:
        action = goodput.decide(tracker)
        if tracker.last.num_decode_reqs:  # luck only matters where drafts get verified
            states.append((copy.deepcopy(backend), copy.deepcopy(tracker), action.index(ctx.k_max)))
        backend.set_action(action)
        tracker.begin_interval()
        for _ in range(ctx.decision_interval):
            tracker.update(backend.step())
            if backend.finished:
                break
    pick = np.linspace(0, len(states) - 1, min(count, len(states))).round().astype(int)
    return [states[i] for i in pick], ctx


def costs_under_draws(backend, tracker, ctx, draws: int, mode: str, seed: int) -> np.ndarray:
    """(draws, actions) rollout request-seconds at one state."""
    actions = [Action.from_index(i, ctx.k_max) for i in range(ctx.k_max + 2)]
    out = np.empty((draws, len(actions)))
    for d in range(draws):
        shared = copy.deepcopy(backend)
        shared.redraw_luck(seed + d)
        for i, action in enumerate(actions):
            engine = shared
            if mode == "independent":
                engine = copy.deepcopy(backend)
                engine.redraw_luck(seed + 1_000 * (i + 1) + d)
            oracle = LookaheadOracle(engine, OracleConfig())
            oracle.reset(ctx)
            out[d, i] = oracle.rollout(action, tracker)
    return out


def label_statistics(costs: list[np.ndarray], reference: list[int]) -> dict:
    snr, agree, spread = [], [], []
    for c, ref in zip(costs, reference, strict=True):
        diff = np.delete(c - c[:, [ref]], ref, axis=1)
        sd = diff.std(axis=0, ddof=1)
        snr.extend(np.abs(diff.mean(axis=0)) / np.maximum(sd, 1e-12))
        best = c.argmin(axis=1)
        pairs = [(i, j) for i in range(len(best)) for j in range(i + 1, len(best))]
        agree.append(np.mean([best[i] == best[j] for i, j in pairs]))
        spread.append(float(np.median(sd)) / float(c.mean()))
    return {"snr_median": float(np.median(snr)), "argmin_agreement": float(np.mean(agree)),
            "diff_std_over_cost": float(np.median(spread))}  # fmt: skip


def noise_floor(draws: int, seed: int = 0) -> float:
    """The median |mean| / std of `draws` samples of zero-mean noise."""
    z = np.random.default_rng(seed).standard_normal((200_000, draws))
    return float(np.median(np.abs(z.mean(axis=1)) / z.std(axis=1, ddof=1)))


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--states", type=int, default=12, help="states per point (default 12)")
    ap.add_argument("--draws", type=int, default=6, help="luck draws per state (default 6)")
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args(argv)
    if args.states < 1 or args.draws < 2:
        ap.error("--states must be >= 1 and --draws >= 2")
    t0 = time.time()
    points = [(w, v) for w in WORKLOADS for v in w.values]
    rows = []
    bar = tqdm(total=len(points) * args.states * len(MODES), desc="oracle labels", unit="state")
    for w, value in points:
        scenario = w.variant(value)
        states, ctx = goodput_states(scenario, args.states)
        row = {"workload": w.name, "knob": w.knob, "value": value, "states": len(states)}
        for mode in MODES:
            costs = []
            for s, (backend, tracker, _) in enumerate(states):
                costs.append(costs_under_draws(backend, tracker, ctx, args.draws, mode,
                                               args.seed + 100_000 * s))  # fmt: skip
                bar.update()
            row[mode] = label_statistics(costs, [ref for _, _, ref in states])
        rows.append(row)
        print(f"{w.name} {w.knob}={value:g}: signal-to-noise shared {row['shared']['snr_median']:.2f}"
              f" / independent {row['independent']['snr_median']:.2f}, argmin agreement "
              f"{row['shared']['argmin_agreement']:.2f} / {row['independent']['argmin_agreement']:.2f}")  # fmt: skip
    bar.close()
    summary = {mode: {key: statistics.fmean(r[mode][key] for r in rows)
                      for key in rows[0][mode]} for mode in MODES}  # fmt: skip
    floor = noise_floor(args.draws)
    print(f"mean over points: signal-to-noise shared {summary['shared']['snr_median']:.2f}, "
          f"independent {summary['independent']['snr_median']:.2f} (pure noise {floor:.2f})")
    write_result("oracle_labels", {
        "profile": "cpu-tiny", "oracle": vars(OracleConfig()), "states_per_point": args.states,
        "draws": args.draws, "seed": args.seed, "noise_floor": floor, "summary": summary,
        "points": rows, "elapsed_s": round(time.time() - t0, 1),
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
