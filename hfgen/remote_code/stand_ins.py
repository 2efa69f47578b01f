"""The component classes named by a pipeline file of diffusers' remote-code layout, which does not define them.

A saved folder's pipeline file is hfgen's pipeline module made self-contained (:mod:`hfgen.remote_code`); the
component classes that the module checks its components against (``isinstance(scheduler, GibbsScheduler)``) are
defined in the components' own files, which diffusers imports as modules of their own, so a copy in the pipeline file
would be another class. The file binds each such name to :func:`component_class` instead.
"""

from __future__ import annotations

from typing import Any


class ComponentClass(type):
    """The type of a component class's stand-in: ``isinstance(x, C)`` holds when the class of ``x`` or one of its
    bases has the name of ``C`` (its definition, in the component's file, is the only one of that name)."""

    def __instancecheck__(cls, instance: Any) -> bool:
        return cls.__subclasscheck__(type(instance))

    def __subclasscheck__(cls, subclass: type) -> bool:
        return any(base.__name__ == cls.__name__ for base in subclass.__mro__)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{cls.__name__} is defined in its component's file: build it with the class from there")


def component_class(name: str) -> ComponentClass:
    """The stand-in for the component class ``name``, for ``isinstance`` and ``issubclass`` checks."""
    return ComponentClass(name, (), {"__doc__": f"Stands for {name}, defined in its component's file."})
