"""How much CPU others took during a measurement (`rlspec.calibration.quiet`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlspec.calibration.quiet import OtherLoad

pytestmark = pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc (Linux)")


def test_excluded_processes_do_not_count_as_others():
    """A busy child counts as another process's load unless it is excluded (as the engines
    a coordinator drives in worker processes are); both windows are the same second."""
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the interpreter is up and spinning
        with OtherLoad() as everyone, OtherLoad(exclude_pids=(child.pid,)) as but_child:
            time.sleep(1.0)
    finally:
        child.kill()
        child.wait()
    assert everyone.cores - but_child.cores > 0.3
    assert but_child.cores >= 0.0


def test_steal_and_busy_time_read_their_own_fields_of_proc_stat(monkeypatch):
    """The CPU line's fields are user nice system idle iowait irq softirq steal guest
    guest_nice: steal is the eighth, and busy time counts it but not idle or iowait."""
    import io

    from rlspec.calibration import quiet

    line = "cpu  100 200 300 4000 500 60 70 800 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\n"
    monkeypatch.setattr(quiet, "open", lambda *a, **k: io.StringIO(line), raising=False)
    hz = quiet._HZ
    assert quiet.steal_seconds() == pytest.approx(800 / hz)
    assert quiet._busy_seconds() == pytest.approx((100 + 200 + 300 + 60 + 70 + 800) / hz)
    monkeypatch.setattr(quiet, "open", lambda *a, **k: io.StringIO("cpu  1 2 3 4 5 6 7\n"), raising=False)
    assert quiet.steal_seconds() is None  # a kernel too old to count steal
