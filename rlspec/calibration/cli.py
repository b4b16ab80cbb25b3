"""`rlspec calibrate`: fit a profile to a live engine.

    rlspec calibrate --backend vllm --model DIR --draft-model DIR [--out PROFILE.yaml]

Measures step times over batch sizes, draft lengths (0..k_max and the drafter
offloaded), prefill chunks and context lengths, and acceptance by draft position, on the
live vLLM engine; fits the step-time coefficients; measures drafter offload/reload; writes
a `kind: fitted` profile that `--profile` and a scenario's `profile:` accept; prints the
fit's error per term and the measured acceptance. `--acceptance-workload SCENARIO` also
measures acceptance on that workload's own (held-out) requests, which its matched simulator
then uses: acceptance depends on the data. `--save-measurements` keeps the raw iterations,
`--from-measurements` refits them without an engine (with `--acceptance-workload`, only
those workloads run on it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlspec.config import ConfigError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="vllm", choices=["vllm"],
                   help="the live engine to measure (only vllm)")  # fmt: skip
    p.add_argument("--model", help="target model folder (HF format)")
    p.add_argument("--draft-model", help="draft model folder (HF format)")
    p.add_argument("--out", help="profile YAML to write (default: ./<name>.yaml)")
    p.add_argument("--name", default=None, help="profile name (default: the --out file stem)")
    p.add_argument("--k-max", type=int, default=4)
    p.add_argument("--max-num-seqs", type=int, default=16)
    p.add_argument("--max-num-batched-tokens", type=int, default=2048)
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.3,
                   help="vLLM's memory share (on CPU: of host memory)")  # fmt: skip
    p.add_argument("--kv-cache-memory-bytes", type=int, default=None)
    p.add_argument("--block-size", type=int, default=None)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a small plan (smoke test, ~1 min)")
    p.add_argument("--repeats", type=int, default=None, help="runs of every probe (default 2)")
    p.add_argument("--concentration", type=float, default=20.0,
                   help="Beta concentration of per-request acceptance for the fitted model")  # fmt: skip
    p.add_argument("--wait-quiet", type=float, default=None, metavar="CORES",
                   help="on a shared machine: wait for other processes to use fewer CPU cores "
                   "than this before each probe, and re-run probes they disturbed")  # fmt: skip
    p.add_argument("--retries", type=int, default=2, help="re-runs of a disturbed probe (with --wait-quiet)")
    p.add_argument("--quiet-timeout", type=float, default=60.0, metavar="S",
                   help="longest wait for a quiet CPU before each probe (with --wait-quiet)")  # fmt: skip
    p.add_argument("--acceptance-workload", action="append", default=[], metavar="SCENARIO",
                   help="also measure acceptance on this scenario's workload (held-out requests at "
                   "k=k_max); a matched simulator of that scenario uses it. Repeatable; with "
                   "--from-measurements only these run on the engine")  # fmt: skip
    p.add_argument("--acceptance-requests", type=int, default=80, metavar="N",
                   help="held-out requests per --acceptance-workload; a trace serves its lengths again "
                        "(new tokens) past its own rows. Short outputs need several hundred: Azure code's "
                        "80 gave 236 verify steps")  # fmt: skip
    p.add_argument("--save-measurements", default=None, metavar="JSON",
                   help="also write the raw measured iterations here")  # fmt: skip
    p.add_argument("--from-measurements", default=None, metavar="JSON",
                   help="refit saved measurements instead of running the engine")  # fmt: skip
    p.add_argument("--host-bandwidth", type=float, default=None, metavar="BYTES_S",
                   help="host copy bandwidth for the drafter transfer (default: measured now; "
                   "give the original profile's to refit saved measurements to the same costs)")  # fmt: skip
    p.add_argument("--json", default=None, help="write the fit report here")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from rlspec.calibration.calibrate import (
        fit_measurement,
        format_report,
        held_out_requests,
        measure_live_engine,
    )
    from rlspec.calibration.live import LiveMeasurement
    from rlspec.calibration.profile_writer import write_profile
    from rlspec.scenario import load_scenario

    if not args.model or not args.draft_model:
        raise ConfigError("calibrate: --model and --draft-model are required")
    for flag, d in (("--model", args.model), ("--draft-model", args.draft_model)):
        if not (Path(d) / "config.json").is_file():
            raise ConfigError(f"calibrate: {flag} {d} is not a model folder (no config.json)")
    out = Path(args.out) if args.out else Path(f"{args.name or 'calibrated'}.yaml")
    name = args.name or out.stem
    if args.acceptance_requests < 1:
        raise ConfigError(f"calibrate: --acceptance-requests {args.acceptance_requests} must be >= 1")
    workloads = [
        (sc.name, held_out_requests(sc, args.acceptance_requests))
        for sc in (load_scenario(w) for w in args.acceptance_workload)
    ]
    engine = dict(
        k_max=args.k_max,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        kv_cache_memory_bytes=args.kv_cache_memory_bytes,
        block_size=args.block_size,
        dtype=args.dtype,
        seed=args.seed,
        workloads=workloads,
    )
    if args.from_measurements:
        measurement = LiveMeasurement.from_dict(json.loads(Path(args.from_measurements).read_text()))
        if workloads:  # measure what the saved file lacks, replacing its entries of the same name
            found = measure_live_engine(args.model, args.draft_model, grid=False, **engine)
            names = {w.workload for w in found}
            measurement.workload_acceptance = [
                w for w in measurement.workload_acceptance if w.workload not in names
            ] + found
    else:
        measurement = measure_live_engine(
            args.model,
            args.draft_model,
            quick=args.quick,
            repeats=args.repeats,
            progress=not args.no_progress,
            quiet_threshold=args.wait_quiet,
            quiet_timeout_s=args.quiet_timeout,
            retries=args.retries,
            **engine,
        )
    if args.save_measurements:
        path = Path(args.save_measurements)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(measurement.to_dict()) + "\n")
    res = fit_measurement(
        measurement,
        args.model,
        args.draft_model,
        name=name,
        concentration=args.concentration,
        host_bandwidth=args.host_bandwidth,
    )
    header = (
        f"{name}: fitted by `rlspec calibrate` on the live vLLM engine\n"
        f"target {args.model}, drafter {args.draft_model}. Coefficients: see `fitted` and sources.fitted."
    )
    write_profile(out, res.profile, header=header)
    print(format_report(res))
    print(f"\nwrote {out} (profile {name!r}, kind fitted)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res.summary(), indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rlspec calibrate", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
