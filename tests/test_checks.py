"""The shared argument checks (hfgen.checks): messages, exception types, and the config rules of every component."""

import inspect
import math
import re
from functools import partial

import pytest

import hfgen.models
import hfgen.schedulers
from hfgen.checks import (
    ArgumentTypeError,
    check_arguments,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_sizes,
)
from hfgen.utils import check_num_samples, check_positive_int


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: check_int(0, "n"), ValueError, "`n` must be an int >= 1, got 0"),
        (lambda: check_int(2.5, "n"), TypeError, "`n` must be an int >= 1, got 2.5 (float)"),
        (lambda: check_int(True, "n"), TypeError, "`n` must be an int >= 1, got True (bool)"),
        (
            lambda: check_int(5, "k", 1, 4, note="the rows"),
            ValueError,
            "`k` must be an int in [1, 4] (the rows), got 5",
        ),
        (lambda: check_int("3", "seed", None), TypeError, "`seed` must be an int, got '3' (str)"),
        (lambda: check_int(11, "n", None, 10), ValueError, "`n` must be an int <= 10, got 11"),
        (lambda: check_number(0.0, "h", 0, open_low=True), ValueError, "`h` must be a finite number > 0, got 0.0"),
        (lambda: check_number(-1, "h", 0), ValueError, "`h` must be a finite number >= 0, got -1"),
        (lambda: check_number(math.nan, "h", 0), ValueError, "`h` must be a finite number >= 0, got nan"),
        (lambda: check_number(math.inf, "h"), ValueError, "`h` must be a finite number, got inf"),
        (lambda: check_number("0.1", "h", 0), TypeError, "`h` must be a finite number >= 0, got '0.1' (str)"),
        (lambda: check_number(True, "h", 0), TypeError, "`h` must be a finite number >= 0, got True (bool)"),
        (
            lambda: check_number(1.0, "a", 0, 1, open_high=True),
            ValueError,
            "`a` must be a finite number in [0, 1), got 1.0",
        ),
        (lambda: check_number(0, "a", 0, 1, True, True), ValueError, "`a` must be a finite number in (0, 1), got 0"),
        (lambda: check_number(11.0, "x", high=10.0), ValueError, "`x` must be a finite number <= 10, got 11.0"),
        (lambda: check_bool(1, "flag"), TypeError, "`flag` must be a bool, got 1 (int)"),
        (lambda: check_choice("c", "mode", ("a", "b")), ValueError, "`mode` must be one of ('a', 'b'), got 'c'"),
        (lambda: check_choice("c", "mode", ("a",), note="x"), ValueError, "`mode` must be one of ('a',) (x), got 'c'"),
        (lambda: check_sizes([8, 0], "sizes"), ValueError, "`sizes` must be a list of ints >= 1, got [8, 0]"),
        (lambda: check_sizes([8, 2.0], "sizes"), TypeError, "`sizes` must be a list of ints >= 1, got [8, 2.0]"),
        (lambda: check_sizes("ab", "sizes"), TypeError, "`sizes` must be a list of ints >= 1, got 'ab' (str)"),
        (lambda: check_sizes(8, "sizes"), TypeError, "`sizes` must be a list of ints >= 1, got 8 (int)"),
        (lambda: check_sizes([], "sizes", False), ValueError, "`sizes` must be a non-empty list of ints >= 1, got []"),
    ],
)
def test_each_check_names_the_argument_the_value_and_the_range_with_one_error_type_per_mistake(call, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call()


def test_the_checks_return_what_they_accept():
    assert check_int(-3, "seed", None) == -3 and check_int(4, "k", 1, 4) == 4
    assert check_number(2, "x", 0) == 2.0 and type(check_number(2, "x", 0)) is float
    assert check_number(1.0, "a", 0, 1) == 1.0 and check_number(0.0, "a", 0, 1) == 0.0
    assert check_bool(False, "flag") is False and check_choice("b", "mode", ("a", "b")) == "b"
    assert check_sizes((8, 4), "sizes") == [8, 4] and check_sizes([], "sizes") == []


def test_the_former_twin_validators_now_raise_the_same_error_for_the_same_mistake():
    for check in (check_num_samples, check_positive_int):
        with pytest.raises(TypeError, match=r"^`n` must be an int >= 1, got 2.5 \(float\)$"):
            check(2.5, "n")
        with pytest.raises(ValueError, match=r"^`n` must be an int >= 1, got 0$"):
            check(0, "n")


@pytest.mark.parametrize(
    "call",
    [
        lambda: check_int(2.5, "n"),
        lambda: check_number("1", "h"),
        lambda: check_bool(1, "flag"),
        lambda: check_sizes([2.0], "sizes"),
        lambda: check_sizes(8, "sizes"),
    ],
)
def test_a_wrong_type_is_a_type_error_that_except_value_error_still_catches(call):
    with pytest.raises(ArgumentTypeError) as info:
        call()
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_check_arguments_checks_each_value_by_its_rule_in_order():
    rules = {"a": check_int, "b": partial(check_number, low=0), "c": check_bool}
    check_arguments(rules, {"a": 1, "b": 0.5, "c": True, "unchecked": object()})
    with pytest.raises(ValueError, match="^`b` must be a finite number >= 0, got -1$"):
        check_arguments(rules, {"a": 1, "b": -1, "c": "no"})
    with pytest.raises(TypeError, match="`a`"):
        check_arguments(rules, {"a": 1.0, "b": -1, "c": "no"})


def _configured_components() -> list[type]:
    """Every concrete model and scheduler class hfgen exports that declares ``config_rules``, by name."""
    exported = [getattr(module, name) for module in (hfgen.models, hfgen.schedulers) for name in module.__all__]
    components = [cls for cls in exported if isinstance(cls, type) and hasattr(cls, "config_rules")]
    return sorted((cls for cls in components if not inspect.isabstract(cls)), key=lambda cls: cls.__name__)


COMPONENTS = _configured_components()


def _bad_value(rule) -> tuple[object, type[Exception]]:
    """A value the rule refuses, and the error it raises for it."""
    check = getattr(rule, "func", rule)
    if check is check_bool:
        return 1, TypeError
    if check is check_choice:
        return "no-such-choice", ValueError
    if check is check_sizes:
        return "ab", TypeError
    return True, TypeError  # a bool is never an int or a number


@pytest.mark.parametrize(
    ("component", "name"),
    [(component, name) for component in COMPONENTS for name in component.config_rules],
    ids=lambda item: getattr(item, "__name__", item),
)
def test_every_declared_config_rule_is_checked_at_construction(component, name):
    value, error = _bad_value(component.config_rules[name])
    with pytest.raises(error, match=f"^`{name}` must be "):
        component(**{name: value})
