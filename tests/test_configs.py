"""Every training config in configs/ builds, is complete, and trains the
tasks it names: no stale example configs."""
from pathlib import Path

import pytest
from spacy.schemas import ConfigSchemaTraining
from spacy.util import load_config, load_model_from_config, registry

from spacy_tokclf.pipeline import TokenClassifier

from .util import TRAIN_DATA, make_examples, needs_listener

CONFIG_DIR = Path(__file__).parent.parent / "configs"
CONFIG_PATHS = sorted(CONFIG_DIR.glob("*.cfg"))


def uses_listener(path: Path) -> bool:
    return load_config(path)["nlp"]["before_creation"] is not None


def sources_a_pipeline(path: Path) -> bool:
    return any("source" in c for c in load_config(path)["components"].values())


# Listener configs need spacy-transformers (the `listener` extra). Configs
# that source a trained pipeline (add_label.cfg) are built from one in
# tests/test_add_label_config.py.
CONFIGS = [
    pytest.param(path, id=path.name, marks=[needs_listener] if uses_listener(path) else [])
    for path in CONFIG_PATHS
    if not sources_a_pipeline(path)
]


def test_configs_exist():
    assert CONFIG_PATHS, f"no *.cfg in {CONFIG_DIR}"


def test_listener_configs_check_for_the_extra():
    """A config with a `transformer` component names the extra it needs
    before spaCy looks for the factory."""
    for path in CONFIG_PATHS:
        factories = {c.get("factory") for c in load_config(path)["components"].values()}
        if "transformer" in factories:
            callback = load_config(path)["nlp"]["before_creation"]
            assert callback == {"@callbacks": "spacy-tokclf.require_listener_extra.v1"}, path


def test_listener_config_without_spacy_transformers_names_the_extra(wordpiece, monkeypatch):
    from spacy_tokclf import extras

    monkeypatch.setattr(extras, "has_spacy_transformers", lambda: False)
    with pytest.raises(ImportError, match=r"spacy-tokclf\[listener\]"):
        load(CONFIG_DIR / "listener.cfg", wordpiece)


def load(path: Path, encoder: Path):
    overrides = {"paths.encoder": str(encoder), "paths.train": None, "paths.dev": None}
    config = load_config(path, overrides=overrides)
    return config, load_model_from_config(config, auto_fill=True, validate=True)


def token_classifiers(nlp):
    return [(name, pipe) for name, pipe in nlp.pipeline if isinstance(pipe, TokenClassifier)]


@pytest.mark.parametrize("path", CONFIGS)
def test_config_builds_a_token_classifier(path, wordpiece):
    config, nlp = load(path, wordpiece)
    assert nlp.pipe_names == config["nlp"]["pipeline"]
    found = token_classifiers(nlp)
    assert found, f"{path.name} has no token_classifier component"
    for name, pipe in found:
        settings = config["components"][name]
        assert settings["factory"] == "token_classifier"
        assert pipe.tasks == list(settings["tasks"])
        assert pipe.cfg["scheme"] == settings["scheme"]
        tok2vec = pipe.model.get_ref("tok2vec")
        if "transformer" in nlp.pipe_names:
            # A listener config: the encoder lives in the transformer component.
            assert "listener" in tok2vec.name.lower()
            continue
        assert tok2vec.attrs["settings"].name == str(wordpiece)
        # Building never loads the encoder.
        assert not tok2vec.shims[0].loaded


@pytest.mark.parametrize("path", CONFIGS)
def test_config_is_complete(path, wordpiece):
    """Filling in defaults changes nothing: every setting is written out."""
    config, nlp = load(path, wordpiece)
    assert nlp.config["components"] == config["components"]
    training = config.interpolate()["training"]
    assert registry.fill(training, schema=ConfigSchemaTraining) == training


@pytest.mark.parametrize("path", CONFIGS)
def test_config_training_section_resolves(path, wordpiece):
    config, nlp = load(path, wordpiece)
    training = registry.resolve(nlp.config.interpolate()["training"], schema=ConfigSchemaTraining)
    assert callable(training["batcher"])
    assert training["optimizer"] is not None
    assert training["max_epochs"] >= 0 or training["max_steps"] > 0
    assert any(v for v in training["score_weights"].values() if v)


@pytest.mark.parametrize("path", CONFIGS)
def test_config_initializes_and_scores_its_weights(path, wordpiece):
    """On the test data (entities and tags): labels are inferred for each
    task, and every score weight the config sets is a score the pipeline
    reports (spacy train fails otherwise)."""
    config, nlp = load(path, wordpiece)
    factories = {config["components"][name]["factory"] for name in nlp.pipe_names}
    if not factories <= {"token_classifier", "transformer", "sentencizer"}:
        pytest.skip(f"components {sorted(factories)} need data the tests do not have")
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    expected = {
        "ents": sorted({label for _, annots in TRAIN_DATA for *_, label in annots["entities"]}),
        "tag": sorted({tag for _, annots in TRAIN_DATA for tag in annots["tags"]}),
    }
    for _, pipe in token_classifiers(nlp):
        assert pipe.label_data == {task: expected[task] for task in pipe.tasks}
    doc = nlp("Angela Merkel visited New York City in 2019.")
    for _, pipe in token_classifiers(nlp):
        if "ents" in pipe.tasks:
            assert pipe.cfg["spans_key"] in doc.spans
        if "tag" in pipe.tasks:
            assert all(token.tag_ in expected["tag"] for token in doc)
    scores = nlp.evaluate(examples)
    weights = config["training"]["score_weights"]
    for key, weight in weights.items():
        if weight is not None:
            assert key in scores, f"{path.name}: score weight {key} is not a score"


@pytest.mark.parametrize("path", CONFIG_PATHS, ids=lambda p: p.name)
def test_config_header_names_itself(path):
    """The usage line at the top of a config trains that config."""
    header = [line for line in path.read_text(encoding="utf8").splitlines() if line.startswith("#")]
    commands = [line for line in header if "spacy train" in line]
    assert commands, f"{path.name}: no `spacy train` usage line in the header comment"
    for line in commands:
        assert f"configs/{path.name}" in line, line
