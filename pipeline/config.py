"""Loading and validating YAML configs before anything runs; every error names file, key and fix."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from pipeline.errors import ConfigError


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist", "check the path, or omit --config to use the default")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}: {getattr(e, 'problem', e)}",
                          "fix the YAML syntax (indentation, colons, quotes)") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values, not {type(data).__name__}",
                          "start the file with `key: value` lines")
    return data


def validate(model: type[BaseModel], data: dict, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        allowed = ", ".join(model.model_fields)
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                lines.append(f"unknown key '{key}'")
            else:
                lines.append(f"key '{key}': {err['msg']}")
        unknown = any(err["type"] == "extra_forbidden" for err in e.errors())
        # a wrong value's message already says what is allowed; a list of keys helps only with a misspelt one
        raise ConfigError(f"{where}: " + "; ".join(lines),
                          f"allowed keys here: {allowed}" if unknown else "change the value(s) named above") from None
