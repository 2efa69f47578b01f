"""How the demo app checks the values its controls send and words what went wrong."""

from __future__ import annotations

__all__ = ["check_int", "error_text"]


def check_int(value: object, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (a float with an integer value, as sliders send, is accepted)."""
    number = int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(number, bool) or not isinstance(number, int) or number < low or (high is not None and number > high):
        bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return number


def error_text(action: str, error: Exception) -> str:
    """The page's line for an ``error`` raised while doing ``action``: its type and message, no traceback."""
    return f"**Could not {action}:** {type(error).__name__}: {error}"
