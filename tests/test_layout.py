"""The package's layout rules (issue 13), checked on its source: no import
cycle among its modules (lazy imports inside functions included), no module
much over 400 lines, and no private attribute of another object read, except
the third-party ones listed with their reason. tests/scripts/test_imports.py
checks the same for scripts/."""
import ast
from pathlib import Path
from typing import Dict, Set

from .util import find_cycle

PACKAGE = Path(__file__).resolve().parent.parent / "spacy_tokclf"
MAX_LINES = 420
# errors.py is the table of every message text (spaCy's errors.py pattern).
LONG_ALLOWED = {"spacy_tokclf.errors"}
# Private names of other libraries, read on purpose:
ALLOWED_PRIVATE = {
    # Ray's documented hook for extending a file datasource, on super().
    ("spacy_tokclf.annotate_ray", "_open_input_source"),
    # spaCy's extension namespace: doc._.tokclf_probs.
    ("spacy_tokclf.annotation", "_"),
    # thinc's PyTorchShim keeps its module in `_model` with no public accessor
    # (for shims other than ours, which has .piece_encoder); read in one helper.
    ("spacy_tokclf.gradient_sync", "_model"),
    # torch's int8 matrix product.
    ("spacy_tokclf.layers.int8", "_int_mm"),
}


def modules() -> Dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports_of(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The package modules a module imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for candidate in [target] + [f"{target}.{a.name}" for a in node.names]:
                if candidate in known and candidate != name:
                    out.add(candidate)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known and a.name != name)
    return out


def test_no_import_cycle():
    mods = modules()
    # The package's __init__ imports its public names from the modules; a
    # module importing `spacy_tokclf` itself would close a cycle through it.
    graph = {name: imports_of(name, path, set(mods)) for name, path in mods.items()}
    assert not find_cycle(graph), " -> ".join(find_cycle(graph))


def test_no_module_much_over_400_lines():
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf8").splitlines())) > MAX_LINES
        and name not in LONG_ALLOWED
    }
    assert not long


def test_no_private_attribute_of_another_object():
    found = set()
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.add((name, node.attr))
    assert found <= ALLOWED_PRIVATE, sorted(found - ALLOWED_PRIVATE)
