"""The extraction benchmark's memory measure: every process the run starts is counted."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from benchmarks.bench_features import memory_mib, peak_memory

HOLD_200_MIB = "import sys; block = bytes(range(256)) * 819200; print('held', flush=True); sys.stdin.read()"


def test_the_memory_of_child_processes_counts_and_its_peak_outlives_them():
    before = memory_mib(psutil.Process())
    with peak_memory(every_seconds=0.05) as memory:
        child = subprocess.Popen([sys.executable, "-c", HOLD_200_MIB], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert child.stdout.readline() == b"held\n"
        holding = memory_mib(psutil.Process())
        deadline = time.monotonic() + 10  # the child holds its memory until the sampler has seen it
        while memory["peak_mib"] - before < 180 and time.monotonic() < deadline:
            time.sleep(0.05)
        child.communicate(b"")
    after = memory_mib(psutil.Process())
    assert holding - before > 180  # 200 MiB written, so resident (a zeroed buffer may not be)
    assert memory["peak_mib"] - before > 180 > after - before  # the child has ended; its peak is kept
