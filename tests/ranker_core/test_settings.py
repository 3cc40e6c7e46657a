"""The settings layer: one boolean parser, one precedence order, unknown keys refused, nothing imported above it."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from ranker_core.settings import Settings, SettingsConfigDict, parse_bool

CORE = Path(__file__).resolve().parents[2] / "ranker_core"


class Example(Settings):
    model_config = SettingsConfigDict(env_prefix="RANKER_EXAMPLE_")

    workers: int = 1
    verbose: bool = False
    tags: list[str] = Field(default_factory=list)
    image: str = Field("img", json_schema_extra={"env": ("RANKER_EXAMPLE_IMAGE", "RANKER_IMAGE"), "old_env": "OLD"})


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "Yes", "on", "ON", " on "])
def test_true_spellings(text):
    assert parse_bool(text, "RANKER_X") is True


@pytest.mark.parametrize("text", ["0", "false", "False", "no", "NO", "off", "Off"])
def test_false_spellings(text):
    assert parse_bool(text, "RANKER_X") is False


@pytest.mark.parametrize("text", ["", "maybe", "2", "enabled"])
def test_anything_else_is_an_error_naming_the_variable(text):
    with pytest.raises(ValueError, match=f"RANKER_X={text!r} is not a boolean: use 1/0, true/false, yes/no or on/off"):
        parse_bool(text, "RANKER_X")


def test_precedence_is_flags_then_environment_then_file_then_defaults(tmp_path):
    file = tmp_path / "example.json"
    file.write_text(json.dumps({"workers": 2, "verbose": True, "tags": ["file"]}))
    environ = {"RANKER_EXAMPLE_WORKERS": "3", "RANKER_EXAMPLE_TAGS": '["env"]'}
    assert Example.load(file=file).model_dump() == {"workers": 2, "verbose": True, "tags": ["file"], "image": "img"}
    assert Example.load(file=file, environ=environ).workers == 3  # environment over file
    loaded = Example.load({"workers": 4, "tags": None}, file=file, environ=environ)  # flags over both; None is unset
    assert (loaded.workers, loaded.tags, loaded.verbose) == (4, ["env"], True)
    assert Example.load(environ={}) == Example()


def test_an_inline_object_is_a_flag_and_a_path_is_a_file(tmp_path):
    file = tmp_path / "example.json"
    file.write_text('{"workers": 2}')
    environ = {"RANKER_EXAMPLE_WORKERS": "3"}
    assert Example.from_sources('{"workers": 2}', environ=environ).workers == 2
    assert Example.from_sources(f"@{file}", environ=environ).workers == 3
    assert Example.from_sources(str(file), {"workers": 5}, environ=environ).workers == 5


def test_environment_values_are_parsed_by_type_and_empty_is_unset():
    environ = {"RANKER_EXAMPLE_VERBOSE": "on", "RANKER_EXAMPLE_WORKERS": "", "RANKER_EXAMPLE_TAGS": '["a", "b"]'}
    loaded = Example.load(environ=environ)
    assert (loaded.verbose, loaded.workers, loaded.tags) == (True, 1, ["a", "b"])
    with pytest.raises(ValueError, match="RANKER_EXAMPLE_VERBOSE='sometimes' is not a boolean"):
        Example.load(environ={"RANKER_EXAMPLE_VERBOSE": "sometimes"})
    with pytest.raises(ValueError, match=r"Example: workers \(env RANKER_EXAMPLE_WORKERS\): Input should be"):
        Example.load(environ={"RANKER_EXAMPLE_WORKERS": "many"})


def test_a_field_may_name_its_variables_and_a_deprecated_one(capsys):
    assert Example.load(environ={"RANKER_IMAGE": "b", "RANKER_EXAMPLE_IMAGE": "a"}).image == "a"  # first set wins
    assert Example.load(environ={"RANKER_IMAGE": "b"}).image == "b"
    assert Example.load(environ={"OLD": "c"}).image == "c"
    assert "environment variable OLD is deprecated, use RANKER_IMAGE" in capsys.readouterr().err


def test_a_value_remembers_the_variable_it_was_read_from_through_replace():
    loaded = Example.load({"workers": 2}, environ={"RANKER_IMAGE": "b", "RANKER_EXAMPLE_TAGS": '["t"]'})
    assert (loaded.origin("image"), loaded.origin("tags"), loaded.origin("workers"), loaded.origin("verbose")) == (
        "RANKER_IMAGE", "RANKER_EXAMPLE_TAGS", "", ""
    )  # fmt: skip
    changed = loaded.replace(tags=["u"])
    assert (changed.origin("image"), changed.origin("tags")) == ("RANKER_IMAGE", "")
    assert Example(image="b").origin("image") == ""


def test_unknown_and_mistyped_keys_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"Example: unknown key 'wrokers' \(did you mean 'workers'\?\)"):
        Example.from_sources('{"wrokers": 2}')
    with pytest.raises(ValueError, match=r"unknown key 'zzz' \(known: image, tags, verbose, workers\)"):
        Example(zzz=1)
    with pytest.raises(ValueError, match=r"Example: workers: Input should be a valid integer.*\(got 'two'\)"):
        Example.load({"workers": "two"})
    with pytest.raises(ValueError, match="Example: tags: Input should be a valid list"):
        Example().replace(tags="a")


def test_ranker_core_imports_nothing_else_from_the_project():
    project = {"components", "pipelines", "serving", "trainer", "benchmarks", "tests"}
    imported = set()
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert imported & project == set()


def test_checking_the_step_settings_loads_neither_tensorflow_nor_lightgbm():
    script = (
        "import sys; from pipelines.config import PipelineSettings; "
        "PipelineSettings(model_config='{\"epochs\": 1}', baseline_config='{\"seed\": 1}', eval_config='{}'); "
        "print(sorted(m for m in ('tensorflow', 'lightgbm', 'apache_beam') if m in sys.modules))"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"
