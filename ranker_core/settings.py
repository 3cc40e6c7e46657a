"""The one way settings are read: flags > environment > file > defaults, one boolean parser, unknown keys refused.

Every area's settings (the trainer, the GBDT baseline, the evaluation, the
registry, the server, Beam) subclass :class:`Settings`, a pydantic-settings
model whose :meth:`Settings.load` merges, from lowest to highest precedence:

1. the field defaults;
2. a JSON file (``file``: a path, or ``@path``);
3. environment variables: ``<env_prefix><FIELD>`` unless the field names its own
   (:func:`env_field`, first set wins; a deprecated name is read with a warning).
   An empty variable is unset;
4. flags: explicit values (a command's flags, an inline JSON object); ``None`` is unset.

The result is validated by type; an unknown or mistyped key is an error naming it::

    class BeamSettings(Settings):
        model_config = SettingsConfigDict(env_prefix="RANKER_BEAM_")
        workers: int = 0

    BeamSettings.load({"workers": None}, environ={"RANKER_BEAM_WORKERS": "4"}).workers   # 4
    BeamSettings.load({"wrokers": 2})   # InvalidValueError: BeamSettings: unknown key 'wrokers' ...
"""

from __future__ import annotations

import difflib
import json
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import pydantic
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ranker_core.cli_support import InvalidValueError, deprecated

__all__ = [
    "Settings",
    "SettingsConfigDict",
    "env_field",
    "env_value",
    "known_keys_hint",
    "parse_bool",
    "parse_env",
    "read_json_object",
]

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def parse_bool(text: str, name: str = "value") -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off`` (any case); anything else is an error naming ``name``.

    >>> parse_bool("On", "RANKER_BATCHING")
    True
    """
    lowered = text.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise InvalidValueError(f"{name}={text!r} is not a boolean: use 1/0, true/false, yes/no or on/off")


def env_value(environ: Mapping[str, str], name: str, old_name: str = "") -> str | None:
    """``environ[name]``, else ``environ[old_name]`` with a deprecation warning, else ``None`` (empty is unset)."""
    if environ.get(name):
        return environ[name]
    if old_name and environ.get(old_name):
        deprecated(f"environment variable {old_name}", name)
        return environ[old_name]
    return None


def parse_env(name: str, text: str, hint: Any) -> Any:
    """An environment value for a field of type ``hint``: booleans by :func:`parse_bool`, ``null``/``none``
    for an optional field, JSON for lists and dicts, the text otherwise (pydantic converts numbers)."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if type(None) in typing.get_args(hint):
        if text.strip().lower() in ("null", "none"):
            return None
        hint = args[0] if len(args) == 1 else hint
    if hint is bool:
        return parse_bool(text, name)
    if typing.get_origin(hint) in (list, tuple, dict) or hint in (list, tuple, dict):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise InvalidValueError(f"{name}={text!r} is not valid JSON ({error})") from None
    return text


def read_json_object(value: str | None, name: str) -> dict[str, Any]:
    """A JSON object given inline (``'{"epochs": 2}'``), as ``@path`` or as the path of a file; ``{}`` when empty.

    Errors name the setting (``name``) and what is wrong with it.
    """
    text = (value or "").strip()
    if not text:
        return {}
    if is_file_reference(text):
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


def env_field(default: Any, *names: str, old_env: str = "") -> Any:
    """A field's default and its environment variables (first set wins; none: not read from the environment).

    ``old_env`` is a deprecated name, read with a warning when none of ``names`` is set::

        http_port: int = env_field(8080, "AIP_HTTP_PORT", "PORT")
    """
    extra: dict[str, Any] = {"env": names}
    if old_env:
        extra["old_env"] = old_env
    return Field(default, json_schema_extra=extra)


def is_file_reference(value: str) -> bool:
    """Whether a config value names a file (``@path`` or a path) rather than an inline JSON object."""
    text = value.strip()
    return bool(text) and (text.startswith("@") or text[0] not in "{[")


class Settings(BaseSettings):
    """Typed settings: fields with defaults, read by :meth:`load`; unknown keys are refused.

    A bare constructor (``TrainerConfig(epochs=2)``) takes its arguments and the defaults
    only; :meth:`load` adds the environment and a file.
    """

    model_config = SettingsConfigDict(extra="forbid", validate_default=True, protected_namespaces=())
    _env_origins: dict[str, str] = pydantic.PrivateAttr(default_factory=dict)

    def __init__(self, _origins: Mapping[str, str] | None = None, **values: Any) -> None:
        """Validate ``values``; an error is one line naming the key (and, from ``_origins``, its variable)."""
        try:
            super().__init__(**values)
        except pydantic.ValidationError as error:
            raise InvalidValueError(describe_errors(type(self), error, _origins or {})) from None
        self._env_origins = {field: name for field, name in (_origins or {}).items() if field in values}

    def __eq__(self, other: object) -> bool:
        """Equal values are equal settings, wherever they were read from (:meth:`origin` is not compared)."""
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    def origin(self, field: str) -> str:
        """The environment variable ``field``'s value was read from by :meth:`load`; ``""`` when it came from
        elsewhere (a flag, a file, the constructor) or is the default."""
        return self._env_origins.get(field, "")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any, **_: Any) -> tuple:
        return (init_settings,)  # the environment and files are read by load(), in its one order

    @classmethod
    def load(
        cls,
        flags: Mapping[str, Any] | None = None,
        file: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Self:
        """The settings from flags > environment (``os.environ`` by default) > ``file`` > defaults."""
        values = read_json_object(f"@{str(file).removeprefix('@')}", cls.__name__) if file else {}
        from_env = cls.read_env(os.environ if environ is None else environ)
        values.update({field: value for field, (_, value) in from_env.items()})
        given = {key: value for key, value in (flags or {}).items() if value is not None}
        values.update(given)
        return cls.validated(values, {field: name for field, (name, _) in from_env.items() if field not in given})

    @classmethod
    def from_sources(
        cls,
        config: str | None = None,
        flags: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Self:
        """:meth:`load` from a config value and explicit flags (which win over it).

        ``config`` is an inline JSON object (flags) or ``@path`` / a path (a file)::

            TrainerConfig.from_sources('{"epochs": 2}')             # flags
            TrainerConfig.from_sources("@config.json", {"seed": 7})  # a file, then a flag
        """
        if config and is_file_reference(config):
            return cls.load(flags, file=config, environ=environ)
        given = {key: value for key, value in (flags or {}).items() if value is not None}
        return cls.load({**read_json_object(config, cls.__name__), **given}, environ=environ)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """The settings a JSON object holds, and the defaults (no environment): e.g. a saved config."""
        return cls.validated(read_json_object(text, cls.__name__))

    def to_json(self) -> str:
        """Every field as indented JSON (what :meth:`from_json` reads back)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def validated(cls, values: Mapping[str, Any], origins: Mapping[str, str] | None = None) -> Self:
        """``cls(**values)``; ``origins`` maps a field to the environment variable its value came from."""
        return cls(_origins=origins, **values)

    @classmethod
    def env_names(cls, field: str) -> tuple[tuple[str, ...], str]:
        """The environment variables of ``field`` (first set wins) and its deprecated name (``""``: none)."""
        extra = cls.model_fields[field].json_schema_extra
        extra = extra if isinstance(extra, dict) else {}
        names = extra["env"] if "env" in extra else (cls.model_config.get("env_prefix", "") + field.upper(),)
        return (names,) if isinstance(names, str) else tuple(names), str(extra.get("old_env", ""))

    @classmethod
    def read_env(cls, environ: Mapping[str, str]) -> dict[str, tuple[str, Any]]:
        """field -> (the variable it was read from, its value parsed by :func:`parse_env`), for the fields set."""
        values: dict[str, tuple[str, Any]] = {}
        for field, info in cls.model_fields.items():
            names, old_name = cls.env_names(field)
            for index, name in enumerate(names):
                text = env_value(environ, name, old_name if index == len(names) - 1 else "")
                if text is not None:
                    values[field] = (name, parse_env(name, text, info.annotation))
                    break
        return values

    def require_at_least(self, minimums: Mapping[str, int]) -> None:
        """Raise ValueError naming the first field below its minimum, in a validator (e.g.
        ``self.require_at_least({"epochs": 1, "early_stopping_patience": 0})``)."""
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}")

    def replace(self, **changes: Any) -> Self:
        """A validated copy with some fields changed; the others stay set or at their defaults as they were
        (``model_fields_set`` tells which settings were given)."""
        origins = {field: name for field, name in self._env_origins.items() if field not in changes}
        return self.validated({**self.model_dump(include=self.model_fields_set), **changes}, origins)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready values."""
        return self.model_dump(mode="json")


def describe_errors(cls: type, error: pydantic.ValidationError, origins: Mapping[str, str]) -> str:
    """``TrainerConfig: unknown key 'gate_temprature' (did you mean ...)``; ``... epochs: Input should be ...``.

    ``origins`` maps a field to the environment variable its value came from, which the message names.
    """
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["loc"] and item["loc"][0] in origins:
            key = f"{key} (env {origins[item['loc'][0]]})"
        if not key:  # a check of the whole model
            problems.append(str(item["msg"]).removeprefix("Value error, "))
        elif item["type"] == "extra_forbidden":
            problems.append(f"unknown key {key!r} ({known_keys_hint(key, list(cls.model_fields))})")
        else:
            problems.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
    return f"{cls.__name__}: " + "; ".join(problems)


def known_keys_hint(key: str, names: list[str]) -> str:
    """``did you mean 'x'?`` for a close name, else the list of known names."""
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(sorted(names))
