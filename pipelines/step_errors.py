"""A failed step of a local run, reported by its own error: the exception that ends its traceback.

``kfp.local`` says only which task failed; the step's message (a missing file, a bad field)
is the last line of a traceback in the step's output. :func:`last_exception` finds it,
:func:`step_section` keeps to one step's part of the log, and :class:`StepFailedError`
is what ``ranker run`` prints::

    failure = StepFailedError.of(["train-baseline"], log_path.read_text(), log_path)
    print(failure.report(prefix="ranker run: "))
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from ranker_core.cli_support import InvalidValueError, MissingInputError, UserError


class StepFailedError(RuntimeError):
    """Steps of a local run failed: ``errors`` holds each one's last exception (``None`` where its output
    has none: a killed process). :meth:`report`, as ``ranker run`` prints it::

        ranker run: step 'train-baseline' failed: no training request has a positive 'purchase' to learn from
        The traceback and every step's output: work_dir/logs/run-20261206-140654.log
    """

    def __init__(self, errors: dict[str, str | None], log_path: Path | None) -> None:
        self.errors = errors
        self.log_path = log_path
        super().__init__(self.report())

    @property
    def headline(self) -> str:
        """One line per failed step (and the further lines of a message)."""
        return self.report(with_log=False)

    def report(self, prefix: str = "", with_log: bool = True) -> str:
        """Each failed step's error after ``prefix``, then where the whole output is."""
        shown = "its last lines are above" if self.log_path else "it is above"
        lines = [
            f"{prefix}step {step!r} failed: {error}"
            if error
            else f"{prefix}step {step!r} failed, with no Python error in its output ({shown})"
            for step, error in self.errors.items()
        ]
        if with_log and self.log_path:
            found = sum(error is not None for error in self.errors.values())
            tracebacks = f"The traceback{'s' if found > 1 else ''} and every" if found else "Every"
            lines.append(f"{tracebacks} step's output: {self.log_path}")
        return "\n".join(lines)

    @classmethod
    def of(cls, failed: Iterable[str], output: str, log_path: Path | None) -> StepFailedError | None:
        """The errors of the ``failed`` steps, found in the steps' ``output``; ``None`` if none failed."""
        errors = {step: last_exception(step_section(output, step)) for step in failed}
        return cls(errors, log_path) if errors else None


# The project's user errors: shown by their message alone, as ``ranker`` shows them.
USER_ERRORS = frozenset(
    f"{error.__module__}.{error.__qualname__}" for error in (UserError, MissingInputError, InvalidValueError)
)
MESSAGE_LINES = 20  # at most, of a message
TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION = re.compile(r"(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")
# Lines that end an exception's message: blank, kfp's separators and step headers, log lines
# (kfp's executor, absl, logging), another traceback.
_AFTER_MESSAGE = re.compile(
    r"\s*$|-{20,}$|== step |\[KFP |Traceback |During handling |The above exception |Exception ignored "
    r"|[IWEF]\d{4} \d\d:\d\d|(?:\d{4}[-/]\d\d[-/]\d\d[ T])?\d\d:\d\d:\d\d|(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):"
)


def last_exception(output: str) -> str | None:
    """The exception that ends the last Python traceback in ``output``, as ``Type: message``.

    The type loses its module, and is left out for the project's user errors (:data:`USER_ERRORS`);
    the message keeps its further lines (up to :data:`MESSAGE_LINES`). ``None`` when no traceback
    in ``output`` ends with an exception (a killed process, a crash in native code).

    >>> last_exception("Traceback (most recent call last):\\n  File \\"x.py\\", line 1\\nx.BadData: 2 rows\\n")
    'BadData: 2 rows'
    """
    lines = output.splitlines()
    starts = [at for at, line in enumerate(lines) if line.strip() == TRACEBACK]
    if not starts:
        return None
    rest = lines[starts[-1] + 1 :]
    # the traceback's own indent: its frames' less 2 (a log line left unended can push the header right)
    frame = next((line for line in rest if line.lstrip().startswith('File "')), None)
    indent = _indent(lines[starts[-1]]) if frame is None else max(_indent(frame) - 2, 0)
    at = next((at for at, line in enumerate(rest) if line.strip() and _indent(line) <= indent), None)  # past the frames
    if at is None or _indent(rest[at]) < indent or _AFTER_MESSAGE.match(rest[at][indent:]):
        return None
    found = _EXCEPTION.match(rest[at][indent:])
    if found is None:
        return None
    message = [(found["message"] or "").rstrip()]
    if message[0] == TRACEBACK:  # a Beam worker's error: its traceback is the message
        return last_exception("\n".join([TRACEBACK, *rest[at + 1 :]]))
    for line in rest[at + 1 : at + 1 + MESSAGE_LINES]:
        if _indent(line) < indent or _AFTER_MESSAGE.match(line[indent:]):
            break
        message.append(line[indent:].rstrip())
    text = "\n".join(message)
    if found["type"] in USER_ERRORS and text:
        return text
    name = found["type"].rsplit(".", 1)[-1]
    return f"{name}: {text}" if text else name


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def step_section(log: str, step: str) -> str:
    """What ``step`` printed the last time it ran: the step log's lines after its last ``== step <step> ==``
    header, up to the next header (``""`` when it has no such header)."""
    lines = log.splitlines()
    header = f"== step {step} =="
    starts = [at for at, line in enumerate(lines) if line == header]
    if not starts:
        return ""
    section = []
    for line in lines[starts[-1] + 1 :]:
        if line.startswith("== step ") and line.endswith(" =="):
            break
        section.append(line)
    return "\n".join(section)
