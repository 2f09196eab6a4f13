"""The package's layout rules (issues 13 and 27), checked on its source: no
import cycle among its modules (lazy imports inside functions included, and
the subpackage __init__ that importing a submodule runs), no module over 400
lines, no private attribute of another object read (except the third-party
ones listed with their reason), and the package laid out by role: the core at
the top level, one subpackage per role, each with an __init__ that says what
it holds and exports its public names, and no family of flat modules left.
tests/scripts/test_imports.py checks the same for scripts/."""
import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, Set

import pytest

import spacy_tokclf

from .util import find_cycle

PACKAGE = Path(__file__).resolve().parent.parent / "spacy_tokclf"
ROOT = "spacy_tokclf"
MAX_LINES = 400
# errors.py is the table of every message text (spaCy's errors.py pattern).
LONG_ALLOWED = {"spacy_tokclf.errors"}
# Private names of other libraries, read on purpose:
ALLOWED_PRIVATE = {
    # Ray's documented hook for extending a file datasource, on super().
    ("spacy_tokclf.annotate.ray", "_open_input_source"),
    # spaCy's extension namespace: doc._.tokclf_probs.
    ("spacy_tokclf.annotation", "_"),
    # thinc's PyTorchShim keeps its module in `_model` with no public accessor
    # (for shims other than ours, which has .piece_encoder); read in one helper.
    ("spacy_tokclf.distributed.gradient_sync", "_model"),
    # torch's int8 matrix product.
    ("spacy_tokclf.layers.int8", "_int_mm"),
    # spaCy's Language.resume_training stores its copy of a sourced component's
    # model there (TrainablePipe._rehearsal_model, no public accessor);
    # extend_labels takes it as the teacher rather than a third copy.
    ("spacy_tokclf.loss", "_rehearsal_model"),
}
# The subpackages, one per role, and the core modules at the top level.
SUBPACKAGES = {"layers", "calibration", "annotate", "distributed", "hf", "serve"}
CORE = {
    "pipeline", "labels", "decoding", "calibrated", "annotation", "loss", "scoring",
    "architectures", "types", "errors", "metrics", "optimizers", "saved", "extras",
    "quantization", "cli",
}
# Old import paths kept because README 0.1.0 documented them: old -> new.
KEPT_OLD_PATHS = {"calibrate_pipeline": "spacy_tokclf.calibration"}
# The flat families that subpackages replaced (issue 27).
FAMILY_PREFIXES = ("annotate_", "calibration_", "hf_", "serve_", "distributed_", "scale_")


def modules() -> Dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def packages_run_by(target: str, importer: str) -> Set[str]:
    """The subpackage __init__s that importing `target` runs, which are not
    already running when `importer` is imported (its own packages are: a
    parent package is imported before its modules). The root package is
    always imported first, so it is left out."""
    parts = target.split(".")
    ancestors = {".".join(parts[:i]) for i in range(2, len(parts))}
    importer_parts = importer.split(".")
    running = {".".join(importer_parts[:i]) for i in range(1, len(importer_parts) + 1)}
    return ancestors - running


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
                    out.update(packages_run_by(candidate, name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known and alias.name != name:
                    out.add(alias.name)
                    out.update(packages_run_by(alias.name, name))
    return out


def top_level_modules() -> Set[str]:
    return {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}


def test_no_import_cycle():
    mods = modules()
    # The package's __init__ imports its public names from the modules; a
    # module importing `spacy_tokclf` itself would close a cycle through it.
    graph = {name: imports_of(name, path, set(mods)) for name, path in mods.items()}
    assert not find_cycle(graph), " -> ".join(find_cycle(graph))


def test_a_submodule_import_runs_its_package_init():
    """What the cycle check counts: core decoding.py importing a module of a
    subpackage whose __init__ imports the core again would be a cycle."""
    graph = {
        "spacy_tokclf.decoding": {"spacy_tokclf.calibration.maps"}
        | packages_run_by("spacy_tokclf.calibration.maps", "spacy_tokclf.decoding"),
        "spacy_tokclf.calibration": {"spacy_tokclf.calibration.pipeline"},
        "spacy_tokclf.calibration.pipeline": {"spacy_tokclf.decoding"},
        "spacy_tokclf.calibration.maps": set(),
    }
    assert find_cycle(graph)
    # ...but a module inside the package does not run its own __init__ again.
    assert packages_run_by("spacy_tokclf.calibration.fit", "spacy_tokclf.calibration.pipeline") == set()


def test_no_module_over_400_lines():
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


# The tree by role ---------------------------------------------------------------


def test_core_at_the_top_subpackages_by_role():
    found_packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert found_packages == SUBPACKAGES
    # A new top-level module is either core or a new role's subpackage: add it
    # to CORE here on purpose.
    assert top_level_modules() == CORE | set(KEPT_OLD_PATHS)


def test_no_flat_family_left_at_the_top_level():
    for name in top_level_modules():
        assert not name.startswith(FAMILY_PREFIXES), name
        assert not name.endswith("_cli"), name
        # A top-level module named after a subpackage (annotate_x beside annotate/).
        assert name.split("_")[0] not in SUBPACKAGES or name in KEPT_OLD_PATHS, name
    # Two top-level modules of one family (hf_import, hf_export): a subpackage.
    firsts = [name.split("_")[0] for name in top_level_modules() - set(KEPT_OLD_PATHS)]
    assert len(firsts) == len(set(firsts)), sorted(firsts)


def test_the_core_imports_no_role_subpackage():
    """The core depends on layers/ alone; the roles depend on the core, never
    the other way round. The root __init__ (public names), cli.py (every
    command, imported when it runs) and the kept old path are the exceptions."""
    mods = modules()
    roles = SUBPACKAGES - {"layers"}
    for name in CORE - {"cli"}:
        module = f"{ROOT}.{name}"
        for target in imports_of(module, mods[module], set(mods)):
            assert target.split(".")[1] not in roles, (module, target)


@pytest.mark.parametrize("package", sorted(SUBPACKAGES))
def test_each_subpackage_says_what_it_holds_and_exports_it(package):
    init = PACKAGE / package / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf8"))
    docstring = ast.get_docstring(tree)
    assert docstring, f"{init} has no docstring"
    # Its docstring names each of its modules.
    for path in (PACKAGE / package).glob("*.py"):
        if path.name != "__init__.py":
            assert path.name in docstring, (package, path.name)
    module = importlib.import_module(f"{ROOT}.{package}")
    assert module.__all__, package
    for name in module.__all__:
        assert hasattr(module, name), (package, name)


def test_public_names_resolve():
    for name in spacy_tokclf.__all__:
        assert hasattr(spacy_tokclf, name), name
    assert callable(spacy_tokclf.calibrate)  # the function, not the subpackage


def test_kept_old_import_path_warns_and_is_the_new_one():
    """README 0.1.0: `from spacy_tokclf.calibrate_pipeline import examples_from_docs`."""
    for old, new in KEPT_OLD_PATHS.items():
        sys.modules.pop(f"{ROOT}.{old}", None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(f"{ROOT}.{old}")
        assert any(
            issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught
        )
        target = importlib.import_module(new)
        for name in module.__all__:
            assert getattr(module, name) is getattr(target, name)
    from spacy_tokclf.calibration import examples_from_docs
    from spacy_tokclf.serve import make_app

    assert callable(examples_from_docs) and callable(make_app)


def test_python_m_serve_runs():
    result = subprocess.run(
        [sys.executable, "-m", "spacy_tokclf.serve", "--help"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "python -m spacy_tokclf.serve" in result.stdout
