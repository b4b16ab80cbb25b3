"""`rlspec serve` without vLLM: config transport, controller loading, the fallback rules,
the metrics and the CLI's refusals (which must all happen before vLLM would start)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlspec.config import ConfigError
from rlspec.control.action import OFFLOAD, Action
from rlspec.control.base import Controller
from rlspec.control.policy import PolicyLoadError
from rlspec.engines.snapshot import DrafterState, Snapshot
from rlspec.serving import cli
from rlspec.serving.config import ENV_VAR, ServeConfig, build_controller, control_context
from rlspec.serving.metrics import ServingMetrics
from rlspec.serving.runtime import SafeDecider

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "checkpoints" / "h100-ppo" / "policy.npz"


@pytest.fixture
def model_dirs(tmp_path):
    """Folders that pass the CLI's model-folder check (no weights needed here)."""
    dirs = []
    for name in ("target", "draft"):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text("{}")
        dirs.append(str(d))
    return dirs


def _snap(**kw) -> Snapshot:
    base = dict(
        clock_s=0.0, step_time_s=0.01, num_running=4, num_waiting=0, kv_used_blocks=4,
        kv_total_blocks=100, num_scheduled_tokens=12, num_prefill_tokens=0, num_decode_reqs=4,
        k=2, num_drafted=8, num_accepted=5, num_emitted=9, num_arrivals=0, num_completions=0,
        num_preemptions=0, num_draft_reqs=4, request_seconds=0.04,
        drafter=DrafterState.RESIDENT, accepted_per_pos=(3, 2), drafted_per_pos=(4, 4),
    )  # fmt: skip
    base.update(kw)
    return Snapshot(**base)


def _cfg(**kw) -> ServeConfig:
    return ServeConfig(**{"controller": "static:2", "draft_model": "/d", **kw})


class _Scripted(Controller):
    name = "scripted"

    def __init__(self, script):
        self.script = list(script)

    def decide(self, obs):
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, float):
            import time

            time.sleep(item)
            return Action(k=3)
        return item


def _decider(script, **kw):
    cfg = _cfg(**kw)
    ctx = control_context(cfg, max_num_seqs=16, block_size=128)
    metrics = ServingMetrics(cfg.controller, cfg.k_max, prometheus=False)
    return SafeDecider(_Scripted(script), ctx, cfg, metrics), metrics


# ---------------------------------------------------------------------- config
def test_config_roundtrips_through_the_environment():
    cfg = _cfg(k_max=3, safe_k=1, decision_interval=4, kv_holdback=True)
    back = ServeConfig.from_env({ENV_VAR: cfg.to_env()})
    assert back == cfg


@pytest.mark.parametrize(
    "env, match",
    [
        ({}, "RLSPEC_SERVE_CONFIG is not set"),
        ({ENV_VAR: "{nope"}, "not valid JSON"),
        ({ENV_VAR: '{"controller": "goodput", "draft_model": "/d", "bogus": 1}'}, "bogus"),
        ({ENV_VAR: '{"controller": "goodput", "draft_model": "/d", "safe_k": 9}'}, "safe_k"),
        ({ENV_VAR: '{"controller": "goodput", "draft_model": "/d", "k_max": "4"}'}, "k_max"),
    ],
)
def test_config_from_env_is_validated(env, match):
    with pytest.raises(ConfigError, match=match):
        ServeConfig.from_env(env)


def test_build_controller_by_name_policy_and_import_path():
    assert build_controller("static:3").name == "static:3"
    assert build_controller("goodput").name == "goodput"
    assert build_controller(f"policy:{POLICY}").k_max == 4
    ctrl = build_controller("tests.serving.controllers:RaiseEvery10")
    assert ctrl.name == "raise-every-10"
    with pytest.raises(ConfigError, match="not an rlspec Controller"):
        build_controller("tests.serving.controllers:NotAController")
    with pytest.raises(ConfigError, match="cannot import"):
        build_controller("tests.serving.controllers:Missing")
    with pytest.raises(ConfigError, match="unknown"):
        build_controller("no-such-controller")


# ---------------------------------------------------------------------- fallback rules
def test_decider_applies_actions_and_counts_fallbacks():
    script = [Action(k=2), RuntimeError("boom"), Action(k=9), 0.002, OFFLOAD, "not an action"]
    d, m = _decider(script, safe_k=1, decision_budget_us=500.0)
    d.observe(_snap())
    got = [d.decide() for _ in range(len(script))]
    assert [g.action for g in got] == [Action(k=2), Action(k=1), Action(k=1), Action(k=1),
                                       OFFLOAD, Action(k=1)]  # fmt: skip
    assert [g.fallback for g in got] == [None, "exception", "invalid_action", "budget", None,
                                         "invalid_action"]  # fmt: skip
    assert m.decisions == 6
    assert m.fallbacks == {"exception": 1, "invalid_action": 2, "budget": 1}
    assert m.actions["k=1"] == 4 and m.actions["offload"] == 1


def test_decider_without_offload_runs_offload_as_k0():
    d, m = _decider([OFFLOAD], allow_offload=False)
    assert d.decide().action == Action(k=0)


def test_decider_is_due_every_interval_and_first():
    d, _ = _decider([Action(k=1)] * 3, decision_interval=3)
    assert d.due  # the first decision comes at once
    d.decide()
    for _ in range(3):
        assert not d.due
        d.observe(_snap())
    assert d.due


def test_decider_runs_the_shipped_policy_on_features():
    cfg = ServeConfig(controller=f"policy:{POLICY}", draft_model="/d")
    ctx = control_context(cfg, max_num_seqs=32, block_size=128)
    m = ServingMetrics(cfg.controller, 4, prometheus=False)
    d = SafeDecider(build_controller(cfg.controller), ctx, cfg, m)
    for i in range(20):
        d.observe(_snap(clock_s=0.01 * i, num_arrivals=i % 3))
        dec = d.decide()
        assert 0 <= dec.action.k <= 4
    assert m.decisions == 20 and d.tracker.vector().shape == (17,)


def test_metrics_export_to_prometheus():
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry()
    m = ServingMetrics("static:2", 4, registry=reg)
    m.decision(1e-5, "k=2", None)
    m.decision(2e-3, "k=0", "budget")
    m.state(2, False)
    m.transfer("offload", 0.01)
    m.step(5)
    text = generate_latest(reg).decode()
    assert 'rlspec_controller_fallbacks_total{reason="budget"} 1.0' in text
    assert "rlspec_controller_decisions_total 2.0" in text
    assert "rlspec_controller_k 2.0" in text
    assert 'rlspec_drafter_transfers_total{kind="offload"} 1.0' in text
    assert "rlspec_scheduler_steps_total 5.0" in text
    assert 'rlspec_controller_info{controller="static:2"} 1.0' in text
    m.profile_host(["CPU lacks avx512_bf16", "dtype float32, profile's bfloat16"])
    assert "rlspec_profile_host_differences 2.0" in generate_latest(reg).decode()
    m.profile_host(None)
    assert "rlspec_profile_host_differences -1.0" in generate_latest(reg).decode()


# ---------------------------------------------------------------------- CLI
def _args(model_dirs, *extra):
    p = cli.make_parser()
    ours, theirs = cli.split_argv(
        p, ["--model", model_dirs[0], "--draft-model", model_dirs[1], *extra]
    )
    args = p.parse_args(ours)
    args.vllm_args = theirs + args.vllm_args
    return args


def test_cli_builds_the_vllm_command_line(model_dirs):
    args = _args(model_dirs, "--policy", str(POLICY), "--dtype", "float32", "--port", "8123",
                 "--max-num-seqs=32", "--decision-interval", "4")  # fmt: skip
    argv, env, cfg = cli.build_launch(args)
    assert cfg.k_max == 4 and cfg.decision_interval == 4
    assert argv[argv.index("--port") + 1] == "8123"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--scheduler-cls") + 1] == "rlspec.serving.hook.ServingScheduler"
    import json

    spec = json.loads(argv[argv.index("--speculative-config") + 1])
    assert spec["method"] == "draft_model" and spec["num_speculative_tokens"] == 4
    assert spec["num_speculative_tokens_per_batch_size"] == [[1, 32, 4]]
    assert "--no-async-scheduling" in argv and "--no-enable-prefix-caching" in argv
    assert "--enforce-eager" in argv  # offload allowed: eager unless the user says otherwise
    assert argv[-3:] == ["--dtype", "float32", "--max-num-seqs=32"]
    assert ServeConfig.from_env(env) == cfg


def test_split_argv_keeps_vllm_options_in_order():
    p = cli.make_parser()
    ours, theirs = cli.split_argv(
        p, ["--model", "m", "--dtype", "float32", "--no-offload", "--max-num-seqs", "8",
            "--k-max=3", "--", "--port", "1"],
    )  # fmt: skip
    assert ours == ["--model", "m", "--no-offload", "--k-max=3"]
    assert theirs == ["--dtype", "float32", "--max-num-seqs", "8", "--port", "1"]


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--controller", "static:5"], "K exceeds"),
        (["--policy", str(POLICY), "--k-max", "3"], "k_max=4"),
        (["--controller", "goodput", "--safe-k", "7"], "safe_k"),
        (["--controller", "goodput", "--speculative-config", "{}"], "speculative-config"),
        (["--controller", "goodput", "--async-scheduling"], "async"),
        (["--controller", "goodput", "--enable-prefix-caching"], "prefix caching"),
        (["--controller", "goodput", "--profile", "no-such-profile"], "unknown profile"),
        (["--controller", "goodput", "-pp", "2"], "pipeline parallelism"),
        (["--controller", "goodput", "--data-parallel-size=2"], "data parallelism"),
    ],
)
def test_cli_refuses_bad_options_before_starting(model_dirs, extra, match, capsys):
    assert cli.run(_args(model_dirs, *extra)) == 2
    err = capsys.readouterr().err
    assert "rlspec serve: error:" in err and match in err


def test_cli_prefix_caching_allowed_without_offload(model_dirs):
    args = _args(model_dirs, "--controller", "goodput", "--no-offload", "--enable-prefix-caching")
    argv, _, cfg = cli.build_launch(args)
    assert not cfg.allow_offload and "--no-enable-prefix-caching" not in argv


@pytest.mark.parametrize("kind", ["missing", "corrupt", "wrong-schema"])
def test_bad_policy_file_exits_nonzero_with_the_reason(model_dirs, tmp_path, kind):
    """A process-level check: `python -m rlspec.serving.cli` exits 2 before vLLM starts."""
    path = tmp_path / "policy.npz"
    if kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 definitely not a zip archive")
        reason = "not a readable frozen-policy"
    elif kind == "wrong-schema":
        with np.load(POLICY, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        import json

        meta = json.loads(str(arrays["meta"][()]))
        meta["schema"]["version"] = 999
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(path, **arrays)
        reason = "feature schema"
    else:
        reason = "no such frozen-policy file"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "rlspec.serving.cli", "--model", model_dirs[0],
         "--draft-model", model_dirs[1], "--policy", str(path), "--port", "1"],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "rlspec serve: error:" in proc.stderr and reason in proc.stderr
    assert "vLLM" not in proc.stdout  # nothing was started


def test_dry_run_prints_the_command(model_dirs, capsys):
    args = _args(model_dirs, "--controller", "static:0", "--dry-run")
    assert cli.run(args) == 0
    out = capsys.readouterr().out
    assert "rlspec.serving.launch" in out and ENV_VAR in out


def test_policy_errors_are_policy_load_errors():
    with pytest.raises(PolicyLoadError):
        build_controller("policy:/nonexistent/policy.npz")


def test_add_arguments_fits_a_subcommand_parser():
    top = argparse.ArgumentParser(prog="rlspec")
    sub = top.add_subparsers(dest="command")
    cli.add_arguments(sub.add_parser("serve"))
    args = top.parse_args(["serve", "--model", "m", "--draft-model", "d", "--controller",
                           "goodput", "--", "--dtype", "float32"])  # fmt: skip
    assert args.vllm_args == ["--dtype", "float32"] and args.controller == "goodput"


def test_cli_validation_does_not_import_vllm(model_dirs):
    """The CLI process validates without importing vLLM (it starts the server by exec)."""
    code = (
        "import sys\n"
        "from rlspec.serving import cli\n"
        f"args = cli.make_parser().parse_args(['--model', {model_dirs[0]!r}, '--draft-model', "
        f"{model_dirs[1]!r}, '--policy', {str(POLICY)!r}])\n"
        "cli.build_launch(args)\n"
        "assert 'vllm' not in sys.modules, 'vllm was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
