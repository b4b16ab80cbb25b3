"""Deploying a controller into vLLM serving: `rlspec serve` (DESIGN section 7).

* `cli`       - `rlspec serve`: validate, then exec vLLM's OpenAI server (`add_arguments`, `run`)
* `launch`    - the server process: Intel OpenMP, Prometheus multiprocess dir, vLLM's entry point
* `config`    - `ServeConfig`, carried to the engine core in `RLSPEC_SERVE_CONFIG`; controller loading
* `hook`      - `ServingScheduler`, the `scheduler_cls` (snapshots, decisions, k, offload)
* `runtime`   - `SafeDecider`: features + controller + fallback rules (no vLLM)
* `metrics`   - the `rlspec_*` Prometheus metrics
* `worker_ops`- drafter offload / reload on every worker via `collective_rpc`
* `loadgen`   - server processes and `openai`-client load for tests and benchmarks

Importing this package imports neither vLLM nor prometheus_client; `hook` and
`worker_ops` need vLLM. Notes and measurements: notes/serving.md.
"""
