"""Teaching a trained token_classifier new labels (issue 28): the head grows
with every trained weight kept, so that the old labels predict bit-identically
until an update (entities, scores, probabilities, log-probabilities), also
after a disk round trip and a Hugging Face export; and training with
spacy-tokclf.extend_labels.v1 (a frozen teacher, distillation on the tokens
the new data leaves unannotated) keeps the old labels where naive fine-tuning
forgets them, the teacher never updated and never saved."""
import json
from typing import Any, Dict, List, Tuple

import numpy
import pytest
import spacy
from spacy.language import Language
from spacy.training import Example
from spacy.util import make_tempdir

from spacy_tokclf.hf import to_huggingface
from spacy_tokclf.loss import Distillation, make_extend_labels

from .util import TRAIN_DATA, make_examples, make_nlp, train

NAME = "token_classifier"
TEXTS = [text for text, _ in TRAIN_DATA] + [
    "Angela Merkel visited Paris and London in 2019.",
    "I like Apple Inc. and New York City.",
]
# New data: MISC annotated, every other token unannotated (missing), as a
# user's new data looks; the old entities in them are not marked.
NEW_DATA: List[Tuple[str, List[Tuple[int, int]]]] = [
    ("Angela Merkel watched the Olympics in London .", [(4, 5)]),
    ("Apple Inc. sells the iPhone in Cupertino .", [(4, 5)]),
    ("I like German beer in New York City .", [(2, 3)]),
    ("Paris hosted the Olympics in 2019 .", [(3, 4)]),
]
# The grown tag head: one column.
GROWN = {"ents": ("MISC", "ents"), "tag": ("XX", "tag")}


def configs() -> List[Tuple[List[str], str]]:
    return [(["ents"], "BILUO"), (["ents"], "BIO"), (["tag"], "BIO"), (["ents", "tag"], "BILUO")]


@pytest.fixture(scope="module")
def saved(encoders, tmp_path_factory) -> Dict[Tuple[str, str], Any]:
    """A trained pipeline per (tasks, scheme), saved: each test loads a copy."""
    out = {}
    for tasks, scheme in configs():
        nlp = make_nlp(encoders["wordpiece"], tasks=tasks, scheme=scheme)
        train(nlp, make_examples(nlp), n_iter=20)
        path = tmp_path_factory.mktemp("old") / "nlp"
        nlp.to_disk(path)
        out[("+".join(tasks), scheme)] = path
    return out


def outputs(nlp: Language) -> List[Any]:
    """Everything the component writes, floats as they are (compared with ==)."""
    pipe = nlp.get_pipe(NAME)
    out = []
    for doc in nlp.pipe(TEXTS):
        group = doc.spans.get(pipe.cfg["spans_key"], [])
        out.append(
            (
                [(e.start, e.end, e.label_) for e in doc.ents],
                [(s.start, s.end, s.label_) for s in group],
                list(group.attrs.get("scores", [])) if len(group) else [],
                [t.tag_ for t in doc],
                json.dumps(doc._.tokclf_probs[NAME]),
            )
        )
    return out


def old_log_probs(nlp: Language, old_labels: Dict[str, List[str]]) -> Dict[str, numpy.ndarray]:
    """Per task, the log-probabilities of the old output labels' columns."""
    pipe = nlp.get_pipe(NAME)
    decoded, _ = pipe.predict_log_probs([nlp.make_doc(text) for text in TEXTS])
    layout = pipe.layout
    out = {}
    for task, labels in old_labels.items():
        index = [layout.output_labels(task).index(label) for label in labels]
        out[task] = decoded[task][0][:, index]
        out[task + ":ids"] = decoded[task][1]
    return out


@pytest.mark.parametrize("tasks,scheme", configs())
def test_growing_the_head_keeps_old_predictions_bit_identical(saved, tasks, scheme):
    nlp = spacy.load(saved[("+".join(tasks), scheme)])
    pipe = nlp.get_pipe(NAME)
    old_layout = pipe.layout
    old_outputs = {t: old_layout.output_labels(t) for t in tasks}
    W = pipe.model.get_ref("output_layer").get_param("W").copy()
    before, log_probs = outputs(nlp), old_log_probs(nlp, old_outputs)
    task = tasks[0]
    assert pipe.add_label(GROWN[task][0], GROWN[task][1]) == 1
    assert pipe.add_label(GROWN[task][0], GROWN[task][1]) == 0
    n_added = {"BILUO": 4, "BIO": 2}[scheme] if task == "ents" else 1
    assert pipe.layout.n_outputs == old_layout.n_outputs + n_added
    head = pipe.model.get_ref("output_layer")
    assert head.get_dim("nO") == head.get_param("W").shape[0] == pipe.layout.n_outputs
    # Every trained weight kept, in its label's new row.
    new_rows = [pipe.layout.slices[t].start + pipe.layout.output_labels(t).index(label)
                for t in tasks for label in old_outputs[t]]
    assert numpy.array_equal(head.get_param("W")[new_rows], W)
    assert outputs(nlp) == before
    after = old_log_probs(nlp, old_outputs)
    for key, value in log_probs.items():
        assert numpy.array_equal(after[key], value), key
    with make_tempdir() as tmp:
        nlp.to_disk(tmp)
        loaded = spacy.load(tmp)
        assert loaded.get_pipe(NAME).labels == pipe.labels
        assert GROWN[task][0] in loaded.get_pipe(NAME).labels
        assert outputs(loaded) == before
    # From bytes too, into a pipeline built from the config (model.nO null).
    fresh = spacy.util.load_model_from_config(nlp.config, auto_fill=True)
    fresh.from_bytes(nlp.to_bytes())
    assert outputs(fresh) == before


def test_grown_head_exports_to_hugging_face(saved, tmp_path):
    nlp = spacy.load(saved[("ents", "BIO")])
    nlp.get_pipe(NAME).add_label("MISC")
    out = to_huggingface(nlp, tmp_path / "hf")  # checks the logits against the component's
    config = json.loads((out / "config.json").read_text())
    assert list(config["id2label"].values())[-2:] == ["B-MISC", "I-MISC"]


def test_a_config_that_set_model_no_records_the_grown_size(saved):
    """A pipeline whose config fixed `model.nO` is loaded with the grown size
    once extend_labels has run (the config records it)."""
    path = saved[("ents", "BILUO")]
    n_old = spacy.load(path).get_pipe(NAME).layout.n_outputs
    nlp = spacy.load(path, config={"components": {NAME: {"model": {"nO": n_old}}}})
    make_extend_labels(labels=["MISC"], distill_weight=0.0)(nlp)
    assert nlp.config["components"][NAME]["model"]["nO"] == n_old + 4
    with make_tempdir() as tmp:
        nlp.to_disk(tmp)
        assert "MISC" in spacy.load(tmp).get_pipe(NAME).labels


# Training: distillation against naive fine-tuning --------------------------------------


def new_examples(nlp: Language, unannotated: str) -> List[Example]:
    """NEW_DATA with MISC marked; the other tokens "-" (missing) or "O"."""
    out = []
    for text, spans in NEW_DATA:
        doc = nlp.make_doc(text)
        tags = [unannotated] * len(doc)
        for start, end in spans:
            tags[start:end] = ["U-MISC"] if end - start == 1 else (
                ["B-MISC"] + ["I-MISC"] * (end - start - 2) + ["L-MISC"]
            )
        out.append(Example.from_dict(doc, {"entities": tags}))
    return out


def teach(path, *, distill: bool, n_iter: int = 30) -> Tuple[Language, List[numpy.ndarray]]:
    """The old pipeline taught MISC on NEW_DATA: with distillation (missing
    tokens), or naively (the others as O, no teacher); and the teacher's
    weights before training."""
    nlp = spacy.load(path)
    spacy.util.fix_random_seed(0)
    make_extend_labels(labels=["MISC"], distill_weight=1.0 if distill else 0.0)(nlp)
    distillation = nlp.get_pipe(NAME).distillation
    weights = model_weights(distillation.teacher) if distillation is not None else []
    examples = new_examples(nlp, "-" if distill else "O")
    optimizer = nlp.create_optimizer()
    for _ in range(n_iter):
        nlp.update(examples, sgd=optimizer)
    return nlp, weights


def old_entities(nlp: Language) -> List[set]:
    labels = {"PER", "LOC", "ORG"}
    return [{(e.start, e.end, e.label_) for e in doc.ents if e.label_ in labels}
            for doc in nlp.pipe(TEXTS + [text for text, _ in NEW_DATA])]


def agreement(teacher: List[set], student: List[set]) -> float:
    """Share of the teacher's old entities the student finds (span and type)."""
    n = sum(len(t) for t in teacher)
    return sum(len(t & s) for t, s in zip(teacher, student)) / n


def misc_mass(nlp: Language) -> Tuple[float, float]:
    """Mean probability of the MISC columns on NEW_DATA's MISC tokens and on the others."""
    pipe = nlp.get_pipe(NAME)
    labels = pipe.layout.output_labels("ents")
    columns = [i for i, label in enumerate(labels) if label.endswith("-MISC")]
    docs = [nlp.make_doc(text) for text, _ in NEW_DATA]
    log_probs = pipe.predict_log_probs(docs)[0]["ents"][0]
    mass = numpy.exp(log_probs[:, columns]).sum(axis=1)
    is_misc = numpy.zeros(len(mass), dtype=bool)
    offset = 0
    for doc, (_, spans) in zip(docs, NEW_DATA):
        for start, end in spans:
            is_misc[offset + start: offset + end] = True
        offset += len(doc)
    return float(mass[is_misc].mean()), float(mass[~is_misc].mean())


def model_weights(model: Any) -> List[numpy.ndarray]:
    out = []
    for node in model.walk():
        out += [node.ops.to_numpy(node.get_param(p)).copy() for p in node.param_names
                if node.has_param(p)]
        for shim in node.shims:
            out += [t.detach().cpu().numpy().copy() for t in shim.piece_encoder.state_dict().values()]
    return out


def test_distillation_keeps_the_old_labels_where_naive_training_forgets(saved):
    path = saved[("ents", "BILUO")]
    old = spacy.load(path)
    teacher_ents = old_entities(old)
    assert sum(len(t) for t in teacher_ents) >= 8
    # The teacher: the old model, frozen, in eval mode (bit-exact scores).
    nlp = spacy.load(path)
    make_extend_labels(labels=["MISC"])(nlp)
    pipe = nlp.get_pipe(NAME)
    assert isinstance(pipe.distillation, Distillation)
    teacher = pipe.distillation.teacher
    docs = [nlp.make_doc(text) for text in TEXTS]
    old_scores = old.get_pipe(NAME).model.predict(docs)
    for a, b in zip(teacher.predict(docs), old_scores):
        assert numpy.array_equal(a, b)
    # Not saved: the bytes are those of the grown head without a teacher.
    plain = spacy.load(path)
    make_extend_labels(labels=["MISC"], distill_weight=0.0)(plain)
    assert plain.get_pipe(NAME).distillation is None
    assert len(pipe.to_bytes()) == len(plain.get_pipe(NAME).to_bytes())
    assert len(pipe.to_bytes()) < 1.2 * len(old.get_pipe(NAME).to_bytes())

    distilled, weights = teach(path, distill=True)
    naive, _ = teach(path, distill=False)
    kept = agreement(teacher_ents, old_entities(distilled))
    forgot = agreement(teacher_ents, old_entities(naive))
    # Measured: kept 0.6, forgot 0.0 (30 updates on 4 sentences).
    assert kept >= 0.5, (kept, forgot)
    assert forgot <= kept - 0.4, (kept, forgot)
    # MISC is being learnt: its mass is higher on its tokens than on the others.
    on, off = misc_mass(distilled)
    assert on > 1.5 * off, (on, off)  # measured: 0.0069 against 0.0034
    # The teacher of the training run was never updated, while the student was.
    after = model_weights(distilled.get_pipe(NAME).distillation.teacher)
    assert len(after) == len(weights) > 2
    assert all(numpy.array_equal(a, b) for a, b in zip(after, weights))
    student = model_weights(distilled.get_pipe(NAME).model)
    assert not all(numpy.array_equal(a, b) for a, b in zip(student, weights) if a.shape == b.shape)


def test_extend_labels_reads_the_labels_of_a_corpus(saved):
    nlp = spacy.load(saved[("ents", "BIO")])
    examples = new_examples(nlp, "-")
    make_extend_labels(corpus=lambda _nlp: examples)(nlp)
    assert nlp.get_pipe(NAME).labels[-1] == "MISC"


def test_extend_labels_settings_are_checked(saved, wordpiece):
    with pytest.raises(ValueError, match="distill_weight"):
        make_extend_labels(labels=["MISC"], distill_weight=-1.0)
    with pytest.raises(ValueError, match="corpus"):
        make_extend_labels()(spacy.load(saved[("ents", "BIO")]))
    with pytest.raises(ValueError, match="source"):
        make_extend_labels(labels=["MISC"])(make_nlp(wordpiece))
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer", name=NAME)
    with pytest.raises(ValueError, match="Sentencizer"):
        make_extend_labels(labels=["MISC"])(nlp)
