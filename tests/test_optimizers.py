"""spacy-tokclf.Adam.v1: the learning rate scaled for the head and by layer,
exactly Adam.v1 when both scales are 1.0."""
import numpy
import pytest
import spacy
from spacy.util import registry
from thinc.api import Adam

from spacy_tokclf.optimizers import ScaledAdam, count_layers, encoder_lr_scale

from .util import make_examples, make_nlp

BERT_NAMES = [
    "transformer.embeddings.word_embeddings.weight",
    "transformer.embeddings.LayerNorm.bias",
    "transformer.encoder.layer.0.attention.self.query.weight",
    "transformer.encoder.layer.1.output.dense.bias",
    "transformer.encoder.layer.2.output.LayerNorm.weight",
    "transformer.pooler.dense.weight",
]


def test_layer_scales_count_down_from_the_top():
    assert count_layers(BERT_NAMES) == 3
    assert count_layers(["transformer.layer.5.ffn.lin1.weight"]) == 6  # DistilBERT
    scales = [encoder_lr_scale(name, 3, 0.5) for name in BERT_NAMES]
    assert scales == [0.125, 0.125, 0.25, 0.5, 1.0, 1.0]
    assert {encoder_lr_scale(name, 3, 1.0) for name in BERT_NAMES} == {1.0}


def encoder_params(nlp) -> dict:
    pipe = nlp.get_pipe("token_classifier")
    shim = next(shim for node in pipe.model.walk() for shim in node.shims)
    return {n: p.detach().numpy().copy() for n, p in shim.piece_encoder.named_parameters()}


def head_params(nlp) -> list:
    pipe = nlp.get_pipe("token_classifier")
    return [node.get_param(name).copy() for node in pipe.model.walk() for name in node.param_names]


def one_step(wordpiece, optimizer) -> tuple:
    """Encoder and head weights before and after one update, seeded."""
    spacy.util.fix_random_seed(0)
    nlp = make_nlp(wordpiece, tasks=["ents", "tag"])
    examples = make_examples(nlp)
    nlp.initialize(lambda: examples)
    before = encoder_params(nlp), head_params(nlp)
    nlp.update(examples, sgd=optimizer, drop=0.0)
    return before, (encoder_params(nlp), head_params(nlp))


def test_scales_one_is_exactly_adam(wordpiece):
    settings = dict(L2=0.01, grad_clip=1.0, use_averages=False)
    (_, (enc_a, head_a)) = one_step(wordpiece, Adam(1e-3, **settings))
    make = registry.optimizers.get("spacy-tokclf.Adam.v1")
    (_, (enc_b, head_b)) = one_step(wordpiece, make(1e-3, **settings))
    assert enc_a.keys() == enc_b.keys()
    for name in enc_a:
        numpy.testing.assert_array_equal(enc_a[name], enc_b[name])
    for a, b in zip(head_a, head_b):
        numpy.testing.assert_array_equal(a, b)


def test_one_step_moves_each_group_by_its_rate(wordpiece):
    """Adam's first step moves a weight by the learning rate (times the scale)
    wherever its gradient is not tiny: so the largest move per group is the
    group's rate."""
    lr = 1e-3
    optimizer = ScaledAdam(lr, head_lr_scale=10.0, layer_decay=0.5, L2=0.0, grad_clip=0.0, use_averages=False)
    (enc0, head0), (enc1, head1) = one_step(wordpiece, optimizer)
    n_layers = count_layers(enc0)
    assert n_layers >= 2

    def moved(names) -> float:
        return max(float(numpy.abs(enc1[n] - enc0[n]).max()) for n in names)

    top = [n for n in enc0 if f".layer.{n_layers - 1}." in n]
    bottom = [n for n in enc0 if ".layer.0." in n]
    embeddings = [n for n in enc0 if "embeddings" in n]
    assert moved(top) == pytest.approx(lr, rel=0.02)
    assert moved(bottom) == pytest.approx(lr * 0.5 ** (n_layers - 1), rel=0.02)
    assert moved(embeddings) == pytest.approx(lr * 0.5**n_layers, rel=0.02)
    head = max(float(numpy.abs(b - a).max()) for a, b in zip(head0, head1))
    assert head == pytest.approx(10 * lr, rel=0.02)


def test_keys_of_other_components_keep_the_plain_rate(wordpiece):
    optimizer = ScaledAdam(1e-3, head_lr_scale=10.0, layer_decay=0.5)
    nlp = make_nlp(wordpiece, tasks=["ents"])
    nlp.initialize(lambda: make_examples(nlp))
    model = nlp.get_pipe("token_classifier").model
    optimizer.register(model)
    head = next(node for node in model.walk() if node.param_names)
    assert optimizer.lr_scale((head.id, head.param_names[0])) == 10.0
    assert optimizer.lr_scale((10**9, "W")) == 1.0  # a key the component does not own


@pytest.mark.parametrize(
    "setting,value", [("head_lr_scale", 0.0), ("head_lr_scale", -1.0), ("layer_decay", 0.0), ("layer_decay", 1.5)]
)
def test_invalid_scales_name_the_setting(setting, value):
    make = registry.optimizers.get("spacy-tokclf.Adam.v1")
    with pytest.raises(ValueError, match=rf"\[spacy-tokclf\] Invalid setting `{setting} = ") as info:
        make(1e-3, **{setting: value})
    assert "[training.optimizer]" in str(info.value)
