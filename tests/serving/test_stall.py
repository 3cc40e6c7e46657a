"""The event-loop stall watchdog: a stopped loop gets every thread's stack and one WARNING; a running one nothing."""

from __future__ import annotations

import asyncio
import logging
import time

from serving.stall import LOOP_LAG, LoopStallWatchdog


def watch(tmp_path, during) -> str:
    """Run ``during`` (a coroutine function) in a loop watched with a 0.5 s threshold; what the dump file holds."""
    dump = tmp_path / "stacks.txt"

    async def main() -> None:
        with dump.open("w") as stream:
            watchdog = LoopStallWatchdog(threshold_s=0.5, tick_s=0.05, stream=stream)
            watchdog.start()
            await asyncio.sleep(0.2)
            await during()
            await asyncio.sleep(0.2)
            watchdog.stop()

    asyncio.run(main())
    return dump.read_text()


def test_a_loop_held_past_the_threshold_dumps_every_threads_stack_and_logs_the_stall(tmp_path, caplog):
    async def hold_the_loop() -> None:
        time.sleep(1.2)  # a synchronous call on the loop: nothing else runs

    lags_before = LOOP_LAG._sum.get()
    with caplog.at_level(logging.WARNING, logger="serving.stall"):
        stacks = watch(tmp_path, hold_the_loop)
    assert "Timeout (0:00:00.500000)!" in stacks
    assert "in hold_the_loop" in stacks, stacks  # the stopped loop's own frame names the culprit
    [record] = [record for record in caplog.records if record.name == "serving.stall"]
    assert 1.0 <= record.fields["stall_s"] < 5.0, record.fields
    assert 0 <= record.fields["cpu_s"] < record.fields["stall_s"]  # it slept: the CPU time says it waited
    assert LOOP_LAG._sum.get() - lags_before >= 1.0


def test_a_loop_that_keeps_running_dumps_nothing(tmp_path, caplog):
    async def work_in_short_steps() -> None:
        for _ in range(20):
            time.sleep(0.02)
            await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="serving.stall"):
        assert watch(tmp_path, work_in_short_steps) == ""
    assert not [record for record in caplog.records if record.name == "serving.stall"]
