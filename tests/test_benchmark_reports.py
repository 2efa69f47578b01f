"""benchmarks/report.py: every committed results page is what its stored JSON renders to, and the check notices a
page that is not."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import report  # noqa: E402 (benchmarks/ is not a package: its folder goes on the path first)


@pytest.mark.parametrize("name", list(report.PAGES))
def test_each_committed_page_is_what_its_json_renders_to(name):
    page = report.PAGES[name]
    written = (BENCHMARKS / page.markdown_name).read_text(encoding="utf-8")
    assert report.render_page(name) == written, f"run `python benchmarks/report.py {name}` after changing its writer"


def test_every_benchmark_script_declares_its_page_and_pages_are_found_without_a_table():
    scripts = {path.stem for path in BENCHMARKS.glob("*.py")} - {"report"}
    assert {page.script for page in report.PAGES.values()} == scripts
    assert len({page.json_name for page in report.PAGES.values()}) == len(report.PAGES)


def test_declared_pages_reads_each_scripts_page_and_refuses_a_name_declared_twice(tmp_path):
    (tmp_path / "bench_a.py").write_text('raise SystemExit("not imported")\nPAGE = Page("a", "a.json", "A.md")\n')
    (tmp_path / "helper.py").write_text("X = 1\n")
    assert report.declared_pages(tmp_path) == {"a": report.Page("a", "a.json", "A.md", script="bench_a")}
    (tmp_path / "bench_b.py").write_text('PAGE = Page("a", "b.json", "B.md")\n')
    with pytest.raises(ValueError, match="bench_b.py and bench_a.py both declare the page 'a'"):
        report.declared_pages(tmp_path)


def test_the_check_names_a_page_edited_by_hand_and_render_restores_it(tmp_path, capsys):
    page = report.PAGES["ddpm"]
    for file in (page.json_name, page.markdown_name):
        shutil.copy(BENCHMARKS / file, tmp_path / file)
    assert report.main(["ddpm", "--check", "--folder", str(tmp_path)]) == 0
    original = (tmp_path / page.markdown_name).read_text(encoding="utf-8")
    edited = original.replace("| 0 |", "| 7 |", 1)
    assert edited != original
    (tmp_path / page.markdown_name).write_text(edited, encoding="utf-8")
    assert report.main(["ddpm", "--check", "--folder", str(tmp_path)]) == 1
    assert "ddpm: DDPM_RESULTS.md is not what ddpm_results.json renders to" in capsys.readouterr().out
    assert report.main(["ddpm", "--folder", str(tmp_path)]) == 0
    assert (tmp_path / page.markdown_name).read_text(encoding="utf-8") == report.render_page("ddpm")


def test_table_writes_an_empty_cell_as_one_space_and_a_dash_line_per_column():
    assert report.table(["", "a"], [["x", ""], [1, 2.5]]) == ["| | a |", "|---|---|", "| x | |", "| 1 | 2.5 |"]
    assert report.plus_minus(1.23456, 0.01, ".3f") == "1.235 ± 0.010"
    assert [report.verdict(ok) for ok in (True, False, None)] == ["met", "NOT met", "–"]


def test_an_unknown_page_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main(["dpm"])
    assert exit_info.value.code == 2 and "unknown pages ['dpm']" in capsys.readouterr().err
