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
