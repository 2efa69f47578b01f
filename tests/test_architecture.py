"""The dependency rules of docs/ARCHITECTURE.md, checked by walking every module's imports with ``ast``.

The layers and the isolated packages are read from the guide's two tables (section "Layers"), so the guide and the
check cannot disagree: a module imports from its own layer or lower; models and schedulers import nothing of hfgen
but what their row allows (and their own subpackage); no import cycles between modules. The top
``hfgen/__init__.py`` may import anything. Every import counts: module level, inside functions and under
``if TYPE_CHECKING``. Nothing is imported to check this. The guide's "Families" table is checked against the files
of the repository.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = "hfgen"
GUIDE = ROOT / "docs" / "ARCHITECTURE.md"
# Subpackages shipped under another folder name (pyproject's package-dir mapping).
PACKAGE_DIRS = {"hfgen": "hfgen", "hfgen.pipelines": "pipelines", "hfgen.model_cards": "model_cards"}


def guide_section(title: str, guide: Path = GUIDE) -> str:
    """The text of the guide's ``## title`` section, up to the next ``## `` heading."""
    text = guide.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def table_rows(section: str) -> list[list[str]]:
    """The body rows of every Markdown table in ``section``, split into cells (each table's header and rule
    rows dropped)."""
    rows, in_table = [], False
    for line in section.splitlines():
        is_row = line.startswith("|")
        if is_row and in_table and not set(line) <= set("|-: "):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        in_table = is_row
    return rows


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def guide_layers(guide: Path = GUIDE) -> tuple[dict[str, int], dict[str, tuple[str, ...]]]:
    """``LAYERS`` (module group → layer number) and ``ISOLATED`` (package → what it may import) from the guide."""
    layers, isolated = {}, {}
    for cells in table_rows(guide_section("Layers", guide)):
        if cells[0].isdigit():
            for name in code_spans(cells[1]):
                layers[name] = int(cells[0])
        elif code_spans(cells[0]):
            isolated[code_spans(cells[0])[0]] = tuple(code_spans(cells[1]))
    return layers, isolated


LAYERS, ISOLATED = guide_layers()


@dataclass(frozen=True)
class Module:
    name: str  # dotted name in the installed package, e.g. "hfgen.pipelines.base"
    path: str  # file, relative to the repository root (for messages)
    source: str
    is_package: bool


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the hfgen module imported (the deepest known module the statement names)
    path: str
    line: int
    statement: str

    def where(self) -> str:
        return f"{self.path}:{self.line}: `{self.statement}`"


def installed_modules(root: Path = ROOT) -> dict[str, Module]:
    """Every ``.py`` file of the installed distribution, named as it is imported: ``pipelines/`` is
    ``hfgen.pipelines`` and ``model_cards/`` is ``hfgen.model_cards`` (pyproject's package-dir mapping)."""
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for file in sorted((root / folder).rglob("*.py")):
            parts = [*package.split("."), *file.relative_to(root / folder).with_suffix("").parts]
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            modules[name] = Module(
                name, file.relative_to(root).as_posix(), file.read_text(encoding="utf-8"), is_package
            )
    return modules


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = module.name.split(".")
    package = parts if module.is_package else parts[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _deepest_known(name: str, known: set[str]) -> str:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name


def hfgen_imports(modules: dict[str, Module]) -> list[Import]:
    """Every import of an hfgen module by an hfgen module: ``import a.b``, ``from a import b`` (``a.b`` when it is
    a module), relative imports resolved; anywhere in the file."""
    known = set(modules)
    found = []
    for module in modules.values():
        tree = ast.parse(module.source, filename=module.path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, node)
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            else:
                continue
            statement = ast.get_source_segment(module.source, node) or ast.dump(node)
            for name in dict.fromkeys(names):
                if name == TOP or name.startswith(TOP + "."):
                    target = _deepest_known(name, known) or name
                    found.append(Import(module.name, target, module.path, node.lineno, " ".join(statement.split())))
    return found


def layer_group(name: str) -> str | None:
    """The key of ``LAYERS`` that ``name`` belongs to (``None`` for the top package and unknown modules)."""
    for group in LAYERS:
        if name == group or name.startswith(group + "."):
            return group
    return None


def unlayered_modules(modules: dict[str, Module]) -> list[str]:
    return [
        f"{m.path}: module {m.name} belongs to no layer"
        for m in modules.values()
        if m.name != TOP and not layer_group(m.name)
    ]


def layer_violations(imports: list[Import]) -> list[str]:
    problems = []
    for imp in imports:
        if imp.importer == TOP:
            continue  # the top package re-exports everything
        source, target = layer_group(imp.importer), layer_group(imp.target)
        if source is None:
            continue  # reported by unlayered_modules
        if imp.target == TOP:
            problems.append(f"{imp.where()}: {imp.importer} imports the top package hfgen, which imports everything")
            continue
        if target is None:
            problems.append(f"{imp.where()}: {imp.importer} imports {imp.target}, which belongs to no layer")
            continue
        if LAYERS[target] > LAYERS[source]:
            problems.append(
                f"{imp.where()}: upward import: {imp.importer} (layer {LAYERS[source]}, {source}) imports "
                f"{imp.target} (layer {LAYERS[target]}, {target})"
            )
        if source in ISOLATED and target != source and target not in ISOLATED[source]:
            allowed = ", ".join(ISOLATED[source])
            problems.append(
                f"{imp.where()}: {imp.importer} imports {imp.target}; {source} may import nothing of hfgen but "
                f"{allowed} and {source}"
            )
    return problems


def _is_child(package: str, name: str) -> bool:
    return name.startswith(package + ".")


def cycles(modules: dict[str, Module], imports: list[Import]) -> list[str]:
    """Strongly connected components (Tarjan) of the module graph, without the edges from a package's
    ``__init__`` to its own submodules; one message per cycle, naming every import on it."""
    edges: dict[str, dict[str, list[Import]]] = {name: {} for name in modules}
    for imp in imports:
        if imp.target == imp.importer or imp.target not in modules:
            continue
        if modules[imp.importer].is_package and _is_child(imp.importer, imp.target):
            continue
        edges[imp.importer].setdefault(imp.target, []).append(imp)

    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for name in sorted(edges):
        if name not in index:
            visit(name)
    problems = []
    for component in components:
        members = set(component)
        on_cycle = [imp.where() for v in component for w, imps in edges[v].items() if w in members for imp in imps]
        problems.append(f"import cycle among {', '.join(component)}:\n    " + "\n    ".join(on_cycle))
    return problems


def check(modules: dict[str, Module]) -> list[str]:
    imports = hfgen_imports(modules)
    return unlayered_modules(modules) + layer_violations(imports) + cycles(modules, imports)


# --------------------------------------------------------------------------------------------------- the tree


@pytest.fixture(scope="module")
def tree() -> dict[str, Module]:
    return installed_modules()


def test_the_walk_sees_every_package_of_the_distribution(tree):
    for name in ("hfgen", "hfgen.utils", "hfgen.pipelines", "hfgen.pipelines.base", "hfgen.model_cards"):
        assert name in tree
    assert tree["hfgen.pipelines.base"].path == "pipelines/base.py"
    assert not unlayered_modules(tree), "\n".join(unlayered_modules(tree))


def test_no_upward_imports_and_models_and_schedulers_import_only_utils(tree):
    problems = layer_violations(hfgen_imports(tree))
    assert not problems, "layering violations (docs/ARCHITECTURE.md, Layers):\n" + "\n".join(problems)


def test_no_import_cycles(tree):
    problems = cycles(tree, hfgen_imports(tree))
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------------------- the guide


def test_the_guide_tables_give_every_layer_and_the_isolated_packages():
    assert LAYERS["hfgen.checks"] == LAYERS["hfgen.utils"] == 0
    assert LAYERS["hfgen.models"] == LAYERS["hfgen.schedulers"] == 1 < LAYERS["hfgen.methods"] == 2
    assert LAYERS["hfgen.pipelines"] == 3 < LAYERS["hfgen.training"] == 4 < LAYERS["hfgen.space"] == 5
    assert ISOLATED == {m: ("hfgen.checks", "hfgen.utils", "hfgen.lazy") for m in ("hfgen.models", "hfgen.schedulers")}
    top_level = {p.stem if p.suffix else p.name for p in (ROOT / "hfgen").iterdir() if p.name != "__pycache__"}
    top_level |= {"pipelines", "model_cards"}
    named = {group.split(".")[1] for group in LAYERS}
    assert {name for name in top_level if not name.startswith("__")} == named


def guide_family_files() -> dict[str, list[str]]:
    """Each row of the guide's Families table: the family → every repository path its cells name."""
    return {
        cells[0]: [span for cell in cells[1:] for span in code_spans(cell) if "/" in span]
        for cells in table_rows(guide_section("Families"))
    }


def test_every_family_file_the_guide_names_exists():
    families = guide_family_files()
    assert len(families) >= 10 and all(families.values())
    named = {path for paths in families.values() for path in paths}
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, f"docs/ARCHITECTURE.md (Families) names files that do not exist: {missing}"
    shared = {  # modules every family uses, no family's own
        "pipelines": {"__init__", "base", "loading", "sampling", "image_common"},
        "hfgen/training": {
            "__init__",
            "checkpoints",
            "engine",
            "errors",
            "evaluation",
            "image_data",
            "optimization",
            "points",
            "task",
            "trainer",
        },
        "hfgen/arguments": {"__init__", "common", "image_data"},
        "hfgen/methods": {"__init__", "solver_order"},
        "model_cards": {"__init__", "pipeline"},
    }
    expected = {f"training/{p.name}" for p in (ROOT / "training").glob("train_*.py")}
    for folder, common in shared.items():
        for suffix in (".py", ".md") if folder == "model_cards" else (".py",):
            expected |= {f"{folder}/{p.name}" for p in (ROOT / folder).glob(f"*{suffix}") if p.stem not in common}
    unlisted = sorted(expected - named)
    assert not unlisted, f"files of a family with no row in docs/ARCHITECTURE.md (Families): {unlisted}"


# ------------------------------------------------------------------------------------------- the checker itself


def _synthetic(sources: dict[str, str]) -> dict[str, Module]:
    modules = {}
    for name, source in sources.items():
        is_package = name.endswith(".__init__")
        name = name.removesuffix(".__init__")
        path = name.replace(".", "/") + ("/__init__.py" if is_package else ".py")
        modules[name] = Module(name, path, source, is_package)
    return modules


def test_checker_reports_an_upward_import_with_file_line_and_statement():
    modules = _synthetic(
        {
            "hfgen.__init__": "from hfgen.training import run\n",
            "hfgen.utils": "x = 1\n",
            "hfgen.models.__init__": "",
            "hfgen.models.net": "import torch\n\n\ndef f():\n    from ..training.engine import Engine\n",
            "hfgen.methods.__init__": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hfgen import plotting\n"
            ),
            "hfgen.plotting": "from hfgen.utils import x\n",
            "hfgen.schedulers.__init__": "from hfgen.data import toy\n",
            "hfgen.data.__init__": "",
            "hfgen.data.toy": "",
            "hfgen.training.__init__": "",
            "hfgen.training.engine": "from hfgen.methods import y\n",
        }
    )
    problems = check(modules)
    text = "\n".join(problems)
    assert "hfgen/models/net.py:5: `from ..training.engine import Engine`: upward import" in text
    assert "hfgen/methods/__init__.py:3: `from hfgen import plotting`: upward import" in text
    assert "hfgen/schedulers/__init__.py:1: `from hfgen.data import toy`" in text and "nothing of hfgen but" in text
    assert not any(p.startswith("hfgen/__init__.py") or "engine.py" in p or "plotting.py" in p for p in problems)
    assert "hfgen/models/net.py:5" in text and "may import nothing of hfgen but hfgen.checks, hfgen.utils" in text


def test_checker_reports_a_cycle_but_not_a_package_importing_its_children():
    modules = _synthetic(
        {
            "hfgen.__init__": "",
            "hfgen.methods.__init__": "from hfgen.methods.a import f\nfrom .b import g\n",
            "hfgen.methods.a": "from hfgen.methods import b\n",
            "hfgen.methods.b": "def g():\n    from .c import h\n",
            "hfgen.methods.c": "from hfgen.methods.a import f\n",
            "hfgen.methods.d": "from hfgen.methods import a\n",
        }
    )
    problems = check(modules)
    assert len(problems) == 1, problems
    assert problems[0].startswith("import cycle among hfgen.methods.a, hfgen.methods.b, hfgen.methods.c")
    for where in (
        "hfgen/methods/a.py:1: `from hfgen.methods import b`",
        "hfgen/methods/b.py:2: `from .c import h`",
        "hfgen/methods/c.py:1: `from hfgen.methods.a import f`",
    ):
        assert where in problems[0]
    assert "methods/__init__.py" not in problems[0] and "methods/d.py" not in problems[0]


def test_checker_flags_modules_outside_every_layer():
    modules = _synthetic({"hfgen.__init__": "", "hfgen.gaussian_bridge": "", "hfgen.utils": "import hfgen\n"})
    problems = check(modules)
    assert any(
        p.startswith("hfgen/gaussian_bridge.py: module hfgen.gaussian_bridge belongs to no layer") for p in problems
    )
    assert any(p.startswith("hfgen/utils.py:1: `import hfgen`") and "top package" in p for p in problems)
