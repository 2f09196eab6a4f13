"""Overfit -> predict -> save -> load -> same predictions, in this process, in a
fresh one, from bytes and from an installed `spacy package`. Pipelines are
trained on a copy of the tiny encoder that is deleted before saving, so
loading can only work from what the pipeline itself holds.
"""
import json
import os
import pickle
import shutil
import subprocess
import sys
from typing import Any, Dict, List

import numpy
import pytest
import spacy
import srsly
from spacy.util import load_model_from_config, make_tempdir

from .util import BUILDERS, TEXTS, TRAIN_DATA, make_examples, make_nlp, train

NAME = "token_classifier"
FAMILIES = sorted(BUILDERS)
ALL_TEXTS = [text for text, _ in TRAIN_DATA] + TEXTS + ["", "   "]
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

# Prints what the component wrote, as JSON, from a pipeline loaded in a fresh
# process. spacy_tokclf is not imported: spaCy finds it by its entry points.
PREDICT_SCRIPT = """
import json, sys
import spacy

def predictions(doc, name="token_classifier"):
    group = doc.spans[name]
    return {
        "ents": [[e.start, e.end, e.label_] for e in doc.ents],
        "tags": [t.tag_ for t in doc],
        "spans": [[s.start, s.end, s.label_] for s in group],
        "scores": [float(x) for x in group.attrs["scores"]],
        "probs": doc._.tokclf_probs[name],
    }

paths, texts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
output = {}
for key, path in paths.items():
    nlp = spacy.load(path)
    output[key] = [predictions(doc) for doc in nlp.pipe(texts)]
print("RESULT " + json.dumps(output))
"""



def predictions(doc, name: str = NAME) -> Dict[str, Any]:
    group = doc.spans[name]
    return {
        "ents": [[e.start, e.end, e.label_] for e in doc.ents],
        "tags": [t.tag_ for t in doc],
        "spans": [[s.start, s.end, s.label_] for s in group],
        "scores": [float(x) for x in group.attrs["scores"]],
        "probs": doc._.tokclf_probs[name],
    }


def assert_same(expected: List[Dict[str, Any]], actual: List[Dict[str, Any]], tol=1e-5):
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        assert a["ents"] == b["ents"]
        assert a["tags"] == b["tags"]
        assert a["spans"] == b["spans"]
        numpy.testing.assert_allclose(a["scores"], b["scores"], atol=tol)
        assert sorted(a["probs"]) == sorted(b["probs"])
        for task in a["probs"]:
            numpy.testing.assert_allclose(a["probs"][task], b["probs"][task], atol=tol)


def predict_all(nlp) -> List[Dict[str, Any]]:
    return [predictions(doc) for doc in nlp.pipe(ALL_TEXTS)]


def component_config(nlp) -> Dict[str, Any]:
    """The component's block of nlp.config, as add_pipe takes it."""
    block = nlp.config["components"][NAME]
    return {key: value for key, value in block.items() if key != "factory"}


def assert_learned(preds: List[Dict[str, Any]]) -> None:
    """The predictions on TRAIN_DATA are the gold ones (so that comparing
    predictions after loading compares something)."""
    nlp = spacy.blank("en")
    for (text, annots), pred in zip(TRAIN_DATA, preds):
        doc = nlp.make_doc(text)
        ents = [[s.start, s.end, s.label_] for s in (doc.char_span(*e) for e in annots["entities"])]
        assert pred["ents"] == ents
        assert pred["tags"] == annots["tags"]


@pytest.fixture(scope="module")
def saved(encoders):
    """Per family: the overfit pipeline, its predictions and the directory it
    was saved to. The encoder copy it was trained from is deleted first."""
    with make_tempdir() as tmp:
        output = {}
        for family in FAMILIES:
            encoder = tmp / f"encoder-{family}"
            shutil.copytree(encoders[family], encoder)
            nlp = make_nlp(encoder, tasks=["ents", "tag"])
            examples = make_examples(nlp)
            train(nlp, examples)
            expected = predict_all(nlp)
            assert_learned(expected)
            shutil.rmtree(encoder)
            path = tmp / f"pipeline-{family}"
            nlp.to_disk(path)
            output[family] = {
                "nlp": nlp,
                "examples": examples,
                "expected": expected,
                "path": path,
                "encoder": encoder,
            }
        yield output


@pytest.mark.parametrize("family", FAMILIES)
def test_to_disk_load_same_predictions(saved, family):
    info = saved[family]
    assert not info["encoder"].exists()
    nlp = spacy.load(info["path"])
    assert nlp.pipe_names == [NAME]
    assert_same(info["expected"], predict_all(nlp))
    pipe, original = nlp.get_pipe(NAME), info["nlp"].get_pipe(NAME)
    assert pipe.cfg == original.cfg
    assert pipe.labels == original.labels


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_directory_holds_encoder(saved, family):
    """The component's model file holds the transformer config, weights and
    tokenizer files; cfg holds labels, tasks and scheme."""
    path = saved[family]["path"] / NAME
    cfg = srsly.read_json(path / "cfg")
    assert cfg["tasks"] == ["ents", "tag"]
    assert cfg["scheme"] == "BIO"
    assert cfg["labels"]["ents"] == ["LOC", "ORG", "PER"]
    assert "NNP" in cfg["labels"]["tag"]
    msg = srsly.msgpack_loads((path / "model").read_bytes())
    shim_bytes = [data for node in msg["shims"] for data in node]
    assert len(shim_bytes) == 1
    shim = srsly.msgpack_loads(shim_bytes[0])
    assert shim["config"]["hidden_size"] == 32
    assert "tokenizer.json" in shim["tokenizer"]
    assert len(shim["state"]) > 10_000


@pytest.mark.parametrize("family", FAMILIES)
def test_loaded_pipeline_trains(saved, family):
    info = saved[family]
    nlp = spacy.load(info["path"])
    optimizer = nlp.resume_training()
    examples = make_examples(nlp)
    losses: Dict[str, float] = {}
    for _ in range(2):
        losses = nlp.update(examples, sgd=optimizer, losses={})
    assert numpy.isfinite(losses[NAME])


def torch_modules(nlp) -> List[Any]:
    """Every torch module of the component's encoder."""
    shims = [shim for node in nlp.get_pipe(NAME).model.walk() for shim in node.shims]
    assert len(shims) == 1 and shims[0].piece_encoder is not None
    return list(shims[0].piece_encoder.modules())


def in_train_mode(nlp) -> List[str]:
    return [type(m).__name__ for m in torch_modules(nlp) if m.training]


@pytest.mark.parametrize("family", FAMILIES)
def test_loaded_pipeline_is_in_eval_mode(saved, family, tmp_path):
    """A loaded pipeline was in train mode (dropout on) until its first call
    switched it (issue 26, finding 9); now loading leaves it in eval mode,
    and training still switches it to train mode for the update."""
    info = saved[family]
    nlp = spacy.load(info["path"])
    assert in_train_mode(nlp) == []
    from_bytes = load_model_from_config(nlp.config, auto_fill=True).from_bytes(nlp.to_bytes())
    assert in_train_mode(from_bytes) == []
    from_disk = load_model_from_config(nlp.config, auto_fill=True).from_disk(info["path"])
    assert in_train_mode(from_disk) == []
    optimizer = nlp.resume_training()
    seen = []
    hook = torch_modules(nlp)[0].register_forward_pre_hook(lambda m, a: seen.append(m.training))
    losses = nlp.update(make_examples(nlp), sgd=optimizer, losses={})
    hook.remove()
    assert seen and all(seen) and numpy.isfinite(losses[NAME])
    nlp("Angela Merkel visited Paris.")
    assert in_train_mode(nlp) == []


def test_initialized_pipeline_is_in_eval_mode(wordpiece):
    nlp = make_nlp(wordpiece)
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    assert in_train_mode(nlp) == []
    nlp.update(examples, sgd=None)
    assert in_train_mode(nlp) != []
    # Initialized again (a new head), it is in eval mode again.
    nlp.initialize(lambda: examples)
    assert in_train_mode(nlp) == []


@pytest.fixture(scope="module")
def fresh_process_predictions(saved):
    paths = {family: str(info["path"]) for family, info in saved.items()}
    env = {**os.environ, **OFFLINE_ENV}
    result = subprocess.run(
        [sys.executable, "-c", PREDICT_SCRIPT, json.dumps(paths), json.dumps(ALL_TEXTS)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, result.stdout[-3000:]
    return json.loads(lines[0][len("RESULT ") :])


@pytest.mark.parametrize("family", FAMILIES)
def test_fresh_process_same_predictions(saved, fresh_process_predictions, family):
    assert_same(saved[family]["expected"], fresh_process_predictions[family])


@pytest.mark.parametrize("family", FAMILIES)
def test_nlp_bytes_round_trip(saved, family):
    info = saved[family]
    nlp = info["nlp"]
    nlp2 = load_model_from_config(nlp.config, auto_fill=True)
    nlp2.from_bytes(nlp.to_bytes())
    assert_same(info["expected"], predict_all(nlp2))
    # And spacy.blank + add_pipe with the same component config.
    nlp3 = spacy.blank("en")
    nlp3.add_pipe(NAME, config=component_config(nlp))
    nlp3.from_bytes(nlp.to_bytes())
    assert_same(info["expected"], predict_all(nlp3))


def test_pickle_round_trip(saved):
    info = saved["wordpiece"]
    nlp2 = pickle.loads(pickle.dumps(info["nlp"]))
    assert_same(info["expected"], predict_all(nlp2))


def test_load_time_config_overrides_take_effect(saved):
    """Settings that only change how the encoder is run (window, stride,
    batch_pieces) can be overridden when loading, as any config value:
    the loaded pipeline's config and the encoder it runs agree."""
    overrides = {"window": 64, "stride": 48, "batch_pieces": 512}
    nlp = spacy.load(
        saved["wordpiece"]["path"],
        config={"components": {NAME: {"model": {"tok2vec": overrides}}}},
    )
    config = nlp.config["components"][NAME]["model"]["tok2vec"]
    attrs = nlp.get_pipe(NAME).model.get_ref("tok2vec").attrs
    assert {key: config[key] for key in overrides} == overrides
    assert {key: getattr(attrs["settings"], key) for key in overrides} == overrides


@pytest.mark.parametrize("family", FAMILIES)
def test_pipe_bytes_round_trip(saved, family):
    info = saved[family]
    pipe = info["nlp"].get_pipe(NAME)
    nlp2 = spacy.blank("en")
    pipe2 = nlp2.add_pipe(NAME, config=component_config(info["nlp"]))
    assert pipe2.labels == ()
    pipe2.from_bytes(pipe.to_bytes())
    assert pipe2.cfg == pipe.cfg
    assert pipe2.label_data == pipe.label_data
    assert_same(info["expected"], predict_all(nlp2))


def test_cfg_survives(wordpiece):
    """Non-default settings and given labels come back from bytes and disk."""
    nlp = make_nlp(wordpiece, tasks=["tag", "ents"], scheme="BILUO", spans_key="scored")
    tags = sorted({tag for _, annots in TRAIN_DATA for tag in annots["tags"]})
    labels = {"ents": ["PER", "ORG", "LOC", "MISC"], "tag": tags}
    nlp.get_pipe(NAME).initialize(lambda: make_examples(nlp), nlp=nlp, labels=labels)
    cfg = nlp.get_pipe(NAME).cfg
    assert cfg["labels"] == labels and cfg["scheme"] == "BILUO" and cfg["tasks"] == ["tag", "ents"]
    nlp2 = load_model_from_config(nlp.config, auto_fill=True).from_bytes(nlp.to_bytes())
    assert nlp2.get_pipe(NAME).cfg == cfg
    with make_tempdir() as tmp:
        nlp.to_disk(tmp / "p")
        nlp3 = spacy.load(tmp / "p")
    pipe3 = nlp3.get_pipe(NAME)
    assert pipe3.cfg == cfg
    assert pipe3.labels == tuple(labels["tag"] + labels["ents"])
    assert "U-MISC" in pipe3.layout.output_labels("ents")
    doc = nlp3("Angela Merkel visited Paris.")
    assert "scored" in doc.spans
    assert all(t.tag_ in labels["tag"] for t in doc)


def test_uninitialized_round_trip(tmp_path):
    """Nothing is loaded to build, save or restore an uninitialized pipeline:
    the encoder name points nowhere, and any attempt to load it would fail."""
    missing = tmp_path / "no" / "such" / "encoder"
    nlp = make_nlp(missing, tasks=["ents", "tag"])
    data = nlp.to_bytes()
    nlp2 = make_nlp(missing, tasks=["ents", "tag"]).from_bytes(data)
    pipe2 = nlp2.get_pipe(NAME)
    assert not pipe2.model.get_ref("tok2vec").shims[0].loaded
    assert pipe2.cfg == nlp.get_pipe(NAME).cfg
    # Saved before initialize (no labels, no head): the config's tasks stand,
    # as nlp.config shows them.
    nlp3 = make_nlp(missing)
    pipe3 = nlp3.get_pipe(NAME).from_bytes(nlp.get_pipe(NAME).to_bytes())
    assert pipe3.tasks == nlp3.config["components"][NAME]["tasks"] == ["ents"]
    assert pipe3.label_data == {"ents": []}
    with make_tempdir() as tmp:
        nlp.to_disk(tmp / "p")
        nlp4 = spacy.load(tmp / "p")
    assert not nlp4.get_pipe(NAME).model.get_ref("tok2vec").shims[0].loaded
    # Still not usable, with an error that says what to do.
    with pytest.raises(ValueError, match="initialize"):
        nlp4("Angela Merkel")


@pytest.mark.slow
def test_spacy_package_installs_and_loads_offline(saved):
    info = saved["wordpiece"]
    nlp = spacy.load(info["path"])
    nlp.meta["name"] = "tokclf_test"
    nlp.meta["version"] = "0.0.1"
    env = {**os.environ, **OFFLINE_ENV}
    with make_tempdir() as tmp:
        nlp.to_disk(tmp / "saved")
        (tmp / "out").mkdir()
        subprocess.run(
            [
                sys.executable, "-m", "spacy", "package", str(tmp / "saved"), str(tmp / "out"),
                "--name", "tokclf_test", "--version", "0.0.1", "--build", "sdist", "--force",
            ],
            env=env, check=True, capture_output=True,
        )
        artifacts = list((tmp / "out").glob("**/dist/*.tar.gz"))
        assert len(artifacts) == 1, list((tmp / "out").glob("**/*"))
        target = tmp / "site"
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                "--no-index", "--target", str(target), str(artifacts[0]),
            ],
            env=env, check=True, capture_output=True,
        )
        # The script loads by package name: spacy.load("en_tokclf_test").
        paths = json.dumps({"pkg": "en_tokclf_test"})
        result = subprocess.run(
            [sys.executable, "-c", PREDICT_SCRIPT, paths, json.dumps(ALL_TEXTS)],
            env={**env, "PYTHONPATH": str(target)},
            capture_output=True, text=True, cwd=str(tmp),
        )
    assert result.returncode == 0, result.stderr[-3000:]
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")][0]
    assert_same(info["expected"], json.loads(line[len("RESULT ") :])["pkg"])
