"""scripts/ by role (scripts/README.md): every script sits in a group folder
except the shared modules; every script imports, and the scripts import each
other without a cycle, the shared modules importing no group; a group's
module is imported by its group (`bench.tables`), never by its bare name; a
script that imports a sibling when run puts scripts/ first on sys.path with
the one bootstrap line, and nothing else edits sys.path; no script shadows an
installed module or is over 400 lines; every scripts/ path that project.yml,
the Makefile and .ci/run name exists (and the grouped scripts run `--help`
from a fresh process, slow)."""
import ast
import importlib
import importlib.machinery
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set

import pytest

from ..util import find_cycle
from .conftest import SCRIPTS

MAX_LINES = 400
SHARED = {"common", "peers", "run_info"}
GROUPS = {"bench", "loadtest", "reports", "data", "train"}
BOOTSTRAP = "sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/: see scripts/README.md"
# The files outside scripts/ whose commands run the scripts.
COMMAND_FILES = ["project.yml", "Makefile", ".ci/run"]


def script_files() -> Dict[str, Path]:
    """Every script as its module name (`common`, `bench.tables`) -> its path;
    the groups' __init__.py left out."""
    files = {path.stem: path for path in SCRIPTS.glob("*.py")}
    for path in SCRIPTS.glob("*/*.py"):
        if path.name != "__init__.py":
            files[f"{path.parent.name}.{path.stem}"] = path
    return files


def imported_names(path: Path) -> List[str]:
    """The dotted names a file imports, anywhere in it: `from bench import
    int8` gives both "bench" and "bench.int8"."""
    names: List[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sibling_imports() -> Dict[str, Set[str]]:
    """For each script, the scripts it imports."""
    files = script_files()
    return {name: set(imported_names(path)) & set(files) for name, path in files.items()}


def is_entry_point(text: str) -> bool:
    return '__name__ == "__main__"' in text


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_scripts_are_grouped_by_role():
    assert {path.stem for path in SCRIPTS.glob("*.py")} == SHARED
    folders = {path.name for path in SCRIPTS.iterdir() if path.is_dir() and path.name != "__pycache__"}
    assert folders == GROUPS
    for group in GROUPS:
        init = SCRIPTS / group / "__init__.py"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf8"))), f"{init}: say what it holds"
        assert [p for p in (SCRIPTS / group).iterdir() if p.is_dir() and p.name != "__pycache__"] == []
    assert not (SCRIPTS / "__init__.py").exists()  # scripts/ is a folder on sys.path, not a package


@pytest.mark.parametrize("name", sorted(script_files()))
def test_every_script_imports(name):
    importlib.import_module(name)


def test_scripts_import_each_other_without_a_cycle():
    graph = sibling_imports()
    assert {"common", "bench.benchmark", "train.jobs"} <= set(graph)
    assert find_cycle(graph) == []


def test_shared_modules_import_no_group():
    graph = sibling_imports()
    assert graph["common"] == set()
    # peers.py (the peers' recipes) and run_info.py (the machine, report
    # lines) are common's companions: they import common only.
    assert graph["peers"] <= {"common"}
    assert graph["run_info"] <= {"common"}


def test_group_modules_are_imported_by_their_group():
    """`import tables` would work in a script run from scripts/bench/ (its own
    folder is on sys.path) but import a second copy beside `bench.tables`."""
    bare = {name.split(".")[1] for name in script_files() if "." in name} - GROUPS
    for name, path in script_files().items():
        tops = {imported.split(".")[0] for imported in imported_names(path)}
        assert tops & bare == set(), f"{path}: import {sorted(tops & bare)} by its group"


def test_only_the_bootstrap_line_edits_sys_path():
    files = script_files()
    for name, path in files.items():
        text = path.read_text(encoding="utf8")
        lines = text.splitlines()
        uses_siblings = bool(set(imported_names(path)) & (set(files) | GROUPS))
        needs_bootstrap = "." in name and is_entry_point(text) and uses_siblings
        assert lines.count(BOOTSTRAP) == int(needs_bootstrap), path
        assert text.count("sys.path") == int(needs_bootstrap), path
        if needs_bootstrap:
            # before the first import of a sibling at the top of the module
            first = min(
                node.lineno for node in ast.parse(text).body
                if isinstance(node, (ast.Import, ast.ImportFrom))
                and ({alias.name for alias in node.names} | {getattr(node, "module", None) or ""})
                & (set(files) | GROUPS)
            )
            assert lines.index(BOOTSTRAP) + 1 < first, path


def test_no_script_shadows_an_installed_module():
    """A grouped script's folder is on sys.path when it runs, and scripts/
    always: a `requests.py` there would hide the `requests` package."""
    elsewhere = [p for p in sys.path if not Path(p or ".").resolve().is_relative_to(SCRIPTS)]
    names = SHARED | GROUPS | {name.split(".")[-1] for name in script_files()}
    shadowed = []
    for name in sorted(names):
        spec = importlib.machinery.PathFinder.find_spec(name, elsewhere)
        if name in sys.stdlib_module_names or (spec is not None and spec.origin is not None):
            shadowed.append(name)
    assert shadowed == []


def test_no_script_is_over_400_lines():
    lengths = {str(p): len(p.read_text(encoding="utf8").splitlines()) for p in SCRIPTS.rglob("*.py")}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}


def test_every_script_path_in_the_commands_exists():
    project = SCRIPTS.parent
    named = {}
    for file in COMMAND_FILES:
        for path in re.findall(r"scripts/[\w/.-]+?\.py\b", (project / file).read_text(encoding="utf8")):
            named[path] = file
    assert "scripts/train/jobs.py" in named and "scripts/loadtest/loadtest.py" in named
    assert {path: file for path, file in named.items() if not (project / path).is_file()} == {}


def entry_points() -> List[str]:
    return sorted(
        str(path.relative_to(SCRIPTS))
        for path in SCRIPTS.glob("*/*.py")
        if is_entry_point(path.read_text(encoding="utf8"))
    )


def run_help(rel: str) -> None:
    """`python scripts/GROUP/NAME.py --help` from the project folder, in a
    fresh process, as a user types it: it finds its imports and shows its usage."""
    proc = subprocess.run(
        [sys.executable, f"scripts/{rel}", "--help"], cwd=SCRIPTS.parent,
        capture_output=True, text=True, timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    # get_data.py takes no options: it prints its docstring (the usage) and exits 1
    assert proc.returncode == 0 or f"scripts/{rel}" in proc.stderr, (proc.returncode, proc.stderr)


@pytest.mark.parametrize("rel", ["bench/benchmark.py", "loadtest/loadtest.py", "train/jobs.py"])
def test_main_scripts_run_from_a_fresh_process(rel):
    run_help(rel)


@pytest.mark.slow
@pytest.mark.parametrize("rel", entry_points())
def test_every_grouped_script_runs_from_a_fresh_process(rel):
    run_help(rel)
