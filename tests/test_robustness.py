"""Regression tests for the robustness bugs found in review (issue 12):
window sizing, position limits, stand-in pieces, tokenizer state, the
overwrite policy, export after int8, and the device paths. Each failed
before its fix."""
import json
import logging
import shutil
from pathlib import Path
from typing import Sequence

import numpy
import pytest
import torch
from spacy.tokens import Doc, Span, SpanGroup
from spacy.vocab import Vocab

import spacy_tokclf
from spacy_tokclf import from_huggingface, to_huggingface
from spacy_tokclf.architectures import build_hf_encoder
from spacy_tokclf.layers import hf_shim
from spacy_tokclf.layers.pieces import SpecialPieces, prepare_tokenizer

from .util import TRAIN_DATA, make_examples, make_nlp, train

NAME = "token_classifier"
LONG_WORDS = ["the", "New", "York"] * 120


def make_checkpoint(encoder: Path, out: Path, labels: Sequence[str] = ("O", "B-PER", "I-PER"),
                    **config_changes) -> Path:
    """A random *ForTokenClassification checkpoint with the encoder's tokenizer."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(
        str(encoder),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        **config_changes,
    )
    AutoModelForTokenClassification.from_config(config).save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(encoder)).save_pretrained(str(out))
    return out


def set_tokenizer_json(path: Path, **fields) -> None:
    data = json.loads((path / "tokenizer.json").read_text(encoding="utf8"))
    data.update(fields)
    (path / "tokenizer.json").write_text(json.dumps(data), encoding="utf8")


def padding(strategy) -> dict:
    return {
        "strategy": strategy,
        "direction": "Right",
        "pad_to_multiple_of": None,
        "pad_id": 0,
        "pad_type_id": 0,
        "pad_token": "[PAD]",
    }


def encoder_settings(nlp):
    return nlp.get_pipe(NAME).model.get_ref("tok2vec").attrs["settings"]


def shim_of(nlp):
    return nlp.get_pipe(NAME).model.get_ref("tok2vec").shims[0]


# Window sizing in from_huggingface -------------------------------------------------


@pytest.mark.parametrize("strategy", [{"Fixed": 300}, {"Fixed": 512}, "BatchLongest"])
def test_import_window_ignores_tokenizer_padding(wordpiece, tmp_path, strategy):
    """Padding in tokenizer.json was counted as special pieces: padding to 300
    shrank the window to 213, and to 512 gave a window of 1 (and a false error)."""
    path = make_checkpoint(wordpiece, tmp_path / "padded")
    set_tokenizer_json(path, padding=padding(strategy))
    nlp = from_huggingface(path)
    settings = encoder_settings(nlp)
    assert (settings.window, settings.stride) == (256, 192)
    doc = nlp(" ".join(LONG_WORDS))
    assert len(doc._.tokclf_probs[NAME]["ents"]) == len(doc)


def test_import_short_model_windows_overlap(wordpiece, tmp_path):
    """For a model that reads <= 192 pieces, the stride equalled the window:
    long documents were read in windows with no overlap."""
    path = make_checkpoint(wordpiece, tmp_path / "short", max_position_embeddings=130)
    nlp = from_huggingface(path)
    settings = encoder_settings(nlp)
    assert settings.window == 128  # 130 positions, less [CLS] and [SEP]
    assert 0 < settings.stride < settings.window


# Position limits ---------------------------------------------------------------------


def test_position_limit_read_from_the_model_for_any_type(encoders):
    """The padding offset of RoBERTa-like position tables came from a table of
    four model types; data2vec-text (same embeddings) ran past its table."""
    from transformers import AutoTokenizer, Data2VecTextConfig, Data2VecTextModel

    tokenizer = AutoTokenizer.from_pretrained(str(encoders["bpe"]))
    config = Data2VecTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=37, max_position_embeddings=40,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Data2VecTextModel(config)
    _, special = prepare_tokenizer(tokenizer)
    # 40 rows, the first pad_id + 1 = 2 unused: 38 positions, 36 without <s> and </s>.
    assert hf_shim.position_limit(model, tokenizer) == 38
    assert hf_shim.max_window(model, tokenizer, special) == 36
    # Reading a window of that length works; one more would index past the table.
    ids = torch.full((1, 38), 5)
    model(input_ids=ids)
    with pytest.raises((IndexError, RuntimeError)):
        model(input_ids=torch.full((1, 39), 5))


def test_default_window_longer_than_the_model_is_fitted_and_logged(wordpiece, tmp_path, caplog):
    """A tokenizer that says 128 failed at initialize with the default window
    256; now the longest window that fits is used, and the log says so."""
    path = tmp_path / "max128"
    shutil.copytree(wordpiece, path)
    config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf8"))
    config["model_max_length"] = 128
    (path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf8")
    nlp = make_nlp(path)
    with caplog.at_level(logging.WARNING, logger="spacy"):
        nlp.initialize(lambda: make_examples(nlp))
    assert shim_of(nlp).window_limit == 126
    assert any("using window 126" in r.getMessage() for r in caplog.records)
    doc = nlp(" ".join(LONG_WORDS))
    assert len(doc) == len(LONG_WORDS)


def test_fit_window_keeps_an_overlap():
    assert hf_shim.fit_window(256, 192, 510) == (256, 192)
    window, stride = hf_shim.fit_window(256, 192, 126)
    assert window == 126 and 0 < stride < window
    for limit in range(1, 300):
        window, stride = hf_shim.fit_window(256, 192, limit)
        assert window <= limit and 1 <= stride <= window
        assert window == 1 or stride < window


# Stand-in piece, tokenizer state --------------------------------------------------------


def test_tokenizer_without_unknown_piece_never_uses_padding(encoders):
    """Without an unknown piece, a token with no pieces got the padding id,
    which for RoBERTa-like models is the position table's padding index."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(encoders["bpe"]))
    tokenizer.unk_token = None
    assert tokenizer.unk_token_id is None
    special = SpecialPieces.from_tokenizer(tokenizer)
    assert special.unk_id == tokenizer.mask_token_id != tokenizer.pad_token_id
    tokenizer.mask_token = None
    special = SpecialPieces.from_tokenizer(tokenizer)
    assert special.unk_id not in (tokenizer.pad_token_id, None)
    question = tokenizer.backend_tokenizer.encode(["?"], is_pretokenized=True, add_special_tokens=False)
    assert special.unk_id == question.ids[0]


def test_prepare_tokenizer_leaves_the_given_tokenizer_alone(encoders):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(encoders["wordpiece"]))
    tokenizer.backend_tokenizer.enable_padding(length=64)
    tokenizer.backend_tokenizer.enable_truncation(16)
    prepared, special = prepare_tokenizer(tokenizer)
    assert tokenizer.backend_tokenizer.padding is not None
    assert tokenizer.backend_tokenizer.truncation is not None
    assert prepared.backend_tokenizer.padding is None
    assert prepared.backend_tokenizer.truncation is None
    assert special.prefix == [tokenizer.cls_token_id]


def test_truncation_switched_on_later_is_an_error(wordpiece):
    """Truncation turned on after loading cut long docs silently (their last
    tokens got the stand-in piece)."""
    model = build_hf_encoder(name=str(wordpiece), window=32, stride=24)
    model.initialize()
    doc = Doc(Vocab(), words=LONG_WORDS)
    model.predict([doc])
    model.shims[0].tokenizer.backend_tokenizer.enable_truncation(16)
    with pytest.raises(ValueError, match="truncat"):
        model.predict([doc])


# overwrite = false ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_both(encoders):
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    train(nlp, make_examples(nlp), 60)
    return nlp


def preset(nlp) -> Doc:
    doc = nlp.make_doc(TRAIN_DATA[0][0])  # Angela Merkel visited New York City in 2019.
    doc.ents = [Span(doc, 0, 1, label="ORG")]  # "Angela"
    doc[2].tag_ = "XX"
    return doc


def test_overwrite_false_probs_are_none_where_annotation_was_kept(trained_both):
    nlp = trained_both
    pipe = nlp.get_pipe(NAME)
    doc = pipe(preset(nlp))
    probs = doc._.tokclf_probs[NAME]
    assert probs["ents"][0] is None  # "Angela": the preset entity was kept
    assert all(p is not None for p in probs["ents"][1:])
    assert probs["tag"][2] is None and doc[2].tag_ == "XX"
    assert all(p is not None for i, p in enumerate(probs["tag"]) if i != 2)


def test_overwrite_false_keeps_an_existing_span_group(trained_both):
    nlp = trained_both
    pipe = nlp.get_pipe(NAME)
    doc = preset(nlp)
    mine = Span(doc, 3, 5, label="MINE")  # "New York"
    doc.spans[NAME] = SpanGroup(doc, name=NAME, spans=[mine], attrs={"scores": [0.5]})
    doc = pipe(doc)
    group = doc.spans[NAME]
    # The existing span stays; "Angela Merkel" (no overlap) is added with its
    # score; "New York City" overlaps the existing span and is not.
    assert [(s.start, s.end, s.label_) for s in group] == [(3, 5, "MINE"), (0, 2, "PER")]
    assert group.attrs["scores"][0] == 0.5 and 0 < group.attrs["scores"][1] <= 1
    # attrs["repaired"] stays aligned with the spans: unknown (None) for the
    # existing span, a bool for the predicted one.
    assert group.attrs["repaired"][0] is None and group.attrs["repaired"][1] in (True, False)
    # Running it again adds nothing.
    again = pipe(doc)
    assert [(s.start, s.end, s.label_) for s in again.spans[NAME]] == [
        (3, 5, "MINE"), (0, 2, "PER")
    ]
    assert len(again.spans[NAME].attrs["repaired"]) == len(again.spans[NAME])


def test_overwrite_true_replaces_the_span_group_and_probs(trained_both, monkeypatch):
    nlp = trained_both
    pipe = nlp.get_pipe(NAME)
    monkeypatch.setitem(pipe.cfg, "overwrite", True)
    doc = preset(nlp)
    doc.spans[NAME] = SpanGroup(doc, name=NAME, spans=[Span(doc, 3, 5, label="MINE")])
    doc = pipe(doc)
    assert "MINE" not in {s.label_ for s in doc.spans[NAME]}
    assert all(p is not None for task in ("ents", "tag") for p in doc._.tokclf_probs[NAME][task])


# int8 --------------------------------------------------------------------------------------


def test_export_after_quantize_says_why(trained_both, tmp_path):
    """Export of a quantized pipeline blamed the model's head."""
    nlp = make_nlp(Path(encoder_settings(trained_both).name), tasks=["ents", "tag"])
    nlp.from_bytes(trained_both.to_bytes())
    spacy_tokclf.quantize_encoder(nlp)
    with pytest.raises(ValueError, match="quantized.*fp32"):
        to_huggingface(nlp, tmp_path / "hf")


def test_int8_pipeline_on_a_gpu_device_is_a_clear_error(trained_both, monkeypatch):
    """A saved int8 pipeline loaded after spacy.require_gpu() failed inside
    torch._int_mm; now it fails at load, saying what to do. (The device is
    faked: no tensor is moved.)"""
    nlp = make_nlp(Path(encoder_settings(trained_both).name), tasks=["ents", "tag"])
    nlp.from_bytes(trained_both.to_bytes())
    spacy_tokclf.quantize_encoder(nlp)
    data = nlp.to_bytes()
    monkeypatch.setattr(hf_shim, "get_torch_default_device", lambda: torch.device("cuda", 0))
    fresh = make_nlp(Path(encoder_settings(nlp).name), tasks=["ents", "tag"])
    with pytest.raises(ValueError, match="int8.*CPU only.*require_gpu"):
        fresh.from_bytes(data)


# Device paths ------------------------------------------------------------------------------


def test_predict_copies_to_the_host_once_per_batch(trained_both, monkeypatch):
    """predict copied each doc's scores to the host one by one."""
    nlp = trained_both
    pipe = nlp.get_pipe(NAME)
    ops = pipe.model.ops
    calls = []
    original = ops.to_numpy
    monkeypatch.setattr(ops, "to_numpy", lambda *a, **k: calls.append(1) or original(*a, **k))
    docs = [nlp.make_doc(text) for text, _ in TRAIN_DATA]
    pipe.predict(docs)
    assert len(calls) == 1


def test_get_loss_stays_on_the_device(trained_both, monkeypatch):
    """get_loss copied every batch to numpy and back."""
    nlp = trained_both
    pipe = nlp.get_pipe(NAME)
    examples = make_examples(nlp)
    scores = pipe.model.predict([eg.predicted for eg in examples])
    expected_loss, expected_grads = pipe.get_loss(examples, scores)
    ops = pipe.model.ops

    def no_host_copy(*args, **kwargs):
        raise AssertionError("get_loss copied scores to the host")

    monkeypatch.setattr(ops, "to_numpy", no_host_copy)
    monkeypatch.setattr(ops, "asarray2f", no_host_copy)
    loss, grads = pipe.get_loss(examples, scores)
    assert loss == expected_loss > 0
    for got, want in zip(grads, expected_grads):
        numpy.testing.assert_array_equal(got, want)


def test_output_split_uses_host_indices(monkeypatch, wordpiece):
    """The per-doc split of the encoder output passed a device index array to
    xp.split (one sync per doc on cupy)."""
    model = build_hf_encoder(name=str(wordpiece), window=32, stride=24)
    model.initialize()
    seen = []
    original = numpy.split

    def split(array, indices, *args, **kwargs):
        seen.append(type(indices))
        return original(array, indices, *args, **kwargs)

    monkeypatch.setattr(model.ops.xp, "split", split)
    docs = [Doc(Vocab(), words=w) for w in (["the"], ["New", "York"], ["the", "the", "the"])]
    out = model.predict(docs)
    assert [len(y) for y in out] == [1, 2, 3]
    assert seen == [list]


def cpu_reference(nlp):
    """What the GPU test compares against: per text of TRAIN_DATA, the CPU's
    entities, tags, entity scores and token probabilities. The texts must give
    entities (and the pipeline was overfitted on them), or the comparison
    would pass on nothing."""
    texts = [text for text, _ in TRAIN_DATA]
    out = []
    for doc in nlp.pipe(texts):
        group = doc.spans[NAME]
        out.append({
            "ents": [(e.start, e.end, e.label_) for e in doc.ents],
            "tags": [t.tag_ for t in doc],
            "scores": list(group.attrs["scores"]),
            "probs": doc._.tokclf_probs[NAME],
        })
    n_gold = sum(len(annots["entities"]) for _, annots in TRAIN_DATA)
    assert sum(len(r["ents"]) for r in out) >= n_gold, "the CPU prediction lacks entities"
    return texts, out


def test_gpu_reference_has_entities(trained_both):
    """The CPU side of test_gpu_prediction_matches_cpu (which this machine
    skips) holds every gold entity, so that test compares real entities."""
    _, reference = cpu_reference(trained_both)
    gold = []
    for text, annots in TRAIN_DATA:
        doc = trained_both.make_doc(text)
        gold.append([(s.start, s.end, s.label_)
                     for s in (doc.char_span(a, b, label=lab) for a, b, lab in annots["entities"])])
    assert [r["ents"] for r in reference] == gold


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none on this machine")
def test_gpu_prediction_matches_cpu(trained_both):
    """On a GPU, predictions equal the CPU's (entities, which must exist, and
    tags) and stay close (entity scores and token probabilities, 1e-4)."""
    import spacy
    from thinc.api import get_current_ops

    texts, cpu = cpu_reference(trained_both)
    data = trained_both.to_bytes()
    spacy.require_gpu()
    try:
        nlp = make_nlp(Path(encoder_settings(trained_both).name), tasks=["ents", "tag"])
        nlp.from_bytes(data)
        assert type(get_current_ops()).__name__ == "CupyOps"
        for doc, ref in zip(nlp.pipe(texts), cpu):
            assert [(e.start, e.end, e.label_) for e in doc.ents] == ref["ents"]
            assert [t.tag_ for t in doc] == ref["tags"]
            numpy.testing.assert_allclose(doc.spans[NAME].attrs["scores"], ref["scores"], atol=1e-4)
            for task, probs in ref["probs"].items():
                numpy.testing.assert_allclose(doc._.tokclf_probs[NAME][task], probs, atol=1e-4)
    finally:
        spacy.require_cpu()
