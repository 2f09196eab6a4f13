"""One pipeline, many threads: what a served model sees (FastAPI, gunicorn
threads, Flask). Every thread must get exactly the sequential results, and
the transformer must be in eval mode for every prediction and in train mode
for every update."""
import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List

import numpy
import pytest
import torch

from .util import TEXTS, TRAIN_DATA, make_examples, make_nlp, train

NAME = "token_classifier"
N_THREADS = 8


def encoder_module(nlp) -> torch.nn.Module:
    return nlp.get_pipe(NAME).model.get_ref("tok2vec").shims[0].piece_encoder


def texts(n: int = 320) -> List[str]:
    """Sentences, pairs and long runs of the test texts, in a fixed order."""
    base = [text for text, _ in TRAIN_DATA] + TEXTS
    rng = random.Random(0)
    out = []
    for i in range(n):
        k = 1 if i % 3 else rng.randint(2, 12)
        out.append(" ".join(rng.choice(base) for _ in range(k)))
    return out


def outputs(doc) -> Dict[str, Any]:
    group = doc.spans[NAME]
    return {
        "ents": [(e.start_char, e.end_char, e.label_) for e in doc.ents],
        "tags": [t.tag_ for t in doc],
        "scores": numpy.asarray(group.attrs["scores"], dtype="float64"),
        "probs": {t: numpy.asarray(p) for t, p in doc._.tokclf_probs[NAME].items()},
    }


def assert_same(got: Dict[str, Any], want: Dict[str, Any]) -> None:
    assert got["ents"] == want["ents"]
    assert got["tags"] == want["tags"]
    numpy.testing.assert_allclose(got["scores"], want["scores"], rtol=0, atol=1e-6)
    for task in want["probs"]:
        numpy.testing.assert_allclose(got["probs"][task], want["probs"][task], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def trained_nlp(encoders):
    nlp = make_nlp(encoders["wordpiece"], tasks=["ents", "tag"])
    # Windows of 24 pieces, so the long texts are read in several windows.
    nlp.get_pipe(NAME).model.get_ref("tok2vec").attrs["settings"] = _small_windows(nlp)
    train(nlp, make_examples(nlp), 40)
    return nlp


def _small_windows(nlp):
    import dataclasses

    settings = nlp.get_pipe(NAME).model.get_ref("tok2vec").attrs["settings"]
    return dataclasses.replace(settings, window=24, stride=16)


def test_threads_give_the_sequential_results(trained_nlp):
    nlp = trained_nlp
    all_texts = texts()
    expected = [outputs(nlp(text)) for text in all_texts]
    # The encoder has dropout (BertConfig's default 0.1), so any prediction run
    # in train mode would change the probabilities.
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in encoder_module(nlp).modules())

    def call(i: int) -> Dict[str, Any]:
        return outputs(nlp(all_texts[i]))

    def pipe(chunk: List[int]) -> List[Dict[str, Any]]:
        return [outputs(doc) for doc in nlp.pipe([all_texts[i] for i in chunk], batch_size=7)]

    with ThreadPoolExecutor(max_workers=N_THREADS) as pool:
        single = list(pool.map(call, range(len(all_texts))))
        chunks = [list(range(start, len(all_texts), 16)) for start in range(16)]
        piped = list(pool.map(pipe, chunks))
    for got, want in zip(single, expected):
        assert_same(got, want)
    for chunk, results in zip(chunks, piped):
        for i, got in zip(chunk, results):
            assert_same(got, expected[i])


def test_prediction_leaves_eval_mode_and_training_gets_dropout(encoders):
    nlp = make_nlp(encoders["wordpiece"])
    examples = make_examples(nlp)
    optimizer = nlp.initialize(lambda: examples)
    module = encoder_module(nlp)
    nlp("Angela Merkel visited Paris.")
    assert not module.training, "prediction left the transformer in train mode"
    seen: List[bool] = []
    hook = module.register_forward_pre_hook(lambda mod, args: seen.append(mod.training))
    try:
        nlp.update(examples, sgd=optimizer)
        list(nlp.pipe(["I like London.", "Apple Inc. is based in Cupertino."]))
        nlp.update(examples, sgd=optimizer)
    finally:
        hook.remove()
    # update: train mode (dropout on); prediction: eval mode; update again: train.
    assert seen == [True, False, True]
    assert module.training
    nlp("Paris.")
    assert not module.training
