"""spacy_tokclf.quantize_encoder: int8 linear layers, close predictions, a
pipeline that saves and loads quantized, and clear errors."""
import pickle

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from spacy.util import make_tempdir

import spacy_tokclf
from spacy_tokclf.layers.int8 import Int8DynamicLinear, quantize_linear_layers

from .util import TEXTS, TRAIN_DATA, make_examples, make_nlp, train

NAME = "token_classifier"
ALL_TEXTS = [text for text, _ in TRAIN_DATA] + TEXTS + ["", "   "]



@pytest.fixture(scope="module")
def trained(encoders):
    """An overfitted fp32 pipeline with tasks ents and tag."""
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    train(nlp, make_examples(nlp), n_iter=60)
    return nlp


def transformer_of(nlp, name=NAME) -> torch.nn.Module:
    return nlp.get_pipe(name).model.get_ref("tok2vec").shims[0].transformer


def count(module: torch.nn.Module, cls) -> int:
    return sum(type(m) is cls for m in module.modules())


def predictions(nlp, texts=ALL_TEXTS):
    return [
        ([(e.start, e.end, e.label_) for e in doc.ents], [t.tag_ for t in doc])
        for doc in nlp.pipe(texts)
    ]


def quantized_copy(nlp):
    copy = spacy.blank("en").from_config(nlp.config)
    copy.from_bytes(nlp.to_bytes())
    assert spacy_tokclf.quantize_encoder(copy) == [NAME]
    return copy


@pytest.mark.parametrize("shape", [(7, 32), (2, 5, 32), (0, 32), (3, 0, 32)])
@pytest.mark.parametrize("bias", [True, False])
def test_int8_linear_close_to_float(shape, bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 37, bias=bias)
    q = Int8DynamicLinear.from_float(linear)
    x = torch.randn(*shape)
    with torch.no_grad():
        expected, got = linear(x), q(x)
    assert got.shape == expected.shape == (*shape[:-1], 37)
    assert got.dtype == torch.float32
    if got.numel():
        # int8 with per-row / per-channel scales: about 1 % relative error.
        error = (got - expected).norm() / expected.norm()
        assert error < 0.03


def test_int8_linear_exact_on_int8_grid():
    """Weights and inputs that int8 represents exactly give the float result;
    an all-zero row (scale 0) gives the bias."""
    linear = torch.nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[127.0, -127.0, 3.0, 0.0]] * 3) / 64)
    q = Int8DynamicLinear.from_float(linear)
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0], [127.0, -127.0, 0.0, 1.0]])
    with torch.no_grad():
        assert torch.allclose(q(x), linear(x), rtol=1e-5, atol=1e-5)
        assert torch.equal(q(x)[0], linear.bias)


def test_quantize_linear_layers_replaces_only_linear():
    mha = torch.nn.MultiheadAttention(8, 2)
    module = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    module.add_module("attention", mha)
    assert quantize_linear_layers(module) == 2
    assert count(module, torch.nn.Linear) == 0
    # MultiheadAttention reads its out_proj weight directly: left alone.
    assert isinstance(module.attention.out_proj, torch.nn.Linear)


def test_quantize_encoder_replaces_every_linear_layer(trained):
    n_linear = count(transformer_of(trained), torch.nn.Linear)
    assert n_linear > 0
    nlp = quantized_copy(trained)
    transformer = transformer_of(nlp)
    assert count(transformer, torch.nn.Linear) == 0
    assert count(transformer, Int8DynamicLinear) == n_linear
    # The original pipeline is untouched; quantizing again changes nothing.
    assert count(transformer_of(trained), torch.nn.Linear) == n_linear
    assert spacy_tokclf.quantize_encoder(nlp) == [NAME]
    assert count(transformer_of(nlp), Int8DynamicLinear) == n_linear


def test_quantized_predictions_mostly_unchanged(trained):
    nlp = quantized_copy(trained)
    before, after = predictions(trained), predictions(nlp)
    tags_before = [t for _, tags in before for t in tags]
    tags_after = [t for _, tags in after for t in tags]
    agree = numpy.mean([a == b for a, b in zip(tags_before, tags_after)])
    assert agree >= 0.9
    # The overfitted training sentences keep their entities.
    n_train = len(TRAIN_DATA)
    assert [ents for ents, _ in after[:n_train]] == [ents for ents, _ in before[:n_train]]
    # Probabilities move a little, not a lot.
    probs = lambda p: numpy.concatenate(  # noqa: E731
        [d._.tokclf_probs[NAME]["tag"] for d in p.pipe(ALL_TEXTS) if len(d)]
    )
    assert numpy.abs(probs(nlp) - probs(trained)).max() < 0.2


def test_quantized_pipeline_saves_and_loads_int8(trained):
    nlp = quantized_copy(trained)
    expected = predictions(nlp)
    with make_tempdir() as tmp:
        nlp.to_disk(tmp / "pipeline")
        loaded = spacy.load(tmp / "pipeline")
    transformer = transformer_of(loaded)
    assert count(transformer, torch.nn.Linear) == 0
    assert count(transformer, Int8DynamicLinear) > 0
    assert predictions(loaded) == expected
    # Bytes and pickle (spawned nlp.pipe workers) keep it too.
    assert predictions(pickle.loads(pickle.dumps(nlp))) == expected
    # A saved fp32 pipeline still loads as fp32.
    with make_tempdir() as tmp:
        trained.to_disk(tmp / "pipeline")
        fp32 = spacy.load(tmp / "pipeline")
    assert count(transformer_of(fp32), Int8DynamicLinear) == 0


def test_quantized_encoder_refuses_training(trained):
    nlp = quantized_copy(trained)
    examples = [Example.from_dict(nlp.make_doc(t), a) for t, a in TRAIN_DATA]
    with pytest.raises(ValueError, match="quantize after loading"):
        nlp.update(examples)


def test_quantize_encoder_needs_loaded_weights(wordpiece):
    nlp = make_nlp(wordpiece)
    with pytest.raises(ValueError, match="no weights yet"):
        spacy_tokclf.quantize_encoder(nlp)


def test_quantize_encoder_needs_a_token_classifier():
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    with pytest.raises(ValueError, match="No token_classifier"):
        spacy_tokclf.quantize_encoder(nlp)
