"""Timing on a shared machine: how much CPU other processes took while we measured.

Live step times are wall-clock; on a machine shared with other jobs a step measured while
another process computes is slower than the engine is. `OtherLoad` measures, over a
window, the CPU cores used by every process except this one (from /proc/stat minus this
process's own CPU time), so a measurement can be repeated when it was disturbed, and
`wait_quiet` waits (bounded) for the others to go idle before one starts. Linux only;
elsewhere both report no load.
"""

from __future__ import annotations

import os
import time

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_ticks() -> list[int] | None:
    """/proc/stat's CPU line, in clock ticks summed over CPUs: user nice system idle iowait
    irq softirq steal [guest guest_nice: already in user]. None off Linux."""
    try:
        with open("/proc/stat") as fh:
            parts = fh.readline().split()
    except OSError:
        return None
    return [int(x) for x in parts[1:]]


def _busy_seconds() -> float | None:
    v = _cpu_ticks()
    if v is None:
        return None
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)
    return busy / _HZ


def steal_seconds() -> float | None:
    """CPU-seconds the hypervisor has run something else on this VM's CPUs (steal time),
    summed over CPUs; None where the kernel does not count it."""
    v = _cpu_ticks()
    return None if v is None or len(v) < 8 else v[7] / _HZ


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _process_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (0 where /proc is unavailable)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _HZ


class OtherLoad:
    """Context manager: `.cores` = mean CPU cores other processes used inside the block
    (other than this one and `exclude_pids`, e.g. the engines it drives in workers)."""

    def __init__(self, exclude_pids: tuple[int, ...] = ()) -> None:
        self.cores = 0.0
        self.wall_s = 0.0
        self._pids = tuple(exclude_pids)

    def _ours(self) -> float:
        return _own_seconds() + sum(_process_seconds(p) for p in self._pids)

    def __enter__(self) -> OtherLoad:
        self._b0, self._o0, self._t0 = _busy_seconds(), self._ours(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        b1, o1, t1 = _busy_seconds(), self._ours(), time.monotonic()
        self.wall_s = t1 - self._t0
        if self._b0 is None or b1 is None or self.wall_s <= 0:
            self.cores = 0.0
            return
        self.cores = max((b1 - self._b0) - (o1 - self._o0), 0.0) / self.wall_s


def other_load(window_s: float = 1.0) -> float:
    with OtherLoad() as m:
        time.sleep(window_s)
    return m.cores


def wait_quiet(threshold: float = 0.3, timeout_s: float = 60.0, window_s: float = 1.0) -> float:
    """Wait until other processes use less than `threshold` cores (or `timeout_s` passes);
    returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if other_load(window_s) < threshold:
            break
    return time.monotonic() - t0
