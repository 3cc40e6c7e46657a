"""Build a config dataclass from its defaults, environment variables and a JSON object.

Every area's config (``TrainerConfig``, ``BaselineConfig``, ``EvaluationConfig``)
reads its ``RANKER_<AREA>_<FIELD>`` variables through :func:`env_values`.
Precedence: field defaults <- ``<PREFIX><FIELD>`` environment variables <- the
JSON object (a pipeline's ``config_json`` or a step command's ``--config``). An unknown key
is an error that lists the known ones::

    config = config_from_sources(BaselineConfig, '{"num_leaves": 15}', "RANKER_BASELINE_")
    # with RANKER_BASELINE_SEED=7 in the environment: config.seed == 7
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from trainer.cli_support import InvalidValueError

Config = TypeVar("Config")


def config_from_sources(
    cls: type[Config], json_text: str | None, env_prefix: str, environ: Mapping[str, str] | None = None
) -> Config:
    """A ``cls`` instance from defaults, ``env_prefix`` variables and ``json_text`` (see the module docstring)."""
    values = env_values(cls, env_prefix, environ)
    overrides = read_json_object(json_text, f"{cls.__name__} overrides")
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}")
    return cls(**{**values, **overrides})


def read_json_object(value: str | None, name: str) -> dict[str, Any]:
    """A JSON object given inline (``'{"epochs": 2}'``), as ``@path`` or as the path of a file; ``{}`` when empty.

    Errors name the setting (``name``) and what is wrong with it.
    """
    text = (value or "").strip()
    if not text:
        return {}
    if text.startswith("@") or text[0] not in "{[":
        path = Path(text.removeprefix("@"))
        if not path.is_file():
            problem = "no JSON file at" if text.startswith("@") else "is neither a JSON object nor an existing file:"
            raise InvalidValueError(f"{name}: {problem} {path}")
        text = path.read_text()
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidValueError(f"{name} is not valid JSON ({error}): {value!r}") from None
    if not isinstance(parsed, dict):
        raise InvalidValueError(f"{name} must be a JSON object, not {type(parsed).__name__}: {value!r}")
    return parsed


def env_values(cls: type, env_prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The fields of dataclass ``cls`` set as ``<env_prefix><FIELD>`` variables, parsed by the field's type.

    >>> env_values(TrainerConfig, "RANKER_TRAIN_", {"RANKER_TRAIN_EPOCHS": "3"})  # doctest: +SKIP
    {'epochs': 3}
    """
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        variable = env_prefix + field.name.upper()
        if environ.get(variable) is not None:
            values[field.name] = parse_env_value(variable, environ[variable], hints[field.name])
    return values


def parse_env_value(variable: str, raw: str, hint: Any) -> Any:
    """An environment value by the field's type: bool, number, text, null for optionals, JSON otherwise."""
    args = typing.get_args(hint)
    try:
        if hint is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if hint in (int, float):
            return hint(raw)
        if hint is str or typing.get_origin(hint) is Literal:
            return raw
        if type(None) in args:
            if raw.lower() in ("", "null", "none"):
                return None
            return parse_env_value(variable, raw, next(arg for arg in args if arg is not type(None)))
        return json.loads(raw)
    except (ValueError, json.JSONDecodeError) as error:
        raise ValueError(f"{variable}={raw!r} is not a valid {hint}") from error
