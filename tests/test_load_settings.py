"""Settings given when a pipeline is loaded (issue 26, finding 5): what
nlp.config shows is what the component does. `overwrite`, `spans_key` and
`threshold` given at load take effect (a threshold of null too, also over a
threshold that was set on the component before it was saved); a config that
changes what the head was trained for (`tasks`, `scheme`, `model.nO`) stops
the load with an error naming the setting. Each is tried through every way
of loading: spacy.load, nlp.from_disk, nlp.from_bytes and the component's
from_bytes.
"""
import copy
import warnings
from typing import Any, Dict, List, Tuple

import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Span
from spacy.util import load_model_from_config

from .util import TEXTS, TRAIN_DATA

NAME = "token_classifier"
ALL_TEXTS = [text for text, _ in TRAIN_DATA] + TEXTS


def entities(nlp: Language) -> List[List[Tuple[int, int, str, float]]]:
    """Per text, the entities in the component's span group, with scores."""
    out = []
    for doc in nlp.pipe(ALL_TEXTS):
        pipe = nlp.get_pipe(NAME)
        group = doc.spans[pipe.cfg["spans_key"]]
        out.append(
            [(s.start, s.end, s.label_, x) for s, x in zip(group, group.attrs["scores"])]
        )
    return out


def assert_same_entities(actual, expected) -> None:
    assert [[e[:3] for e in doc] for doc in actual] == [[e[:3] for e in doc] for doc in expected]
    for a, b in zip(actual, expected):
        assert [e[3] for e in a] == pytest.approx([e[3] for e in b], abs=1e-6)


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory) -> Dict[str, Any]:
    """The trained pipeline saved three ways, to a directory and as bytes: as
    trained ("plain"); with a threshold in its config ("config_threshold");
    with a threshold set on the component (pipe.cfg) before saving
    ("set_threshold"). The threshold drops some of the entities the pipeline
    predicts, and keeps some."""
    nlp, _ = trained
    root = tmp_path_factory.mktemp("load_settings")
    nlp.to_disk(root / "plain")
    plain = spacy.load(root / "plain")
    full = entities(plain)
    scores = sorted({score for doc in full for *_, score in doc})
    assert len(scores) >= 3, scores
    threshold = round((scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2, 6)
    override = {"components": {NAME: {"threshold": threshold}}}
    with_config = spacy.load(root / "plain", config=override)
    with_config.to_disk(root / "config_threshold")
    set_on_pipe = spacy.load(root / "plain")
    set_on_pipe.get_pipe(NAME).cfg["threshold"] = threshold
    set_on_pipe.to_disk(root / "set_threshold")
    data = {
        name: (pipeline.to_bytes(), pipeline.get_pipe(NAME).to_bytes())
        for name, pipeline in [
            ("plain", plain), ("config_threshold", with_config), ("set_threshold", set_on_pipe)
        ]
    }
    return {"root": root, "bytes": data, "full": full, "threshold": threshold}


def load_with(saved, saved_as: str, overrides: Dict[str, Any], route: str) -> Language:
    """The pipeline saved as `saved_as` loaded by `route` with these
    component settings in its config."""
    path = saved["root"] / saved_as
    config = {"components": {NAME: overrides}}
    if route == "spacy.load":
        return spacy.load(path, config=config)
    merged = spacy.util.load_config(path / "config.cfg").merge(config)
    nlp = load_model_from_config(merged, auto_fill=True)
    nlp_bytes, pipe_bytes = saved["bytes"][saved_as]
    if route == "nlp.from_disk":
        return nlp.from_disk(path)
    if route == "nlp.from_bytes":
        return nlp.from_bytes(nlp_bytes)
    assert route == "pipe.from_bytes"
    nlp.get_pipe(NAME).from_bytes(pipe_bytes)
    return nlp


ROUTES = ["spacy.load", "nlp.from_disk", "nlp.from_bytes", "pipe.from_bytes"]


def assert_config_is_used(nlp: Language) -> None:
    """nlp.config's runtime settings are the component's."""
    block = nlp.config["components"][NAME]
    cfg = nlp.get_pipe(NAME).cfg
    assert cfg["overwrite"] == block["overwrite"]
    assert cfg["threshold"] == block["threshold"]
    assert cfg["spans_key"] == (NAME if block["spans_key"] is None else block["spans_key"])


@pytest.mark.parametrize("route", ROUTES)
def test_runtime_settings_given_at_load_take_effect(saved, route):
    nlp = load_with(
        saved, "plain", {"spans_key": "x", "overwrite": True, "threshold": None}, route
    )
    assert_config_is_used(nlp)
    pipe = nlp.get_pipe(NAME)
    assert (pipe.cfg["spans_key"], pipe.cfg["overwrite"]) == ("x", True)
    # spans_key: the scored entities are in doc.spans["x"], not under the name.
    doc = nlp(TRAIN_DATA[0][0])
    assert "x" in doc.spans and NAME not in doc.spans
    assert_same_entities(entities(nlp), saved["full"])
    # overwrite: an existing entity the component does not predict is replaced.
    doc = nlp.make_doc(TRAIN_DATA[0][0])  # Angela Merkel visited New York City in 2019.
    doc.ents = [Span(doc, 2, 3, label="ORG")]  # "visited"
    doc = pipe(doc)
    assert (2, 3, "ORG") not in [(e.start, e.end, e.label_) for e in doc.ents]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("saved_as", ["config_threshold", "set_threshold"])
def test_null_threshold_at_load_keeps_every_entity(saved, route, saved_as):
    """Saved with a threshold (in its config, or set on the component):
    null at load undoes it, and the entities it dropped come back."""
    path = saved["root"] / saved_as
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        as_saved = spacy.load(path, config={"components": {NAME: {"threshold": saved["threshold"]}}})
    dropped = entities(as_saved)
    assert sum(map(len, dropped)) < sum(map(len, saved["full"]))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        nlp = load_with(saved, saved_as, {"threshold": None}, route)
    assert_config_is_used(nlp)
    assert nlp.get_pipe(NAME).cfg["threshold"] is None
    assert_same_entities(entities(nlp), saved["full"])
    # Set on the component, the saved threshold was not in the config: said so.
    said = [w for w in record if "set on the component" in str(w.message)]
    assert len(said) == (saved_as == "set_threshold")


@pytest.mark.parametrize("route", ROUTES)
def test_threshold_given_at_load_takes_effect(saved, route):
    nlp = load_with(saved, "plain", {"threshold": saved["threshold"]}, route)
    assert_config_is_used(nlp)
    kept = entities(nlp)
    assert all(score >= saved["threshold"] for doc in kept for *_, score in doc)
    expected = [[e for e in doc if e[3] >= saved["threshold"]] for doc in saved["full"]]
    assert_same_entities(kept, expected)


def test_saved_config_threshold_is_used_without_override(saved):
    nlp = spacy.load(saved["root"] / "config_threshold")
    assert_config_is_used(nlp)
    assert nlp.get_pipe(NAME).cfg["threshold"] == pytest.approx(saved["threshold"])


def test_threshold_set_on_the_component_gives_way_with_a_warning(saved):
    """A threshold set on the component is not in nlp.config: loading uses
    the config's value, and says so, with how to keep the saved one."""
    path = saved["root"] / "set_threshold"
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        nlp = spacy.load(path)
    assert_config_is_used(nlp)
    assert nlp.get_pipe(NAME).cfg["threshold"] is None
    assert_same_entities(entities(nlp), saved["full"])
    [said] = [str(w.message) for w in record if "set on the component" in str(w.message)]
    assert f'"threshold": {saved["threshold"]}' in said
    # Given at load, it is used, without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        given = {"components": {NAME: {"threshold": saved["threshold"]}}}
        nlp = spacy.load(path, config=given)
    assert nlp.get_pipe(NAME).cfg["threshold"] == saved["threshold"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "overrides,setting,fix",
    [
        ({"tasks": ["ents"]}, "tasks", '"tasks": ["ents", "tag"]'),
        ({"tasks": ["tag", "ents"]}, "tasks", '"tasks": ["ents", "tag"]'),
        ({"scheme": "BILUO"}, "scheme", '"scheme": "BIO"'),
        ({"model": {"nO": 3}}, "model.nO", '"nO": None'),
    ],
)
def test_setting_fixed_by_training_is_refused_by_name(saved, route, overrides, setting, fix):
    with pytest.raises(ValueError) as err:
        load_with(saved, "plain", copy.deepcopy(overrides), route)
    message = str(err.value)
    assert f"`{setting} = " in message
    assert fix in message  # the setting as it must be
    assert "train a new component" in message


def test_loaded_settings_round_trip(trained, tmp_path):
    """Settings given at load are saved with the pipeline and come back."""
    nlp, _ = trained
    nlp.to_disk(tmp_path / "a")
    given = {"spans_key": "k", "overwrite": True, "threshold": 0.25}
    spacy.load(tmp_path / "a", config={"components": {NAME: given}}).to_disk(tmp_path / "b")
    loaded = spacy.load(tmp_path / "b")
    assert_config_is_used(loaded)
    assert {key: loaded.get_pipe(NAME).cfg[key] for key in given} == given


def test_untrained_pipeline_takes_the_config_tasks(wordpiece, tmp_path):
    """Saved before initialize, nothing is fixed yet: the loading config's
    tasks and scheme are used, as nlp.config shows."""
    nlp = spacy.blank("en")
    nlp.add_pipe(NAME, config={"model": {"tok2vec": {"name": str(wordpiece)}}})
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(
        tmp_path / "p", config={"components": {NAME: {"tasks": ["tag"], "scheme": "IO"}}}
    )
    pipe = loaded.get_pipe(NAME)
    assert pipe.tasks == loaded.config["components"][NAME]["tasks"] == ["tag"]
    assert pipe.cfg["scheme"] == "IO"
    assert pipe.label_data == {"tag": []}
