"""Typed job settings from YAML files in configs/, validated strictly (unknown keys are errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from features.common.errors import DataError

M = TypeVar("M", bound=BaseModel)


def load_config(model: type[M], path: Path | None, overrides: dict[str, Any]) -> M:
    """`model` from the YAML file (if any), with the non-None `overrides` (command-line flags) on top."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError as exc:
            raise DataError(f"{path}: no such config file") from exc
        except yaml.YAMLError as exc:
            raise DataError(f"{path}: not valid YAML ({exc})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise DataError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        where = f"{path}: " if path else ""
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors())
        raise DataError(f"{where}invalid settings: {problems}") from exc
