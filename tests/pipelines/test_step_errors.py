"""A failed step of a local run is reported by its own error, found in its output."""

import io
from pathlib import Path

from pipelines.local_run import LastLines, StepProgress, _steps_output_to
from pipelines.step_errors import StepFailedError, last_exception, step_section

FRAMES = """\
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/venv/lib/python3.11/site-packages/kfp/dsl/executor_main.py", line 101, in executor_main
    output_file = executor.execute()
                  ^^^^^^^^^^^^^^^^^^
  File "/venv/lib/python3.11/site-packages/kfp/dsl/executor.py", line 453, in execute
    result = self.func(**func_kwargs)
             ^^^^^^^^^^^^^^^^^^^^^^^^
"""
# The step log of `ranker run --n-impressions 3000 --model-config '{"task_loss_weights": {"clik": 1.0}}'`, trimmed:
# two steps failed, each with a user error, after TensorFlow's and kfp's own lines.
STEP_LOG = f"""
== step extract-features ==
inputs: held_out_module="shop_page", dataset_spec="simulator", num_shards=0, raw_data=/root/simulate/impressions
[KFP Executor 2026-12-06 14:07:10,001 INFO]: extracting /root/simulate/impressions (1 files) with DirectRunner

== step train-mmoe ==
inputs: config_json="{{\\"epochs\\": 1, \\"task_loss_weights\\": {{\\"clik\\": 1.0}}}}", examples=/root/extract/examples
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796566051.849266   10339 port.cc:153] oneDNN custom operations are on.
E0000 00:00:1796566055.384374   10339 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error
[KFP Executor 2026-12-06 14:07:35,387 WARNING]: the eval split's labels of ('purchase',) are all of one class
{FRAMES}\
  File "/work/main/trainer/model.py", line 292, in require_known_tasks
    raise InvalidValueError(f"{{setting}} names unknown task(s) {{unknown}}; the data's tasks: {{tasks}}")
ranker_core.cli_support.InvalidValueError: task_loss_weights names unknown task(s) ['clik']; the data's tasks: ['click']

== step train-baseline ==
inputs: config_json="{{}}", examples=/root/extract/examples
{FRAMES}\
  File "/work/main/components/baseline/gbdt.py", line 233, in datasets
    raise InvalidValueError(f"no training {{unit}} has a positive {{target!r}} to learn from")
ranker_core.cli_support.InvalidValueError: no training request has a positive 'purchase' to learn from
"""
# `ranker run --data-uri 'no_such_logs/*.parquet'`: an error of the project's, not a user error, on two lines.
MISSING_DATA = f"""\
{FRAMES}\
  File "/work/main/components/features/pipeline.py", line 277, in plan_extraction
    raise ExtractionError(f"{{len(problems)}} problem(s) with the data:\\n  - " + "\\n  - ".join(problems))
components.features.pipeline.ExtractionError: 1 problem(s) with the data:
  - specs/simulator.yaml: no parquet files match 'no_such_logs/*.parquet'
"""
MISSING_DATA_ERROR = (
    "ExtractionError: 1 problem(s) with the data:\n"
    "  - specs/simulator.yaml: no parquet files match 'no_such_logs/*.parquet'"
)


def test_the_error_is_the_exception_line_that_ends_the_traceback_without_the_module():
    assert last_exception(MISSING_DATA) == MISSING_DATA_ERROR
    assert last_exception(FRAMES + "ValueError: no examples\n") == "ValueError: no examples"
    assert last_exception(FRAMES + "MemoryError\n") == "MemoryError"


def test_a_traceback_header_pushed_right_by_an_unended_log_line_is_read_too():
    """Keras prints "Batch 3: Invalid loss" without ending kfp's log line: the header comes indented, its frames not."""
    assert last_exception("    " + FRAMES + "ValueError: 488 scores are NaN or infinite\n") == (
        "ValueError: 488 scores are NaN or infinite"
    )


def test_the_project_user_errors_are_shown_by_their_message():
    assert last_exception(step_section(STEP_LOG, "train-mmoe")) == (
        "task_loss_weights names unknown task(s) ['clik']; the data's tasks: ['click']"
    )
    assert last_exception(step_section(STEP_LOG, "train-baseline")) == (
        "no training request has a positive 'purchase' to learn from"
    )


def test_the_message_ends_before_the_lines_printed_after_it():
    after = [
        "[KFP Executor 2026-12-06 14:07:35,385 INFO]: exported /root/train/model",
        "I0000 00:00:1796566051.849266   10339 port.cc:153] oneDNN custom operations are on.",
        "2026-12-06 14:04:33,179 ERROR root: something else",
        "14:08:38.647 - ERROR - Task 'extract-features' finished with status FAILURE",  # kfp's, echoed
        "-" * 80,
        "",
    ]
    for line in after:
        assert last_exception(MISSING_DATA + line + "\nmore\n") == MISSING_DATA_ERROR, line


def test_kfp_indented_output_as_echoed_is_read_too():
    echoed = "".join(f"    {line}\n" for line in MISSING_DATA.splitlines()) + "    \n\n" + "-" * 80 + "\n"
    assert last_exception(echoed) == MISSING_DATA_ERROR


def test_the_last_of_chained_exceptions_and_a_beam_workers_error_are_found():
    chained = (
        FRAMES
        + "KeyError: 'click'\n\nDuring handling of the above exception, another exception occurred:\n\n"
        + FRAMES
        + "ValueError: no column 'click'\n"
    )
    assert last_exception(chained) == "ValueError: no column 'click'"
    beam = (
        FRAMES + "RuntimeError: Traceback (most recent call last):\n"
        '  File "apache_beam/runners/common.py", line 1501, in process\n'
        "    return self.do_fn_invoker.invoke_process(windowed_value)\n"
        "ValueError: row 3: bad label [while running 'Extract/Parse']\n\n"
    )
    assert last_exception(beam) == "ValueError: row 3: bad label [while running 'Extract/Parse']"


def test_output_without_a_finished_traceback_has_no_error():
    killed = step_section(STEP_LOG, "extract-features")  # e.g. killed for its memory: no traceback
    assert killed and last_exception(killed) is None
    assert last_exception(FRAMES) is None  # cut short in its frames
    assert last_exception("") is None
    assert step_section(STEP_LOG, "evaluate") == ""


def test_the_failure_names_each_failed_step_with_its_error_and_the_log():
    failure = StepFailedError.of(["train-mmoe", "train-baseline"], STEP_LOG, Path("work_dir/logs/run-1.log"))

    assert failure is not None
    assert failure.report(prefix="ranker run: ").splitlines() == [
        "ranker run: step 'train-mmoe' failed: task_loss_weights names unknown task(s) ['clik']; the data's tasks: "
        "['click']",
        "ranker run: step 'train-baseline' failed: no training request has a positive 'purchase' to learn from",
        "The tracebacks and every step's output: work_dir/logs/run-1.log",
    ]
    assert "run-1.log" not in failure.headline and "train-baseline" in str(failure)
    assert StepFailedError.of([], STEP_LOG, None) is None  # no step failed
    one = StepFailedError({"evaluate": "ValueError: no split 'x'"}, Path("run.log"))
    assert str(one).splitlines() == [
        "step 'evaluate' failed: ValueError: no split 'x'",
        "The traceback and every step's output: run.log",
    ]


def test_a_step_without_an_error_points_to_its_output():
    killed = StepFailedError.of(["extract-features"], STEP_LOG, Path("run.log"))
    assert killed is not None and killed.errors == {"extract-features": None}
    assert killed.report().splitlines() == [
        "step 'extract-features' failed, with no Python error in its output (its last lines are above)",
        "Every step's output: run.log",
    ]
    echoed = StepFailedError({"train-mmoe": None}, log_path=None)
    assert str(echoed) == "step 'train-mmoe' failed, with no Python error in its output (it is above)"


def test_echoed_output_stays_on_stdout_and_its_end_is_kept(capsys):
    progress, echoed = StepProgress(io.StringIO(), live=False), LastLines(most=3)
    with _steps_output_to(None, echoed, progress):
        progress.step_log.begin_step("train-mmoe")
        print("    [KFP Executor 2026-12-06 14:07:35,385 INFO]: epoch 1")
        print("    " + MISSING_DATA.rstrip().replace("\n", "\n    "))

    assert "    [KFP Executor" in capsys.readouterr().out  # as kfp printed it
    assert echoed.text().splitlines() == MISSING_DATA.splitlines()[-3:]  # filtered: kfp's indentation is gone
