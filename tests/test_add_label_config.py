"""configs/add_label.cfg under `spacy train` (issue 28): the old pipeline
(configs/ner.cfg, tiny encoder) is sourced, spacy-tokclf.extend_labels.v1
grows its head by the new data's labels, and the teacher is the copy spaCy's
resume_training made of the sourced model (no third copy); the trained
pipeline saves without its teacher and predicts the new label."""
from pathlib import Path
from typing import List, Tuple

import numpy
import pytest
import spacy
from spacy.cli.train import train as spacy_train
from spacy.tokens import Doc, DocBin, Span
from spacy.training.initialize import init_nlp
from spacy.util import load_config, load_model_from_config

from .util import make_examples, train

CONFIGS = Path(__file__).parent.parent / "configs"
NAME = "token_classifier"
# New data: MISC annotated, every other token unannotated (missing).
NEW_DATA: List[Tuple[str, List[Tuple[int, int]]]] = [
    ("Angela Merkel watched the Olympics in London .", [(4, 5)]),
    ("Apple Inc. sells the iPhone in Cupertino .", [(4, 5)]),
    ("I like German beer in New York City .", [(2, 3)]),
]


def new_docs(vocab) -> List[Doc]:
    docs = []
    for text, spans in NEW_DATA:
        doc = Doc(vocab, words=text.split())
        doc.set_ents([Span(doc, s, e, label="MISC") for s, e in spans], default="missing")
        docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def files(encoders, tmp_path_factory):
    """The old pipeline (ner.cfg: sentencizer + token_classifier with context,
    PER/LOC/ORG), the new data and a dev set."""
    tmp = tmp_path_factory.mktemp("add_label")
    config = load_config(CONFIGS / "ner.cfg", overrides={"paths.encoder": str(encoders["wordpiece"])})
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    train(nlp, make_examples(nlp), n_iter=20)
    nlp.to_disk(tmp / "old")
    DocBin(docs=new_docs(nlp.vocab)).to_disk(tmp / "new.spacy")
    DocBin(docs=[eg.reference for eg in make_examples(nlp)] + new_docs(nlp.vocab)).to_disk(tmp / "dev.spacy")
    return tmp


def overrides(files: Path, **extra):
    return {"paths.old_pipeline": str(files / "old"), "paths.train": str(files / "new.spacy"),
            "paths.dev": str(files / "dev.spacy"), **extra}


def test_init_grows_the_sourced_head_and_teaches_with_the_rehearsal_copy(files):
    config = load_config(CONFIGS / "add_label.cfg", overrides=overrides(files))
    nlp = init_nlp(config)
    old = spacy.load(files / "old")
    pipe, old_pipe = nlp.get_pipe(NAME), old.get_pipe(NAME)
    assert pipe.labels == old_pipe.labels + ("MISC",)
    # The teacher is the sourced model as it was: the old scores, bit for bit.
    teacher = pipe.distillation.teacher
    assert teacher is not pipe.model
    docs = [old.make_doc(text) for text, _ in NEW_DATA]
    for a, b in zip(teacher.predict(docs), old_pipe.model.predict(docs)):
        assert numpy.array_equal(a, b)
    # spaCy's rehearsal copy became the teacher: no other copy is kept.
    assert pipe._rehearsal_model is None
    assert pipe.distillation.old.n_outputs == old_pipe.layout.n_outputs
    # The sourced sentencizer and the context setting came along.
    assert nlp.pipe_names == ["sentencizer", NAME]
    assert nlp.config["components"][NAME]["model"]["tok2vec"]["context"] == 16


def test_without_distillation_there_is_no_teacher(files):
    config = load_config(
        CONFIGS / "add_label.cfg",
        overrides=overrides(files, **{"initialize.after_init.distill_weight": 0.0}),
    )
    pipe = init_nlp(config).get_pipe(NAME)
    assert "MISC" in pipe.labels
    assert pipe.distillation is None


def test_spacy_train_saves_the_grown_pipeline_without_its_teacher(files, tmp_path):
    config_path = tmp_path / "add_label.cfg"
    config_path.write_text((CONFIGS / "add_label.cfg").read_text())
    schedule = {"training.max_steps": 6, "training.max_epochs": 0, "training.eval_frequency": 3,
                "training.optimizer.learn_rate.total_steps": 6,
                "training.optimizer.learn_rate.warmup_steps": 1}
    spacy_train(config_path, tmp_path / "out", overrides=overrides(files, **schedule))
    nlp = spacy.load(tmp_path / "out" / "model-last")
    old = spacy.load(files / "old")
    pipe = nlp.get_pipe(NAME)
    assert pipe.labels == old.get_pipe(NAME).labels + ("MISC",)
    assert pipe.distillation is None
    # Saved: the grown head only (a teacher would double the size).
    size = sum(f.stat().st_size for f in (tmp_path / "out" / "model-last" / NAME).rglob("*") if f.is_file())
    old_size = sum(f.stat().st_size for f in (files / "old" / NAME).rglob("*") if f.is_file())
    assert size < 1.2 * old_size
    # The saved config reads like any other: no source, no callback needed to load.
    assert "source" not in nlp.config["components"][NAME]
    doc = nlp("Angela Merkel watched the Olympics in London .")
    assert all(e.label_ in {"PER", "LOC", "ORG", "MISC"} for e in doc.ents)
