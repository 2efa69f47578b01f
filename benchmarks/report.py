"""What every benchmark's results page shares, and rendering a page again from the JSON stored beside it.

    python benchmarks/report.py                  # render every page from its stored JSON (after changing a writer)
    python benchmarks/report.py ddpm vae         # only these pages
    python benchmarks/report.py --check          # exit 1, naming them, when committed pages differ from their JSON

Each benchmark script defines ``render(results) -> str``, its page in Markdown from the dict it stores as JSON, and
writes both with :func:`write_results`; it declares its :class:`Page` (its name and two files), and :data:`PAGES`
holds every page that a script of this folder declares. The shared pieces: :func:`machine` (what a run records of the
machine), :func:`written_by` (the header line), :func:`table` (a Markdown table), :func:`plus_minus` (a number with
its standard error or spread), :func:`verdict` and :func:`markdown` (the page's text, with the note that ends a smoke
run's page).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import json
import os
import platform
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: the last lines of a page written by a smoke run
_QUICK_NOTE = ["", "**Quick smoke run: tiny budgets, the numbers are meaningless.**"]


@dataclass(frozen=True)
class Page:
    """A results page: its ``name``, the JSON it stores and the Markdown it writes. The benchmark script that
    measures it and renders it (``render(results) -> str``) declares it at module level, as
    ``PAGE = Page("ddpm", "ddpm_results.json", "DDPM_RESULTS.md")``; :func:`declared_pages` fills in ``script``."""

    name: str
    json_name: str
    markdown_name: str
    script: str = ""


def declared_pages(folder: Path = HERE) -> dict[str, Page]:
    """Every page declared by a script of ``folder`` (a module-level ``PAGE = Page(...)`` of literal arguments), by
    name, read with :mod:`ast` without importing the script; two scripts declaring one name is an error."""
    pages: dict[str, Page] = {}
    for path in sorted(folder.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body:
            if not (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["PAGE"]):
                continue
            call = node.value
            if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Page"):
                raise ValueError(f"{path.name}: `PAGE` must be `Page(name, json_name, markdown_name)`")
            page = Page(*map(ast.literal_eval, call.args), script=path.stem)
            if page.name in pages:
                raise ValueError(f"{path.name} and {pages[page.name].script}.py both declare the page {page.name!r}")
            pages[page.name] = page
    return pages


PAGES = declared_pages()


def machine() -> dict[str, Any]:
    """What a run records of where it ran: ``machine`` ("x86_64 2 cores"), the ``torch`` version and its
    ``threads``."""
    import torch

    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def written_by(script: str, results: dict[str, Any], threads: str | None = None) -> str:
    """The start of a page's header: "Written by `python benchmarks/<script>.py` on <machine>, torch <version>,
    <threads>" (default "<n> thread(s)" from ``results["threads"]``); the page goes on after it."""
    threads = f"{results['threads']} thread(s)" if threads is None else threads
    return f"Written by `python benchmarks/{script}.py` on {results['machine']}, torch {results['torch']}, {threads}"


def _row(cells: Sequence[Any]) -> str:
    return "|" + "|".join(f" {cell} " if cell != "" else " " for cell in cells) + "|"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table: the header, the ``|---|`` line and one line per row (an empty cell is ``| |``)."""
    return [_row(header), "|" + "---|" * len(header), *(_row(cells) for cells in rows)]


def plus_minus(value: float, error: float, spec: str) -> str:
    """``value ± error``, both formatted with ``spec`` (``".4f"``): a mean with its standard error or spread."""
    return f"{value:{spec}} ± {error:{spec}}"


def verdict(ok: bool | None) -> str:
    """Whether a target is met: "met", "NOT met", or "–" when it does not apply."""
    return "–" if ok is None else ("met" if ok else "NOT met")


def yes_no(ok: bool) -> str:
    return "yes" if ok else "no"


def markdown(lines: list[str], quick: bool = False) -> str:
    """A page's text: its ``lines``, then (for a ``quick`` smoke run) the note that its numbers mean nothing."""
    return "\n".join(lines + (_QUICK_NOTE if quick else [])) + "\n"


def write_results(results: Any, folder: Path, page: Page, render: Callable[[Any], str]) -> str:
    """Store ``results`` as the page's JSON in ``folder`` and write ``render(results)`` beside it; return the page."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / page.json_name).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    text = render(results)
    (folder / page.markdown_name).write_text(text, encoding="utf-8")
    return text


def render_page(name: str, folder: Path = HERE) -> str:
    """The page ``name`` (a key of :data:`PAGES`) rendered from the JSON stored in ``folder``."""
    page = PAGES[name]
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    module = importlib.import_module(page.script)
    results = json.loads((folder / page.json_name).read_text(encoding="utf-8"))
    return module.render(results)


def stale_pages(names: Iterable[str], folder: Path = HERE) -> dict[str, str]:
    """The pages whose Markdown in ``folder`` is not what their stored JSON renders to, each with a unified diff."""
    found = {}
    for name in names:
        path = folder / PAGES[name].markdown_name
        rendered = render_page(name, folder)
        written = path.read_text(encoding="utf-8")
        if rendered != written:
            lines = difflib.unified_diff(
                written.splitlines(), rendered.splitlines(), str(path), "rendered", lineterm=""
            )
            found[name] = "\n".join(lines)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "pages", nargs="*", metavar="page", help=f"pages to render (default: all of {', '.join(PAGES)})"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a page differs from its JSON")
    parser.add_argument("--folder", type=Path, default=HERE, help="folder of the JSON and Markdown (default: here)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.pages) - set(PAGES))
    if unknown:
        parser.error(f"unknown pages {unknown}; choose among {', '.join(PAGES)}")
    names = args.pages or list(PAGES)
    if args.check:
        stale = stale_pages(names, args.folder)
        for name, diff in stale.items():
            print(f"{name}: {PAGES[name].markdown_name} is not what {PAGES[name].json_name} renders to\n{diff}")
        return 1 if stale else 0
    for name in names:
        (args.folder / PAGES[name].markdown_name).write_text(render_page(name, args.folder), encoding="utf-8")
        print(f"wrote {args.folder / PAGES[name].markdown_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
