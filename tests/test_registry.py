"""Every registered name resolves: through the installed entry points (so
`add_pipe` and `spacy train` work without importing spacy_tokclf) and through
spaCy's registry."""
import configparser
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import List, Tuple

import pytest
from spacy.util import registry

SETUP_CFG = Path(__file__).parent.parent / "setup.cfg"


def declared_entry_points() -> List[Tuple[str, str, str]]:
    """(group, name, target) for every entry point in setup.cfg."""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep the case of names
    parser.read(SETUP_CFG)
    out = []
    for group, block in parser["options.entry_points"].items():
        for line in block.strip().splitlines():
            name, _, target = line.partition("=")
            out.append((group, name.strip(), target.strip()))
    return out


ENTRY_POINTS = declared_entry_points()
REGISTRIES = {
    "spacy_factories": "factories",
    "spacy_architectures": "architectures",
    "spacy_scorers": "scorers",
    "spacy_cli": "cli",
    "spacy_callbacks": "callbacks",
    "thinc_optimizers": "optimizers",
}


def test_setup_cfg_declares_entry_points():
    groups = {group for group, _, _ in ENTRY_POINTS}
    assert {"spacy_factories", "spacy_architectures", "spacy_scorers", "spacy_cli"} <= groups
    for _, name, _ in ENTRY_POINTS:
        # Distribution name and version, never the core "spacy." prefix.
        assert not name.startswith("spacy.")


@pytest.mark.parametrize("group,name,target", ENTRY_POINTS)
def test_entry_point_is_installed_and_loads(group, name, target):
    found = {ep.name: ep for ep in entry_points(group=group)}
    assert name in found, f"{group}:{name} is not installed; re-run `pip install -e .`"
    assert found[name].value == target
    module, _, attr = target.partition(":")
    loaded = found[name].load()
    assert callable(loaded)
    assert loaded.__module__ == module and loaded.__name__ == attr


@pytest.mark.parametrize("group,name,target", ENTRY_POINTS)
def test_entry_point_is_in_spacy_registry(group, name, target):
    func = getattr(registry, REGISTRIES[group]).get(name)
    assert callable(func)
    # Factories are wrapped by spaCy; the rest are the functions themselves.
    if group != "spacy_factories":
        assert f"{func.__module__}:{func.__name__}" == target


def test_registered_names():
    from spacy_tokclf.architectures import build_hf_encoder, build_token_classifier
    from spacy_tokclf.pipeline import make_token_classifier
    from spacy_tokclf.scoring import make_tokclf_scorer, score_token_classifier

    assert registry.architectures.get("spacy-tokclf.TokenClassifier.v1") is build_token_classifier
    assert registry.architectures.get("spacy-tokclf.HFEncoder.v1") is build_hf_encoder
    assert registry.scorers.get("spacy-tokclf.tokclf_scorer.v1") is make_tokclf_scorer
    assert make_tokclf_scorer() is score_token_classifier
    assert callable(registry.factories.get("token_classifier"))
    assert make_token_classifier.__name__ == "make_token_classifier"


ADD_PIPE_WITHOUT_IMPORT = r"""
import json, sys
import spacy
before = "spacy_tokclf" in sys.modules
nlp = spacy.blank("en")
pipe = nlp.add_pipe("token_classifier", config={"model": {"tok2vec": {"name": "x"}}})
tok2vec = pipe.model.get_ref("tok2vec")
print(json.dumps({
    "imported_before": before,
    "class": type(pipe).__name__,
    "module": type(pipe).__module__,
    "pipe_names": nlp.pipe_names,
    "loaded": tok2vec.shims[0].loaded,
    "name": tok2vec.attrs["settings"].name,
    "labels": list(pipe.labels),
}))
"""


def run_offline(args, cwd) -> subprocess.CompletedProcess:
    """`python ARGS` in a fresh interpreter, offline; fails the test on error."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result


def test_add_pipe_through_entry_points_loads_nothing(tmp_path):
    # A fresh interpreter that never imports spacy_tokclf itself, offline, in
    # a directory without a model called "x": building must not load anything.
    result = run_offline(["-c", ADD_PIPE_WITHOUT_IMPORT], tmp_path)
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["imported_before"] is False
    assert out["class"] == "TokenClassifier"
    assert out["module"] == "spacy_tokclf.pipeline"
    assert out["pipe_names"] == ["token_classifier"]
    assert out["loaded"] is False
    assert out["name"] == "x"
    assert out["labels"] == []
    assert not (tmp_path / "x").exists()


# Command -> (its function in spacy_tokclf.cli, words its --help shows).
CLI_COMMANDS = {
    "tokclf-import": ("import_cli", ["OUTPUT_DIR", "--task"]),
    "tokclf-export": ("export_cli", ["OUTPUT_DIR", "--task"]),
    "tokclf-calibrate": ("calibrate_cli", ["--method", "--report"]),
    "tokclf-annotate": ("annotate_cli", ["--engine", "--resume"]),
    "tokclf-train-ddp": ("train_ddp_cli", ["--ray-workers", "--gpu"]),
}


def test_every_cli_command_is_declared_in_one_module():
    declared = {name.split(".", 1)[1]: target for group, name, target in ENTRY_POINTS
                if group == "spacy_cli"}
    assert declared == {
        name: f"spacy_tokclf.cli:{function}" for name, (function, _) in CLI_COMMANDS.items()
    }


def test_cli_commands_resolve():
    """spaCy's CLI loads the `spacy_cli` entry points (as `python -m spacy`
    does in setup_cli), which adds the commands to its typer app."""
    from spacy.cli import app
    from typer.main import get_command
    from typer.testing import CliRunner

    registry.cli.get_all()
    command = get_command(app)
    for name, (function, words) in CLI_COMMANDS.items():
        assert name in command.commands
        assert command.commands[name].callback.__name__ == function
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0, result.output
        for word in words:
            assert word in result.output, (name, word)


def test_cli_commands_listed_by_python_m_spacy(tmp_path):
    result = run_offline(["-m", "spacy", "--help"], tmp_path)
    for name in CLI_COMMANDS:
        assert name in result.stdout
