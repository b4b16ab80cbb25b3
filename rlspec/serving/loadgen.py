"""Start a server process and drive it with the `openai` client (tests and bench/serve_bench.py).

* `ServerProcess`: a server subprocess (`rlspec serve` or plain vLLM) on a free loopback
  port with its log in a file; `wait_ready()` polls `/health`; `metrics()` parses
  `/metrics`; `stop()` sends SIGTERM and checks that the engine-core and worker processes
  are gone too (no orphans).
* `closed_loop(...)`: a fixed list of prompts at a fixed concurrency (greedy, the
  losslessness check).
* `open_loop(...)`: requests sent at given arrival times (Poisson in the bench), streamed,
  with TTFT, TPOT and end-to-end latency per request.

Needs `openai` and `psutil` (installed with vLLM's server dependencies); imports vLLM never.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value} (comments and non-numbers dropped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


def server_env(repo_root: str | Path | None = None) -> dict[str, str]:
    """The environment for a server: Intel OpenMP preloaded (for plain vLLM servers too)."""
    from rlspec.engines.vllm._preload import find_libiomp

    env = dict(os.environ)
    if repo_root is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root), env.get("PYTHONPATH")) if p)
    lib = find_libiomp()
    if lib is not None and "libiomp5" not in env.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = f"{lib}:{env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else str(lib)
    return env


def rlspec_serve_cmd(model: str, draft: str, controller: list[str], *extra: str) -> list[str]:
    """`python -m rlspec.serving.cli ...` with `{PORT}` as the port placeholder."""
    return [sys.executable, "-m", "rlspec.serving.cli", "--model", model, "--draft-model", draft,
            *controller, "--port", "{PORT}", *extra]  # fmt: skip


def plain_vllm_cmd(model: str, *extra: str) -> list[str]:
    """vLLM's own OpenAI server, no rlspec, no drafter (unless `extra` adds one)."""
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
            "--host", "127.0.0.1", "--port", "{PORT}", *extra]  # fmt: skip


class ServerProcess:
    """One server subprocess; see the module docstring."""

    def __init__(self, cmd: list[str], log: str | Path, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:  # fmt: skip
        self.port = free_port()
        self.log = Path(log)
        self.cmd = [c.replace("{PORT}", str(self.port)) for c in cmd]
        self._fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=env or server_env(), cwd=cwd
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.ready_s: float | None = None
        self._t0 = time.monotonic()

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def wait_ready(self, timeout_s: float = 300.0) -> float:
        deadline = self._t0 + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with code {self.proc.returncode} before it was ready:\n"
                    f"{self.tail()}"
                )
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        self.ready_s = time.monotonic() - self._t0
                        return self.ready_s
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server not ready after {timeout_s:.0f}s:\n{self.tail()}")

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.base + "/metrics", timeout=10) as r:
            return parse_metrics(r.read().decode())

    def stop(self, timeout_s: float = 90.0) -> tuple[int, list[Any]]:
        """SIGTERM; returns (exit code, child processes still alive afterwards, killed)."""
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        _, alive = psutil.wait_procs(children, timeout=30)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self._fh.close()
        return rc, alive

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self._fh.closed:
            self.stop()


# ---------------------------------------------------------------------- clients
def _client(base: str) -> Any:
    import openai

    return openai.AsyncOpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=600)


def closed_loop(
    base: str, prompts: list[tuple[str, int]], concurrency: int = 16
) -> tuple[list[str], list[int]]:
    """Every (prompt, max_tokens) greedily at `concurrency`; (texts, completion tokens).
    Raises if any response is not HTTP 200."""

    async def main() -> tuple[list[str], list[int]]:
        client = _client(base)
        model = (await client.models.list()).data[0].id
        sem = asyncio.Semaphore(concurrency)

        async def one(prompt: str, max_tokens: int) -> tuple[str, int]:
            async with sem:
                raw = await client.completions.with_raw_response.create(
                    model=model, prompt=prompt, max_tokens=max_tokens, temperature=0.0
                )
                if raw.http_response.status_code != 200:
                    raise RuntimeError(f"HTTP {raw.http_response.status_code}")
                r = raw.parse()
                return r.choices[0].text, int(r.usage.completion_tokens)

        try:
            res = await asyncio.gather(*(one(p, m) for p, m in prompts))
        finally:
            await client.close()
        return [t for t, _ in res], [n for _, n in res]

    return asyncio.run(main())


@dataclass
class RequestTiming:
    arrival_s: float  # scheduled send time, from the start of the run
    ttft_s: float  # first streamed text
    e2e_s: float  # last byte
    output_tokens: int
    ok: bool

    @property
    def tpot_s(self) -> float:
        if self.output_tokens <= 1:
            return math.nan
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


def open_loop(
    base: str, requests: list[tuple[float, str, int]], ignore_eos: bool = True
) -> tuple[list[RequestTiming], float]:
    """Send (arrival_s, prompt, max_tokens) at their arrival times, streamed, greedy.
    Returns the per-request timings and the wall time from the first send to the last byte."""

    async def main() -> tuple[list[RequestTiming], float]:
        client = _client(base)
        model = (await client.models.list()).data[0].id
        t0 = time.perf_counter()

        async def one(arrival: float, prompt: str, max_tokens: int) -> RequestTiming:
            await asyncio.sleep(max(0.0, t0 + arrival - time.perf_counter()))
            start = time.perf_counter()
            ttft = math.nan
            tokens = 0
            ok = True
            try:
                stream = await client.completions.create(
                    model=model, prompt=prompt, max_tokens=max_tokens, temperature=0.0,
                    stream=True, stream_options={"include_usage": True},
                    extra_body={"ignore_eos": ignore_eos},
                )  # fmt: skip
                async for chunk in stream:
                    if chunk.choices and chunk.choices[0].text and math.isnan(ttft):
                        ttft = time.perf_counter() - start
                    if chunk.usage is not None:
                        tokens = int(chunk.usage.completion_tokens)
            except Exception:  # noqa: BLE001 - counted as a failed request
                ok = False
            end = time.perf_counter()
            return RequestTiming(arrival, ttft, end - start, tokens, ok)

        try:
            res = await asyncio.gather(*(one(*r) for r in requests))
        finally:
            await client.close()
        return list(res), time.perf_counter() - t0

    return asyncio.run(main())


def summarize(timings: list[RequestTiming], wall_s: float) -> dict[str, float]:
    """Mean / p50 / p99 of TTFT, TPOT and end-to-end latency; output tokens/s; failures."""
    import numpy as np

    ok = [t for t in timings if t.ok]

    def stats(name: str, xs: list[float]) -> dict[str, float]:
        a = np.array([x for x in xs if not math.isnan(x)], dtype=float)
        if not a.size:
            return {
                f"{name}_mean_s": math.nan,
                f"{name}_p50_s": math.nan,
                f"{name}_p99_s": math.nan,
            }
        return {f"{name}_mean_s": float(a.mean()), f"{name}_p50_s": float(np.percentile(a, 50)),
                f"{name}_p99_s": float(np.percentile(a, 99))}  # fmt: skip

    out: dict[str, float] = {"requests": len(timings), "failed": len(timings) - len(ok)}
    out.update(stats("ttft", [t.ttft_s for t in ok]))
    out.update(stats("tpot", [t.tpot_s for t in ok]))
    out.update(stats("e2e", [t.e2e_s for t in ok]))
    tokens = sum(t.output_tokens for t in ok)
    out["output_tokens"] = tokens
    out["wall_s"] = wall_s
    out["throughput_tok_s"] = tokens / wall_s if wall_s > 0 else math.nan
    out["throughput_req_s"] = len(ok) / wall_s if wall_s > 0 else math.nan
    return out


__all__ = [
    "RequestTiming",
    "ServerProcess",
    "closed_loop",
    "free_port",
    "open_loop",
    "parse_metrics",
    "plain_vllm_cmd",
    "rlspec_serve_cmd",
    "server_env",
    "summarize",
]
