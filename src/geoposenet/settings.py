"""Declaring a setting once: a dataclass field made by `setting(...)` carries its default, help
text, kind and allowed values; its type comes from the field's annotation. From that one
declaration come the command-line flag (`add_flags`), the validation (`problems`), the values a
config file may hold (`coerce`) and the table in README's command-line section (`flag_table`).

Kinds: a *recipe* setting defines the trained model and is fixed for a run; an *option* may
change between resumes (paths, device, threads, cadence). Torch-free: `--help` stays fast.
"""

from __future__ import annotations

import argparse
import difflib
import math
import types
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

Kind = Literal["recipe", "option"]
Check = Callable[[Any], "str | None"]  # a value -> what is wrong with it, or None
KEY = "geoposenet.setting"


@dataclass(frozen=True)
class Setting:
    """What the dataclass field does not say itself: help text, kind, allowed values, a check,
    and whether it is the command's positional argument."""

    help: str
    kind: Kind
    choices: tuple[str, ...] = ()
    check: Check | None = None
    metavar: str | None = None
    positional: bool = False


def setting(
    default: Any,
    help: str,
    kind: Kind = "recipe",
    *,
    choices: Iterable[str] = (),
    check: Check | None = None,
    metavar: str | None = None,
    positional: bool = False,
) -> Any:
    """A dataclass field declaring one setting (see the module docstring)."""
    meta = Setting(help, kind, tuple(choices), check, metavar, positional)
    return field(default=default, metadata={KEY: meta})


def parse_crop(text: str | int | Sequence[int]) -> tuple[int, int]:
    """'224' or '96x128' (height x width), an int or (h, w) -> (h, w) pixels; ValueError else."""
    if isinstance(text, str):
        parts = text.lower().split("x")
        if not 1 <= len(parts) <= 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"expected N or HxW pixels (height x width), got {text!r}")
        values = [int(p) for p in parts]
    elif isinstance(text, int) and not isinstance(text, bool):
        values = [text]
    elif isinstance(text, list | tuple) and len(text) == 2:
        values = list(text)
    else:
        raise ValueError(f"expected N or HxW pixels (height x width), got {text!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"expected whole pixels, got {text!r}")
    return (values[0], values[-1])


@dataclass(frozen=True)
class Declared:
    """One declared setting: its field name, type, default and `Setting`."""

    name: str
    type: Any  # the annotation without `| None`
    optional: bool  # None allowed (means "not set": see the help)
    default: Any
    setting: Setting

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        """How messages name it: the positional's metavar, else the flag."""
        return (self.setting.metavar or self.name.upper()) if self.setting.positional else self.flag

    def with_default(self, value: Any) -> Declared:
        """The same setting with another default (a preset's)."""
        return replace(self, default=value)

    def parse(self, text: str) -> Any:
        """Command-line text -> value (argparse's `type`)."""
        if self.type is tuple:
            try:
                return parse_crop(text)
            except ValueError as error:
                raise argparse.ArgumentTypeError(str(error)) from None
        return self.type(text)

    def coerce(self, value: Any) -> Any:
        """A config-file value -> the setting's value; ValueError saying what was expected."""
        if self.type is tuple:
            return parse_crop(value)
        if self.type is bool or isinstance(value, bool):
            if self.type is bool and isinstance(value, bool):
                return value
            raise ValueError(f"expected {_type_name(self.type)}, got {value!r}")
        if self.type is float and isinstance(value, int | float):
            return float(value)
        if isinstance(value, self.type):
            return value
        raise ValueError(f"expected {_type_name(self.type)}, got {value!r}")


def _type_name(kind: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    return names.get(kind, "HxW pixels or [height, width]")


def declared(cls: type) -> list[Declared]:
    """The settings a dataclass declares, in declaration order."""
    hints = get_type_hints(cls)
    found = []
    for f in fields(cls):
        if KEY not in f.metadata:
            continue
        kind, optional = hints[f.name], False
        if get_origin(kind) in (Union, types.UnionType):
            (kind,) = [a for a in get_args(kind) if a is not type(None)]
            optional = True
        base = get_origin(kind) or kind
        found.append(Declared(f.name, base, optional, f.default, f.metadata[KEY]))
    return found


def suggestion(word: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest known word, or ''."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def problems(values: object, cls: type) -> list[str]:
    """What is wrong with each setting of `values` (choices and checks), naming the flag."""
    found = []
    for item in declared(cls):
        value = getattr(values, item.name)
        if value is None and item.optional:
            continue
        if item.setting.choices and value not in item.setting.choices:
            found.append(
                f"{item.label} must be one of {', '.join(item.setting.choices)}, got {value!r}"
                + suggestion(str(value), item.setting.choices)
            )
        elif item.setting.check is not None and (problem := item.setting.check(value)):
            found.append(f"{item.label} {problem}")
    return found


# Checks used in declarations: each returns what is wrong, or None.
def at_least(low: int) -> Check:
    return lambda v: None if v >= low else f"must be at least {low}, got {v}"


def positive_finite(v: float) -> str | None:
    return None if 0 < v < math.inf else f"must be positive and finite, got {v}"


def non_negative_finite(v: float) -> str | None:
    return None if 0 <= v < math.inf else f"must be >= 0 and finite, got {v}"


def within(low: float, high: float, high_open: bool = False) -> Check:
    bracket = ")" if high_open else "]"

    def check(v: float) -> str | None:
        inside = low <= v < high if high_open else low <= v <= high
        return None if inside else f"must be in [{low:g}, {high:g}{bracket}, got {v}"

    return check


def default_text(item: Declared) -> str:
    """The default as a user would type it."""
    value = item.default
    if item.type is tuple:
        return f"{value[0]}x{value[1]}"
    if item.type is bool:
        return "on" if value else "off"
    if value is None or value == "":
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    defaults: Callable[[Declared], str],
    only: Collection[str] | None = None,
) -> None:
    """One argument per setting of `cls`, in two groups (recipe, options), or only the settings
    named in `only` (another command's share of them, e.g. the dataset options of `eval`).
    Nothing given stays absent from the namespace (argparse.SUPPRESS), so a caller knows what the
    user set; `defaults(item)` is the default shown in --help."""
    groups: dict[str, Any] = {
        "recipe": parser.add_argument_group(
            "recipe", "what defines the trained model; fixed for a run (--resume refuses changes)"
        ),
        "option": parser.add_argument_group(
            "run options", "how this process runs; may change when resuming"
        ),
    } if only is None else {"recipe": parser, "option": parser}  # fmt: skip
    for item in declared(cls):
        if only is not None and item.name not in only:
            continue
        help_text = f"{item.setting.help} (default: {defaults(item)})".replace("%", "%%")
        group = groups[item.setting.kind]
        if item.setting.positional:
            group.add_argument(
                item.name, nargs="?", default=argparse.SUPPRESS, type=item.parse,
                metavar=item.setting.metavar, help=help_text,
            )  # fmt: skip
        elif item.type is bool:
            group.add_argument(
                item.flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                help=help_text,
            )  # fmt: skip
        else:
            group.add_argument(
                item.flag, dest=item.name, default=argparse.SUPPRESS, type=item.parse,
                choices=item.setting.choices or None, metavar=item.setting.metavar,
                help=help_text,
            )  # fmt: skip


def flag_table(cls: type, defaults: Callable[[Declared], str]) -> str:
    """A Markdown table of every setting: flag, kind, default and help (README's command line)."""
    rows = ["| flag | kind | default | meaning |", "|---|---|---|---|"]
    for item in declared(cls):
        name = item.setting.metavar if item.setting.positional else item.flag
        if item.type is bool:
            name = f"{item.flag}, --no-{item.flag[2:]}"
        values = " (" + " \\| ".join(item.setting.choices) + ")" if item.setting.choices else ""
        kind = "recipe" if item.setting.kind == "recipe" else "option"
        meaning = item.setting.help.replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {defaults(item)} | {meaning}{values} |")
    return "\n".join(rows)
