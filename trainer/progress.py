"""One parseable log line per training epoch: written by the trainer, shown live by ``ranker run``.

The trainer logs ``epoch 3/10 in 14.2s: ranking_loss=1.0412 val_click_auc=0.7801 ...``
through the standard logger; the local runner finds it in the training step's
output and shows the epoch on the console. No TensorFlow import here::

    line = EpochReport(3, 10, 14.2, {"val_click_auc": 0.78}).line()
    EpochReport.parse(f"[KFP Executor ... INFO]: {line}").epoch   # 3
"""

from __future__ import annotations

import dataclasses
import re

_EPOCH_LINE = re.compile(
    r"(?:\bmodel (?P<member>\d+/\d+) )?\bepoch (?P<epoch>\d+)/(?P<epochs>\d+) in (?P<seconds>[0-9.]+)s:"
    r"(?P<metrics>(?: [\w.]+=\S+)*)\s*$"
)
# Validation metrics named first on the console, in this order, when the epoch has them.
CONSOLE_METRICS = ("val_ranking_loss",)


@dataclasses.dataclass(frozen=True)
class EpochReport:
    """The end of one training epoch: its number, the planned epochs, its duration, its metrics and, in an
    ensemble, which model (``member``: ``"2/3"``) it trains."""

    epoch: int
    epochs: int
    seconds: float
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    member: str = ""

    def line(self) -> str:
        """The log line: ``epoch 3/10 in 14.2s: loss=0.5 val_click_auc=0.78`` (metrics with 4 decimals), in an
        ensemble ``model 2/3 epoch 3/10 in ...``."""
        metrics = "".join(f" {name}={value:.4f}" for name, value in self.metrics.items())
        return f"{self._model()}epoch {self.epoch}/{self.epochs} in {self.seconds:.1f}s:{metrics}"

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
        return cls(epoch, epochs, seconds, metrics, found["member"] or "")

    def summary(self) -> str:
        """For the console: ``epoch 3/10  val ranking_loss 1.041  click_auc 0.780  (14.2 s/epoch)``."""
        validation = {name: value for name, value in self.metrics.items() if name.startswith("val_")}
        names = [name for name in CONSOLE_METRICS if name in validation]
        names += sorted(name for name in validation if name.endswith("_auc"))
        shown = "  ".join(f"{name.removeprefix('val_')} {validation[name]:.3f}" for name in names)
        validated = f"val {shown}  " if shown else ""
        return f"{self._model()}epoch {self.epoch}/{self.epochs}  {validated}({self.seconds:.1f} s/epoch)"

    def _model(self) -> str:
        return f"model {self.member} " if self.member else ""
