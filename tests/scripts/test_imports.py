"""scripts/ has no import cycle, common.py imports none of its siblings, no
script edits sys.path, and no script is over 400 lines."""
import ast
from typing import Dict, Set

from ..util import find_cycle
from .conftest import SCRIPTS

MAX_LINES = 400


def sibling_imports() -> Dict[str, Set[str]]:
    """For each scripts/*.py, the sibling scripts it imports (anywhere in it)."""
    names = {path.stem for path in SCRIPTS.glob("*.py")}
    graph: Dict[str, Set[str]] = {}
    for path in sorted(SCRIPTS.glob("*.py")):
        imported: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
        graph[path.stem] = imported & names
    return graph


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_scripts_import_each_other_without_a_cycle():
    graph = sibling_imports()
    assert "common" in graph
    assert find_cycle(graph) == []


def test_common_imports_no_sibling():
    graph = sibling_imports()
    assert graph["common"] == set()
    # reports.py is common's companion (the machine, report lines): common only.
    assert graph["reports"] <= {"common"}


def test_no_script_edits_sys_path():
    for path in SCRIPTS.glob("*.py"):
        assert "sys.path" not in path.read_text(encoding="utf8"), path.name


def test_no_script_is_over_400_lines():
    lengths = {p.name: len(p.read_text(encoding="utf8").splitlines()) for p in SCRIPTS.glob("*.py")}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
