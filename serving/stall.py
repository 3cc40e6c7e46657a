"""Event-loop stall watchdog: what the server was doing when its event loop stopped answering.

Every request of a process goes through one event loop. When something holds it
(a C call that keeps the GIL, a long synchronous step, a process the machine
stopped), every request in flight waits, timeouts included, and nothing in the
loop can say why. The watchdog arms :func:`faulthandler.dump_traceback_later`
from the loop at every tick: its timer runs in C, without the GIL, so when the
loop has not ticked for ``threshold_s`` it writes every thread's stack to
standard error, where the process's log goes. When the loop runs again it logs
one WARNING with the stall's length and what the process did meanwhile: CPU
seconds (near zero: the process waited, on a lock or on the machine) and major
page faults (memory pressure reading code back from disk). Every tick's lag
goes to the ``ranker_event_loop_lag_seconds`` histogram.

Why by hand: asyncio's debug mode reports slow callbacks only after they return
and slows every callback; faulthandler is the standard library's way to see
inside a stopped process.

Example::

    watchdog = LoopStallWatchdog(threshold_s=2.0)
    watchdog.start()   # in the running loop, e.g. an app's startup handler; watchdog.stop() at shutdown
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import resource
import sys
import time
from typing import TextIO

from prometheus_client import Histogram

from serving.config import STALL_TICK_S

logger = logging.getLogger(__name__)

LOOP_LAG = Histogram(
    "ranker_event_loop_lag_seconds",
    "How late the event loop ran a timer: time every request in flight waited",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class LoopStallWatchdog:
    """Dumps every thread's stack when the running event loop stops for ``threshold_s`` (see the module docstring).

    ``tick_s`` is how often the loop re-arms the timer; a lag is measured once per tick.
    """

    def __init__(self, threshold_s: float, tick_s: float = STALL_TICK_S, stream: TextIO | None = None) -> None:
        if threshold_s <= tick_s:
            raise ValueError(f"the stall threshold ({threshold_s} s) must exceed the tick ({tick_s} s)")
        self.threshold_s, self.tick_s = threshold_s, tick_s
        self.stream = stream or sys.stderr
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Watch the running loop (the task is kept here: the loop holds only a weak reference)."""
        self._task = asyncio.get_running_loop().create_task(self.run(), name="stall-watchdog")

    def stop(self) -> None:
        """Stop watching; a dump not yet written is cancelled now, not when the task next runs."""
        faulthandler.cancel_dump_traceback_later()
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        """Tick until cancelled; the pending dump is cancelled with it."""
        try:
            while True:
                faulthandler.dump_traceback_later(self.threshold_s, repeat=False, file=self.stream)
                started, cpu, faults = time.monotonic(), time.process_time(), _major_faults()
                await asyncio.sleep(self.tick_s)
                lag = max(0.0, time.monotonic() - started - self.tick_s)
                LOOP_LAG.observe(lag)
                if lag + self.tick_s >= self.threshold_s:
                    self._report(lag, time.process_time() - cpu, _major_faults() - faults)
        finally:
            faulthandler.cancel_dump_traceback_later()

    def _report(self, lag_s: float, cpu_s: float, major_faults: int) -> None:
        fields = {"stall_s": round(lag_s + self.tick_s, 3), "cpu_s": round(cpu_s, 3), "major_faults": major_faults}
        logger.warning(
            "the event loop stopped for %.2f s (every thread's stack is on stderr above); the process used %.2f s "
            "of CPU and had %d major page faults meanwhile",
            *fields.values(),
            extra={"fields": fields},
        )


def _major_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_majflt
