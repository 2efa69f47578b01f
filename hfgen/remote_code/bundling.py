"""Self-contained module files for diffusers' remote-code layout, made from hfgen's own modules.

``DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`` copies one ``.py`` file per component (and one
for the pipeline) and imports it where hfgen may not be installed. :func:`bundle_module` makes that file from an
hfgen module: the module's own text, preceded by the definitions it takes from other hfgen modules (only those it
uses, and what they use in turn, found by walking the syntax tree), so that the result imports only the standard
library, torch, numpy and diffusers (and, inside the functions that need them, the :data:`OPTIONAL_PACKAGES`).
:func:`check_self_contained` is the guard every written file passes. A definition that must not be copied (a class
that the file finds elsewhere when it runs) is replaced by a :class:`StandIn` that the caller supplies.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

#: the third-party packages an exported file may import (besides the standard library)
ALLOWED_PACKAGES = ("torch", "numpy", "diffusers")
#: the packages of optional features (an ODE solver for log-densities), which a function of an exported file may import
#: when it runs: a user without them loads the file and samples, and diffusers only warns that they are missing
OPTIONAL_PACKAGES = ("torchdiffeq",)
_TOP = "hfgen"
_STAND_INS = "<stand-ins>"  # the place of the stand-ins among the modules of a bundle


def check_self_contained(text: str, origin: str) -> str:
    """Return ``text`` if every import in it (at any depth) is absolute and names the standard library or one of
    :data:`ALLOWED_PACKAGES`, or one of :data:`OPTIONAL_PACKAGES` inside a function; raise a ``ValueError`` naming the
    file, the line and the import otherwise."""
    tree = ast.parse(text, filename=origin)
    in_functions = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise ValueError(
                f"{origin} line {node.lineno}: the relative import `from {'.' * node.level}{node.module or ''} "
                "import …` would need a sibling file that diffusers does not download with a component"
            )
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            root = name.split(".")[0]
            if root == _TOP:
                raise ValueError(
                    f"{origin} line {node.lineno} imports {name!r}: a remote-code file must not import hfgen, which a "
                    "diffusers-only user does not have"
                )
            if root in OPTIONAL_PACKAGES and id(node) not in in_functions:
                raise ValueError(
                    f"{origin} line {node.lineno} imports {name!r} at module level: an optional package may be "
                    "imported only inside the function that needs it, so that the file loads without it"
                )
            if root not in ALLOWED_PACKAGES + OPTIONAL_PACKAGES and root not in sys.stdlib_module_names:
                raise ValueError(
                    f"{origin} line {node.lineno} imports {name!r}: a remote-code file may import only the standard "
                    f"library and {', '.join(ALLOWED_PACKAGES)} (and inside a function {', '.join(OPTIONAL_PACKAGES)})"
                )
    return text


def _imported_roots(text: str) -> set[str]:
    """The top-level packages that the imports of ``text`` name, at any depth."""
    roots = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and not node.level:
            roots.add((node.module or "").split(".")[0])
        elif isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
    return roots


@dataclass(frozen=True)
class StandIn:
    """What a bundle holds in place of a definition it must not copy: ``text``, a statement that binds the name, and
    the hfgen definitions that ``text`` reads, as ``(module, name)`` pairs (copied like any other)."""

    text: str
    reads: tuple[tuple[str, str], ...] = ()


#: ``(module, name) -> StandIn or None``: whether the definition that ``name`` has in the hfgen module is replaced
StandInRule = Callable[[str, str], StandIn | None]


@dataclass
class _Statement:
    """A top-level statement of a module: the names it binds and reads, and its source lines."""

    node: ast.stmt
    text: str
    binds: set[str]
    reads: set[str]


@dataclass
class _Module:
    name: str
    path: Path
    docstring: str
    statements: list[_Statement] = field(default_factory=list)
    body_start: int = 0  # first line (1-based) after the leading docstring and imports


def _binds(node: ast.stmt) -> set[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
            found.add(child.id)
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and child is not node:
            found.add(child.name)
    return found


@cache
def _parse(module_name: str) -> _Module:
    path = Path(importlib.import_module(module_name).__file__)
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    lines = text.splitlines()
    module = _Module(module_name, path, ast.get_docstring(tree) or "")
    leading = True
    for node in tree.body:
        is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is tree.body[0]
        if leading and not (is_docstring or isinstance(node, ast.Import | ast.ImportFrom)):
            leading = False
            module.body_start = node.lineno
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.decorator_list:
                module.body_start = node.decorator_list[0].lineno
        if is_docstring:
            continue
        first = node.decorator_list[0].lineno if getattr(node, "decorator_list", None) else node.lineno
        reads = {child.id for child in ast.walk(node) if isinstance(child, ast.Name)}
        module.statements.append(_Statement(node, "\n".join(lines[first - 1 : node.end_lineno]), _binds(node), reads))
    if leading:
        module.body_start = len(lines) + 1
    return module


def _hfgen_source(module: _Module, node: ast.stmt) -> str | None:
    """The absolute hfgen module an ``import from`` statement reads, or None for any other statement."""
    if not isinstance(node, ast.ImportFrom):
        return None
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
    name = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
    return name if name.split(".")[0] == _TOP else None


class _Bundle:
    """Collects the statements an exported file needs and checks that no two of them bind a name differently."""

    def __init__(self, stand_in: StandInRule | None = None) -> None:
        self.needed: dict[str, set[str]] = {}  # hfgen module -> names asked of it
        self.imports: set[str] = set()  # one-line imports of the standard library and allowed packages
        self.bindings: dict[str, str] = {}  # bound name -> where it is defined (for the clash check)
        self.stand_in_rule = stand_in
        self.stand_ins: dict[str, StandIn] = {}  # name -> what the bundle holds in place of its definition
        self.stand_in_users: set[str] = set()  # the modules whose definitions read a stand-in
        self.copied: list[str] = []  # the modules that dependency_text copied from, in order

    def bind(self, name: str, origin: str) -> None:
        if self.bindings.setdefault(name, origin) != origin:
            raise ValueError(
                f"cannot make a self-contained file: {name!r} is defined both in {self.bindings[name]} and in "
                f"{origin}; rename one of them"
            )

    def add_import(self, node: ast.Import | ast.ImportFrom, wanted: set[str] | None) -> None:
        """Keep the imports of ``node`` that bind a ``wanted`` name (all when None), one per line."""
        for alias in node.names:
            bound = (alias.asname or alias.name).split(".")[0]
            if (wanted is not None and bound not in wanted) or (
                isinstance(node, ast.ImportFrom) and node.module == "__future__"
            ):
                continue
            renamed = f" as {alias.asname}" if alias.asname else ""
            if isinstance(node, ast.Import):
                line = f"import {alias.name}{renamed}"
                self.bind(bound, line if alias.asname else f"import {bound}")  # `import a.b` binds `a`
            else:
                line = f"from {node.module} import {alias.name}{renamed}"
                self.bind(bound, line)
            self.imports.add(line)

    def request(self, module_name: str, names: set[str]) -> None:
        """Ask for ``names`` of an hfgen module, and (recursively) for what they read from other hfgen modules."""
        known = self.needed.setdefault(module_name, set())
        if names <= known:
            return
        known |= names
        module = _parse(module_name)
        wanted = self._closure(module, known)
        for statement in module.statements:
            node = statement.node
            if isinstance(node, ast.ImportFrom) and _hfgen_source(module, node) and statement.binds & wanted:
                self._request_from(module, node, wanted)

    def order(self) -> list[str]:
        """The requested modules, each after the modules it reads from (its definitions may use theirs at import),
        with the stand-ins (:data:`_STAND_INS`) after the modules they read and before all others."""
        ordered: list[str] = []

        def visit(module_name: str) -> None:
            if module_name in ordered:
                return
            module = _parse(module_name)
            wanted = self._closure(module, self.needed[module_name])
            for statement in module.statements:
                node = statement.node
                if isinstance(node, ast.ImportFrom) and _hfgen_source(module, node) and statement.binds & wanted:
                    visit(_hfgen_source(module, node))
            ordered.append(module_name)

        for stand_in in self.stand_ins.values():
            for module_name, _ in stand_in.reads:
                visit(module_name)
        early = self.stand_in_users.intersection(ordered)
        if early:
            raise ValueError(f"cannot make a self-contained file: the stand-ins read {sorted(early)}, which read them")
        if self.stand_ins:
            ordered.append(_STAND_INS)
        for module_name in self.needed:
            visit(module_name)
        return ordered

    def _stands_in(self, module: _Module, name: str) -> bool:
        """Whether ``name`` of ``module`` is replaced by a stand-in (recorded, with what it reads, the first time)."""
        stand_in = self.stand_in_rule(module.name, name) if self.stand_in_rule else None
        if stand_in is None:
            return False
        self.stand_in_users.add(module.name)
        if name in self.stand_ins:
            if self.stand_ins[name] != stand_in:
                raise ValueError(f"cannot make a self-contained file: two different stand-ins for {name!r}")
            return True
        self.stand_ins[name] = stand_in
        for module_name, read in stand_in.reads:
            self.request(module_name, {read})
        return True

    def _request_from(self, module: _Module, node: ast.ImportFrom, wanted: set[str] | None) -> None:
        source = _hfgen_source(module, node)
        names = {alias.name for alias in node.names if wanted is None or (alias.asname or alias.name) in wanted}
        if "*" in names:
            raise ValueError(f"{module.path}: `from {source} import *` cannot be bundled; import the names it uses")
        self.request(source, names)

    def _closure(self, module: _Module, names: set[str]) -> set[str]:
        """``names`` and the names of ``module`` they read, in turn: the definitions to copy (stand-ins left out)."""
        defined = {name for statement in module.statements for name in statement.binds}
        missing = names - defined
        if missing:
            raise ValueError(f"{module.name} defines no {sorted(missing)}")
        wanted, frontier = set(), set(names)
        while frontier:
            frontier = {name for name in frontier if not self._stands_in(module, name)}
            wanted |= frontier
            reads = set().union(*(s.reads for s in module.statements if s.binds & frontier))
            frontier = (reads & defined) - wanted
        return wanted

    def dependency_text(self) -> str:
        """The needed statements of every requested module, dependencies first, with a comment naming each file."""
        blocks = []
        for module_name in self.order():
            if module_name == _STAND_INS:
                for name in self.stand_ins:
                    self.bind(name, _STAND_INS)
                texts = "\n".join(stand_in.text for stand_in in self.stand_ins.values())
                blocks.append("# ---- stand-ins for what this file finds elsewhere " + "-" * 68 + "\n\n" + texts)
                continue
            module = _parse(module_name)
            wanted = self._closure(module, self.needed[module_name])
            parts = []
            for statement in module.statements:
                node = statement.node
                documentation = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                if not statement.binds & wanted:
                    if not statement.binds and not documentation:
                        raise ValueError(f"{module.path} line {node.lineno}: a top-level statement that binds no name")
                    continue
                if isinstance(node, ast.ImportFrom) and _hfgen_source(module, node):
                    parts += [self._alias(module, alias) for alias in node.names if alias.asname in wanted]
                elif isinstance(node, ast.Import | ast.ImportFrom):
                    self.add_import(node, wanted)
                else:
                    for name in statement.binds:
                        self.bind(name, module.name)
                    parts.append(statement.text)
            if not parts:
                continue  # a module whose requested names all stand in
            self.copied.append(module_name)
            relative = f"{module_name.replace('.', '/')}.py"
            blocks.append(f"# ---- copied from {relative} " + "-" * max(4, 100 - len(relative)) + "\n\n")
            blocks[-1] += "\n\n\n".join(part for part in parts if part)
        return "\n\n\n".join(blocks)

    def _alias(self, module: _Module, alias: ast.alias) -> str:
        self.bind(alias.asname, module.name)
        return f"{alias.asname} = {alias.name}"


def bundle_module(module_name: str, title: str, stand_in: StandInRule | None = None) -> str:
    """The text of a self-contained copy of hfgen module ``module_name``, headed by a docstring that starts with
    ``title``, and checked by :func:`check_self_contained`.

    The module's own statements are kept verbatim (comments included) after its imports; each
    ``from hfgen… import name`` is replaced by the definitions of ``name`` and of what it reads, copied from the
    hfgen module that defines them (``from hfgen… import name as other`` adds ``other = name``), or by the
    :class:`StandIn` that the rule ``stand_in`` gives for it (all stand-ins stand together, after the modules they
    read and before the others). A name bound to two different things by the copied parts is refused, so the copy
    always means what the originals mean.
    """
    module = _parse(module_name)
    bundle = _Bundle(stand_in)
    own_aliases = []
    for statement in module.statements:
        node = statement.node
        if node.lineno >= module.body_start:
            break
        if isinstance(node, ast.ImportFrom) and _hfgen_source(module, node):
            bundle._request_from(module, node, None)
            own_aliases += [alias for alias in node.names if alias.asname]
    dependencies = bundle.dependency_text()
    for statement in module.statements:
        node = statement.node
        if node.lineno >= module.body_start:
            for name in statement.binds:
                bundle.bind(name, module_name)
        elif isinstance(node, ast.Import | ast.ImportFrom) and not _hfgen_source(module, node):
            bundle.add_import(node, None)
    aliases = "\n".join(f"{alias.asname} = {alias.name}" for alias in own_aliases)
    for alias in own_aliases:
        bundle.bind(alias.asname, module_name)
    lines = module.path.read_text(encoding="utf-8").splitlines()
    body = "\n".join(lines[module.body_start - 1 :]).strip("\n")
    sources = [f"``{name.replace('.', '/')}.py``" for name in [module_name, *bundle.copied]]
    listed = sources[0] if len(sources) == 1 else f"{', '.join(sources[:-1])} and {sources[-1]}"
    optional = sorted(_imported_roots(f"{dependencies}\n{body}") & set(OPTIONAL_PACKAGES))
    later = f" (and {', '.join(optional)} in the functions that need it)" if optional else ""
    made = (
        f"Made by hfgen from {listed}. It imports only the standard library, {', '.join(ALLOWED_PACKAGES[:-1])} and "
        f"{ALLOWED_PACKAGES[-1]}{later}, so that ``DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`` "
        "loads it where hfgen is not installed."
    )
    if dependencies:
        made += " The definitions it uses come first, under the name of their file; its own text comes last."
    header = f'r"""{title}\n\n{textwrap.fill(made, 116)}\n\n{module.docstring}\n"""'
    if dependencies:  # the module's own text, after the definitions it uses
        relative = f"{module_name.replace('.', '/')}.py"
        body = f"\n# ---- {relative} itself " + "-" * max(4, 105 - len(relative)) + "\n\n" + body
    parts = [header, "from __future__ import annotations", "\n".join(sorted(bundle.imports))]
    parts += [dependencies, aliases, body]
    text = "\n\n".join(part for part in parts if part) + "\n"
    return check_self_contained(text, f"the remote-code copy of {module_name}")
