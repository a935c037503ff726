"""config.toml: a run's resolved settings, and `geoposenet train --config FILE`.

The file has two tables, [recipe] and [options], with one key per setting (the names of
geoposenet.config.TrainConfig's fields; unset optional settings are left out). Reading takes
that layout or plain top-level keys, checks every key and value against the declarations, and
names the file and key of anything wrong (InputError, exit 2), with a close match suggested.
Read with the standard library's tomllib; written by the small writer below (flat tables of
strings, numbers, booleans and integer pairs need no library).
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

from geoposenet.config import SETTINGS, TrainConfig
from geoposenet.errors import InputError
from geoposenet.settings import suggestion

TABLES = ("recipe", "options")
NAME = "config.toml"


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings a config file gives, by field name, coerced to their types."""
    path = Path(path)
    try:
        content = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--config {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"--config {path}: cannot read it ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path}: not valid TOML ({error})") from None
    flat: dict[str, Any] = {}
    for key, value in content.items():
        if key in TABLES and isinstance(value, dict):
            for inner, inner_value in value.items():
                flat[_known(path, inner, f"[{key}] ")] = inner_value
        else:
            flat[_known(path, key, "")] = value
    values = {}
    for key, value in flat.items():
        try:
            values[key] = SETTINGS[key].coerce(value)
        except ValueError as error:
            raise InputError(f"{path}: {key}: {error}") from None
    return values


def _known(path: Path, key: str, where: str) -> str:
    if key not in SETTINGS:
        hint = suggestion(key, SETTINGS) or suggestion(key.replace("-", "_"), SETTINGS)
        raise InputError(f"{path}: unknown key {where}{key!r}{hint}")
    return key


def config_toml(config: TrainConfig) -> str:
    """The text of config.toml for `config` (read back by `read_config_file` unchanged)."""
    lines = ["# geoposenet training run: the recipe is fixed for the run; options may change"]
    values = config.to_dict()
    for table, kind in zip(TABLES, ("recipe", "option"), strict=True):
        lines += ["", f"[{table}]"]
        for name, item in SETTINGS.items():
            if item.setting.kind == kind and values[name] is not None:
                lines.append(f"{name} = {_toml_value(values[name])}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
