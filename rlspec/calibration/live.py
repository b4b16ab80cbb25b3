"""Run a measurement plan on the live vLLM backend (imports vLLM when called).

Each probe is an episode of `VLLMBackend`: the k schedule is applied through the same
`set_action` every controller uses, so the measured iterations are the ones the backend
really runs (drafter resident or offloaded, KV hold-back, OpenMP preload). The one thing
a Snapshot does not carry, the cached tokens each iteration attends to, is read off the
scheduler's output by wrapping its `_plan` summary on this engine instance.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from rlspec.calibration.acceptance import PositionCounts, WorkloadAcceptance
from rlspec.calibration.plan import OFF, MeasurementPlan, Probe, StepRecord
from rlspec.config import from_dict
from rlspec.control.action import OFFLOAD, Action
from rlspec.engines.snapshot import DrafterState
from rlspec.perf.host import HostFingerprint
from rlspec.perf.profile import KVPool


@dataclass
class EngineFacts:
    """What the live engine looked like (for the profile and the matched simulator)."""

    block_size: int
    num_gpu_blocks: int  # vLLM's pool incl. its null block
    holdback_blocks: int  # blocks the resident drafter's weights take
    kv_bytes_per_block: int
    dtype: str
    startup_s: float
    k_max: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int

    @property
    def kv_pool(self) -> KVPool:
        """The engine's KV pool as a profile records it."""
        return KVPool(self.block_size, self.num_gpu_blocks, self.kv_bytes_per_block)

    @property
    def usable_blocks(self) -> int:
        """Blocks requests can use with the drafter offloaded (= sim `num_kv_blocks`)."""
        return self.kv_pool.usable_blocks

    @property
    def pool_bytes(self) -> int:
        """The KV pool's size (`kv_cache_memory_bytes` that rebuilds this pool)."""
        return self.kv_pool.memory_bytes


@dataclass
class LiveMeasurement:
    records: list[StepRecord]
    transfers: list[tuple[str, float]]  # (offload|reload, seconds)
    facts: EngineFacts
    wall_s: float
    plan: list[str] = field(default_factory=list)  # probe names in run order
    other_load: list[float] = field(default_factory=list)  # CPU cores others used, per probe
    reruns: int = 0  # probes run again because others used the CPU meanwhile
    workload_acceptance: list[WorkloadAcceptance] = field(default_factory=list)
    host: HostFingerprint | None = None  # the machine measured (None: saved before it was recorded)

    def to_dict(self) -> dict[str, Any]:
        return {
            "facts": dataclasses.asdict(self.facts),
            "wall_s": self.wall_s,
            "transfers": [list(t) for t in self.transfers],
            "plan": self.plan,
            "other_load": self.other_load,
            "reruns": self.reruns,
            "records": [dataclasses.astuple(r) for r in self.records],
            "record_fields": [f.name for f in dataclasses.fields(StepRecord)],
            "workload_acceptance": [w.to_dict() for w in self.workload_acceptance],
            "host": dataclasses.asdict(self.host) if self.host else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LiveMeasurement:
        names = d["record_fields"]
        recs = []
        for row in d["records"]:
            kw = dict(zip(names, row, strict=True))
            kw["drafted_per_pos"] = tuple(kw["drafted_per_pos"])
            kw["accepted_per_pos"] = tuple(kw["accepted_per_pos"])
            recs.append(StepRecord(**kw))
        return cls(
            records=recs,
            transfers=[(str(k), float(s)) for k, s in d["transfers"]],
            facts=EngineFacts(**d["facts"]),
            wall_s=float(d["wall_s"]),
            plan=list(d.get("plan", [])),
            other_load=list(d.get("other_load", [])),
            reruns=int(d.get("reruns", 0)),
            workload_acceptance=[WorkloadAcceptance.from_dict(w) for w in d.get("workload_acceptance", [])],
            host=from_dict(HostFingerprint, d["host"], "measurements.host") if d.get("host") else None,
        )


def engine_facts(backend: Any) -> EngineFacts:
    h = backend.engine_handle
    cfg = backend.config
    pool = h.scheduler.kv_cache_manager.block_pool
    kv_cfg = h.scheduler.kv_cache_config
    total = sum(int(t.size) for t in kv_cfg.kv_cache_tensors)
    return EngineFacts(
        block_size=int(h.engine.vllm_config.cache_config.block_size),
        num_gpu_blocks=int(pool.num_gpu_blocks),
        holdback_blocks=int(backend.kv_holdback_blocks),
        kv_bytes_per_block=int(total // max(1, kv_cfg.num_blocks)),
        dtype=str(h.engine.model_config.dtype).replace("torch.", ""),
        startup_s=float(h.startup_s),
        k_max=int(cfg.k_max),
        max_num_seqs=int(cfg.max_num_seqs),
        max_num_batched_tokens=int(cfg.max_num_batched_tokens),
        max_model_len=int(cfg.max_model_len),
    )


def run_probe(backend: Any, probe: Probe, repeat: int, max_steps: int = 20_000) -> list[StepRecord]:
    """One probe episode; returns its iterations."""
    sched = backend.engine_handle.scheduler
    backend.start(probe.requests())
    first = probe.schedule[0][0]
    decode_step = -1  # -1: prefill phase (grid); counts decode steps after it
    records: list[StepRecord] = []
    for i in range(max_steps):
        if backend.finished:
            break
        want = first if (probe.stream or decode_step < 0) else probe.action_at(decode_step)
        if want is None:
            break
        backend.set_action(OFFLOAD if want == OFF else Action(k=want))
        drafter_before = backend.drafter_time_s
        s = backend.step()
        if s.num_scheduled_tokens == 0 and s.drafter not in (
            DrafterState.OFFLOADING,
            DrafterState.LOADING,
        ):
            continue  # idle: the clock jumped to the next arrival
        resident = s.drafter in (DrafterState.RESIDENT, DrafterState.LOADING)
        plan = sched.rlspec_last_plan
        records.append(
            StepRecord(
                probe=probe.name,
                repeat=repeat,
                index=i,
                decode_reqs=s.num_decode_reqs,
                k=s.k,
                spec_tokens=max(s.num_scheduled_tokens - s.num_prefill_tokens - s.num_decode_reqs, 0),
                prefill_tokens=s.num_prefill_tokens,
                context=plan.num_context_tokens if s.num_scheduled_tokens else 0,
                scheduled_tokens=s.num_scheduled_tokens,
                resident=resident,
                transition=s.drafter in (DrafterState.OFFLOADING, DrafterState.LOADING),
                step_time_s=s.step_time_s,
                drafter_time_s=backend.drafter_time_s - drafter_before,
                prefill_pairs=plan.num_prefill_pairs if s.num_scheduled_tokens else 0,
                drafted_per_pos=tuple(s.drafted_per_pos),
                accepted_per_pos=tuple(s.accepted_per_pos),
            )
        )
        if not probe.stream:
            if decode_step >= 0:
                decode_step += 1
            elif s.num_prefill_tokens == 0 and s.num_decode_reqs == probe.batch:
                decode_step = 1  # this step was the first decode step of the schedule
    return records


def measure_workload_acceptance(
    backend: Any,
    workload: str,
    requests: list[Any],
    k: int,
    prompt_seed: int,
    max_steps: int = 100_000,
) -> WorkloadAcceptance:
    """Run `requests` to completion at static k on an open VLLMBackend, their prompt tokens
    drawn from `prompt_seed`, counting the drafts verified by position."""
    seed, backend.prompt_seed = backend.prompt_seed, prompt_seed
    try:
        backend.start(requests)
        action = Action(k=k)
        pairs = []
        for _ in range(max_steps):
            if backend.finished:
                break
            backend.set_action(action)
            s = backend.step()
            pairs.append((s.drafted_per_pos, s.accepted_per_pos))
        else:
            raise RuntimeError(f"acceptance of {workload!r}: not finished after {max_steps} steps")
    finally:
        backend.prompt_seed = seed
    counts = PositionCounts.total(pairs)
    if not sum(counts.drafted):
        raise RuntimeError(f"acceptance of {workload!r}: no drafts were verified (k={k})")
    per_request: tuple = ()
    if backend.request_drafts:  # the engine reports each request's steps
        missing = [r.request_id for r in requests if r.request_id not in backend.request_drafts]
        if missing:
            raise RuntimeError(f"acceptance of {workload!r}: vLLM reported no verify steps for "
                               f"{len(missing)} requests (first ids {missing[:5]})")  # fmt: skip
        per_request = tuple(backend.request_drafts[r.request_id] for r in requests)
    return WorkloadAcceptance(workload, tuple((r.prompt_len, r.output_len) for r in requests), k, counts, per_request)


def measure_live(
    backend: Any,
    plan: MeasurementPlan,
    progress: bool = True,
    quiet_threshold: float | None = None,
    quiet_timeout_s: float = 60.0,
    retries: int = 2,
) -> LiveMeasurement:
    """Run every probe of `plan` (repeats interleaved) on an open VLLMBackend.

    With `quiet_threshold` (CPU cores), each probe waits up to `quiet_timeout_s` for other
    processes to go below it, and a probe during which they used more is run again (up to
    `retries` times; the last try is kept either way, with its load recorded).
    """
    from tqdm import tqdm

    from rlspec.calibration.quiet import OtherLoad, wait_quiet

    t0 = time.perf_counter()
    backend.open()
    backend.sync_drafter_timing(True)
    facts = engine_facts(backend)
    n_transfers = len(backend.transfers)
    order = plan.order()
    records: list[StepRecord] = []
    loads: list[float] = []
    reruns = 0
    bar = tqdm(order, desc="calibrate", unit="probe", disable=not progress, dynamic_ncols=True)
    for rep, probe in bar:
        bar.set_postfix_str(f"{probe.name} r{rep}", refresh=False)
        for attempt in range(retries + 1):
            if quiet_threshold is not None:
                wait_quiet(quiet_threshold, quiet_timeout_s)
            with OtherLoad() as load:
                got = run_probe(backend, probe, rep)
            if quiet_threshold is None or load.cores <= quiet_threshold or attempt == retries:
                break
            reruns += 1
        records += got
        loads.append(load.cores)
    bar.close()
    backend.start([])  # reload the drafter if the last probe left it offloaded
    backend.sync_drafter_timing(False)
    transfers = [(t.kind, float(t.seconds)) for t in backend.transfers[n_transfers:]]
    return LiveMeasurement(
        records=records,
        transfers=transfers,
        facts=facts,
        wall_s=time.perf_counter() - t0,
        plan=[f"{p.name}@{r}" for r, p in order],
        other_load=loads,
        reruns=reruns,
        host=backend.host_fingerprint(),
    )
