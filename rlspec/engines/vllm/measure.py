"""Side-by-side throughput of a model pair on the live engine: SD vs no SD.

    python -m rlspec.engines.vllm.measure --pair DIR [--batches 1 16 --ks 2 4 ...]

For each batch size B, B identical-length requests (random prompt ids) are submitted at
once and run to completion, on an engine without a drafter (baseline), and on an engine
with the drafter at each k (k=0 = resident drafter, no drafts). Reports tokens/s, the
ratio to the baseline, mean acceptance (accepted / drafted) and mean step time. Each
(engine, B, k) is run `--repeats` times after one warm-up run; the best run counts (the
machine may be shared: interference only ever slows a run down).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rlspec.engines.vllm.config import VLLMBackendConfig
from rlspec.engines.vllm.engine import build_engine, shutdown_engine


def _run_batch(handle, batch: int, k: int | None, prompt_len: int, output_len: int, seed: int):
    import numpy as np
    from vllm import SamplingParams

    rng = np.random.default_rng(seed)
    sp = SamplingParams(max_tokens=output_len, ignore_eos=True, temperature=0.0)
    vocab = handle.vocab_size
    for i in range(batch):
        ids = rng.integers(4, vocab, prompt_len).tolist()
        handle.engine.add_request(f"m{seed}-{i}", {"prompt_token_ids": ids}, sp)
    if k is not None:
        handle.scheduler.set_k(k)
    handle.collector.drain()
    steps = 0
    t0 = time.perf_counter()
    while handle.engine.has_unfinished_requests():
        handle.engine.step()
        steps += 1
    elapsed = time.perf_counter() - t0
    st = handle.collector.drain()
    acc = st.num_accepted_tokens / st.num_draft_tokens if st.num_draft_tokens else None
    return batch * output_len / elapsed, acc, elapsed / steps


def measure(
    target: str,
    draft: str,
    batches: list[int],
    ks: list[int],
    *,
    prompt_len: int = 64,
    output_len: int = 128,
    repeats: int = 3,
    **cfg_kwargs,
) -> dict:
    """Rows per (engine, batch, k). On the SD engine, k="off" is the drafter offloaded
    (never runs): a no-SD baseline measured interleaved with the SD runs on the same engine,
    so a shared machine's interference hits both alike; `vs_off` is relative to it,
    `vs_no_sd` to the separate engine built without a drafter."""
    from rlspec.engines.vllm.offload import DrafterOffloader

    results: dict = {
        "target": target,
        "draft": draft,
        "prompt_len": prompt_len,
        "output_len": output_len,
        "repeats": repeats,
        "rows": [],
    }
    k_max = max(max(ks), 1)
    base_cfg = dict(
        max_num_seqs=max(batches),
        max_model_len=prompt_len + output_len + 64,
        k_max=k_max,
        **cfg_kwargs,
    )
    for label, draft_dir in (("no-sd", None), ("sd", draft)):
        cfg = VLLMBackendConfig(model=target, draft_model=draft_dir, **base_cfg)
        h = build_engine(cfg)
        results[f"startup_s_{label}"] = round(h.startup_s, 2)
        off = DrafterOffloader(h.runner, h.engine.vllm_config) if draft_dir else None
        settings: list = [None] if draft_dir is None else [*ks, "off"]
        try:
            for b in batches:
                runs: dict = {k: [] for k in settings}
                for rep in range(-1, repeats):  # rep -1: warm-up, not recorded
                    for k in settings:
                        if off is not None:
                            (off.offload if k == "off" else off.reload)()
                        r = _run_batch(
                            h,
                            b,
                            0 if k == "off" else k,
                            prompt_len,
                            output_len,
                            seed=rep if rep >= 0 else 999,
                        )
                        if rep >= 0:
                            runs[k].append(r)
                for k in settings:
                    accs = [r[1] for r in runs[k] if r[1] is not None]
                    results["rows"].append(
                        {
                            "engine": label,
                            "batch": b,
                            "k": k,
                            "tok_s": round(max(r[0] for r in runs[k]), 1),
                            "acceptance": round(statistics.mean(accs), 3) if accs else None,
                            "step_ms": round(1000 * min(r[2] for r in runs[k]), 2),
                        }
                    )
        finally:
            shutdown_engine(h.engine)
    base = {r["batch"]: r["tok_s"] for r in results["rows"] if r["engine"] == "no-sd"}
    off_base = {r["batch"]: r["tok_s"] for r in results["rows"] if r["k"] == "off"}
    for r in results["rows"]:
        r["vs_no_sd"] = round(r["tok_s"] / base[r["batch"]], 3)
        if r["engine"] == "sd":
            r["vs_off"] = round(r["tok_s"] / off_base[r["batch"]], 3)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rlspec.engines.vllm.measure")
    ap.add_argument("--pair", required=True, help="folder with target/ and draft/")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--ks", type=int, nargs="+", default=[0, 2, 4])
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--block-size", type=int, default=None)
    ap.add_argument("--kv-cache-memory-bytes", type=int, default=512 << 20)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    pair = Path(args.pair)
    res = measure(
        str(pair / "target"),
        str(pair / "draft"),
        args.batches,
        args.ks,
        prompt_len=args.prompt_len,
        output_len=args.output_len,
        repeats=args.repeats,
        block_size=args.block_size,
        kv_cache_memory_bytes=args.kv_cache_memory_bytes,
    )
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
