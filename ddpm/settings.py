"""Typed settings, for every configuration of the project: declared ranges, choice lists and the reading of
command-line text into a field's type.

A numeric field declares its valid values once, beside its default (:func:`bounded`), and a configuration
dataclass checks all of them once, when it is built (:func:`check_ranges`). A list of choices is a
``Literal`` type, declared once; :func:`literal_choices` reads it back wherever the choices are needed
(argparse ``choices``, messages). This module imports nothing of the project: the diffusion core, the
networks, the data layer and the run configuration all build on it.
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from dataclasses import Field, dataclass, field, fields
from typing import Any, Callable, Literal, Sequence


class UserError(ValueError):
    """A failure the user can fix (a bad file, setting or folder): the base of every error the command
    boundary (:mod:`experiments.command`) prints as one line naming the culprit and what to do. Anything
    else that escapes a command is a bug and shows its traceback."""


class UsageError(UserError):
    """A setting cannot be used; the message names the option and what to do."""


def _number_text(value: float) -> str:
    """Integers in full (a seed's 4294967295, not 4.29e+09), other numbers short."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Range:
    """The valid values of one numeric setting: ``low <= value <= high`` (``<`` where open).

    ``None`` values of optional fields are not checked; tuples are checked entry by entry; NaN and inf
    are never valid.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_number_text(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {_number_text(self.high)}")
        return " and ".join(parts)

    def contains(self, value: float) -> bool:
        # NaN would pass a negated comparison, and inf is never a setting.
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below


# Seeds stay below 2^32 so that derived seeds (e.g. per evaluation batch) fit a 64-bit generator seed;
# every seed of the project (training, evaluation, prediction, generated data) takes this range.
MAX_SEED = 2**32 - 1
SEEDS = Range(0, MAX_SEED)


def bounded(default: Any, low: float | None = None, high: float | None = None, *,
            low_open: bool = False, high_open: bool = False) -> Any:
    """A dataclass field with ``default`` whose values must lie in the given :class:`Range`."""
    return within(default, Range(low, high, low_open, high_open))


def within(default: Any, valid: Range) -> Any:
    """A dataclass field with ``default`` whose values must lie in the declared range ``valid``."""
    return field(default=default, metadata={"range": valid})


def check_value(value: Any, valid: Range, name: str) -> None:
    """Raise ``UsageError("<name> must be >= 1, got 0")`` unless every number in ``value`` lies in ``valid``."""
    for item in value if isinstance(value, tuple) else (value,):
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise UsageError(f"{name} must be a number {valid.describe()}, got {item!r}")
        if not valid.contains(item):
            raise UsageError(f"{name} must be {valid.describe()}, got {value!r}")


def range_parser(kind: type, valid: Range, flag: str) -> Callable[[str], Any]:
    """An argparse ``type=``: command-line text read as ``kind`` and refused unless it lies in ``valid``,
    so that a value typed on the command line meets the range it meets everywhere else."""

    def parse(text: str) -> Any:
        value = _parse_scalar(text, kind, flag)
        if not valid.contains(value):
            raise argparse.ArgumentTypeError(f"must be {valid.describe()}, got {text}")
        return value

    return parse


def at_least(low: int, flag: str) -> Callable[[str], int]:
    """:func:`range_parser` of an integer count ``>= low`` (a benchmark's rounds, a batch size)."""
    return range_parser(int, Range(low), flag)


def field_range(config_type: type, name: str) -> Range:
    """The declared :class:`Range` of field ``name`` of a configuration dataclass."""
    declared: dict[str, Field] = {f.name: f for f in fields(config_type)}
    return declared[name].metadata["range"]


def check_ranges(config: Any, prefix: str) -> None:
    """Check every field of ``config`` declared with :func:`bounded`, naming it ``<prefix><field>``
    (``"--train."`` names the flag ``--train.lr``)."""
    for f in fields(config):
        value = getattr(config, f.name)
        if "range" in f.metadata and value is not None:
            check_value(value, f.metadata["range"], f"{prefix}{f.name}")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Refuse ``value`` unless it is one of ``choices``, naming both (one message for every option list)."""
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; choose one of {tuple(choices)}")


# ------------------------------------------------------------------- command-line text
def literal_choices(annotation: Any) -> tuple[str, ...]:
    """The strings of a ``Literal`` annotation, also inside ``Literal[...] | None``."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return tuple(choice for part in typing.get_args(annotation) for choice in literal_choices(part))


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; any other annotation -> ``(annotation, False)``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return annotation, False


def _parse_scalar(text: str, annotation: Any, flag: str) -> Any:
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        if text not in choices:
            raise argparse.ArgumentTypeError(f"{flag}: {text!r} is not one of {choices}")
        return text
    if annotation is bool:
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise argparse.ArgumentTypeError(f"{flag}: expected true or false, got {text!r}")
        return lowered in ("true", "1", "yes")
    try:
        return annotation(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{flag}: cannot read {text!r} as {annotation.__name__}") from error


def text_parser(annotation: Any, flag: str) -> Callable[[str], Any]:
    """A function turning command-line text into a value of ``annotation``: ``none`` for an optional
    field's None, comma-separated entries for a tuple, a ``Literal``'s own strings."""
    inner, optional = unwrap_optional(annotation)

    def parse(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        if typing.get_origin(inner) is tuple:
            item_type = typing.get_args(inner)[0]
            return tuple(_parse_scalar(part.strip(), item_type, flag) for part in text.split(",") if part.strip())
        return _parse_scalar(text, inner, flag)

    return parse


def type_name(annotation: Any) -> str:
    """A short readable name of an annotation, for ``--help``."""
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
