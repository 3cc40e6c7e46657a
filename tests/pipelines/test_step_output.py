"""The step log keeps what helps a person debug; training epochs reach the console."""

import io
import json
import logging

from pipelines.local_run import StepProgress
from pipelines.step_output import StepLogFilter, StepOutput, summarize_executor_input
from trainer.progress import EpochReport, current_label, labelled

EXECUTOR_INPUT = {
    "inputs": {
        "parameterValues": {"seed": 7, "config_json": '{"epochs": 2}'},
        "artifacts": {"examples": {"artifacts": [{"name": "examples", "uri": "/root/extract/examples"}]}},
    },
    "outputs": {"artifacts": {"model": {"artifacts": [{"uri": "/root/train/model", "metadata": {}}]}}},
}
# What kfp.local prints for one step: every line indented by 4 spaces.
KFP_OUTPUT = [
    "[KFP Executor 2026-12-01 16:59:17,721 INFO]: Looking for component `train_mmoe` in --component_module_path `x.py`",
    '[KFP Executor 2026-12-01 16:59:17,722 INFO]: Loading KFP component "train_mmoe" from x.py',
    "[KFP Executor 2026-12-01 16:59:17,722 INFO]: Got executor_input:",
    *json.dumps(EXECUTOR_INPUT, indent=4).splitlines(),
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796144380.261274    4611 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796144380.261632    4611 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796144381.496022    4611 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796144381.496659    4611 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
    '[KFP Executor 2026-12-01 16:59:19,461 INFO]: Converting string literal type hint to Any: "pd.DataFrame"',
    '[KFP Executor 2026-12-01 16:59:21,965 INFO]: Worker: severity: INFO timestamp { seconds: 1 } message: "x"',
    '[KFP Executor 2026-12-01 16:59:21,977 WARNING]: Worker: severity: WARN timestamp { seconds: 1 } message: "y"',
    "[KFP Executor 2026-12-01 16:59:56,313 WARNING]: Model's `__init__()` arguments contain non-serializable objects.",
    "[KFP Executor 2026-12-01 16:59:44,000 INFO]: epoch 1/2 in 11.0s: ranking_loss=2.0458 val_click_auc=0.5123",
    "[KFP Executor 2026-12-01 16:59:19,941 INFO]: starting control server on port 45817",
    "    [KFP Executor 2026-12-01 16:59:56,820 INFO]: exported /root/train/model",
    "Traceback (most recent call last):",
    '  File "x.py", line 1, in <module>',
    "ValueError: no examples",
    "[KFP Executor 2026-12-01 16:59:56,820 INFO]: Wrote executor output file to /root/train/executor_output.json.",
    "",
    "",
]
KEPT = [
    "",
    "== step train-mmoe ==",
    'inputs: seed=7, config_json="{\\"epochs\\": 2}", examples=/root/extract/examples',
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796144380.261274    4611 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796144380.261632    4611 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
    '[KFP Executor 2026-12-01 16:59:21,977 WARNING]: Worker: severity: WARN timestamp { seconds: 1 } message: "y"',
    "[KFP Executor 2026-12-01 16:59:56,313 WARNING]: Model's `__init__()` arguments contain non-serializable objects.",
    "[KFP Executor 2026-12-01 16:59:44,000 INFO]: epoch 1/2 in 11.0s: ranking_loss=2.0458 val_click_auc=0.5123",
    "[KFP Executor 2026-12-01 16:59:56,820 INFO]: exported /root/train/model",
    "Traceback (most recent call last):",
    '  File "x.py", line 1, in <module>',
    "ValueError: no examples",
]


def kfp_printed(lines: list[str]) -> str:
    return "".join(f"    {line}\n" for line in lines) + "-" * 80 + "\n"


def test_the_step_log_keeps_warnings_errors_and_own_lines_and_one_line_of_executor_input():
    log, epochs = io.StringIO(), []
    output = StepOutput(log, on_epoch=epochs.append)
    output.begin_step("train-mmoe")
    printed = kfp_printed(KFP_OUTPUT)
    for start in range(0, len(printed), 7):  # kfp prints the indentation and the line in separate writes
        output.write(printed[start : start + 7])

    assert log.getvalue().splitlines() == KEPT
    assert epochs == [EpochReport(1, 2, 11.0, {"ranking_loss": 2.0458, "val_click_auc": 0.5123})]


def test_tensorflow_start_up_lines_show_again_in_the_next_step():
    log_filter = StepLogFilter()
    start_up = "I0000 00:00:1.2    4611 port.cc:153] oneDNN custom operations are on."
    log_filter.begin_step("extract-features")
    assert log_filter.feed(start_up) == [start_up]
    assert log_filter.feed(start_up) == []
    log_filter.begin_step("train-mmoe")
    assert log_filter.feed(start_up) == [start_up]


def test_an_executor_input_that_is_not_json_is_kept_as_it_was():
    log_filter = StepLogFilter()
    assert log_filter.feed("[KFP Executor 1 INFO]: Got executor_input:") == []
    assert log_filter.feed("{") == []
    assert log_filter.feed("[KFP Executor 2 ERROR]: broken") == ["{", "[KFP Executor 2 ERROR]: broken"]


def test_summarize_executor_input_cuts_long_values():
    line = summarize_executor_input({"inputs": {"parameterValues": {"spec": "x" * 200}}}, width=20)
    assert line == 'inputs: spec="' + "x" * 16 + "..."  # 20 characters with the quote and the dots
    assert summarize_executor_input({}) == "inputs: none"


def test_an_epoch_line_round_trips_through_any_log_prefix():
    report = EpochReport(3, 10, 14.2, {"loss": 0.51234, "val_ranking_loss": 1.04, "val_click_auc": 0.78})

    assert report.line() == "epoch 3/10 in 14.2s: loss=0.5123 val_ranking_loss=1.0400 val_click_auc=0.7800"
    assert EpochReport.parse(f"[KFP Executor 2026-12-01 INFO]: {report.line()}") == EpochReport(
        3, 10, 14.2, {"loss": 0.5123, "val_ranking_loss": 1.04, "val_click_auc": 0.78}
    )
    assert report.summary() == "epoch 3/10  val ranking_loss 1.040  click_auc 0.780  (14.2 s/epoch)"
    assert EpochReport(1, 2, 0.5).summary() == "epoch 1/2  (0.5 s/epoch)"


def test_an_epoch_line_names_the_trial_and_model_it_trains():
    with labelled("trial 2/8"), labelled("model 2/3"):
        report = EpochReport(1, 3, 2.0, {"val_ranking_loss": 1.5}, label=current_label())
    assert current_label() == ""  # outside, lines are unlabelled again

    assert report.line() == "trial 2/8 model 2/3 epoch 1/3 in 2.0s: val_ranking_loss=1.5000"
    assert EpochReport.parse(f"INFO trainer.train: {report.line()}") == report
    assert report.summary() == "trial 2/8 model 2/3 epoch 1/3  val ranking_loss 1.500  (2.0 s/epoch)"


def test_lines_that_are_not_epoch_reports_parse_to_none():
    assert EpochReport.parse("Epoch 1/2") is None  # Keras's own
    assert EpochReport.parse("epoch 1/2 in 3.0s: loss=nan-ish") is None
    assert EpochReport.parse("the epoch 1/2 was slow") is None


def test_the_trainer_logs_one_epoch_line_per_epoch(caplog):
    from trainer.train import EpochLogger

    callback = EpochLogger(epochs=2)
    with caplog.at_level(logging.INFO, logger="trainer.train"):
        callback.on_epoch_begin(0)
        callback.on_epoch_end(0, {"total_loss": 1.6, "ranking_loss": 2.0, "val_loss": 1.1, "val_click_auc": 0.55})

    report = EpochReport.parse(caplog.records[-1].getMessage())
    assert report is not None and (report.epoch, report.epochs) == (1, 2)
    assert report.metrics == {"ranking_loss": 2.0, "val_click_auc": 0.55}


def test_plain_progress_shows_each_step_and_epoch_as_a_line_without_escape_codes():
    stream = io.StringIO()
    progress = StepProgress(stream)
    for message in ("Executing task \x1b[96m'train-mmoe'\x1b[0m", "Executing task 'train-mmoe'"):
        progress.filter(logging.makeLogRecord({"msg": message}))
    progress.show_epoch(EpochReport(1, 2, 11.0, {"val_click_auc": 0.5}))
    progress.filter(logging.makeLogRecord({"msg": "Task 'train-mmoe' finished with status SUCCESS"}))

    lines = stream.getvalue().splitlines()
    assert "\x1b" not in stream.getvalue()
    assert lines[-2].endswith("step train-mmoe             epoch 1/2  val click_auc 0.500  (11.0 s/epoch)")
    assert "SUCCESS in" in lines[-1]
