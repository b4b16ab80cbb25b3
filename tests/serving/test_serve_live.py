"""`rlspec serve` for real: vLLM's OpenAI server on the tiny pair, driven by the `openai`
client at concurrency 16, compared token for token with a plain vLLM server of the target.

Three servers start, one at a time (~30-45 s each on 2 cores): plain vLLM (target only),
rlspec with the shipped frozen policy, rlspec with a controller that raises on every 10th
call, stalls past the budget on every 7th and offloads / reloads the drafter. float32 on
all of them: greedy outputs are batch-invariant there (notes/vllm.md, trap 5).
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

import rlspec.engines.vllm  # noqa: F401  (Intel OpenMP first; see notes/vllm.md)

pytest.importorskip("vllm")
pytest.importorskip("openai")
pytest.importorskip("psutil")

from rlspec.serving.loadgen import (  # noqa: E402
    ServerProcess,
    closed_loop,
    plain_vllm_cmd,
    rlspec_serve_cmd,
    server_env,
)

pytestmark = pytest.mark.vllm

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "checkpoints" / "h100-ppo" / "policy.npz"
N_REQUESTS = 300
N_FAULT_REQUESTS = 120
CONCURRENCY = 16
# Engine options shared by all servers (small and deterministic).
ENGINE_ARGS = [
    "--dtype", "float32", "--enforce-eager", "--max-model-len", "256",
    "--max-num-seqs", "32", "--kv-cache-memory-bytes", str(64 << 20), "--seed", "0",
    "--disable-uvicorn-access-log", "--uvicorn-log-level", "warning",
]  # fmt: skip


def _prompts(n: int, seed: int = 0) -> list[tuple[str, int]]:
    """Short prompts of the tiny tokenizer's words (`t4`..`t1023`), max_tokens 16-32."""
    rng = random.Random(seed)
    return [
        (" ".join(f"t{rng.randrange(4, 1024)}" for _ in range(rng.randrange(3, 40))),
         rng.randrange(16, 33))
        for _ in range(n)
    ]  # fmt: skip


def _start(cmd: list[str], log: Path) -> ServerProcess:
    srv = ServerProcess(cmd, log, env=server_env(ROOT), cwd=ROOT)
    try:
        srv.wait_ready(timeout_s=300)
    except BaseException:
        srv.stop()
        raise
    return srv


def _stop(srv: ServerProcess) -> int:
    rc, alive = srv.stop()
    assert not alive, f"processes left after SIGTERM: {alive}"
    return rc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from rlspec.engines.tiny_models import TEST_SPEC, build_from_spec

    out = tmp_path_factory.mktemp("serve_pair")
    target, draft = build_from_spec(out, TEST_SPEC)
    return str(target), str(draft), out


@pytest.fixture(scope="module")
def reference(tiny):
    """Outputs of a plain vLLM server of the target alone (no drafter, no rlspec)."""
    target, _, out = tiny
    prompts = _prompts(N_REQUESTS)
    srv = _start(plain_vllm_cmd(target, *ENGINE_ARGS), out / "plain.log")
    try:
        texts, ntoks = closed_loop(srv.base, prompts, CONCURRENCY)
    finally:
        _stop(srv)
    assert all(n > 0 for n in ntoks)
    return prompts, texts


def _profile_of_another_host(out: Path) -> Path:
    """The shipped AVX2 profile, recorded as fitted on a CPU that differs from this one."""
    import dataclasses

    from rlspec.calibration.profile_writer import write_profile
    from rlspec.perf.host import this_host
    from rlspec.perf.profile import load_profile

    here = this_host("float32")
    other = dataclasses.replace(here, isa=() if "amx_bf16" in here.isa else (*here.isa, "amx_bf16"))
    return write_profile(out / "other-host.yaml", dataclasses.replace(load_profile("cpu-tiny-avx2"), host=other))


def test_policy_server_is_lossless_under_load_and_exports_metrics(tiny, reference):
    target, draft, out = tiny
    prompts, want = reference
    cmd = rlspec_serve_cmd(target, draft, ["--policy", str(POLICY)], "--log-interval-s", "5",
                           *ENGINE_ARGS)  # fmt: skip
    srv = _start(cmd, out / "policy.log")
    try:
        before = srv.metrics()
        assert before.get(f'rlspec_controller_info{{controller="policy:{POLICY}"}}') == 1.0
        t0 = time.perf_counter()
        got, _ = closed_loop(srv.base, prompts, CONCURRENCY)  # raises unless all are HTTP 200
        wall = time.perf_counter() - t0
        after = srv.metrics()
    finally:
        rc = _stop(srv)
    assert rc in (0, -signal.SIGTERM), srv.tail()
    mismatched = [i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert not mismatched, (
        f"{len(mismatched)} outputs differ from plain vLLM, e.g. #{mismatched[0]}"
    )
    for name in ("rlspec_controller_decisions_total", "rlspec_scheduler_steps_total",
                 "rlspec_controller_decision_seconds_count"):  # fmt: skip
        assert after.get(name, 0.0) > before.get(name, 0.0), name
    # vLLM's own metrics are in the same /metrics, and the drafter ran.
    drafted = f'vllm:spec_decode_num_draft_tokens_total{{engine="0",model_name="{target}"}}'
    assert after.get(drafted, 0.0) > 0
    actions = sum(v for k, v in after.items() if k.startswith("rlspec_controller_actions_total"))
    assert actions == after["rlspec_controller_decisions_total"]
    assert "rlspec_controller_k" in after and "rlspec_drafter_offloaded" in after
    assert after["rlspec_profile_host_differences"] == -1  # the default profile records no host
    log = srv.log.read_text(errors="replace")
    # The launcher's line; the engine core's own summary lines are not reliably flushed into
    # the captured log by shutdown, and the /metrics counters above already prove it decided.
    assert "rlspec serve: controller policy:" in log
    print(f"\n{N_REQUESTS} requests in {wall:.1f}s; "
          f"{after['rlspec_controller_decisions_total']:.0f} decisions")  # fmt: skip


def test_failing_controller_falls_back_and_serving_continues(tiny, reference):
    target, draft, out = tiny
    prompts, want = reference
    prompts, want = prompts[:N_FAULT_REQUESTS], want[:N_FAULT_REQUESTS]
    cmd = rlspec_serve_cmd(
        target, draft, ["--controller", "tests.serving.controllers:RaiseEvery10"],
        "--decision-interval", "4", "--safe-k", "1", "--kv-holdback",
        "--profile", str(_profile_of_another_host(out)), *ENGINE_ARGS,
    )  # fmt: skip
    srv = _start(cmd, out / "faulty.log")
    try:
        got, _ = closed_loop(srv.base, prompts, CONCURRENCY)  # all HTTP 200
        m = srv.metrics()
    finally:
        _stop(srv)
    assert got == want  # lossless through offloads, reloads, KV refills and fallbacks
    decisions = m["rlspec_controller_decisions_total"]
    assert decisions >= 20
    # Every 10th call raised and each one was counted; every 7th stalled past the budget.
    assert m['rlspec_controller_fallbacks_total{reason="exception"}'] == decisions // 10
    assert m['rlspec_controller_fallbacks_total{reason="budget"}'] >= 1
    assert m['rlspec_controller_fallbacks_total{reason="internal"}'] == 0
    assert m['rlspec_drafter_transfers_total{kind="offload"}'] >= 1
    assert m['rlspec_drafter_transfers_total{kind="reload"}'] >= 1
    assert m["rlspec_drafter_transfer_errors_total"] == 0
    # Served against a profile fitted on another kind of CPU: it went on, and said so.
    assert m["rlspec_profile_host_differences"] >= 1
    # The engine core logs each fallback ("fell back to k=1 (exception: ...)"), but its lines
    # are not reliably flushed into the captured log before shutdown on a loaded machine, so
    # the counters above are what this test relies on.
    # Transfers are proven by the counters above; their log lines come from the worker
    # process and may not be flushed into the captured log by shutdown.
