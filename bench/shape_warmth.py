"""What a live CPU engine's first meeting with a token count costs, and why live sweeps warm up.

    python bench/shape_warmth.py --profile cpu-tiny-amx --wait-quiet 0.3
    python bench/shape_warmth.py --profile cpu-tiny-amx --order static:0,static:3,static:3,static:0

vLLM's CPU GEMMs (oneDNN, `vllm/model_executor/layers/utils.py`) build a primitive for each
token count M the first time they meet it and keep the last 32 per weight shape (oneDNN keeps
1,024 more). One fresh engine serves one sweep point's requests once per entry of `--order`,
one episode after another, as a fidelity sweep serves a point's controllers. Every iteration
is recorded with its token count, so it is *new* (no earlier iteration of this engine had that
many tokens) or *seen*, and its measured time is set beside what the profile predicts for the
same iteration. The simulator serves the same requests (its mean over `--sim-seeds`) for each
controller once. Writes results/NAME.json: per episode the mean latency live and simulated and
the step time over the profile's, per kind of iteration (decode or prefill, new or seen) the
count and the seconds measured and predicted; the same per draft length (`by_k`), which shows
where the profile misprices one controller's iterations against another's; and per whether
the count was among the last 32 distinct counts the engine's GEMMs met (`by_cache`: *recent*,
*evicted* or *new*), which shows whether a controller that varies k meets more counts than
the handler's cache holds; and per whether the step's k is the last step's (`by_switch`:
*same k*, *k up*, *k down*), which shows what a controller that varies k pays for switching.
`--iterations` also keeps every busy iteration (`iteration_fields`), for residuals by any shape.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import ROOT, controller_name, write_result

sys.path.insert(0, str(ROOT))

from fidelity import WORKLOADS  # noqa: E402

import rlspec.engines.vllm  # noqa: E402,F401  (Intel OpenMP before vLLM)
from rlspec.calibration.matching import ITERATION_FIELDS as SHAPE_FIELDS  # noqa: E402
from rlspec.calibration.matching import Tally, iteration_shape, tallied_episode  # noqa: E402
from rlspec.calibration.quiet import OtherLoad, wait_quiet  # noqa: E402
from rlspec.calibration.sweep import SweepContext  # noqa: E402
from rlspec.control.registry import make_controller  # noqa: E402
from rlspec.perf.profile import load_profile  # noqa: E402

ITERATION_FIELDS = (*SHAPE_FIELDS, "cache", "measured_s", "predicted_s")
GEMM_CACHE = 32  # primitives vLLM's CPU GEMM handler keeps per weight (`create_onednn_mm(weight.t(), 32)`)


@dataclass
class Warmth:
    """What one engine has met, over all its episodes: every token count, and the last
    GEMM_CACHE distinct counts its GEMMs were called with (target and drafter passes alike),
    least recent first: a count met before but not among those may have been evicted."""

    seen: set[int] = field(default_factory=set)
    recent: OrderedDict[int, None] = field(default_factory=OrderedDict)

    def kind(self, m: int) -> str:
        return "recent" if m in self.recent else "evicted" if m in self.seen else "new"

    def meet(self, m: int) -> None:
        self.seen.add(m)
        self.recent[m] = None
        self.recent.move_to_end(m)
        if len(self.recent) > GEMM_CACHE:
            self.recent.popitem(last=False)


def _rows() -> defaultdict[str, list[float]]:
    return defaultdict(lambda: [0, 0.0, 0.0])  # iterations, seconds measured, seconds predicted


class StepLog(Tally):
    """A Tally that sorts each busy iteration by kind, marking the token counts this engine had
    not met before (its `Warmth` spans the engine's episodes), and sums per kind the time the live
    backend measured and the time its profile predicts for the same iteration."""

    def __init__(self, inner: Any, warmth: Warmth, keep: bool = False) -> None:
        super().__init__(inner)
        self.warmth = warmth
        self.kinds = _rows()
        self.by_k = _rows()  # the same, by k instead of warmth
        self.by_cache = _rows()  # by whether the count is among the last GEMM_CACHE
        self.by_switch = _rows()  # by the step's k against the last busy step's
        self.keep = keep
        self.iterations_kept: list[tuple] = []  # ITERATION_FIELDS per busy iteration (with keep)
        self._k_before = 0  # k of the last busy iteration: the length of the drafts verified now

    def step(self) -> Any:
        measured, predicted = self.inner.measured_busy_s, self.inner.predicted_busy_s
        s = super().step()
        if s.num_scheduled_tokens:
            m = s.num_scheduled_tokens
            phase = "prefill" if s.num_prefill_tokens else "decode"
            cache = self.warmth.kind(m)
            kind = f"{phase}, {'new' if cache == 'new' else 'seen'}"
            self.warmth.meet(m)  # the target's pass and the drafter's first
            if s.k > 1 and s.num_decode_reqs and s.num_drafted:
                self.warmth.meet(s.num_decode_reqs)  # the drafter's chained single-token passes
            kb = self._k_before
            switch = "same k" if s.k == kb else "k up" if s.k > kb else "k down"
            dt, dp = self.inner.measured_busy_s - measured, self.inner.predicted_busy_s - predicted
            for row in (self.kinds[kind], self.by_k[f"{phase}, k={s.k}"], self.by_cache[f"{phase}, {cache}"],
                        self.by_switch[f"{phase}, {switch}"]):  # fmt: skip
                row[0] += 1
                row[1] += dt
                row[2] += dp
            if self.keep:
                self.iterations_kept.append((*iteration_shape(self.inner, s, kb), cache, round(dt, 6), round(dp, 6)))
            self._k_before = s.k
        return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu-tiny-amx")
    ap.add_argument("--workload", default="azure-code", choices=[w.name for w in WORKLOADS])
    ap.add_argument("--value", type=float, default=0.38, help="the load knob (rate or rate_scale), as in a sweep")
    ap.add_argument("--requests", type=int, default=120)
    ap.add_argument("--order", default="static:3,static:0,static:0,static:3",
                    help="controllers served one after another on one fresh engine")  # fmt: skip
    ap.add_argument("--sim-seeds", type=int, default=5)
    ap.add_argument("--wait-quiet", type=float, default=None, metavar="CORES")
    ap.add_argument("--iterations", action="store_true", help="keep every busy iteration in the results")
    ap.add_argument("--out", default=None, metavar="NAME", help="results/NAME.json (default: shape_warmth-P)")
    args = ap.parse_args(argv)
    order = args.order.split(",")
    for c in dict.fromkeys(order):
        make_controller(c)  # refuse an unknown controller before the engine starts
    w = dataclasses.replace(next(w for w in WORKLOADS if w.name == args.workload), values=(args.value,),
                            requests=args.requests)  # fmt: skip
    profile_path = ROOT / f"rlspec/perf/profiles/{args.profile}.yaml"
    prof = load_profile(profile_path)
    ctx = SweepContext.open(w.variant(args.value), profile_path, sim_seeds=args.sim_seeds)
    sc = ctx.match(w.variant(args.value))
    requests = sc.requests(sc.seed)
    warmth = Warmth()
    episodes = []
    t0 = time.perf_counter()
    try:
        sim = {c: ctx.run_sim(sc, c) for c in dict.fromkeys(order)}
        for i, c in enumerate(order):
            if args.wait_quiet is not None:
                wait_quiet(args.wait_quiet, 120.0)
            log = StepLog(ctx.live, warmth, keep=args.iterations)
            with OtherLoad() as load:
                m, extra = tallied_episode(log, make_controller(c), requests, sc)
            kinds, by_k, by_cache, by_switch = (
                {k: {"iterations": int(n), "measured_s": round(t, 3), "predicted_s": round(p, 3),
                     "vs_profile": round(t / p, 3)} for k, (n, t, p) in sorted(rows.items())}
                for rows in (log.kinds, log.by_k, log.by_cache, log.by_switch))  # fmt: skip
            episodes.append({"episode": i, "controller": controller_name(c), "live_mean_latency_s": m.mean_latency_s,
                             "sim_mean_latency_s": sim[c]["mean_latency_s"],
                             "step_time_vs_profile": extra["step_time_vs_profile"], "iterations": extra["iterations"],
                             "other_load_cores": round(load.cores, 3), "kinds": kinds, "by_k": by_k,
                             "by_cache": by_cache, "by_switch": by_switch,
                             **({"iterations_kept": log.iterations_kept} if args.iterations else {})})  # fmt: skip
            print(f"episode {i} {c:>9}: mean latency live {m.mean_latency_s:.3f} s, sim {sim[c]['mean_latency_s']:.3f} s; "
                  f"steps {extra['step_time_vs_profile']:.3f}x the profile; "
                  + ", ".join(f"{k} {v['iterations']} at {v['vs_profile']:.2f}x"
                              for k, v in (kinds | by_k | by_cache | by_switch).items()),
                  flush=True)  # fmt: skip
    finally:
        ctx.close()
    write_result(args.out or f"shape_warmth-{args.profile}", {
        "profile": prof.name,
        "host": dataclasses.asdict(ctx.host) if ctx.host else None,
        "workload": {"name": w.name, "scenario": str(Path(w.scenario).relative_to(ROOT)), "knob": w.knob, "value": args.value, "requests": args.requests},
        "order": [controller_name(c) for c in order],
        "sim_seeds": args.sim_seeds,
        "engine": {"block_size": ctx.block_size, "num_kv_blocks": ctx.num_kv_blocks},
        "wall_s": round(time.perf_counter() - t0, 1),
        **({"iteration_fields": list(ITERATION_FIELDS)} if args.iterations else {}),
        "episodes": episodes,
    })  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
