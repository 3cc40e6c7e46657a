"""One parseable log line per training epoch: written by the trainer, shown live by ``ranker run``.

The trainer logs ``epoch 3/10 in 14.2s: ranking_loss=1.0412 val_click_auc=0.7801 ...``
through the standard logger; the local runner finds it in the training step's
output and shows the epoch on the console. No TensorFlow import here::

    line = EpochReport(3, 10, 14.2, {"val_click_auc": 0.78}).line()
    EpochReport.parse(f"[KFP Executor ... INFO]: {line}").epoch   # 3

A tuning trial or an ensemble member says which one it trains, for the epoch
lines logged inside it (:func:`labelled`): ``trial 2/8 model 1/3 epoch 1/3 in ...``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import re
from collections.abc import Iterator

_EPOCH_LINE = re.compile(
    r"(?:\b(?P<label>(?:(?:trial|model) \d+/\d+ )+))?\bepoch (?P<epoch>\d+)/(?P<epochs>\d+) in "
    r"(?P<seconds>[0-9.]+)s:(?P<metrics>(?: [\w.]+=\S+)*)\s*$"
)
_LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("epoch_label", default="")
# Validation metrics named first on the console, in this order, when the epoch has them.
CONSOLE_METRICS = ("val_ranking_loss",)


@dataclasses.dataclass(frozen=True)
class EpochReport:
    """The end of one training epoch: its number, the planned epochs, its duration, its metrics and which
    training it belongs to (``label``: ``"trial 2/8"``, ``"model 2/3"``; see :func:`labelled`)."""

    epoch: int
    epochs: int
    seconds: float
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    label: str = ""

    def line(self) -> str:
        """The log line: ``epoch 3/10 in 14.2s: loss=0.5 val_click_auc=0.78`` (metrics with 4 decimals), in an
        ensemble ``model 2/3 epoch 3/10 in ...``."""
        metrics = "".join(f" {name}={value:.4f}" for name, value in self.metrics.items())
        return f"{self._label()}epoch {self.epoch}/{self.epochs} in {self.seconds:.1f}s:{metrics}"

    @classmethod
    def parse(cls, text: str) -> EpochReport | None:
        """The report in a log line (with any prefix, e.g. the logger's), or ``None`` when it holds none."""
        found = _EPOCH_LINE.search(text)
        if found is None:
            return None
        metrics = {}
        for pair in found["metrics"].split():
            name, _, value = pair.partition("=")
            try:
                metrics[name] = float(value)
            except ValueError:
                return None
        epoch, epochs, seconds = int(found["epoch"]), int(found["epochs"]), float(found["seconds"])
        return cls(epoch, epochs, seconds, metrics, (found["label"] or "").strip())

    def summary(self) -> str:
        """For the console: ``epoch 3/10  val ranking_loss 1.041  click_auc 0.780  (14.2 s/epoch)``."""
        validation = {name: value for name, value in self.metrics.items() if name.startswith("val_")}
        names = [name for name in CONSOLE_METRICS if name in validation]
        names += sorted(name for name in validation if name.endswith("_auc"))
        shown = "  ".join(f"{name.removeprefix('val_')} {validation[name]:.3f}" for name in names)
        validated = f"val {shown}  " if shown else ""
        return f"{self._label()}epoch {self.epoch}/{self.epochs}  {validated}({self.seconds:.1f} s/epoch)"

    def _label(self) -> str:
        return f"{self.label} " if self.label else ""


@contextlib.contextmanager
def labelled(label: str) -> Iterator[None]:
    """Epoch lines logged inside name what they train, after any outer label::

    with labelled("trial 2/8"), labelled("model 1/3"):
        ...   # trial 2/8 model 1/3 epoch 1/3 in 12.0s: ...
    """
    token = _LABEL.set(f"{_LABEL.get()} {label}".strip())
    try:
        yield
    finally:
        _LABEL.reset(token)


def current_label() -> str:
    """The label of the epoch lines logged now (``""`` outside :func:`labelled`)."""
    return _LABEL.get()
