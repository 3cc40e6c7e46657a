"""The steps' output as ``kfp.local`` prints it, kept in the step log with what helps a person debug.

:class:`StepLogFilter` decides line by line: kfp's executor-input JSON dump
becomes one line naming the step's parameters and input artifacts, TensorFlow's
start-up lines (oneDNN, CUDA) are kept once per step, the executor's and Beam's
routine chatter is dropped; warnings, errors, tracebacks and the project's own
log lines stay. :class:`StepOutput` is the stream ``kfp.local`` prints into::

    with open("run.log", "a") as log, contextlib.redirect_stdout(StepOutput(log, on_epoch=print)):
        pipeline(...)          # each epoch of the training step also goes to on_epoch
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from trainer.progress import EpochReport

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp indents the steps' output by 4 spaces (twice, now and then, when a step's line is split).
_KFP_INDENT = re.compile(r"^ {4}(?: {4})*(?=\[KFP Executor )|^ {4}")
EXECUTOR_INPUT = "Got executor_input:"
# Lines that never help: the executor's routine steps, Beam's type hints and INFO chatter, kfp's separators.
DROPPED = re.compile(
    r"Looking for component `|Loading KFP component |Wrote executor output file"
    r"|Converting string literal type hint|Worker: severity: INFO |starting \w+ server on port |^-{20,}$"
)
# TensorFlow's start-up lines, repeated by every process it starts: kept once per step.
ONCE_PER_STEP = re.compile(
    r"All log messages before absl::InitializeLog|port\.cc:\d+\] oneDNN|cudart_stub\.cc|cuda_platform\.cc.*cuInit"
)


class StepLogFilter:
    """Which of a step's output lines the step log keeps; :meth:`feed` returns the lines to write.

    Example::

        log_filter = StepLogFilter()
        log_filter.begin_step("train-mmoe")            # ['== step train-mmoe ==']
        log_filter.feed("    [KFP Executor ... INFO]: Got executor_input:")   # [] (the JSON follows)
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._executor_input: list[str] | None = None  # the JSON's lines while it is being read

    def begin_step(self, name: str) -> list[str]:
        """A new step's header; TensorFlow's start-up lines show again once in it."""
        self._seen.clear()
        self._executor_input = None
        return ["", f"== step {name} =="]

    def feed(self, raw: str) -> list[str]:
        """The lines to keep for one line of output (without its newline)."""
        line = _KFP_INDENT.sub("", _ANSI.sub("", raw), count=1).rstrip()
        if self._executor_input is not None:
            return self._read_executor_input(line)
        if line.endswith(EXECUTOR_INPUT):
            self._executor_input = []
            return []
        if not line.strip() or DROPPED.search(line):
            return []
        if noise := ONCE_PER_STEP.search(line):
            if noise[0] in self._seen:
                return []
            self._seen.add(noise[0])
        return [line]

    def _read_executor_input(self, line: str) -> list[str]:
        lines = self._executor_input
        assert lines is not None
        if line.startswith("[KFP Executor"):  # not JSON after all: keep what was read as it was
            self._executor_input = None
            return [*lines, *self.feed(line)]
        lines.append(line)
        if line.strip() != "}":
            return []
        try:
            executor_input = json.loads("\n".join(lines))
        except json.JSONDecodeError:
            return []  # a nested object closed: read on
        self._executor_input = None
        return [summarize_executor_input(executor_input)]


def summarize_executor_input(executor_input: dict[str, Any], width: int = 80) -> str:
    """One line for kfp's executor input: the step's parameters and input artifacts (values cut at ``width``).

    Example::

        summarize_executor_input({"inputs": {"parameterValues": {"seed": 7}}})   # 'inputs: seed=7'
    """
    inputs = executor_input.get("inputs", {})
    parameters = [
        f"{name}={_short(json.dumps(value), width)}" for name, value in inputs.get("parameterValues", {}).items()
    ]
    artifacts = [
        f"{name}={artifact.get('uri', '?')}"
        for name, listed in inputs.get("artifacts", {}).items()
        for artifact in listed.get("artifacts", [])
    ]
    return "inputs: " + (", ".join([*parameters, *artifacts]) or "none")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class StepOutput(io.TextIOBase):
    """A text stream that writes the steps' output through a :class:`StepLogFilter` into ``log``.

    Every kept line that is a training :class:`~trainer.progress.EpochReport`
    also goes to ``on_epoch`` (the console's live progress).
    """

    def __init__(self, log: TextIO, on_epoch: Callable[[EpochReport], None] | None = None) -> None:
        super().__init__()
        self.log = log
        self.on_epoch = on_epoch
        self.filter = StepLogFilter()
        self._partial = ""

    def begin_step(self, name: str) -> None:
        """Write a step's header (``kfp.local`` runs the steps one after another)."""
        self._emit(self.filter.begin_step(name))

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._emit(self.filter.feed(line))
        return len(text)

    def flush(self) -> None:
        self.log.flush()

    def _emit(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.log.write(line + "\n")
            if self.on_epoch and (report := EpochReport.parse(line)):
                self.on_epoch(report)
        self.log.flush()
