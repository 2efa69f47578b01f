"""The checks of scalar arguments every layer shares; each refusal names the argument, the value and what is expected.

A value of the wrong type raises :class:`ArgumentTypeError` (a ``TypeError``, and a ``ValueError`` as well, which is
what most of these refusals raised before one vocabulary, so code that catches either keeps working), a value of the
right type outside its range ``ValueError``; a bool is never taken for an int or a number. A function checks its own
arguments with the ``check_*`` functions. A component states the rule of each config argument once, in a class attribute
``config_rules`` that maps the argument's name to a ``check_*`` function (``functools.partial`` sets its range), and
checks its config in ``__init__`` with :func:`check_arguments`, as scikit-learn's ``_parameter_constraints`` do. Tensors
are checked by :mod:`hfgen.utils`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a ``TypeError`` that ``except ValueError`` catches too."""


def _range(low: float | None, high: float | None, open_low: bool = False, open_high: bool = False) -> str:
    """The range in words: `` >= 1``, `` > 0``, `` <= 5``, `` in [0, 1)``, or nothing when unbounded."""
    low_text, high_text = (f"{b:g}" if isinstance(b, float) else str(b) for b in (low, high))
    if low is not None and high is not None:
        return f" in {'(' if open_low else '['}{low_text}, {high_text}{')' if open_high else ']'}"
    if low is not None:
        return f" {'>' if open_low else '>='} {low_text}"
    return "" if high is None else f" {'<' if open_high else '<='} {high_text}"


def _refusal(name: str, expected: str, value: object, wrong_type: bool) -> Exception:
    """:class:`ArgumentTypeError` (naming the value's type) or ``ValueError``: "`name` must be expected, got value"."""
    if wrong_type:
        return ArgumentTypeError(f"`{name}` must be {expected}, got {value!r} ({type(value).__name__})")
    return ValueError(f"`{name}` must be {expected}, got {value!r}")


def check_int(value: object, name: str, low: int | None = 1, high: int | None = None, note: str = "") -> int:
    """Return ``value`` if it is an int in ``[low, high]`` (a ``None`` bound is none); ``note`` says why."""
    expected = f"an int{_range(low, high)}{f' ({note})' if note else ''}"
    wrong_type = isinstance(value, bool) or not isinstance(value, int)
    if wrong_type or (low is not None and value < low) or (high is not None and value > high):
        raise _refusal(name, expected, value, wrong_type)
    return value


def check_number(
    value: object,
    name: str,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    note: str = "",
) -> float:
    """Return ``value`` as a float if it is a finite int or float between ``low`` and ``high`` (excluded if
    ``open_…``; a ``None`` bound is none); ``note`` says why."""
    expected = f"a finite number{_range(low, high, open_low, open_high)}{f' ({note})' if note else ''}"
    wrong_type = isinstance(value, bool) or not isinstance(value, int | float)
    if wrong_type or not math.isfinite(value):
        raise _refusal(name, expected, value, wrong_type)
    if (low is not None and (value <= low if open_low else value < low)) or (
        high is not None and (value >= high if open_high else value > high)
    ):
        raise _refusal(name, expected, value, False)
    return float(value)


def check_bool(value: object, name: str) -> bool:
    """Return ``value`` if it is a bool."""
    if not isinstance(value, bool):
        raise _refusal(name, "a bool", value, True)
    return value


def check_choice(value: object, name: str, choices: Sequence[Any], note: str = "") -> Any:
    """Return ``value`` if it is one of ``choices``."""
    if value not in tuple(choices):
        raise _refusal(name, f"one of {tuple(choices)}{f' ({note})' if note else ''}", value, False)
    return value


def check_sizes(value: object, name: str, allow_empty: bool = True) -> list[int]:
    """Return ``value`` as a list if it is a sequence of ints ``>= 1`` (layer widths, channels), non-empty unless
    ``allow_empty``."""
    expected = f"a {'' if allow_empty else 'non-empty '}list of ints >= 1"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise _refusal(name, expected, value, True)
    if any(isinstance(size, bool) or not isinstance(size, int) for size in value):
        raise ArgumentTypeError(f"`{name}` must be {expected}, got {value!r}")
    if (not value and not allow_empty) or any(size < 1 for size in value):
        raise _refusal(name, expected, value, False)
    return list(value)


def check_arguments(rules: Mapping[str, Callable[[Any, str], Any]], values: Mapping[str, Any]) -> None:
    """Check each ``values[name]`` by ``rules[name](value, name)``, e.g. ``(self.config_rules, self.config)``."""
    for name, rule in rules.items():
        rule(values[name], name)
