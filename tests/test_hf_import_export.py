"""Hugging Face import and export (spacy_tokclf/hf/importing.py, exporting.py, labels.py, cli.py), on
tiny random local checkpoints, never the hub.

Import: a *ForTokenClassification checkpoint becomes a token_classifier
whose scores equal the model's logits and whose labels equal the model's
per-word argmax labels (first piece of each word), for every common label
scheme and for tags; it trains further. Export: a trained component becomes
a checkpoint that transformers' token-classification pipeline loads and that
finds the same entities.

The import comparisons need the model's per-word argmax to be a valid label
sequence, since the component repairs invalid ones (annotation.py) and
transformers does not: random checkpoints are given biases that keep their
argmax valid (e.g. no I- label wins in BIO), and the tests check that they do.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy
import pytest
import spacy
import torch
from spacy.cli.init_config import fill_config
from spacy.tokens import Doc, DocBin
from spacy.util import make_tempdir

from spacy_tokclf import from_huggingface, to_huggingface
from spacy_tokclf.decoding import is_valid, transition_masks
from spacy_tokclf.hf.importing import MISSING_LABEL_BIAS, check_same_scores
from spacy_tokclf.labels import FROM_BILUO, PREFIXED_LABEL, TO_BILUO
from spacy_tokclf.labels import read_hf_labels as read_labels

from .util import (
    LISTENER_TOK2VEC, TEXTS, TRAIN_DATA, make_examples, make_nlp, needs_listener, train,
)

NAME = "token_classifier"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
# Texts whose spaCy tokens are also the WordPiece tokenizer's words, so that
# transformers' pipeline (which splits raw text itself) sees the same words.
SAME_WORD_TEXTS = [
    "Angela Merkel visited New York City in 2019.",
    "I like London and Paris.",
    "Merkel met the lazy fox in New York.",
    "The quick brown fox jumps over the lazy dog.",
]
ALL_TEXTS = [text for text, _ in TRAIN_DATA] + TEXTS
ENT_TYPES = sorted({label for _, annots in TRAIN_DATA for *_, label in annots["entities"]})



# Helpers ------------------------------------------------------------------------


def make_checkpoint(
    encoder: Path,
    out: Path,
    labels: Sequence[str],
    *,
    bias: Optional[Dict[str, float]] = None,
    seed: int = 0,
) -> Path:
    """A randomly initialised *ForTokenClassification model with `labels`
    (id order), saved with the encoder's tokenizer. `bias` adds to the
    classifier bias of labels by prefix ("I", "B", ...) or by name."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(
        str(encoder),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = AutoModelForTokenClassification.from_config(config)
    with torch.no_grad():
        # Larger weights than the default init: decisive per-word labels,
        # far from ties that float noise could flip.
        model.classifier.weight.mul_(50.0)
        for i, label in enumerate(labels):
            match = PREFIXED_LABEL.match(label)
            prefix = match.group(1) if match else label
            model.classifier.bias[i] += (bias or {}).get(label, (bias or {}).get(prefix, 0.0))
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(encoder)).save_pretrained(str(out))
    return out


def hf_logits(model_dir: Path, words: List[str]) -> Tuple[numpy.ndarray, Dict[int, str]]:
    """The model's logits at the first piece of each word [n_words, n_labels],
    and its id2label."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), add_prefix_space=True)
    model = AutoModelForTokenClassification.from_pretrained(str(model_dir)).eval()
    encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    word_ids = encoded.word_ids(0)
    assert all(i in word_ids for i in range(len(words))), "a word has no piece"
    first = [word_ids.index(i) for i in range(len(words))]
    with torch.no_grad():
        logits = model(**encoded).logits[0].numpy()
    return logits[first], model.config.id2label


def hf_word_labels(model_dir: Path, words: List[str]) -> List[str]:
    logits, id2label = hf_logits(model_dir, words)
    return [id2label[int(i)] for i in logits.argmax(axis=1)]


def entity_iob(labels: Sequence[str], scheme: str) -> List[Tuple[str, str]]:
    """(ent_iob_, ent_type_) per word of a label sequence in any scheme (BIO,
    IO, BIOES, BILOU; "-" or "_" after the prefix). Fails on a sequence that
    is invalid outside IO: the comparisons assume a valid argmax."""
    out: List[Tuple[str, str]] = []
    open_type = None  # type of an entity the next word may continue
    for label in labels:
        match = PREFIXED_LABEL.match(label)
        if match is None:
            assert label == "O", label
            out.append(("O", ""))
            open_type = None
            continue
        prefix, ent_type = match.groups()
        continues = prefix in ("I", "E", "L") and open_type == ent_type
        # Only in IO may an I- run of a new type start an entity.
        assert continues or prefix not in ("I", "E", "L") or scheme == "IO", labels
        out.append(("I" if continues else "B", ent_type))
        open_type = ent_type if prefix in ("B", "I") else None
    return out


def as_component_label(label: str) -> str:
    """"B_PER" -> "B-PER", "S-PER" -> "U-PER", "E-PER" -> "L-PER"."""
    match = PREFIXED_LABEL.match(label)
    if match is None:
        return label
    prefix, ent_type = match.groups()
    return f"{TO_BILUO.get(prefix, prefix)}-{ent_type}"


def component_scores(nlp, words: List[str], name: str = NAME) -> numpy.ndarray:
    pipe = nlp.get_pipe(name)
    doc = Doc(nlp.vocab, words=words)
    return pipe.model.ops.to_numpy(pipe.model.predict([doc])[0])


def argmax_is_valid(nlp, text: str, name: str = NAME) -> bool:
    """Whether the component's per-token argmax for `text` is a valid label
    sequence, which the component keeps as is (else it repairs it, and
    transformers' pipeline groups the invalid labels its own way)."""
    pipe = nlp.get_pipe(name)
    labels = pipe.layout.output_labels("ents")
    words = [t.text for t in nlp.make_doc(text)]
    ids = component_scores(nlp, words, name)[:, pipe.layout.slices["ents"]].argmax(axis=1)
    return is_valid(ids, *transition_masks(labels, pipe.cfg["scheme"]))


def ents_of(doc) -> List[Tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def hf_pipeline_ents(model_dir: Path, texts: List[str]) -> List[List[Tuple[int, int, str]]]:
    from transformers import pipeline

    tagger = pipeline("token-classification", model=str(model_dir), aggregation_strategy="first")
    return [[(e["start"], e["end"], e["entity_group"]) for e in tagger(text)] for text in texts]


def run_spacy_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spacy", *args],
        cwd=cwd,
        env=dict(os.environ, **OFFLINE_ENV),
        capture_output=True,
        text=True,
        timeout=600,
    )


# (labels in id order, bias by prefix, expected scheme, expected types)
IMPORT_CASES = {
    "bio": (
        ["B-PER", "O", "I-LOC", "I-PER", "B-LOC", "B-ORG", "I-ORG"],
        {"I": -100.0},
        "BIO",
        ["PER", "LOC", "ORG"],
    ),
    "bioes": (
        ["O", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC"],
        {"B": -100.0, "I": -100.0, "E": -100.0},
        "BILUO",
        ["LOC", "PER"],
    ),
    "bilou": (
        ["O", "U-PER", "L-PER", "B-PER", "I-PER"],
        {"B": -100.0, "I": -100.0, "L": -100.0},
        "BILUO",
        ["PER"],
    ),
    "io": (["I-MISC", "O", "I-PER", "I-LOC"], {}, "IO", ["MISC", "PER", "LOC"]),
    "underscore": (
        ["O", "B_PER", "I_PER", "B_LOC", "I_LOC"],
        {"I": -100.0},
        "BIO",
        ["PER", "LOC"],
    ),
    "hyphenated": (
        ["O", "B-WORK-OF-ART", "I-WORK-OF-ART", "B-PER", "I-PER", "I-LAW-X", "B-LAW-X"],
        {"I": -100.0},
        "BIO",
        ["WORK-OF-ART", "PER", "LAW-X"],
    ),
}
TAGS = ["NN", "VBD", "DT", "JJ", ".", "NNP", "IN"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, encoders) -> Dict[str, Path]:
    """One tiny checkpoint per import case (WordPiece), and a tag model."""
    root = Path(tmp_path_factory.mktemp("checkpoints"))
    out = {
        case: make_checkpoint(encoders["wordpiece"], root / case, labels, bias=bias)
        for case, (labels, bias, _, _) in IMPORT_CASES.items()
    }
    out["tag"] = make_checkpoint(encoders["wordpiece"], root / "tag", TAGS)
    return out


# Import: labels -----------------------------------------------------------------


@pytest.mark.parametrize(
    "names,scheme,types",
    [
        (["O", "B-PER", "I-PER"], "BIO", ["PER"]),
        (["O", "I-PER", "I-LOC"], "IO", ["PER", "LOC"]),
        (["O", "B-PER", "I-PER", "E-PER", "S-PER"], "BILUO", ["PER"]),
        (["O", "B-PER", "I-PER", "L-PER", "U-PER"], "BILUO", ["PER"]),
        (["O", "B_PER", "I_PER", "B_WORK_OF_ART"], "BIO", ["PER", "WORK_OF_ART"]),
        (["B-WORK-OF-ART", "O", "I-WORK-OF-ART"], "BIO", ["WORK-OF-ART"]),
    ],
)
def test_read_labels_schemes(names, scheme, types):
    imported = read_labels(names)
    assert imported.task == "ents"
    assert imported.scheme == scheme
    assert imported.labels == types


def test_read_labels_rows_follow_the_component_order():
    # The component's order is O, then per type its scheme prefixes.
    imported = read_labels(["I-LOC", "B-PER", "O", "S-LOC", "E-PER", "I-PER"])
    assert imported.scheme == "BILUO" and imported.labels == ["LOC", "PER"]
    # O, B-LOC, I-LOC, L-LOC, U-LOC, B-PER, I-PER, L-PER, U-PER
    assert imported.rows == [2, None, 0, None, 3, 1, 5, 4, None]
    assert imported.missing == [1, 3, 8]


def test_read_labels_tags_keep_their_order():
    imported = read_labels(["NN", "VB", "DT"])
    assert (imported.task, imported.scheme) == ("tag", None)
    assert imported.labels == ["NN", "VB", "DT"] and imported.rows == [0, 1, 2]
    # Entity labels imported as tags, on request.
    forced = read_labels(["O", "B-PER", "I-PER"], task="tag")
    assert forced.task == "tag" and forced.labels == ["O", "B-PER", "I-PER"]


@pytest.mark.parametrize(
    "names,task,match",
    [
        (["O", "B-PER", "I-PER", "MISC"], None, "Mixed labels.*MISC.*task=\"tag\""),
        (["O", "B-PER", "E-PER", "U-PER"], None, "Unknown scheme.*BIOES.*BILOU"),
        (["LABEL_0", "LABEL_1"], None, "placeholders.*id2label"),
        (["O", "B-PER", "B_PER"], None, "'B-PER' and 'B_PER' are the same label"),
        (["O", "O", "B-PER"], None, "twice"),
        (["NN", "VB"], "ents", "no prefix.*task=\"tag\""),
        (["O"], "ents", "only \"O\""),
        (["O", "B-PER"], "ner", "Unknown task 'ner'"),
    ],
)
def test_read_labels_errors(names, task, match):
    with pytest.raises(ValueError, match=match):
        read_labels(names, task)


def test_read_labels_placeholders_as_tags():
    assert read_labels(["LABEL_0", "LABEL_1"], task="tag").labels == ["LABEL_0", "LABEL_1"]


# Import: predictions ----------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(IMPORT_CASES))
def test_import_predicts_as_the_model(checkpoints, case):
    labels, _, scheme, types = IMPORT_CASES[case]
    nlp = from_huggingface(checkpoints[case])
    pipe = nlp.get_pipe(NAME)
    assert pipe.tasks == ["ents"] and pipe.cfg["scheme"] == scheme
    assert pipe.labels == tuple(types)
    n_entities = 0
    for text in ALL_TEXTS:
        doc = nlp(text)
        words = [t.text for t in doc]
        hf_labels = hf_word_labels(checkpoints[case], words)
        expected = entity_iob(hf_labels, scheme)
        assert [(t.ent_iob_, t.ent_type_) for t in doc] == expected, (text, hf_labels)
        n_entities += len(doc.ents)
    assert n_entities >= 5  # the comparison is not vacuous


@pytest.mark.parametrize("case", sorted(IMPORT_CASES))
def test_import_scores_are_the_model_logits(checkpoints, case):
    nlp = from_huggingface(checkpoints[case])
    pipe = nlp.get_pipe(NAME)
    names = pipe.layout.output_labels("ents")
    for text in ALL_TEXTS[:4]:
        words = [t.text for t in nlp.make_doc(text)]
        logits, id2label = hf_logits(checkpoints[case], words)
        label2id = {as_component_label(label): i for i, label in id2label.items()}
        ours = component_scores(nlp, words)
        for row, name in enumerate(names):
            if name in label2id:
                numpy.testing.assert_allclose(ours[:, row], logits[:, label2id[name]], atol=1e-4)
            else:
                assert (ours[:, row] < MISSING_LABEL_BIAS / 2).all()


def test_import_tag_model(checkpoints):
    nlp = from_huggingface(checkpoints["tag"])
    pipe = nlp.get_pipe(NAME)
    assert pipe.tasks == ["tag"] and pipe.labels == tuple(TAGS)
    seen = set()
    for text in ALL_TEXTS:
        doc = nlp(text)
        hf_labels = hf_word_labels(checkpoints["tag"], [t.text for t in doc])
        assert [t.tag_ for t in doc] == hf_labels
        assert doc.ents == ()
        seen.update(hf_labels)
    assert len(seen) >= 3


def test_import_entity_model_as_tags(checkpoints):
    nlp = from_huggingface(checkpoints["bio"], task="tag")
    pipe = nlp.get_pipe(NAME)
    assert pipe.tasks == ["tag"]
    assert pipe.labels == tuple(IMPORT_CASES["bio"][0])
    doc = nlp(SAME_WORD_TEXTS[0])
    assert [t.tag_ for t in doc] == hf_word_labels(checkpoints["bio"], [t.text for t in doc])


@pytest.mark.parametrize("family", ["bpe", "unigram"])
def test_import_other_tokenizer_families(tmp_path, encoders, family):
    labels, bias, _, _ = IMPORT_CASES["bio"]
    ckpt = make_checkpoint(encoders[family], tmp_path / family, labels, bias=bias)
    nlp = from_huggingface(ckpt)
    for text in ALL_TEXTS[:4]:
        doc = nlp(text)
        hf_labels = hf_word_labels(ckpt, [t.text for t in doc])
        assert [(t.ent_iob_, t.ent_type_) for t in doc] == entity_iob(hf_labels, "BIO")


def test_import_into_an_existing_pipeline(checkpoints):
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp = from_huggingface(checkpoints["bio"], nlp=nlp, name="ner_hf", config={"overwrite": True})
    assert nlp.pipe_names == ["sentencizer", "ner_hf"]
    pipe = nlp.get_pipe("ner_hf")
    assert pipe.cfg["overwrite"] is True and pipe.cfg["spans_key"] == "ner_hf"
    assert len(nlp(SAME_WORD_TEXTS[0]).spans["ner_hf"]) >= 1


def test_import_saves_and_loads_without_the_checkpoint(tmp_path, checkpoints):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints["bioes"], ckpt)
    nlp = from_huggingface(ckpt)
    before = [ents_of(doc) for doc in nlp.pipe(ALL_TEXTS)]
    shutil.rmtree(ckpt)
    with make_tempdir() as tmp:
        nlp.to_disk(tmp / "pipeline")
        nlp2 = spacy.load(tmp / "pipeline")
    assert nlp2.get_pipe(NAME).cfg["scheme"] == "BILUO"
    assert [ents_of(doc) for doc in nlp2.pipe(ALL_TEXTS)] == before
    assert sum(map(len, before)) >= 5


def test_import_missing_labels_warn_and_are_never_predicted(tmp_path, encoders):
    # BIOES without I-PER: the component's I-PER row gets a prohibitive bias.
    ckpt = make_checkpoint(encoders["wordpiece"], tmp_path / "m", ["O", "B-PER", "E-PER", "S-PER"])
    with pytest.warns(UserWarning, match=r"no label for \['I-PER'\]"):
        nlp = from_huggingface(ckpt)
    pipe = nlp.get_pipe(NAME)
    i_row = pipe.layout.output_labels("ents").index("I-PER")
    assert pipe.model.get_ref("output_layer").get_param("b")[i_row] == MISSING_LABEL_BIAS
    for doc in nlp.pipe(ALL_TEXTS):
        ids, _ = pipe.predict([doc])[0]["ents"]
        assert i_row not in ids.tolist()


# Import: multi-token entities ------------------------------------------------------

# Texts and, per spaCy token, the labels a checkpoint is fitted to give them,
# per label scheme: entities of two and three tokens, beside one-token ones.
MULTI_TOKEN_TARGETS = {
    "BIO": [
        ("Angela Merkel visited New York City in 2019.",
         ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O", "O", "O"]),
        ("Merkel met the lazy fox in New York.",
         ["B-PER", "O", "O", "O", "O", "O", "B-LOC", "I-LOC", "O"]),
        ("I like London and Paris.", ["O", "O", "B-LOC", "O", "B-LOC", "O"]),
        ("The quick brown fox jumps over the lazy dog.",
         ["O", "B-ORG", "I-ORG", "I-ORG", "O", "O", "O", "B-PER", "I-PER", "O"]),
    ],
    "BIOES": [
        ("Angela Merkel visited New York City in 2019.",
         ["B-PER", "E-PER", "O", "B-LOC", "I-LOC", "E-LOC", "O", "O", "O"]),
        ("Merkel met the lazy fox in New York.",
         ["S-PER", "O", "O", "O", "O", "O", "B-LOC", "E-LOC", "O"]),
        ("I like London and Paris.", ["O", "O", "S-LOC", "O", "S-LOC", "O"]),
        ("The quick brown fox jumps over the lazy dog.",
         ["O", "B-ORG", "I-ORG", "E-ORG", "O", "O", "O", "B-PER", "E-PER", "O"]),
    ],
}


def make_fitted_checkpoint(
    encoder: Path, out: Path, targets: List[Tuple[str, List[str]]]
) -> Path:
    """A checkpoint on a random encoder whose classifier is fitted (the
    encoder frozen) so that its per-word argmax gives `targets`' labels."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    types = sorted({label[2:] for _, tags in targets for label in tags if label != "O"})
    prefixes = "BIES" if any(label[0] in "ES" for _, tags in targets for label in tags) else "BI"
    labels = ["O"] + [f"{prefix}-{t}" for t in types for prefix in prefixes]
    make_checkpoint(encoder, out, labels)
    model = AutoModelForTokenClassification.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    nlp = spacy.blank("en")
    features, gold = [], []
    with torch.no_grad():
        for text, tags in targets:
            words = [t.text for t in nlp.make_doc(text)]
            assert len(words) == len(tags), (words, tags)
            encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
            hidden = model.base_model(**encoded).last_hidden_state[0]
            word_ids = encoded.word_ids(0)
            features.append(hidden[[word_ids.index(i) for i in range(len(words))]])
            gold += [labels.index(tag) for tag in tags]
    X, y = torch.cat(features), torch.tensor(gold)
    classifier = model.classifier
    optimizer = torch.optim.Adam(classifier.parameters(), lr=0.05)
    torch.manual_seed(0)
    for _ in range(3000):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(classifier(X), y).backward()
        optimizer.step()
    model.save_pretrained(str(out))
    return out


def spans_of(labels: List[str], scheme: str) -> List[Tuple[int, int, str]]:
    """(start, end, type) of the entities a valid per-word label sequence gives."""
    spans: List[Tuple[int, int, str]] = []
    for i, (iob, ent_type) in enumerate(entity_iob(labels, scheme)):
        if iob == "B":
            spans.append((i, i + 1, ent_type))
        elif iob == "I":
            start, _, prev = spans[-1]
            spans[-1] = (start, i + 1, prev)
    return spans


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_import_finds_the_multi_token_entities_of_the_model(tmp_path, encoders, scheme):
    """The HF model's logits (per word, first piece) imply entities of two and
    three tokens; the imported component finds exactly those spans."""
    targets = MULTI_TOKEN_TARGETS[scheme]
    ckpt = make_fitted_checkpoint(encoders["wordpiece"], tmp_path / scheme, targets)
    nlp = from_huggingface(ckpt)
    assert nlp.get_pipe(NAME).cfg["scheme"] == ("BIO" if scheme == "BIO" else "BILUO")
    n_multi = 0
    for text, tags in targets:
        doc = nlp(text)
        hf_labels = hf_word_labels(ckpt, [t.text for t in doc])
        assert hf_labels == tags  # the fit took: the model's logits give these labels
        expected = spans_of(hf_labels, scheme)
        assert [(e.start, e.end, e.label_) for e in doc.ents] == expected, (text, hf_labels)
        assert [(s.start, s.end, s.label_) for s in doc.spans[NAME]] == expected
        n_multi += sum(1 for start, end, _ in expected if end - start > 1)
    assert n_multi == 5  # PER and LOC of 2 and 3 tokens, ORG of 3, PER of 2


# Import: further training ----------------------------------------------------------


def test_imported_component_trains_further(tmp_path, encoders):
    labels = ["O"] + [f"{p}-{t}" for t in ENT_TYPES for p in "BI"]
    ckpt = make_checkpoint(encoders["wordpiece"], tmp_path / "ckpt", labels, seed=1)
    nlp = from_huggingface(ckpt)
    pipe = nlp.get_pipe(NAME)
    examples = make_examples(nlp)
    W_before = pipe.model.get_ref("output_layer").get_param("W").copy()
    optimizer = nlp.resume_training()  # not nlp.initialize(): that starts a new head
    losses = []
    for _ in range(60):
        step: Dict[str, float] = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        losses.append(step[NAME])
    assert losses[-1] < losses[0] / 5
    assert pipe.labels == tuple(ENT_TYPES)
    assert not numpy.allclose(pipe.model.get_ref("output_layer").get_param("W"), W_before)
    for text, annots in TRAIN_DATA:
        gold = [(text[s:e], label) for s, e, label in annots["entities"]]
        assert [(e.text, e.label_) for e in nlp(text).ents] == gold
    with make_tempdir() as tmp:
        nlp.to_disk(tmp / "trained")
        nlp2 = spacy.load(tmp / "trained")
        assert [ents_of(d) for d in nlp2.pipe(SAME_WORD_TEXTS)] == [
            ents_of(d) for d in nlp.pipe(SAME_WORD_TEXTS)
        ]


SOURCE_CONFIG = """
[paths]
train = null
dev = null

[system]
seed = 0

[nlp]
lang = "en"
pipeline = ["token_classifier"]

[components]

[components.token_classifier]
source = "{source}"

[corpora]

[corpora.train]
@readers = "spacy.Corpus.v1"
path = ${paths.train}

[corpora.dev]
@readers = "spacy.Corpus.v1"
path = ${paths.dev}

[training]
max_steps = 6
eval_frequency = 3
max_epochs = 0

[training.batcher]
@batchers = "spacy.batch_by_sequence.v1"
size = 3

[training.optimizer]
@optimizers = "Adam.v1"
learn_rate = 0.001

[training.score_weights]
ents_f = 1.0
tag_acc = null
"""


def test_spacy_train_sources_the_imported_component(tmp_path, checkpoints):
    """The README's recipe: import, save, fill a config that sources the
    component, then `spacy train` it.
    Training updates the imported head (it is not re-initialized) and keeps
    its labels."""
    nlp = from_huggingface(checkpoints["bio"])
    nlp.to_disk(tmp_path / "imported")
    W_imported = nlp.get_pipe(NAME).model.get_ref("output_layer").get_param("W").copy()
    docs = []
    for text, annots in TRAIN_DATA:
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=label) for s, e, label in annots["entities"]]
        docs.append(doc)
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    base = SOURCE_CONFIG.replace("{source}", str(tmp_path / "imported"))
    (tmp_path / "base.cfg").write_text(base)
    # As `python -m spacy init fill-config base.cfg config.cfg` does.
    fill_config(tmp_path / "config.cfg", tmp_path / "base.cfg", silent=True)
    result = run_spacy_cli(
        "train", "config.cfg", "--output", "out",
        "--paths.train", "train.spacy", "--paths.dev", "train.spacy",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    trained = spacy.load(tmp_path / "out" / "model-last")
    pipe = trained.get_pipe(NAME)
    assert pipe.labels == nlp.get_pipe(NAME).labels
    assert pipe.cfg["scheme"] == "BIO"
    W = pipe.model.get_ref("output_layer").get_param("W")
    assert W.shape == W_imported.shape
    assert not numpy.allclose(W, W_imported)
    # Six small steps move the weights only a little from the imported ones.
    assert numpy.abs(W - W_imported).max() < 0.1


# Import: errors ----------------------------------------------------------------------


def test_import_error_not_a_model_directory(tmp_path):
    with pytest.raises(OSError, match="no config.json.*save_pretrained"):
        from_huggingface(tmp_path)


def test_import_error_encoder_without_head(encoders):
    # A plain BertModel checkpoint: fine-tuned for nothing.
    with pytest.raises(ValueError, match="holds a BertModel, not a model fine-tuned"):
        from_huggingface(encoders["wordpiece"])


def test_import_error_head_not_a_plain_linear(tmp_path, encoders):
    """ModernBERT's token classifier puts a dense layer + norm between the
    encoder and `classifier`: the score check catches it."""
    from transformers import AutoTokenizer, ModernBertConfig, ModernBertForTokenClassification

    tokenizer = AutoTokenizer.from_pretrained(str(encoders["wordpiece"]))
    labels = ["O", "B-PER", "I-PER"]
    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    ModernBertForTokenClassification(config).save_pretrained(str(tmp_path / "mb"))
    tokenizer.save_pretrained(str(tmp_path / "mb"))
    with pytest.raises(ValueError, match="ModernBertForTokenClassification's logits are not"):
        from_huggingface(tmp_path / "mb")


def test_import_error_checkpoint_without_classifier_weights(tmp_path, checkpoints):
    from safetensors.torch import load_file, save_file

    ckpt = tmp_path / "ckpt"
    shutil.copytree(checkpoints["bio"], ckpt)
    weights = load_file(str(ckpt / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("classifier.")},
              str(ckpt / "model.safetensors"), metadata={"format": "pt"})  # fmt: skip
    with pytest.raises(ValueError, match="lacks weights.*classifier"):
        from_huggingface(ckpt)


def test_import_error_mixed_labels(tmp_path, encoders):
    ckpt = make_checkpoint(encoders["wordpiece"], tmp_path / "m", ["O", "B-PER", "NN"])
    with pytest.raises(ValueError, match="Mixed labels"):
        from_huggingface(ckpt)
    # The fix the message names works.
    assert from_huggingface(ckpt, task="tag").get_pipe(NAME).labels == ("O", "B-PER", "NN")


def test_import_error_settings_the_import_decides(checkpoints):
    with pytest.raises(ValueError, match=r"\['scheme'\]"):
        from_huggingface(checkpoints["bio"], config={"scheme": "BILUO"})
    with pytest.raises(ValueError, match="model.tok2vec.name"):
        from_huggingface(checkpoints["bio"], config={"model": {"tok2vec": {"name": "x"}}})
    nlp = from_huggingface(checkpoints["bio"])
    with pytest.raises(ValueError, match="already has a component 'token_classifier'"):
        from_huggingface(checkpoints["bio"], nlp=nlp)


# Export ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_ents(encoders):
    # Seeded, and trained long enough that the training texts' argmax is a valid
    # sequence whatever ran before (60 updates fell short for some test orders).
    spacy.util.fix_random_seed(0)
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    train(nlp, make_examples(nlp), 100)
    return nlp


def test_export_pipeline_finds_the_same_entities(tmp_path, trained_ents):
    nlp = trained_ents
    out = to_huggingface(nlp, tmp_path / "hf")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    config = json.loads((out / "config.json").read_text())
    labels = nlp.get_pipe(NAME).layout.output_labels("ents")
    assert config["id2label"] == {str(i): label for i, label in enumerate(labels)}
    assert config["label2id"] == {label: i for i, label in enumerate(labels)}
    assert config["architectures"] == ["BertForTokenClassification"]
    texts = [text for text in SAME_WORD_TEXTS if argmax_is_valid(nlp, text)]
    assert texts[:2] == SAME_WORD_TEXTS[:2]  # the training texts
    ours = [ents_of(doc) for doc in nlp.pipe(texts)]
    assert ours[0] == [(0, 13, "PER"), (22, 35, "LOC")]  # trained
    assert ours[1] == [(7, 13, "LOC"), (18, 23, "LOC")]
    assert hf_pipeline_ents(out, texts) == ours


def test_export_logits_are_the_component_scores(tmp_path, trained_ents):
    nlp = trained_ents
    pipe = nlp.get_pipe(NAME)
    out = to_huggingface(nlp, tmp_path / "ents")
    out_tag = to_huggingface(nlp, tmp_path / "tag", task="tag")
    cols = pipe.layout.slices
    for text in ALL_TEXTS:
        words = [t.text for t in nlp.make_doc(text)]
        scores = component_scores(nlp, words)
        logits, _ = hf_logits(out, words)
        numpy.testing.assert_allclose(logits, scores[:, cols["ents"]], atol=1e-4)
        logits_tag, id2label = hf_logits(out_tag, words)
        numpy.testing.assert_allclose(logits_tag, scores[:, cols["tag"]], atol=1e-4)
        doc = nlp(text)
        assert [id2label[int(i)] for i in logits_tag.argmax(axis=1)] == [t.tag_ for t in doc]


def test_export_then_import_round_trip(tmp_path, trained_ents):
    out = to_huggingface(trained_ents, tmp_path / "hf")
    nlp2 = from_huggingface(out)
    assert nlp2.get_pipe(NAME).labels == tuple(ENT_TYPES)
    assert [ents_of(d) for d in nlp2.pipe(ALL_TEXTS)] == [
        ents_of(d) for d in trained_ents.pipe(ALL_TEXTS)
    ]


def test_export_biluo_as_bioes_warns_and_round_trips(tmp_path, encoders):
    nlp = make_nlp(encoders["wordpiece"], scheme="BILUO")
    train(nlp, make_examples(nlp), 60)
    with pytest.warns(UserWarning, match="exported as BIOES"):
        out = to_huggingface(nlp, tmp_path / "hf")
    id2label = json.loads((out / "config.json").read_text())["id2label"]
    assert {"E-PER", "S-LOC", "B-ORG", "I-ORG"} <= set(id2label.values())
    assert not any(label[0] in "LU" for label in id2label.values())
    nlp2 = from_huggingface(out)
    assert nlp2.get_pipe(NAME).cfg["scheme"] == "BILUO"
    assert [ents_of(d) for d in nlp2.pipe(ALL_TEXTS)] == [ents_of(d) for d in nlp.pipe(ALL_TEXTS)]
    for text, annots in TRAIN_DATA:
        assert [(e.start_char, e.end_char, e.label_) for e in nlp2(text).ents] == annots["entities"]


@pytest.mark.parametrize("case", ["io", "bio", "hyphenated"])
def test_export_of_imported_models_pipeline_agrees(tmp_path, checkpoints, case):
    """Random imported models give many entities: transformers' pipeline
    groups the exported labels into the same entities as the component."""
    nlp = from_huggingface(checkpoints[case])
    out = to_huggingface(nlp, tmp_path / case)
    assert all(argmax_is_valid(nlp, text) for text in SAME_WORD_TEXTS)
    ours = [ents_of(doc) for doc in nlp.pipe(SAME_WORD_TEXTS)]
    assert sum(map(len, ours)) >= 4
    assert hf_pipeline_ents(out, SAME_WORD_TEXTS) == ours


# Export: what a checkpoint cannot hold ---------------------------------------------

CONTEXT_V2 = {"@architectures": "spacy-tokclf.HFEncoder.v2"}
# Words of three sentences, and their sentence starts.
SENTENCES = [["The", "quick", "brown", "fox", "jumps", "."], ["Merkel", "met", "the", "dog", "."],
             ["I", "like", "London", "and", "Paris", "."]]
WORDS = [w for sentence in SENTENCES for w in sentence]
SENT_STARTS = [i == 0 for sentence in SENTENCES for i in range(len(sentence))]


def initialized(encoder: Path, **config):
    nlp = make_nlp(encoder, **config)
    nlp.initialize(lambda: make_examples(nlp))
    return nlp


def scores_on(nlp, sentences: bool) -> numpy.ndarray:
    pipe = nlp.get_pipe(NAME)
    doc = Doc(nlp.vocab, words=WORDS, sent_starts=SENT_STARTS if sentences else None)
    return pipe.model.ops.to_numpy(pipe.model.predict([doc])[0])[:, pipe.layout.slices["ents"]]


def test_export_refuses_sentences_read_alone(tmp_path, encoders):
    """context = 0: the component reads each sentence alone, the exported
    model the whole text. Refused by name; allowed on request, with a warning,
    and then the export computes what the component computes on docs without
    sentence boundaries (and differs on docs with them, as the warning says)."""
    nlp = initialized(encoders["wordpiece"], tok2vec={**CONTEXT_V2, "context": 0})
    with pytest.raises(ValueError, match=r"`model.tok2vec.context = 0`.*allow_context=True") as err:
        to_huggingface(nlp, tmp_path / "hf")
    assert '"context": None' in str(err.value)
    assert not (tmp_path / "hf").exists()
    with pytest.warns(UserWarning, match=r"`model.tok2vec.context = 0` is not exported"):
        out = to_huggingface(nlp, tmp_path / "hf", allow_context=True)
    logits, _ = hf_logits(out, WORDS)
    numpy.testing.assert_allclose(logits, scores_on(nlp, sentences=False), atol=1e-4)
    assert numpy.abs(logits - scores_on(nlp, sentences=True)).max() > 1e-2
    nlp.to_disk(tmp_path / "pipeline")
    result = run_spacy_cli("tokclf-export", "pipeline", "hf_cli", cwd=tmp_path)
    assert result.returncode == 1 and "--allow-context" in result.stdout
    assert not (tmp_path / "hf_cli").exists()
    result = run_spacy_cli("tokclf-export", "pipeline", "hf_cli", "--allow-context", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not exported" in result.stderr


def test_same_scores_check_reads_a_text_with_sentence_boundaries(tmp_path, encoders):
    """A model that reads each sentence alone, checked against its export as
    read whole: today's main compared them on one sentence without
    boundaries, where both read the same, and passed; the check now gives
    the component a text of several sentences with boundaries."""
    from transformers import AutoModelForTokenClassification

    nlp = initialized(encoders["wordpiece"], tok2vec={**CONTEXT_V2, "context": 0})
    nlp.to_disk(tmp_path / "pipeline")
    whole = spacy.load(
        tmp_path / "pipeline", config={"components": {NAME: {"model": {"tok2vec": {"context": None}}}}}
    )
    out = to_huggingface(whole, tmp_path / "hf")  # the same weights, reading texts whole
    hf_model = AutoModelForTokenClassification.from_pretrained(str(out)).eval()
    pipe = nlp.get_pipe(NAME)
    tokenizer = pipe.model.get_ref("tok2vec").shims[0].tokenizer
    rows = list(range(len(pipe.layout.output_labels("ents"))))
    check_same_scores(whole.get_pipe(NAME), "ents", hf_model, tokenizer, rows, "export")
    with pytest.raises(ValueError, match="Cannot export faithfully: the exported"):
        check_same_scores(pipe, "ents", hf_model, tokenizer, rows, "export")


def test_export_with_context_says_where_it_differs(tmp_path, encoders):
    """context > 0: sentences of a text that fits in one window are read
    together, as the exported model reads the text: the same scores on a
    text of several sentences with boundaries; the warning says so and
    names where they differ (texts longer than the window)."""
    nlp = initialized(encoders["wordpiece"], tok2vec={**CONTEXT_V2, "context": 16})
    expected = r"`model.tok2vec.context = 16` is not exported.*at most `window` \(256\) word pieces"
    with pytest.warns(UserWarning, match=expected):
        out = to_huggingface(nlp, tmp_path / "hf")
    logits, _ = hf_logits(out, WORDS)
    numpy.testing.assert_allclose(logits, scores_on(nlp, sentences=True), atol=1e-4)


def test_export_names_the_threshold_and_calibration_it_leaves_out(tmp_path, encoders):
    nlp = initialized(encoders["wordpiece"], threshold=0.5)
    pipe = nlp.get_pipe(NAME)
    pipe.cfg["calibration"] = {"temperature": {"ents": 2.0}, "entity_map": None, "method": "temperature"}
    with pytest.warns(UserWarning) as record:
        out = to_huggingface(nlp, tmp_path / "hf")
    messages = " ".join(str(w.message) for w in record)
    assert "`threshold = 0.5` is not exported" in messages
    assert "calibration (method 'temperature') is not exported" in messages
    # The logits are the uncalibrated scores.
    logits, _ = hf_logits(out, WORDS)
    numpy.testing.assert_allclose(logits, scores_on(nlp, sentences=False), atol=1e-4)
    # Without either: no warning.
    plain = initialized(encoders["wordpiece"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        to_huggingface(plain, tmp_path / "plain")


# Export: errors -------------------------------------------------------------------


def test_export_error_mean_pooling(tmp_path, encoders):
    nlp = make_nlp(encoders["wordpiece"], tok2vec={"pooling": "mean"})
    nlp.initialize(lambda: make_examples(nlp))
    expected = r'(?s)`model.tok2vec.pooling` is "mean".*pooling = "first"'
    with pytest.raises(ValueError, match=expected):
        to_huggingface(nlp, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_export_error_not_initialized(tmp_path, encoders):
    nlp = make_nlp(encoders["wordpiece"])
    with pytest.raises(ValueError, match="not trained or initialized"):
        to_huggingface(nlp, tmp_path / "hf")


def test_export_error_task_and_component(tmp_path, trained_ents, encoders):
    with pytest.raises(ValueError, match="Cannot export task 'pos'.*\\['ents', 'tag'\\]"):
        to_huggingface(trained_ents, tmp_path / "hf", task="pos")
    with pytest.raises(ValueError, match="no component 'ner'"):
        to_huggingface(trained_ents, tmp_path / "hf", component="ner")
    nlp = spacy.blank("en")
    for name in ("a", "b"):
        nlp.add_pipe("token_classifier", name=name, config={"model": {"tok2vec": {"name": "x"}}})
    with pytest.raises(ValueError, match="2 token_classifier components.*--component"):
        to_huggingface(nlp, tmp_path / "hf")
    with pytest.raises(TypeError, match="spacy.load"):
        to_huggingface(str(tmp_path), tmp_path / "hf")
    # The component itself may be passed.
    assert to_huggingface(trained_ents.get_pipe(NAME), tmp_path / "ok").is_dir()


@needs_listener
def test_export_error_listener(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "token_classifier",
        config={"model": {"tok2vec": dict(LISTENER_TOK2VEC)}},
    )
    with pytest.raises(ValueError, match="own encoder.*listener"):
        to_huggingface(nlp, tmp_path / "hf")


# CLI -----------------------------------------------------------------------------------


def test_cli_import_and_export(tmp_path, checkpoints):
    result = run_spacy_cli("tokclf-import", str(checkpoints["bioes"]), "pipeline", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"task ents,\s+scheme\s+BILUO", result.stdout)
    loaded = spacy.load(tmp_path / "pipeline")
    in_process = from_huggingface(checkpoints["bioes"])
    assert [ents_of(d) for d in loaded.pipe(ALL_TEXTS)] == [
        ents_of(d) for d in in_process.pipe(ALL_TEXTS)
    ]
    result = run_spacy_cli("tokclf-export", "pipeline", "hf", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    id2label = json.loads((tmp_path / "hf" / "config.json").read_text())["id2label"]
    expected = [
        FROM_BILUO.get(label[0], label[0]) + label[1:] if label != "O" else label
        for label in loaded.get_pipe(NAME).layout.output_labels("ents")
    ]
    assert list(id2label.values()) == expected and any(x.startswith("S-") for x in expected)
    words = [t.text for t in loaded.make_doc(SAME_WORD_TEXTS[0])]
    logits, _ = hf_logits(tmp_path / "hf", words)
    numpy.testing.assert_allclose(logits, component_scores(loaded, words), atol=1e-4)


def test_cli_import_task_and_name(tmp_path, checkpoints):
    result = run_spacy_cli(
        "tokclf-import", str(checkpoints["bio"]), "pipeline", "--task", "tag", "--name", "hf",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    nlp = spacy.load(tmp_path / "pipeline")
    assert nlp.pipe_names == ["hf"] and nlp.get_pipe("hf").tasks == ["tag"]


def test_cli_errors_exit_with_the_message(tmp_path, encoders, checkpoints):
    ckpt = make_checkpoint(encoders["wordpiece"], tmp_path / "mixed", ["O", "B-PER", "NN"])
    result = run_spacy_cli("tokclf-import", str(ckpt), "pipeline", cwd=tmp_path)
    assert result.returncode == 1
    assert "Mixed labels" in result.stdout and "--task tag" in result.stdout
    assert not (tmp_path / "pipeline").exists()
    from_huggingface(checkpoints["bio"]).to_disk(tmp_path / "bio")
    result = run_spacy_cli("tokclf-export", "bio", "hf", "--task", "tag", cwd=tmp_path)
    assert result.returncode == 1
    assert "Cannot export task 'tag'" in result.stdout
    assert not (tmp_path / "hf").exists()
