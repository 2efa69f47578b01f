"""Public names of a package imported on first use (PEP 562), so that importing the package stays cheap.

A package's public names are those its modules declare in their ``__all__``: :func:`declared_exports` reads them
from the source (nothing is imported), so a new module joins its package's exports without editing a list.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def declared_names(source_file: Path) -> tuple[list[str], set[str]]:
    """A module's ``__all__`` (when it is a literal list or tuple of strings; ``[]`` without one) and the names it
    defines itself at its top level (classes, functions, assignments), read from its source."""
    tree = ast.parse(source_file.read_text(encoding="utf-8"), filename=str(source_file))
    declared: list[str] = []
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            defined.add(node.name)
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        names = {target.id for target in targets if isinstance(target, ast.Name)}
        if "__all__" in names:
            declared = list(ast.literal_eval(node.value))
        defined |= names
    return declared, defined


def declared_exports(package: str) -> dict[str, str]:
    """``{name: module}`` for every name in the ``__all__`` of a module of ``package`` or of its subpackages, read
    from the source with :mod:`ast` (nothing is imported). A name that several modules declare maps to the one that
    defines it (the others re-export it); two modules defining one name is an error. Modules and folders whose name
    starts with ``_``, and the ``__init__`` files, are passed over."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{package!r} is not a package")
    folder = Path(next(iter(spec.submodule_search_locations)))
    exports: dict[str, str] = {}
    definers: dict[str, str] = {}
    for file in sorted(folder.rglob("*.py")):
        parts = file.relative_to(folder).with_suffix("").parts
        if any(part.startswith("_") for part in parts):
            continue
        module = ".".join((package, *parts))
        declared, defined = declared_names(file)
        for name in declared:
            if name not in defined:
                exports.setdefault(name, module)
            elif definers.setdefault(name, module) != module:
                raise ImportError(f"{package}: both {definers[name]} and {module} define and export {name!r}")
    return exports | definers


def lazy_exports(
    package: str, exports: Mapping[str, str] | Callable[[], Mapping[str, str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``: a name of ``exports`` (name → the module
    that defines it; or a function that returns that mapping, called once, on first use) or a submodule
    ``package.<name>`` is imported on first use and kept in the package; ``__all__`` is the sorted names."""
    table = functools.cache(exports if callable(exports) else lambda: exports)

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            value: Any = sorted(table())
        elif name in table():
            value = getattr(importlib.import_module(table()[name]), name)
        else:
            try:
                value = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        setattr(importlib.import_module(package), name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(table()))

    return __getattr__, __dir__
